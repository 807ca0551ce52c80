"""Phantom oracle: the healthy twin resampled through the *fractured* case's straightening.

Straightening the healthy twin on its own gives blocks whose curve and frames differ slightly
from the fractured case's (the fractured body's centroid moves), which tilts neighbouring
bodies by a degree or two and shows up as a few percentage points of spurious height loss.
The oracle "pseudo-healthy" therefore samples the healthy twin mask through the exact block
geometry of the fractured case (``<straight_root>/geometry/<key>.npz``, see
``straighten/inverse.py``), order 0, and de-pedicles it like the straightening does. The output
``<output_root>/label/<key>.nii.gz`` lies on the fractured block's grid and can be fed to
``RHLV_quantification.py --fake_dir``; with ``--with_ct`` the healthy twin CT is resampled too
(``<output_root>/CT/<key>.nii.gz``, linear), the reference of ``generation_eval.py --truth_root``.

CLI::

    python evaluation/oracle.py --dataroot phantom --straight_root phantom/straight \
        --output_root phantom/oracle_healthy
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import load_ct, load_label, save_nifti  # noqa: E402
from data.splits import parse_key  # noqa: E402
from data.volume import Volume  # noqa: E402
from evaluation.rhlv import list_keys  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402

log = logging.getLogger("oracle")


def resample_through(geo, patient_labels: np.ndarray, chunk_rows: int = 32,
                     half_extent_vox: int = 96, order: int = 0, cval: float = 0.0) -> np.ndarray:
    """Sample a patient label array (order 0) at the block voxels within ``half_extent_vox``
    rows / AP columns of the block centre (the target and its neighbours; zero elsewhere)."""
    from straighten.inverse import block_to_patient
    h, w_ap, w_lr = (int(x) for x in geo.block_shape)
    out = np.full((h, w_ap, w_lr), cval, patient_labels.dtype)
    ap0 = max(0, int(geo.centre_ap) - half_extent_vox)
    ap1 = min(w_ap, int(geo.centre_ap) + half_extent_vox)
    jj, kk = np.meshgrid(np.arange(ap0, ap1), np.arange(w_lr), indexing="ij")
    r_lo, r_hi = max(0, h // 2 - half_extent_vox), min(h, h // 2 + half_extent_vox)
    for r0 in range(r_lo, r_hi, chunk_rows):
        rows = np.arange(r0, min(r_hi, r0 + chunk_rows))
        idx = np.stack([np.repeat(rows, jj.size), np.tile(jj.ravel(), len(rows)),
                        np.tile(kk.ravel(), len(rows))], axis=1).astype(float)
        vox = block_to_patient(geo, idx)
        vals = ndimage.map_coordinates(patient_labels, vox.T, order=order, cval=cval, mode="constant")
        out[rows, ap0:ap1] = vals.reshape(len(rows), ap1 - ap0, w_lr)
    return out


def twin_block(straight_root, key: str, healthy_mask: Volume, keep_arches: bool = False):
    """(label array, affine) of the healthy twin on the fractured block ``key``'s grid."""
    from straighten.blocks import block_paths, load_geometry
    from straighten.depedicle import depedicle
    _, lab_p, geo_p = block_paths(straight_root, key)
    if not geo_p.is_file():
        raise UserError("block geometry not found (straighten with the corrected mode)", geo_p)
    geo = load_geometry(straight_root, key)
    arr = resample_through(geo, np.asarray(healthy_mask.array))
    if not keep_arches:
        arr = depedicle(arr, int(round(geo.centre_ap)), int(round(geo.centre_lr)))
    return arr, load_label(lab_p, allow_empty=True).affine


def twin_ct_block(straight_root, key: str, healthy_ct: Volume, fill_hu: float = -1000.0):
    """Healthy twin CT (HU float32, linear) on the fractured block ``key``'s grid."""
    from straighten.blocks import load_geometry
    geo = load_geometry(straight_root, key)
    return resample_through(geo, np.asarray(healthy_ct.array, np.float32), order=1, cval=fill_hu)


def main(argv=None) -> int:
    from tqdm import tqdm
    p = argparse.ArgumentParser(description="Healthy twin resampled through the fractured "
                                "blocks' geometry (phantom oracle pseudo-healthy labels)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataroot", required=True, help="phantom root (raw/<case>/<case><mask_suffix>.nii.gz)")
    p.add_argument("--straight_root", required=True, help="straightened fractured cohort (label/, geometry/)")
    p.add_argument("--output_root", required=True, help="writes <output_root>/label/<key>.nii.gz")
    p.add_argument("--mask_suffix", default="_healthy_msk", help="healthy twin mask suffix")
    p.add_argument("--ct_suffix", default="_healthy",
                   help="healthy twin CT suffix (written to <output_root>/CT/ with --with_ct)")
    p.add_argument("--with_ct", action="store_true", help="also resample the healthy twin CT")
    p.add_argument("--keep_arches", action="store_true", help="do not de-pedicle")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    base = Path(args.dataroot) / "raw" if (Path(args.dataroot) / "raw").is_dir() else Path(args.dataroot)
    keys = list_keys(Path(args.straight_root) / "label")
    cache = {}
    for key in tqdm(keys, desc="oracle twins", disable=args.no_progress):
        case, _ = parse_key(key)
        if case not in cache:
            cache.clear()
            cache[case] = load_label(base / case / f"{case}{args.mask_suffix}.nii.gz")
            if args.with_ct:
                cache["ct"] = load_ct(base / case / f"{case}{args.ct_suffix}.nii.gz")
        arr, aff = twin_block(args.straight_root, key, cache[case], args.keep_arches)
        save_nifti(Volume(arr.astype(np.uint8), aff), Path(args.output_root) / "label" / f"{key}.nii.gz")
        if args.with_ct:
            ct = twin_ct_block(args.straight_root, key, cache["ct"])
            save_nifti(Volume(ct, aff), Path(args.output_root) / "CT" / f"{key}.nii.gz")
    log.info("wrote %d twin blocks to %s", len(keys), Path(args.output_root) / "label")
    return 0


if __name__ == "__main__":
    run_cli(main)
