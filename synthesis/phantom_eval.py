#!/usr/bin/env python
"""Height accuracy of 3D synthesis on the phantom cohort, next to the neighbour baselines.

For every *fractured* vertebra (grade >= ``--min_grade``) of ``--phase``: the anterior / middle /
posterior heights (mm) of the synthesised target in ``<results_dir>/label_fake/<key>.nii.gz`` are
compared with the healthy twin's true heights from ``<case>_truth.json``
(``healthy_heights_mm``); the same is done for the neighbour baselines of
``evaluation.baselines`` (``interp``: linear interpolation of the two neighbours; ``copy``: the
nearer healthy neighbour) built from the fractured block, and for the fractured body itself
(``none``: no restoration). The summary gives, per method, the mean / median error, the error
per third, the share of vertebrae with all three thirds within 10 % of the truth, the smallest
third / truth ratio and the worst vertebra; each GAN row says whether the synthesis is plausible
(:mod:`evaluation.plausibility`). Heights use ``evaluation.heights.measure_own`` with
``column_filter='none'`` (the phantom truth's own definition: mean SI extent per AP third over the
central 40 % of the LR width).

    python -m synthesis.phantom_eval --results_dir results/synthesis --dataroot blocks \\
        --cohort phantom --phase val --output results/synthesis/phantom_heights.csv
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np


from data.io import load_label
from data.splits import add_phase_argument, keys_of, parse_key, read_vertebra_json
from layout.raw import truth_path
from layout.synthesis import OutputLayout
from utils.errors import UserError, run_cli
from utils.fileio import read_json, write_text

log = logging.getLogger("phantom_eval")
THIRD_NAMES = ("anterior", "middle", "posterior")


def true_heights(cohort: Path, key: str) -> np.ndarray:
    """Healthy-twin A/M/P heights (mm) of ``key`` from the phantom truth file."""
    case, label = parse_key(key)
    p = truth_path(cohort, case)
    t = read_json(p)
    try:
        h = t["vertebrae"][str(label)]["healthy_heights_mm"]
    except KeyError:
        raise UserError(f"no healthy_heights_mm for vertebra {label}", p) from None
    return np.array([float(h[n]) for n in THIRD_NAMES])


def measure(mask: np.ndarray, spacing) -> np.ndarray:
    from evaluation.heights import HeightRule, measure_own
    if not mask.any():
        return np.full(3, np.nan)
    return measure_own(mask, spacing, HeightRule(column_filter="none"))


def evaluate_key(key: str, grades: Dict[str, int], results: Path, blocks: Path, cohort: Path) -> dict:
    """Heights (mm) per method and their absolute % errors vs the healthy truth."""
    from evaluation.baselines import baseline_block, neighbour_health
    from layout.blocks import load_block
    case, label = parse_key(key)
    ct, lab = load_block(blocks, key)
    sp = lab.spacing
    truth = true_heights(cohort, key)
    fake = load_label(OutputLayout(results).label(key), allow_empty=True).array
    heights = {"gan": measure(fake == label, sp), "none": measure(lab.array == label, sp)}
    healthy = neighbour_health(case, label, grades, np.unique(lab.array).tolist())
    for method in ("interp", "copy"):
        _, lab_b = baseline_block(ct.array, lab.array, label, method, healthy)
        heights[method] = measure(lab_b == label, sp)
    from evaluation.plausibility import implausible_reasons
    reasons = implausible_reasons(fake, lab.array, label, sp)
    row = {"key": key, "grade": grades[key], **{f"true_{n[0]}": truth[i] for i, n in enumerate(THIRD_NAMES)},
           "gan_plausible": int(not reasons), "gan_implausible": "; ".join(reasons)}
    for m, h in heights.items():
        err = np.abs(h - truth) / truth * 100.0
        row.update({f"{m}_{n[0]}": h[i] for i, n in enumerate(THIRD_NAMES)})
        row.update({f"{m}_err_{n[0]}_pct": err[i] for i, n in enumerate(THIRD_NAMES)})
        row[f"{m}_err_pct"] = float(np.nanmean(err))
        row[f"{m}_min_ratio"] = float(np.nanmin(h / truth)) if np.isfinite(h).any() else float("nan")
    return row


METHODS = ("gan", "interp", "copy", "none")


def method_summary(rows: List[dict], m: str) -> dict:
    """Mean / sd / median abs % error, per-third means, the worst vertebra, the share of vertebrae
    whose three thirds are all within 10 % of the truth, and the smallest third / truth ratio."""
    e = np.array([r[f"{m}_err_pct"] for r in rows], float)
    per = {t: float(np.nanmean([r[f"{m}_err_{t}_pct"] for r in rows])) for t in "amp"}
    within = [all(r[f"{m}_err_{t}_pct"] <= 10.0 for t in "amp") for r in rows]
    worst = int(np.nanargmax(e)) if np.isfinite(e).any() else 0
    return {"method": m, "mean": float(np.nanmean(e)), "sd": float(np.nanstd(e)),
            "median": float(np.nanmedian(e)), **{f"err_{t}": v for t, v in per.items()},
            "within_10pct": float(np.mean(within)), "worst_key": rows[worst]["key"],
            "worst_err": float(e[worst]), "min_third_ratio": float(np.nanmin([r[f"{m}_min_ratio"] for r in rows]))}


def summarise(rows: List[dict]) -> str:
    n_bad = sum(1 for r in rows if not r["gan_plausible"])
    lines = [f"vertebrae: {len(rows)} (GAN syntheses flagged implausible: {n_bad})",
             "| method | mean abs height error % | sd | median | A | M | P | within 10 % | "
             "smallest third / truth | worst vertebra |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        s = method_summary(rows, m)
        lines.append(f"| {m} | {s['mean']:.2f} | {s['sd']:.2f} | {s['median']:.2f} | {s['err_a']:.2f} | "
                     f"{s['err_m']:.2f} | {s['err_p']:.2f} | {s['within_10pct']:.2f} | "
                     f"{s['min_third_ratio']:.2f} | {s['worst_key']} ({s['worst_err']:.1f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results_dir", required=True, help="output of eval_3d_sagittal_twostage.py")
    ap.add_argument("--dataroot", required=True, help="straightened blocks of the fractured cohort")
    ap.add_argument("--cohort", required=True, help="phantom cohort root (raw/<case>/<case>_truth.json, "
                    "vertebra_data.json)")
    ap.add_argument("--vertebra_json", help="split/grade file (default <cohort>/vertebra_data.json)")
    add_phase_argument(ap, default=("val",), what="to evaluate")
    ap.add_argument("--min_grade", type=int, default=1, help="smallest Genant grade counted as fractured")
    ap.add_argument("--output", help="CSV of per-vertebra heights and errors (default "
                    "<results_dir>/phantom_heights.csv)")
    args = ap.parse_args(argv)
    import pandas as pd
    cohort, results = Path(args.cohort), Path(args.results_dir)
    grades_all = keys_of(read_vertebra_json(args.vertebra_json or cohort / "vertebra_data.json"),
                         ["train", "val", "test"])
    keys = [k for k, g in sorted(keys_of(read_vertebra_json(args.vertebra_json or cohort / "vertebra_data.json"),
                                         args.phase).items()) if g >= args.min_grade]
    keys = [k for k in keys if OutputLayout(results).label(k).is_file()]
    if not keys:
        raise UserError("no synthesised fractured vertebrae of the phase", OutputLayout(results).label_dir)
    rows = [evaluate_key(k, grades_all, results, Path(args.dataroot), cohort) for k in keys]
    out = Path(args.output) if args.output else results / "phantom_heights.csv"
    write_text(out, pd.DataFrame(rows).round(3).to_csv(index=False))
    print(summarise(rows))
    print(f"per-vertebra table: {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
