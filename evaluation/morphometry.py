"""Mask-only baseline grading (no synthesis): Genant's rule on measured heights.

Two height-loss estimates per vertebra, both from the real straightened body alone
(EVALUATION.md §2 baseline (c)):

* **own ratios** (quantitative morphometry): wedge loss ``1 − a/p``, biconcave loss ``1 − m/p``;
* **neighbour-expected height**: the expected healthy A/M/P heights are the mean of the
  neighbouring bodies' heights (level ± 1; only neighbours whose own ratios look healthy, all
  neighbours when none does); crush loss ``1 − p/p_exp`` and, per third, ``1 − h/h_exp``.

The vertebra's loss is the largest of these; its grade follows Genant (0: < 20 %, 1: 20–25 %,
2: 25–40 %, 3: > 40 %), its morphology the estimate that gave the largest loss. Neighbour
heights come from the neighbour's own block (``<label_dir>/<case>_<label±1>.nii.gz``) when it
exists, else from the neighbour's label inside the target's block.

CLI::

    python evaluation/morphometry.py --label_dir straight/label --vertebra_json vd.json \
        --output results/morphometry.csv
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import load_label  # noqa: E402
from data.splits import LEVEL_NAMES, SPLITS, make_key, parse_key, read_vertebra_json  # noqa: E402
from evaluation.heights import THIRDS, HeightRule, measure_own  # noqa: E402
from evaluation.rhlv import block_path, list_keys  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.fileio import atomic_path  # noqa: E402

log = logging.getLogger("morphometry")
GENANT_EDGES = (0.20, 0.25, 0.40)


def genant_grade(loss: float) -> int:
    """Genant semi-quantitative grade of a fractional height loss (NaN -> 0)."""
    if not np.isfinite(loss):
        return 0
    return int(np.searchsorted(np.asarray(GENANT_EDGES), loss, side="left"))


def own_losses(h_amp: Sequence[float]) -> Dict[str, float]:
    """{'wedge': 1 − a/p, 'biconcave': 1 − m/p} of A/M/P heights."""
    a, m, p = (float(x) for x in h_amp)
    if not (np.isfinite(p) and p > 0):
        return {"wedge": np.nan, "biconcave": np.nan}
    return {"wedge": 1 - a / p, "biconcave": 1 - m / p}


def neighbour_losses(h_amp: Sequence[float], h_exp_amp: Optional[Sequence[float]]) -> Dict[str, float]:
    """Loss against the neighbour-expected heights: 'crush' (posterior) and per third."""
    if h_exp_amp is None or not np.all(np.isfinite(h_exp_amp)):
        return {"crush": np.nan, "a_vs_exp": np.nan, "m_vs_exp": np.nan}
    h = np.asarray(h_amp, float)
    e = np.asarray(h_exp_amp, float)
    r = 1 - h / e
    return {"crush": float(r[2]), "a_vs_exp": float(r[0]), "m_vs_exp": float(r[1])}


def grade_vertebra(h_amp: Sequence[float], h_exp_amp: Optional[Sequence[float]] = None) -> dict:
    """Genant grade, loss and morphology of one body from its heights (and expected heights)."""
    losses = {**own_losses(h_amp), **neighbour_losses(h_amp, h_exp_amp)}
    finite = {k: v for k, v in losses.items() if np.isfinite(v)}
    if not finite:
        return {"morph_loss": np.nan, "morph_grade": 0, "morph_type": "none", **losses}
    kind = max(finite, key=finite.get)
    loss = finite[kind]
    morph = {"a_vs_exp": "wedge", "m_vs_exp": "biconcave"}.get(kind, kind)
    grade = genant_grade(loss)
    return {"morph_loss": loss, "morph_grade": grade, "morph_type": morph if grade else "none",
            **losses}


def expected_heights(neigh: Dict[int, np.ndarray]) -> Optional[np.ndarray]:
    """Mean A/M/P heights of the neighbours that look healthy by their own ratios (all when
    none does); None without neighbours."""
    vals = [np.asarray(v, float) for v in neigh.values() if np.all(np.isfinite(v))]
    if not vals:
        return None
    healthy = [v for v in vals if max(own_losses(v).values()) < GENANT_EDGES[0]]
    return np.mean(healthy or vals, axis=0)


def _heights_in(path, label: int, rule: HeightRule) -> Optional[np.ndarray]:
    vol = load_label(path, allow_empty=True)
    mask = vol.array == label
    if not mask.any():
        return None
    return measure_own(mask, vol.spacing, rule)


def morphometry_row(key: str, label_dir, rule: HeightRule = HeightRule(), split=None,
                    grade=None) -> dict:
    """Heights, losses and the morphometric grade of one vertebra block."""
    case, label = parse_key(key)
    path = block_path(label_dir, key)
    if not path.exists():
        raise UserError("file not found", path)
    h = _heights_in(path, label, rule)
    if h is None:
        raise UserError(f"label {label} is absent from the block", path)
    neigh = {}
    for nl in (label - 1, label + 1):
        npath = block_path(label_dir, make_key(case, nl))
        hn = _heights_in(npath, nl, rule) if npath.exists() else _heights_in(path, nl, rule)
        if hn is not None:
            neigh[nl] = hn
    exp = expected_heights(neigh)
    row = {"key": key, "case": case, "label": label, "level": LEVEL_NAMES.get(label, str(label)),
           "split": split, "grade": grade}
    row.update({f"H_{t}_mm": float(h[i]) for i, t in enumerate(THIRDS)})
    row.update({f"H_exp_{t}_mm": float(exp[i]) if exp is not None else np.nan
                for i, t in enumerate(THIRDS)})
    row["n_neighbours"] = len(neigh)
    row.update(grade_vertebra(h, exp))
    return row


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Genant morphometry baseline on straightened label "
                                "blocks (no synthesis) -> CSV",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--label_dir", required=True, help="folder of straightened label blocks <key>.nii.gz")
    p.add_argument("--output", required=True, help="output CSV")
    p.add_argument("--vertebra_json", default=None,
                   help="split/grade file (keys to grade, split and true grade columns); "
                        "default: every block in --label_dir")
    p.add_argument("--phases", nargs="+", default=list(SPLITS), choices=SPLITS,
                   help="splits of --vertebra_json to grade")
    p.add_argument("--lr_fraction", type=float, default=0.4, help="central LR fraction measured")
    p.add_argument("--column_ratio", type=float, default=0.7,
                   help="keep columns taller than this x the centre column (0 disables)")
    p.add_argument("--skip_missing", action="store_true", help="skip keys without a block file")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    import pandas as pd
    from tqdm import tqdm
    args = build_parser().parse_args(argv)
    rule = HeightRule(args.lr_fraction, args.column_ratio, "syn")
    if args.vertebra_json:
        splits = read_vertebra_json(args.vertebra_json)
        items = [(k, ph, g) for ph in args.phases for k, g in splits.get(ph, {}).items()]
    else:
        items = [(k, None, None) for k in list_keys(args.label_dir)]
    rows = []
    for key, split, grade in tqdm(items, desc="morphometry", disable=args.no_progress):
        if args.skip_missing and not block_path(args.label_dir, key).exists():
            log.warning("skipping %s: no block", key)
            continue
        rows.append(morphometry_row(key, args.label_dir, rule, split, grade))
    if not rows:
        raise UserError("no vertebra graded", args.label_dir)
    df = pd.DataFrame(rows)
    with atomic_path(args.output) as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    log.info("wrote %d vertebrae to %s (grades %s)", len(df), args.output,
             df["morph_grade"].value_counts().sort_index().to_dict())
    return 0


if __name__ == "__main__":
    run_cli(main)
