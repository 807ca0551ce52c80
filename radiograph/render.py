"""Render lateral radiographs (DRRs) with exact vertebral landmarks.

From a CT and its VerSe label map (any orientation, NIfTI / NRRD / MHA):

    python radiograph/render.py --ct CT.nii.gz --mask MSK.nii.gz --output DIR [--views 3]

writes ``DIR/<case>_view<k>.png`` (the film), ``DIR/<case>_view<k>_overlay.png`` (landmarks by
level; red = not visible: cut by the field of view or outside the image), ``DIR/<case>_view<k>.nii.gz``
(the same film as float in [0, 1], pixel spacing in the header), ``DIR/<case>_landmarks.json``
(pixel coordinates per level and point, visibility, camera) and ``DIR/<case>.npz`` (the same as
a dataset for radiograph/evaluate.py).

A training set from seeded phantom spines (T12-L5 + S1, random fractures and slips):

    python radiograph/render.py --phantom 80 --seed 1 --output train.npz [--views 4]

Camera options: ``--size`` pixels, ``--pixel_mm`` at the detector, ``--sdd`` source-detector and
``--sid`` source-isocentre distances (mm); the isocentre is the spine's centre.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from phantom.shapes import ANATOMIES, DEFAULT_ANATOMY
from radiograph.cohort import case_name, ct_views, level_label, parse_channel, phantom_cohort
from radiograph.drr import Camera
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, write_json

log = logging.getLogger("radiograph.render")


def overlay_png(path, image: np.ndarray, points: np.ndarray, visible: np.ndarray, channels,
                title: str = "", pred: bool = False, spread=None) -> None:
    """The film with points coloured by level and each level's name beside its anterior points;
    with ``spread``, circles of 2 × spread (capped at 8 % of the width, the view at the image)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h, w = image.shape
    fig, ax = plt.subplots(figsize=(w / 64, h / 64), dpi=96)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
    cmap = plt.get_cmap("tab10")
    labels = {}
    for k, ch in enumerate(channels):
        lab, name = parse_channel(str(ch))
        if not np.all(np.isfinite(points[k])):
            continue
        col = cmap(lab % 10) if visible[k] else (1, 0, 0, 1)
        ax.plot(points[k, 0], points[k, 1], "o" if name[1] != "m" else "s", ms=3, color=col,
                mfc="none" if not visible[k] else col)
        if spread is not None and np.isfinite(spread[k]):
            ax.add_patch(plt.Circle(points[k], min(2 * spread[k], 0.08 * w), fill=False,
                                    color=col, lw=0.5))
        labels.setdefault(lab, []).append(points[k])
    for lab, pts in labels.items():
        p = np.mean(pts, 0)
        ax.text(p[0] + 0.12 * w, p[1], level_label(lab), color="yellow",
                fontsize=7, va="center")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def landmark_json(data: dict, k: int, camera: Camera) -> dict:
    out = {}
    for c, ch in enumerate(data["channels"]):
        lab, name = parse_channel(str(ch))
        lv = level_label(lab)
        p = data["points"][k, c]
        out.setdefault(lv, {})[name] = {"xy": [round(float(v), 3) for v in p]
                                        if np.all(np.isfinite(p)) else None,
                                        "visible": bool(data["visible"][k, c])}
    return {"levels": out, "camera": {"sdd": camera.sdd, "sid": camera.sid, "size": camera.size,
                                      "pixel_mm": camera.pixel_mm,
                                      "mm_at_spine": camera.mm_at_spine},
            "coordinates": "pixels, x = column, y = row, origin at the top-left pixel's centre"}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct", help="CT volume (HU)")
    src.add_argument("--phantom", type=int, metavar="N", help="render N phantom spines")
    ap.add_argument("--mask", help="VerSe label map of --ct (same grid)")
    ap.add_argument("--output", required=True, help="folder (--ct) or dataset .npz (--phantom)")
    ap.add_argument("--views", type=int, default=None,
                    help="views per spine (default 1 for --ct, 4 for --phantom)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256, help="detector pixels per side (default 256)")
    ap.add_argument("--pixel_mm", type=float, default=1.44, help="detector pixel (mm, default 1.44)")
    ap.add_argument("--sdd", type=float, default=1200.0, help="source-detector distance (mm)")
    ap.add_argument("--sid", type=float, default=1000.0, help="source-isocentre distance (mm)")
    ap.add_argument("--slip_fraction", type=float, default=0.5,
                    help="--phantom: share of spines with an L4 or L5 anterolisthesis (default 0.5)")
    ap.add_argument("--anatomy", choices=ANATOMIES, default=DEFAULT_ANATOMY,
                    help="--phantom: vertebral shape, as make_phantom.py's --anatomy (default "
                         f"{DEFAULT_ANATOMY}; 'box' regenerates the data the shipped landmark "
                         "weights were trained on)")
    ap.add_argument("--isthmic_fraction", type=float, default=0.0,
                    help="--phantom: share of those slips that are isthmic (default 0: degenerative)")
    ap.add_argument("--renderer", choices=["trilinear", "siddon"], default="trilinear")
    ap.add_argument("--label_scheme", choices=("verse", "totalseg"), default="verse",
                    help="numbering of --mask (totalseg is converted to VerSe ids, S1 kept)")
    ap.add_argument("--levels", nargs="+", default=None,
                    help="channel levels, S1 added (default: the mask's own, or T12-L5 for --phantom); give a model's levels to score it on this CT")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cam = Camera(sdd=args.sdd, sid=args.sid, size=args.size, pixel_mm=args.pixel_mm,
                 renderer=args.renderer)
    if args.sdd <= args.sid or args.sid <= 0:
        raise UserError(f"need 0 < --sid < --sdd, got {args.sid} and {args.sdd}")
    if args.phantom is not None:
        if args.phantom < 3:
            raise UserError("--phantom needs at least 3 spines (train / val / test)")
        kw = {"levels": args.levels} if args.levels else {}
        phantom_cohort(Path(args.output), args.phantom, args.seed, views=args.views or 4,
                       camera=cam, slip_fraction=args.slip_fraction,
                       isthmic_fraction=args.isthmic_fraction, anatomy=args.anatomy, **kw)
        return 0
    if not args.mask:
        raise UserError("--ct needs --mask (its VerSe label map)")
    out = Path(args.output)
    views = args.views or 1
    d = ct_views(args.ct, args.mask, out / f"{case_name(args.ct)}.npz", views=views, camera=cam,
                 seed=args.seed, levels=args.levels, label_scheme=args.label_scheme)
    name = d["name"]
    out.mkdir(parents=True, exist_ok=True)
    import cv2
    import nibabel as nib
    for k in range(views):
        stem = out / f"{name}_view{k}"
        with atomic_path(f"{stem}.png") as tmp:
            cv2.imwrite(str(tmp), d["images"][k])
        overlay_png(f"{stem}_overlay.png", d["images"][k], d["points"][k], d["visible"][k],
                    d["channels"], f"{name} view {k}: landmarks from the mask")
        img = nib.Nifti1Image(d["images"][k].T[:, :, None].astype(np.float32) / 255.0,
                              np.diag([cam.pixel_mm, cam.pixel_mm, 1.0, 1.0]))
        with atomic_path(f"{stem}.nii.gz") as tmp:
            nib.save(img, str(tmp))
    write_json(out / f"{name}_landmarks.json",
               {"views": [landmark_json(d, k, cam) for k in range(views)], "ct": str(args.ct),
                "mask": str(args.mask)})
    vis = d["visible"][0]
    log.info("%s: %d views, %d of %d landmarks visible in view 0 -> %s", name, views,
             int(vis.sum()), vis.size, out)
    return 0


if __name__ == "__main__":
    run_cli(main)
