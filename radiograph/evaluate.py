"""Score a landmark model on a DRR dataset whose landmarks are known exactly.

    python radiograph/evaluate.py --checkpoint runs/rg --data heldout.npz --output eval/

Reports (``metrics.json``, ``per_level.csv``, ``per_image.csv``, ``per_pair.csv``):

* mean radial error (MRE) in pixels and in mm at the detector's scale (pixel × ``pixel_mm``),
  and SDR (share of visible landmarks within 2 / 2.5 / 3 / 4 mm);
* slips from predicted vs true points (both through :mod:`radiograph.geometry`): slip % MAE and
  Meyerding grade accuracy over every adjacent pair whose 4 points are visible, with the
  confusion (rows true). Meyerding's grade I starts above 0 %, so an unslipped pair whose true
  slip is +0.3 % is grade I and one of −0.3 % is none: also reported, as a secondary figure, the
  accuracy with slips under ``LISTHESIS_PCT`` (5 %) counted as none in both; ``per_pair.csv``
  lists every pair (image, case, upper and lower level, true and predicted slip % and grade);
* Genant grades from predicted vs true points: accuracy and macro-F1; on phantom data also
  against the *planted* grade (macro-F1 and confusion, rows planted), next to the grade the true
  points give (corner heights read a wedge more severe than the CT's thirds do);
* per level: MRE and count.

The "true" slips and grades are those of the projected 3D landmarks of the untouched labels
(radiograph.landmarks), i.e. what a perfect detector would give with the same rule.
"""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np

from evaluation.grading import classification_metrics
from radiograph.cohort import channels_by_level, level_label, load_dataset, parse_channel
from radiograph.geometry import MEYERDING_NAMES, measure_spine
from radiograph.model import TTA_HELP, TTAS
from radiograph.ordering import DECODING_HELP, DECODINGS
from spine.anatomy import level_name
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, write_json

log = logging.getLogger("radiograph.evaluate")
SDR_MM = (2.0, 2.5, 3.0, 4.0)
LISTHESIS_PCT = 5.0


def points_by_level(pts: np.ndarray, vis: np.ndarray, channels, scale: float):
    """({label: {name: (x, y) mm}}, {label: visible}) of one image; a level is visible when
    all its points are."""
    out: Dict[int, Dict[str, np.ndarray]] = {}
    seen: Dict[int, bool] = {}
    for k, ch in enumerate(channels):
        lab, name = parse_channel(str(ch))
        seen[lab] = seen.get(lab, True) and bool(vis[k])
        if np.all(np.isfinite(pts[k])):
            out.setdefault(lab, {})[name] = pts[k] * scale
    return out, {l: seen[l] and l in out for l in seen}


def spine_measures(pts, vis, channels, scale):
    pl, v = points_by_level(pts, vis, channels, scale)
    return measure_spine(pl, v)


def macro_f1(y_true: List[int], y_pred: List[int]) -> float:
    """Macro-F1 of Genant grades (:func:`evaluation.grading.classification_metrics`); NaN if none."""
    return classification_metrics(y_true, y_pred)["macro_f1"] if y_true else float("nan")


def _planted_grades(data: dict) -> Dict[str, Dict[str, int]]:
    """{case: {level name: planted Genant grade}} from a phantom dataset's metadata ({} else)."""
    import json
    try:
        meta = json.loads(str(data["meta"]))
    except (KeyError, ValueError):
        return {}
    return {t["case"]: t.get("grades", {}) for t in meta.get("truth", [])}


