"""Write a CAM volume per vertebra key for the GAN (``--cam_folder``): ``<output>/<key>.nii.gz``
with the straightened block's shape and affine, float32 in [0, 1], class 1 (fractured).

2D classifiers: every sagittal slice that contains the target is computed (batched), upsampled
bilinearly to the block's slice size and min-max normalised per slice (``--norm slice``, the
original's) or over all those slices (``--norm volume``); other slices are 0. 3D classifiers:
one CAM for the whole block, upsampled trilinearly, normalised per volume. With ``--crop`` in the
classifier, voxels outside the crop window are 0. The CAM is hooked at ``--target_layer``:
``layer3`` (default, stride 8/16) or ``last`` (the paper's last bottleneck, stride 16/32).

Also writes ``png/<key>.png`` (mid-sagittal slice: CT and CT + CAM overlay, target outlined) and
``summary.json`` (P(fractured), grade and pointing hits per key, and the pointing rate on
fractured keys: is the CAM maximum on the mid-sagittal slice / in the volume inside the body).

``--on_masked`` computes the CAM on the band-masked input (the paper's figure): a ``--band_mm``
band centred on the target zeroed in each slice (Attention.cam.band_mask: the band rule of
data/band.py without the context shift, so the CAM stays in the block frame).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


import numpy as np
from tqdm import tqdm

from Attention.cam import METHODS, NORMS, cam_for_block, make_cam, mid_slice, pointing_hit
from Attention.classifier import cam_target_layer, load_classifier
from Attention.dataset import Preproc, load_block_arrays
from data.band import band_rows_from_mm
from data.intensity import hu_to_uint8
from data.io import load_volume, save_nifti
from data.splits import add_phase_argument
from layout.blocks import select_blocks
from layout.cams import cam_path
from layout.runs import checkpoint_path, resolve_checkpoint, run_dir
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, ensure_dir, write_json

log = logging.getLogger("grad_cam")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--dataroot", required=True, help="straightened-block root with CT/ and label/")
    a("--output", required=True, help="CAM folder to write (<key>.nii.gz); the GAN's --cam_folder")
    a("--checkpoint", default=None, help="classifier checkpoint (.pth); default <checkpoints_dir>/<name>/ckpt/<epoch>.pth")
    a("--checkpoints_dir", default="./checkpoints", help="parent folder of classifier runs")
    a("--name", default="fracture_classifier", help="classifier run folder name")
    a("--epoch", default="best", help="which checkpoint of the run: best or latest")
    a("--vertebra_json", default=None, help="split/grade JSON; default: every block under <dataroot>/CT")
    add_phase_argument(p, default=("all",), what="to process")
    a("--method", choices=list(METHODS), default="gradcam++", help="CAM method (pytorch-grad-cam)")
    a("--target_layer", choices=("last", "layer3"), default="layer3",
      help="hooked layer: last block of stage 3 (default; twice the CAM resolution - on the phantom "
           "it points at the fractured body far more often) or the last residual block (the paper's)")
    a("--norm", choices=NORMS, default="slice", help="2D: min-max per slice or per volume")
    a("--batch_size", type=int, default=32, help="slices per forward/backward pass")
    a("--on_masked", action="store_true", help="compute on the band-masked input (paper figure)")
    a("--band_mm", type=float, default=40.0, help="band height for --on_masked, mm")
    a("--skip_existing", action="store_true", help="keep CAMs already in --output")
    a("--no_png", action="store_true", help="do not write the mid-sagittal overlay PNGs")
    a("--device", default="auto", help="auto, cpu or cuda[:N]")
    a("--no_progress", action="store_true", help="no tqdm bar")
    return p


def select_keys(args) -> dict:
    """{key: grade or None} to process: the blocks (label and CT) of ``--phase``."""
    return select_blocks(args.dataroot, args.vertebra_json, args.phase, need_ct=True)


def save_overlay(path: Path, ct_hu, target, cam, title: str) -> None:
    """Mid-sagittal PNG: CT | CT + CAM (jet, alpha 0.45), target body outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = mid_slice(target)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3), dpi=100)
    for ax, show_cam in zip(axes, (False, True)):
        ax.imshow(hu_to_uint8(ct_hu[:, :, k]), cmap="gray", vmin=0, vmax=255)
        if show_cam:
            ax.imshow(cam[:, :, k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            r, c = np.unravel_index(int(np.argmax(cam[:, :, k])), cam.shape[:2])
            ax.plot(c, r, "w+", ms=10, mew=2)
        ax.contour(target[:, :, k].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_axis_off()
    axes[0].set_title("CT (SI down, anterior left)", fontsize=8)
    axes[1].set_title("CAM (+ = max)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", bbox_inches="tight")
    plt.close(fig)


def summarise(rows: dict) -> dict:
    frac = [r for r in rows.values() if r.get("fractured")]
    rate = lambda k: (float(np.mean([r[k] for r in frac])) if frac else None)  # noqa: E731
    return {"n_keys": len(rows), "n_fractured": len(frac), "pointing_mid_rate": rate("hit_mid"),
            "pointing_volume_rate": rate("hit_volume"), "keys": rows}


def process_key(args, cam, pre: Preproc, key: str, grade, out: Path, min_grade: int) -> dict:
    """Compute (or, with --skip_existing, reuse) one key's CAM volume; its summary row."""
    ct_hu, target, vol = load_block_arrays(args.dataroot, key)
    dst = cam_path(out, key)
    prob = None
    if args.skip_existing and dst.is_file():
        cam_vol = np.asarray(load_volume(dst).array, dtype=np.float32)
    else:
        band = band_rows_from_mm(args.band_mm, vol.spacing[0]) if args.on_masked else None
        cam_vol, prob = cam_for_block(cam, ct_hu, target, vol.spacing, pre, args.batch_size, args.norm, band)
        save_nifti(vol.with_array(cam_vol), dst, dtype=np.float32)
    if not args.no_png:
        p_txt = "n/a" if prob is None else f"{prob:.2f}"
        save_overlay(out / "png" / f"{key}.png", ct_hu, target, cam_vol,
                     f"{key}  grade {grade}  P(fractured) {p_txt}  {args.method}")
    return {"grade": grade, "p_fractured": prob,
            "fractured": None if grade is None else bool(grade >= min_grade),
            "hit_mid": pointing_hit(cam_vol, target, "mid"),
            "hit_volume": pointing_hit(cam_vol, target, "volume")}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    ckpt_path = (resolve_checkpoint(args.checkpoint) if args.checkpoint
                 else checkpoint_path(run_dir(args.checkpoints_dir, args.name), args.epoch))
    keys = select_keys(args)
    if not keys:
        raise UserError("no vertebra keys to process (no blocks match)", args.dataroot)
    device = resolve_device(args.device)
    net, opts = load_classifier(ckpt_path, device)
    pre = Preproc.from_options(opts)
    min_grade = int(opts.get("fracture_min_grade", 2))
    cam = make_cam(net, cam_target_layer(net, args.target_layer), args.method)
    out = ensure_dir(args.output)
    rows = {}
    for key, grade in tqdm(keys.items(), desc="CAM", disable=args.no_progress):
        try:
            rows[key] = process_key(args, cam, pre, key, grade, out, min_grade)
        except UserError as exc:  # one bad block must not stop the others
            log.warning("%s skipped: %s", key, exc)
    if not rows:
        raise UserError("no CAM written: every block failed (see the warnings above)", args.dataroot)
    summary = summarise(rows)
    summary.update({"method": args.method, "target_layer": args.target_layer, "norm": args.norm,
                    "on_masked": args.on_masked,
                    "checkpoint": str(ckpt_path), "fracture_min_grade": min_grade})
    write_json(out / "summary.json", summary)
    log.info("wrote %d CAMs to %s; pointing (mid-slice) on fractured keys: %s", len(rows), out,
             summary["pointing_mid_rate"])
    return 0


if __name__ == "__main__":
    run_cli(main)
