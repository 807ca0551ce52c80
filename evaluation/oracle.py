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

import numpy as np
from scipy import ndimage


from data.io import load_ct, load_label, save_nifti
from data.splits import parse_key
from data.volume import Volume
from layout.blocks import block_keys, block_paths
from layout.raw import case_file
from utils.errors import UserError, run_cli

log = logging.getLogger("oracle")


def resample_through(geo, patient_arrays, chunk_rows: int = 32, half_extent_vox: int = 96,
                     orders=(0,), cvals=(0.0,)):
    """Sample patient arrays (one coordinate computation for all of them) at the block voxels
    within ``half_extent_vox`` rows / AP columns of the block centre (the target and its
    neighbours; ``cval`` elsewhere). ``patient_arrays`` is one array or a list; returns the same."""
    single = isinstance(patient_arrays, np.ndarray)
    arrays = [patient_arrays] if single else list(patient_arrays)
    h, w_ap, w_lr = (int(x) for x in geo.block_shape)
    outs = [np.full((h, w_ap, w_lr), cv, a.dtype) for a, cv in zip(arrays, cvals)]
    ap0 = max(0, int(geo.centre_ap) - half_extent_vox)
    ap1 = min(w_ap, int(geo.centre_ap) + half_extent_vox)
    a = (np.arange(ap0, ap1) - geo.centre_ap)[None, :, None, None]   # (1, AP, 1, 1)
    c = (np.arange(w_lr) - geo.centre_lr)[None, None, :, None]         # (1, 1, LR, 1)
    inv = np.linalg.inv(geo.patient_affine)
    r_lo, r_hi = max(0, h // 2 - half_extent_vox), min(h, h // 2 + half_extent_vox)
    for r0 in range(r_lo, r_hi, chunk_rows):
        rows = np.arange(r0, min(r_hi, r0 + chunk_rows))
        # integer rows: each row is an affine plane (same map as straighten.inverse.block_to_world)
        world = (geo.points_mm[rows][:, None, None] + a * geo.step_ap_mm[rows][:, None, None]
                 + c * geo.step_lr_mm[rows][:, None, None])                 # (R, AP, LR, 3) mm
        vox = (world.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]).T
        for arr, out, order, cv in zip(arrays, outs, orders, cvals):
            vals = ndimage.map_coordinates(arr, vox, order=order, cval=cv, mode="constant")
            out[rows, ap0:ap1] = vals.reshape(len(rows), ap1 - ap0, w_lr)
    return outs[0] if single else outs


def twin_block(straight_root, key: str, healthy_mask: Volume, keep_arches: bool = False,
               healthy_ct: Volume = None, fill_hu: float = -1000.0):
    """(label array, affine, CT array in HU or None) of the healthy twin on the fractured block
    ``key``'s grid (CT only when ``healthy_ct`` is given; linear, ``fill_hu`` outside)."""
    from layout.blocks import load_geometry
    from straighten.depedicle import depedicle
    _, lab_p, geo_p = block_paths(straight_root, key)
    if not geo_p.is_file():
        raise UserError("block geometry not found (straighten with the corrected mode)", geo_p)
    geo = load_geometry(straight_root, key)
    if healthy_ct is None:
        arr, ct = resample_through(geo, np.asarray(healthy_mask.array)), None
    else:
        arr, ct = resample_through(geo, [np.asarray(healthy_mask.array), np.asarray(healthy_ct.array, np.float32)],
                                   orders=(0, 1), cvals=(0.0, fill_hu))
    if not keep_arches:
        arr = depedicle(arr, int(round(geo.centre_ap)), int(round(geo.centre_lr)))
    return arr, load_label(lab_p, allow_empty=True).affine, ct


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
    keys = block_keys(args.straight_root)
    cache = {}
    for key in tqdm(keys, desc="oracle twins", disable=args.no_progress):
        case, _ = parse_key(key)
        if case not in cache:
            cache.clear()
            cache[case] = load_label(case_file(args.dataroot, case, f"{args.mask_suffix}.nii.gz"))
            if args.with_ct:
                cache["ct"] = load_ct(case_file(args.dataroot, case, f"{args.ct_suffix}.nii.gz"))
        arr, aff, ct = twin_block(args.straight_root, key, cache[case], args.keep_arches, cache.get("ct"))
        ct_p, lab_p, _ = block_paths(args.output_root, key)
        save_nifti(Volume(arr.astype(np.uint8), aff), lab_p)
        if ct is not None:
            save_nifti(Volume(ct, aff), ct_p)
    log.info("wrote %d twin blocks to %s", len(keys), lab_p.parent if keys else args.output_root)
    return 0


if __name__ == "__main__":
    run_cli(main)
