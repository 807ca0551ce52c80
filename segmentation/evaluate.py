"""VerSe metrics of predicted vertebra masks against reference masks.

    python segmentation/evaluate.py --pred DIR --gt GT_ROOT --output DIR [--gt_scheme verse|totalseg]

``--pred`` is a predict.py output folder; ``--gt`` any folder of VerSe-style cases (a phantom
cohort, a VerSe folder). Cases are matched by name. Per reference vertebra:

* identified: the prediction with its label lies < 20 mm from it and it is the reference centroid
  closest to that prediction (the VerSe rule); localisation error = that distance (mm);
* Dice, Hausdorff and 95 % Hausdorff (mm, surface to surface) of the two masks of that label;
* ``complete``: whether the reference vertebra is whole in the scan (straighten/completeness.py).

Also missed levels (reference without prediction) and extra levels (prediction without
reference). Writes ``per_vertebra.csv`` and ``metrics.json`` (means over all reference vertebrae
and over the complete ones).
"""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Dict

import numpy as np
from scipy import ndimage

from data.centroids import centroids_from_mask, read_centroids
from data.io import check_same_grid, load_label
from layout.raw import find_cases
from spine.anatomy import VERTEBRA_LABELS, level_name, order_labels
from straighten.cases import totalseg_to_verse
from straighten.completeness import case_completeness
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, write_json

log = logging.getLogger("segmentation.evaluate")
ID_MM = 20.0


def surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Distances (mm) from every surface voxel of ``a`` to the surface of ``b`` and back."""
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in box)
    a, b = a[box], b[box]
    sa = a & ~ndimage.binary_erosion(a)
    sb = b & ~ndimage.binary_erosion(b)
    da = ndimage.distance_transform_edt(~sb, sampling=spacing)
    db = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return np.concatenate([da[sa], db[sb]])


def identification(gt_mm: Dict[int, np.ndarray], pred_mm: Dict[int, np.ndarray]) -> Dict[int, tuple]:
    """``{gt label: (identified, distance mm or nan)}`` by the VerSe rule."""
    out = {}
    gl = list(gt_mm)
    gp = np.array([gt_mm[l] for l in gl]) if gl else np.zeros((0, 3))
    for lab, g in gt_mm.items():
        if lab not in pred_mm:
            out[lab] = (False, float("nan"))
            continue
        p = np.asarray(pred_mm[lab])
        d = float(np.linalg.norm(p - g))
        closest = gl[int(np.argmin(np.linalg.norm(gp - p, axis=1)))]
        out[lab] = (bool(d < ID_MM and closest == lab), d)
    return out


def evaluate_case(pred_msk, gt_msk, pred_json=None, gt_json=None) -> list:
    gt_c = {int(k): v for k, v in (read_centroids(gt_json, reference=gt_msk) if gt_json
                                   else centroids_from_mask(gt_msk.array)).items() if k in VERTEBRA_LABELS}
    pr_c = {int(k): v for k, v in (read_centroids(pred_json, reference=pred_msk) if pred_json
                                   else centroids_from_mask(pred_msk.array)).items() if k in VERTEBRA_LABELS}
    gt_mm = {l: gt_msk.voxel_to_world(np.asarray(v, float)[None])[0] for l, v in gt_c.items()}
    pr_mm = {l: pred_msk.voxel_to_world(np.asarray(v, float)[None])[0] for l, v in pr_c.items()}
    ident = identification(gt_mm, pr_mm)
    comp = case_completeness(gt_msk, gt_c)
    rows = []
    sp = gt_msk.spacing
    for lab in order_labels(set(gt_c) | set(pr_c)):
        g, p = gt_msk.array == lab, pred_msk.array == lab
        row = {"label": lab, "level": level_name(lab), "in_gt": int(lab in gt_c), "in_pred": int(lab in pr_c)}
        if lab in gt_c:
            row.update(complete=int(comp[lab].complete) if lab in comp else 0,
                       identified=int(ident[lab][0]), loc_error_mm=round(ident[lab][1], 2))
        if g.any() or p.any():
            inter = float((g & p).sum())
            row["dice"] = round(2 * inter / (g.sum() + p.sum()), 4)
            if g.any() and p.any():
                d = surface_distances(g, p, sp)
                row["hd_mm"], row["hd95_mm"] = round(float(d.max()), 2), round(float(np.percentile(d, 95)), 2)
        rows.append(row)
    return rows


def summarise(rows: list) -> dict:
    def block(rs):
        gt = [r for r in rs if r.get("in_gt")]
        loc = [r["loc_error_mm"] for r in gt if r.get("identified")]
        return {"n_gt": len(gt),
                "identification_rate": float(np.mean([r["identified"] for r in gt])) if gt else None,
                "localisation_error_mm": float(np.mean(loc)) if loc else None,
                "dice": float(np.mean([r.get("dice", 0.0) for r in gt])) if gt else None,
                "hd95_mm": float(np.nanmean([r.get("hd95_mm", np.nan) for r in gt])) if gt else None,
                "missed": int(sum(1 for r in gt if not r["in_pred"]))}
    out = {"all": block(rows), "complete": block([r for r in rows if r.get("complete")])}
    out["extra"] = int(sum(1 for r in rows if r["in_pred"] and not r["in_gt"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", required=True, help="predict.py output folder")
    ap.add_argument("--gt", required=True, help="reference cases (VerSe-style folder or phantom cohort)")
    ap.add_argument("--output", required=True, help="folder for per_vertebra.csv and metrics.json")
    ap.add_argument("--gt_scheme", choices=["verse", "totalseg"], default="verse")
    ap.add_argument("--gt_mask_suffix", default=None, help="reference mask suffix (default _msk or _seg)")
    ap.add_argument("--cases", nargs="*", help="only these cases")
    args = ap.parse_args(argv)
    gts = {c.case: c for c in find_cases(args.gt, args.gt_mask_suffix)}
    preds = {c.case: c for c in find_cases(args.pred, "_msk")}
    names = sorted(set(gts) & set(preds))
    if args.cases:
        names = [n for n in names if n in args.cases]
    if not names:
        raise UserError(f"no case in both folders (pred has {len(preds)}, reference {len(gts)})", args.pred)
    rows = []
    for n in names:
        g = load_label(gts[n].mask)
        if args.gt_scheme == "totalseg":
            g = g.with_array(totalseg_to_verse(g.array))
        p = load_label(preds[n].mask, allow_empty=True)
        check_same_grid(g, p)
        gj = gts[n].centroids if args.gt_scheme == "verse" else None
        for r in evaluate_case(p, g, preds[n].centroids, gj):
            rows.append({"case": n, **r})
    metrics = {"cases": names, **summarise(rows)}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    keys = ["case", "label", "level", "in_gt", "in_pred", "complete", "identified", "loc_error_mm", "dice",
            "hd_mm", "hd95_mm"]
    with atomic_path(out / "per_vertebra.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    write_json(out / "metrics.json", metrics)
    a, c = metrics["all"], metrics["complete"]
    log.info("%d cases, %d reference vertebrae: identification %.1f %%, localisation %.2f mm, Dice %.3f "
             "(complete vertebrae: %.1f %%, Dice %.3f), %d missed, %d extra", len(names), a["n_gt"],
             100 * (a["identification_rate"] or 0), a["localisation_error_mm"] or float("nan"), a["dice"] or 0,
             100 * (c["identification_rate"] or 0), c["dice"] or 0, a["missed"], metrics["extra"])
    return 0


if __name__ == "__main__":
    run_cli(main)
