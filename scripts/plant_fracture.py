#!/usr/bin/env python
"""Plant a compression fracture into a real CT + label map; the untouched scan is the healthy twin.

    python scripts/plant_fracture.py --ct chest_ct.nii.gz --mask vertebrae.nii.gz --level T9 \\
        --loss 0.32 0.16 0.0 --morphology wedge --output PH --case chest_T9 --png before_after.png

Writes the raw cohort layout (``layout/raw.py``) under ``--output``: ``raw/<case>/<case>.nii.gz``
(fractured CT), ``<case>_msk.nii.gz``, ``<case>_healthy.nii.gz`` and ``<case>_healthy_msk.nii.gz``
(the source scan, unchanged) and ``<case>_truth.json`` (requested and measured A/M/P losses,
heights before and after in mm, Genant grade, morphology), the format of the phantom's truth, so
``evaluation/phantom_truth.py`` and ``synthesis/phantom_eval.py`` read it. The method is in
``phantom/plant.py``. ``--png`` draws the mid-sagittal CT before and after with the level marked.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from data.io import load_ct, load_label, save_nifti
from layout.raw import case_paths
from phantom.plant import plant_fracture
from spine.anatomy import LEVEL_IDS, level_name
from utils.errors import UserError, run_cli
from utils.fileio import write_json

log = logging.getLogger("plant_fracture")


def parse_level(text: str) -> int:
    t = str(text).upper()
    if t in LEVEL_IDS:
        return LEVEL_IDS[t]
    if t.isdigit():
        return int(t)
    raise UserError(f"--level {text!r} is not a level name (T9, L1 …) or a VerSe id")


def before_after_png(path: Path, ct_before, ct_after, labels, level: int, field) -> None:
    """Mid-sagittal (through the body centre) CT before | after, the level's outline in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage
    f = field.frame
    half = 70.0
    s_ax = np.arange(-half, half, 0.5)
    a_ax = np.arange(half * 0.8, -half * 0.8, -0.5)
    g = f.centre + s_ax[:, None, None] * f.e + a_ax[None, :, None] * f.ant
    vox = ct_before.world_to_voxel(g.reshape(-1, 3)).T
    views = [ndimage.map_coordinates(v.array.astype(np.float32), vox, order=1, mode="nearest")
             .reshape(len(s_ax), len(a_ax)) for v in (ct_before, ct_after)]
    masks = [ndimage.map_coordinates((m == level).astype(np.float32), vox, order=0)
             .reshape(len(s_ax), len(a_ax)) for m in labels]
    fig, axes = plt.subplots(1, 2, figsize=(8, 6), dpi=100)
    for ax, img, m, title in zip(axes, views, masks, ("source (healthy twin)", "planted fracture")):
        ax.imshow(np.clip(img, -300, 800), cmap="gray", extent=(a_ax[0], a_ax[-1], s_ax[-1], s_ax[0]))
        ax.contour(a_ax, s_ax, m, levels=[0.5], colors="r", linewidths=0.8)
        ax.set_title(f"{title}: {level_name(level)}")
        ax.set_xlabel("anterior  ←  mm  →  posterior")
    axes[0].set_ylabel("cranial ← mm → caudal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ct", required=True, help="real CT in HU (NIfTI)")
    ap.add_argument("--mask", required=True, help="its vertebra label map (VerSe ids) on the same grid")
    ap.add_argument("--level", required=True, help="vertebra to fracture: a name (T9, L1) or a VerSe id")
    ap.add_argument("--loss", nargs=3, type=float, required=True, metavar=("A", "M", "P"),
                    help="requested anterior / middle / posterior height loss fractions")
    ap.add_argument("--morphology", default="", help="recorded in the truth (wedge, biconcave, crush)")
    ap.add_argument("--density_hu", type=float, default=0.0,
                    help="HU added to the compressed bone per unit of compression (default 0)")
    ap.add_argument("--output", required=True, help="cohort root; the case goes to raw/<case>/")
    ap.add_argument("--case", required=True, help="case id")
    ap.add_argument("--png", help="before / after mid-sagittal picture to write")
    args = ap.parse_args(argv)
    ct, lab = load_ct(args.ct), load_label(args.mask)
    level = parse_level(args.level)
    r = plant_fracture(lab, level, args.loss, ct=ct, morphology=args.morphology,
                       density_hu=args.density_hu)
    p = case_paths(args.output, args.case)
    save_nifti(r.ct, p["ct"], dtype=ct.array.dtype)
    save_nifti(r.labels, p["mask"], dtype=np.uint8)
    save_nifti(ct, p["healthy_ct"], dtype=ct.array.dtype)
    save_nifti(lab, p["healthy_mask"], dtype=np.uint8)
    write_json(p["truth"], {"case": args.case, "source_ct": str(args.ct), "source_mask": str(args.mask),
                            "vertebrae": {str(level): {**r.truth, "level": level_name(level)}}})
    t = r.truth
    print(f"{args.case} {level_name(level)}: requested A/M/P {args.loss}, measured "
          f"{[round(v, 3) for v in t['height_loss'].values()]}, grade {t['grade']} -> {p['dir']}")
    if args.png:
        before_after_png(Path(args.png), ct, r.ct, (lab.array, r.labels.array), level, r.field)
    return 0


if __name__ == "__main__":
    run_cli(main)