def score(pred: np.ndarray, data: dict, idx: np.ndarray, spread=None,
          max_spread: float = 4.0) -> dict:
    """Metrics of predicted points ``pred`` (N, C, 2) on the images ``idx`` of ``data``; with the
    MC-dropout ``spread`` (N, C, pixels) also how predict.py's ``--max_spread`` check would
    sort the levels: dropped, and of those the ones whose points were all within 4 px."""
    true, vis, ch = data["points"][idx], data["visible"][idx], list(data["channels"])
    px_mm, spine_mm = float(data["pixel_mm"]), float(data["mm_at_spine"])
    err = np.linalg.norm(pred - true, axis=-1)
    err = np.where(vis, err, np.nan)
    e_mm = err[vis] * px_mm
    per_level: Dict[str, List[float]] = {}
    for k, c in enumerate(ch):
        lab, _ = parse_channel(str(c))
        per_level.setdefault(level_label(lab), []).extend(
            (err[:, k][vis[:, k]] * px_mm).tolist())
    slip_t, slip_p, mey_t, mey_p, g_t, g_p, rows = [], [], [], [], [], [], []
    mey5_t, mey5_p, pairs = [], [], []
    planted = _planted_grades(data)
    pl_t, pl_pred, pl_true = [], [], []           # planted grade; from predicted / true points
    for i in range(len(idx)):
        mt = spine_measures(true[i], vis[i], ch, spine_mm)
        mp = spine_measures(pred[i], vis[i], ch, spine_mm)
        sp = {(s["upper"], s["lower"]): s for s in mp["slips"]}
        for s in mt["slips"]:
            q = sp.get((s["upper"], s["lower"]))
            if q is not None:
                slip_t.append(s["slip_pct"]), slip_p.append(q["slip_pct"])
                mey5_t.append(s["meyerding"] if s["slip_pct"] >= LISTHESIS_PCT else 0)
                mey5_p.append(q["meyerding"] if q["slip_pct"] >= LISTHESIS_PCT else 0)
                mey_t.append(s["meyerding"]), mey_p.append(q["meyerding"])
                pairs.append({"image": int(idx[i]), "case": str(data["case"][idx[i]]),
                              "upper": level_name(s["upper"]),
                              "lower": level_label(s["lower"]),
                              "true_slip_pct": round(s["slip_pct"], 3),
                              "pred_slip_pct": round(q["slip_pct"], 3),
                              "abs_error_pct": round(abs(s["slip_pct"] - q["slip_pct"]), 3),
                              "true_meyerding": MEYERDING_NAMES[s["meyerding"]],
                              "pred_meyerding": MEYERDING_NAMES[q["meyerding"]]})
        gp = {r["label"]: r for r in mp["vertebrae"]}
        case_planted = planted.get(str(data["case"][idx[i]]), {})
        for r in mt["vertebrae"]:
            if r["label"] in gp:
                g_t.append(r["genant_grade"]), g_p.append(gp[r["label"]]["genant_grade"])
                g = case_planted.get(level_name(r["label"]))
                if g is not None:
                    pl_t.append(g), pl_true.append(r["genant_grade"])
                    pl_pred.append(gp[r["label"]]["genant_grade"])
        rows.append({"image": int(idx[i]), "case": str(data["case"][idx[i]]),
                     "mre_mm": float(np.nanmean(err[i]) * px_mm) if vis[i].any() else np.nan,
                     "visible": int(vis[i].sum())})
    slip_t, slip_p = np.array(slip_t), np.array(slip_p)
    out = {
        "images": int(len(idx)), "landmarks": int(vis.sum()),
        "mre_px": float(np.nanmean(err)), "mre_mm": float(e_mm.mean()) if e_mm.size else np.nan,
        "median_mm": float(np.median(e_mm)) if e_mm.size else np.nan,
        **{f"sdr_{t:g}mm": float((e_mm <= t).mean()) if e_mm.size else np.nan for t in SDR_MM},
        "slip_pairs": int(len(slip_t)),
        "slip_pct_mae": float(np.abs(slip_t - slip_p).mean()) if len(slip_t) else np.nan,
        "meyerding_accuracy": float(np.mean(np.array(mey_t) == np.array(mey_p))) if mey_t else np.nan,
        "meyerding_true_counts": {str(g): int(np.sum(np.array(mey_t) == g)) for g in range(6)},
        "meyerding_confusion": [[int(np.sum((np.array(mey_t) == a) & (np.array(mey_p) == b)))
                                 for b in range(6)] for a in range(6)],
        f"meyerding_accuracy_under_{LISTHESIS_PCT:g}pct_none":
            float(np.mean(np.array(mey5_t) == np.array(mey5_p))) if mey5_t else np.nan,
        "genant_vertebrae": len(g_t),
        "genant_accuracy": float(np.mean(np.array(g_t) == np.array(g_p))) if g_t else np.nan,
        "genant_macro_f1": macro_f1(g_t, g_p),
        "genant_true_counts": {str(g): int(np.sum(np.array(g_t) == g)) for g in range(4)},
        "planted_vertebrae": len(pl_t),
        "planted_macro_f1_predicted_points": macro_f1(pl_t, pl_pred),
        "planted_macro_f1_true_points": macro_f1(pl_t, pl_true),
        "planted_confusion_predicted_points":
            classification_metrics(pl_t, pl_pred)["confusion_matrix"] if pl_t else [],
        "planted_confusion_true_points":
            classification_metrics(pl_t, pl_true)["confusion_matrix"] if pl_t else [],
        "per_level_mre_mm": {k: (float(np.mean(v)) if v else None, len(v))
                             for k, v in per_level.items()},
        "pixel_mm_detector": px_mm, "mm_at_spine": spine_mm,
    }
    if spread is not None:
        s = np.where(vis, spread, np.nan)
        ok = np.isfinite(s) & np.isfinite(err)
        if ok.sum() > 2:
            out["uncertainty_error_spearman"] = float(
                __import__("scipy.stats", fromlist=["spearmanr"]).spearmanr(s[ok], err[ok])[0])
        from radiograph.predict import too_uncertain
        by_level = channels_by_level(ch).values()
        n = dropped = right = kept_wrong = 0
        for i in range(len(idx)):
            for ks in by_level:
                m = [k for k in ks if vis[i, k]]
                if not m:
                    continue
                drop, wrong = too_uncertain(s[i][m], max_spread), err[i][m].max() > 4.0
                n, dropped = n + 1, dropped + drop
                right += drop and not wrong
                kept_wrong += wrong and not drop
        out["spread_check"] = {"max_spread_px": max_spread, "levels": n, "dropped": int(dropped),
                               "dropped_all_points_within_4px": int(right),
                               "kept_with_a_point_over_4px": int(kept_wrong)}
    return out, rows, pairs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="run folder (ckpt/best.pth) or .pth file")
    ap.add_argument("--data", required=True, help="dataset .npz (radiograph/render.py)")
    ap.add_argument("--split", default="all", help="train, val, test or all (default all)")
    ap.add_argument("--output", required=True, help="folder for metrics.json and the CSVs")
    ap.add_argument("--mc", type=int, default=0, help="Monte-Carlo dropout samples (0: off)")
    ap.add_argument("--max_spread", type=float, default=4.0,
                    help="with --mc: count the levels predict.py's --max_spread would drop "
                         "(model pixels, default 4)")
    ap.add_argument("--decoding", choices=DECODINGS, default="ordered", help=DECODING_HELP)
    ap.add_argument("--tta", choices=TTAS, default="mirror", help=TTA_HELP)
    ap.add_argument("--device", default="auto")
    return ap


