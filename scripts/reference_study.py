#!/usr/bin/env python
"""Runs of adjacent fractures: does the morphometric reference survive them?

Writes phantom cases (T9-L5) each holding one run of 1, 2 or 3 adjacent fractured vertebrae
(Genant 2-3, random morphology, anywhere along the spine), straightens them (labels only) and
grades every vertebra with ``evaluation/morphometry.py`` twice: ``--reference neighbours`` (the
mean of the two adjacent vertebrae, the earlier rule) and ``--reference robust`` (the fit over
the patient's healthy-looking vertebrae, ``evaluation/reference.py``), next to the *oracle* (the
healthy twin through the same blocks as the pseudo-healthy body, RHLV, Genant rule). Prints per
run length the exact-grade accuracy (``*_exact``) and in ``*_detect`` the fracture detection rate
(predicted grade >= 2 among the grade 2-3 vertebrae of the runs); on the healthy row ``*_detect``
is the false-positive rate (predicted grade >= 1).

    python scripts/reference_study.py --output /tmp/reference_study --n_cases 18
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


from data.splits import write_vertebra_json
from phantom.shapes import ANATOMIES, DEFAULT_ANATOMY
from spine.anatomy import LEVEL_NAMES
from utils.errors import run_cli
from layout.blocks import LABEL_DIR

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("T9", "L5")


def run(cmd) -> None:
    subprocess.run([sys.executable] + [str(c) for c in cmd], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_cases(ph: Path, n_cases: int, seed: int, run_lengths,
                anatomy: str = DEFAULT_ANATOMY) -> dict:
    """Cases with one run each; returns {key: (true grade, run length or 0)}."""
    from phantom.case import level_range, render_case, write_case
    from phantom.fracture import MORPHOLOGIES
    levels = level_range(*LEVELS)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n_cases):
        k = int(run_lengths[i % len(run_lengths)])
        start = int(rng.integers(0, len(levels) - k + 1))
        run_levels = levels[start:start + k]
        fr = {lv: (int(rng.integers(2, 4)), str(rng.choice(MORPHOLOGIES))) for lv in run_levels}
        name = f"run{k}_{i:03d}"
        case = render_case(int(rng.integers(2 ** 31)), levels=levels, fractures=fr, case_id=name,
                           anatomy=anatomy)
        write_case(case, ph, name)
        for lab, v in case.truth["vertebrae"].items():
            in_run = LEVEL_NAMES[int(lab)] in run_levels
            truth[f"{name}_{int(lab)}"] = (int(v["grade"]), k if in_run else 0)
    write_vertebra_json(ph / "vertebra_data.json", {"test": {k: g for k, (g, _) in truth.items()}})
    return truth


def oracle_grades(ph: Path, st: Path, out: Path) -> dict:
    import pandas as pd
    from data.splits import parse_key
    from spine.anatomy import genant_grade
    run(["evaluation/oracle.py", "--dataroot", ph, "--straight_root", st, "--output_root",
         out / "twin", "--no_progress"])
    run(["evaluation/RHLV_quantification.py", "--label_dir", st / LABEL_DIR, "--fake_dir",
         out / "twin" / LABEL_DIR, "--vertebra_json", ph / "vertebra_data.json", "--output",
         out / "rhlv_oracle.csv", "--no_progress"])
    d = pd.read_csv(out / "rhlv_oracle.csv")
    parse_key(d["key"].iloc[0])
    return {k: genant_grade(float(np.nanmax([a, m, p]))) for k, a, m, p in
            zip(d["key"], d["RHLV_a"], d["RHLV_m"], d["RHLV_p"])}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="work folder (overwritten)")
    p.add_argument("--n_cases", type=int, default=18)
    p.add_argument("--run_lengths", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--anatomy", choices=ANATOMIES, default=DEFAULT_ANATOMY,
                   help=f"phantom body shape (default {DEFAULT_ANATOMY}; 'box': the original phantom)")
    return p


def main(argv=None) -> int:
    import pandas as pd
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    ph, st = out / "phantom", out / "st"
    truth = write_cases(ph, args.n_cases, args.seed, args.run_lengths, args.anatomy)
    run(["straighten/straighten_mask_3d.py", "--dataroot", ph, "--output", st, "--no_ct",
         "--no_progress"])
    preds = {"oracle": oracle_grades(ph, st, out)}
    for ref in ("neighbours", "robust"):
        csv = out / f"morph_{ref}.csv"
        run(["evaluation/morphometry.py", "--label_dir", st / LABEL_DIR, "--vertebra_json",
             ph / "vertebra_data.json", "--output", csv, "--reference", ref, "--no_progress"])
        m = pd.read_csv(csv)
        preds[ref] = dict(zip(m["key"], m["morph_grade"].astype(int)))
    rows = []
    groups = sorted({r for _, r in truth.values()})
    for g in groups:
        keys = [k for k, (_, r) in truth.items() if r == g]
        row = {"run_length": g or "healthy (outside runs)", "n": len(keys)}
        for name in ("neighbours", "robust", "oracle"):
            y = np.array([truth[k][0] for k in keys])
            p = np.array([preds[name][k] for k in keys])
            row[f"{name}_exact"] = round(float(np.mean(y == p)), 3)
            row[f"{name}_detect"] = round(
                float(np.mean(p[y >= 2] >= 2)) if g else float(np.mean(p >= 1)), 3)
        rows.append(row)
    from scripts.completeness_study import markdown_table
    print(markdown_table(rows))
    (out / "reference_study.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_cli(main)
