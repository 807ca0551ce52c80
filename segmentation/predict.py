"""Vertebra masks and centroids from raw CTs, in the layout straightening reads.

    python segmentation/predict.py CT_OR_FOLDER [...] --output DIR [--weights segmentation/weights]

Input: NIfTI, NRRD / MHA, or a DICOM folder; a folder of such files (label maps ``*_msk`` /
``*_seg`` are skipped). For each CT, ``DIR/<case>/`` gets

* ``<case>_msk.nii.gz``: VerSe ids on the CT's exact grid and affine;
* ``<case>.json``: the located centroids (stage 2's heatmap maxima, which are trained on the
  VerSe centroid, the centre of the whole vertebra's mask), as voxel indices of the CT and mask in
  the original list format. Not the centroid of the predicted mask: a mask that misses part of
  the arch moves it (on phantom seed 202, with the segmentation stage of that time, the mask
  centroids lay 4.4 mm anterior of the truth on average, the heatmap maxima 1.4 mm posterior;
  localisation error 7.25 mm against 4.78 mm);
* ``<case>.nii.gz``: the CT itself (a link to the input NIfTI, or a NIfTI copy of another format),
  so that ``straighten/straighten_mask_3d.py --dataroot DIR`` runs on the result directly;
* with ``--heatmaps``, ``<case>_heatmaps.nii.gz``: the largest vertebra heatmap per voxel (stage 2 grid);

and ``DIR/summary.csv`` one row per case: levels found, score per level, seconds per stage. A case
is written to a temporary folder and renamed when complete, so a failure leaves no partial output.
The default weights are the ones shipped in ``segmentation/weights`` (``MANIFEST.json``: how they
were trained, sha256, held-out scores); a missing or changed weight file is an error.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
from pathlib import Path
from typing import List

import numpy as np

from data.centroids import write_centroids
from data.io import load_ct, save_nifti
from data.volume import Volume
from segmentation.pipeline import (DEFAULT_MERGE_MM, DEFAULT_THRESHOLD, DEFAULT_VARIANT_COST, DEFAULT_WEIGHTS,
                                   load_models, run)
from spine.anatomy import level_name, order_labels
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

log = logging.getLogger("segmentation.predict")
CT_EXT = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
SKIP = ("_msk", "_seg", "_healthy")


def case_name(p: Path) -> str:
    n = p.name
    for e in CT_EXT:
        if n.lower().endswith(e):
            return n[: -len(e)]
    return n


def find_inputs(paths: List[str]) -> List[Path]:
    out = []
    for s in paths:
        p = Path(s)
        if not p.exists():
            raise UserError("not found", p)
        if p.is_file():
            out.append(p)
        elif any(f.suffix.lower() == ".dcm" for f in p.iterdir()):
            out.append(p)                                   # a DICOM series folder
        else:
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(CT_EXT)
                           and not any(case_name(f).endswith(k) for k in SKIP))
            if not found:
                raise UserError("no CT files (.nii.gz, .nii, .mha, .nrrd) in the folder", p)
            out += found
    return out


def write_case(ct_path: Path, ct: Volume, res, out_dir: Path, heatmaps: bool) -> Path:
    case = case_name(ct_path)
    final = out_dir / case
    tmp = out_dir / f".{case}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_nifti(res.mask, tmp / f"{case}_msk.nii.gz", dtype=np.uint8)
        cents = {lab: ct.world_to_voxel(pos)[0] for lab, pos in res.centroids_mm.items()}
        write_centroids(tmp / f"{case}.json", cents)
        if ct_path.is_file() and ct_path.name.lower().endswith((".nii", ".nii.gz")):
            os.symlink(ct_path.resolve(), tmp / ct_path.name)
        else:
            save_nifti(ct, tmp / f"{case}.nii.gz", dtype=np.int16)
        if heatmaps and res.heatmaps is not None:
            save_nifti(Volume(res.heatmaps.max(0), res.heat_grid.affine), tmp / f"{case}_heatmaps.nii.gz",
                       dtype=np.float32)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="CT files or folders")
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                    help="folder with spine.pth, vertebrae.pth, segmentation.pth (default: shipped)")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="smallest heatmap peak kept as a candidate (and the score a level must add)")
    ap.add_argument("--merge_mm", type=float, default=DEFAULT_MERGE_MM,
                    help="peaks of different channels closer than this are one vertebra (default %(default)s)")
    ap.add_argument("--variant_cost", type=float, default=DEFAULT_VARIANT_COST,
                    help="heatmap value a T13 or L6 label costs (default %(default)s; 0: none)")
    ap.add_argument("--heatmaps", action="store_true", help="also write the vertebra heatmaps")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no_progress", action="store_true")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    inputs = find_inputs(args.inputs)
    models = load_models(args.weights, device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    from tqdm import tqdm
    for p in tqdm(inputs, desc="segment", disable=args.no_progress or len(inputs) < 2):
        try:
            ct = load_ct(p, allow_nonfinite=True)
            ct = ct.with_array(np.nan_to_num(ct.array, nan=-1024.0, posinf=3071.0, neginf=-1024.0))
            res = run(ct, models, device, keep_heatmaps=args.heatmaps, threshold=args.threshold,
                      merge_mm=args.merge_mm, variant_cost=args.variant_cost)
            write_case(p, ct, res, out, args.heatmaps)
        except UserError as exc:
            if len(inputs) == 1:
                raise
            failed += 1
            log.warning("skipped: %s", exc)
            continue
        labs = order_labels(res.centroids_mm)
        rows.append({"case": case_name(p), "levels": " ".join(level_name(l) for l in labs), "n_levels": len(labs),
                     "scores": " ".join(f"{level_name(l)}:{res.scores[l]:.2f}" for l in labs),
                     **{f"seconds_{k}": v for k, v in res.seconds.items()}})
        log.info("%s: %s in %.1f s", case_name(p), rows[-1]["levels"], res.seconds["total"])
    if rows:
        with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if failed == len(inputs):
        raise UserError("every CT failed", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