def main(argv=None) -> int:
    from radiograph.train import load_landmark_model, radial_errors
    from utils.device import resolve_device
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    model, ck = load_landmark_model(args.checkpoint, device)
    data = load_dataset(args.data)
    if list(map(str, data["channels"])) != list(ck["channels"]):
        raise UserError("dataset channels differ from the model's (render with the same levels)",
                        args.data)
    idx = np.arange(len(data["images"])) if args.split == "all" else \
        np.flatnonzero(data["split"] == args.split)
    if not len(idx):
        raise UserError(f"no images in split {args.split!r}", args.data)
    pred, _, spread, _ = radial_errors(model, data, idx, device, mc=args.mc, decoding=args.decoding,
                                       tta=args.tta)
    metrics, rows, pairs = score(pred, data, idx, spread if args.mc >= 2 else None, args.max_spread)
    metrics.update({"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split,
                    "mc": args.mc, "decoding": args.decoding, "tta": args.tta, "step": int(ck.get("step", 0))})
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "per_image.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if pairs:
        with atomic_path(out / "per_pair.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(pairs[0]))
            w.writeheader()
            w.writerows(pairs)
    with atomic_path(out / "per_level.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["level", "mre_mm", "n"])
        for k, (m, n) in metrics["per_level_mre_mm"].items():
            w.writerow([k, "" if m is None else round(m, 3), n])
    log.info("MRE %.2f mm (%.2f px), SDR@2mm %.1f %%, slip MAE %.2f pts, Meyerding acc %.1f %%, "
             "Genant macro-F1 %.2f", metrics["mre_mm"], metrics["mre_px"],
             100 * metrics["sdr_2mm"], metrics["slip_pct_mae"],
             100 * metrics["meyerding_accuracy"], metrics["genant_macro_f1"])
    return 0


if __name__ == "__main__":
    run_cli(main)
