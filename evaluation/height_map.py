"""Height-loss distribution maps: per (AP, LR) column of the body, the height lost between the
pseudo-healthy and the real vertebra, as an axial heat map (docs/METHOD.md §6).

``loss_mm[y, z] = h_syn − h_ori`` and ``loss_frac[y, z] = (h_syn − h_ori) / h_syn`` where the
pseudo-healthy body has a column (NaN elsewhere); column heights are SI foreground counts ×
SI spacing, as in :mod:`evaluation.heights`. Rows of the map run anterior → posterior, columns
left → right (the straightened block's axes 1 and 2), so a wedge shows as a loss band along the
top (anterior) edge, a biconcave fracture as a central blob, a crush as uniform loss.

Outputs per key (``--output_dir``): ``<key>_hlmap.npy`` (float32 (2, AP, LR): loss_mm,
loss_frac), ``<key>_hlmap.nii.gz`` (loss_mm as an (AP, LR, 1) image with the block's in-plane
spacing) and ``<key>_hlmap.png`` (loss in %, colour bar, cropped to the body).
"""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

import numpy as np


from data.splits import add_phase_argument, parse_key, read_vertebra_json
from evaluation.heights import align_footprint, column_heights_mm
from evaluation.rhlv import load_target
from layout.blocks import block_path, list_keys
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, ensure_dir

log = logging.getLogger("height_map")


def height_loss_map(syn_mask: np.ndarray, ori_mask: np.ndarray, spacing_si_mm: float,
                    align_shift_vox: int = 6):
    """(loss_mm, loss_frac), each (AP, LR) float, NaN outside the pseudo-healthy body. The real
    body is first aligned to the pseudo-healthy footprint (:func:`heights.align_footprint`)."""
    ori_mask, _ = align_footprint(np.asarray(syn_mask, bool), np.asarray(ori_mask, bool),
                                  align_shift_vox)
    h_syn = column_heights_mm(syn_mask, spacing_si_mm)
    h_ori = column_heights_mm(ori_mask, spacing_si_mm)
    inside = h_syn > 0
    loss_mm = np.where(inside, h_syn - h_ori, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss_frac = np.where(inside, (h_syn - h_ori) / np.where(inside, h_syn, 1), np.nan)
    return loss_mm, loss_frac


def body_bbox(loss_frac: np.ndarray, margin: int = 3):
    """Slices (AP, LR) of the finite part of a map, with a margin."""
    ys, zs = np.nonzero(np.isfinite(loss_frac))
    if ys.size == 0:
        return slice(None), slice(None)
    return (slice(max(0, ys.min() - margin), ys.max() + 1 + margin),
            slice(max(0, zs.min() - margin), zs.max() + 1 + margin))


def draw_map(ax, loss_frac, spacing_ap_lr=(1.0, 1.0), vmax_pct: float = 60.0, title=""):
    """Draw one map (loss in %) on a matplotlib axis; returns the image for a colour bar."""
    sy, sz = body_bbox(loss_frac)
    crop = 100 * loss_frac[sy, sz]
    h, w = crop.shape
    im = ax.imshow(np.ma.masked_invalid(crop), cmap="magma_r", vmin=0, vmax=vmax_pct,
                   extent=(0, w * spacing_ap_lr[1], h * spacing_ap_lr[0], 0))
    ax.set_xlabel("left → right (mm)"), ax.set_ylabel("anterior → posterior (mm)")
    ax.set_title(title, fontsize=9)
    return im


def save_png(path, loss_frac, spacing_ap_lr, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    im = draw_map(ax, loss_frac, spacing_ap_lr, title=title)
    fig.colorbar(im, ax=ax, label="height loss (%)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def save_maps(out_dir, key: str, loss_mm, loss_frac, spacing_mm: Sequence[float]) -> dict:
    """Write the NPY, NIfTI and PNG of one key; returns their paths."""
    import nibabel as nib
    out = ensure_dir(out_dir)
    paths = {k: out / f"{key}_hlmap.{k}" for k in ("npy", "nii.gz", "png")}
    with atomic_path(paths["npy"]) as tmp:
        np.save(tmp, np.stack([loss_mm, loss_frac]).astype(np.float32))
    aff = np.diag([spacing_mm[1], spacing_mm[2], spacing_mm[0], 1.0])
    img = nib.Nifti1Image(np.nan_to_num(loss_mm, nan=0.0).astype(np.float32)[..., None], aff)
    with atomic_path(paths["nii.gz"]) as tmp:
        nib.save(img, str(tmp))
    mean = np.nanmean(loss_frac) * 100 if np.isfinite(loss_frac).any() else float("nan")
    save_png(paths["png"], loss_frac, (spacing_mm[1], spacing_mm[2]),
             f"{key}: mean loss {mean:.1f} %")
    return paths


def map_for_key(key: str, label_dir, fake_dir):
    """(loss_mm, loss_frac, spacing_mm) of one key from its real and pseudo-healthy blocks."""
    _, label = parse_key(key)
    ori, spacing, rv = load_target(block_path(label_dir, key), label)
    syn, _, fv = load_target(block_path(fake_dir, key), label)
    if syn.shape != ori.shape:
        raise UserError(f"grid {syn.shape} differs from the real block's {ori.shape}",
                        block_path(fake_dir, key))
    loss_mm, loss_frac = height_loss_map(syn, ori, spacing[0])
    return loss_mm, loss_frac, spacing


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Axial height-loss maps (NPY, NIfTI, PNG) per vertebra",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--label_dir", required=True, help="real straightened label blocks <key>.nii.gz")
    p.add_argument("--fake_dir", required=True, help="pseudo-healthy label blocks <key>.nii.gz")
    p.add_argument("--output_dir", required=True, help="folder for <key>_hlmap.{npy,nii.gz,png}")
    p.add_argument("--keys", nargs="+", default=None, help="keys to map (default: all or --vertebra_json)")
    p.add_argument("--vertebra_json", default=None, help="split/grade file selecting keys")
    add_phase_argument(p, "--phase", ("all",), "to measure", aliases=("--phases",))
    p.add_argument("--min_grade", type=int, default=0, help="only keys with at least this grade")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    from tqdm import tqdm
    args = build_parser().parse_args(argv)
    if args.keys:
        keys = list(args.keys)
    elif args.vertebra_json:
        sp = read_vertebra_json(args.vertebra_json)
        keys = [k for ph in args.phase for k, g in sp.get(ph, {}).items() if g >= args.min_grade]
    else:
        keys = list_keys(args.label_dir)
    for key in tqdm(keys, desc="height maps", disable=args.no_progress):
        for d in (args.label_dir, args.fake_dir):
            if not block_path(d, key).exists():
                raise UserError("file not found", block_path(d, key))
        loss_mm, loss_frac, spacing = map_for_key(key, args.label_dir, args.fake_dir)
        save_maps(args.output_dir, key, loss_mm, loss_frac, spacing)
    log.info("wrote %d height-loss maps to %s", len(keys), args.output_dir)
    return 0


if __name__ == "__main__":
    run_cli(main)
