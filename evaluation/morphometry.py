"""Mask-only baseline grading (no synthesis): Genant's rule on measured heights.

Two height-loss estimates per vertebra, both from the real straightened body alone
(docs/EVALUATION.md §2 baseline (c)):

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
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np


from data.io import load_label
from data.splits import add_phase_argument, make_key, parse_key, read_vertebra_json
from evaluation.heights import THIRDS, HeightRule, measure_own
from evaluation.reference import (DEFAULT_PRIOR_SLOPE, ReferenceRule, learn_prior_slope,
                                  spine_positions)
from evaluation.reference import expected_heights as robust_expected
from layout.blocks import block_path, list_keys
from spine.anatomy import genant_grade, level_name, neighbour_list
from layout.blocks import load_completeness
from spine.anatomy import Completeness
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

log = logging.getLogger("morphometry")


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
    none does); None without neighbours (``--reference neighbours``)."""
    vals = [np.asarray(v, float) for v in neigh.values() if np.all(np.isfinite(v))]
    if not vals:
        return None
    healthy = [v for v in vals if genant_grade(max(own_losses(v).values())) == 0]
    return np.mean(healthy or vals, axis=0)


def _heights_in(path, label: int, rule: HeightRule) -> Optional[np.ndarray]:
    vol = load_label(path, allow_empty=True)
    mask = vol.array == label
    if not mask.any():
        return None
    return measure_own(mask, vol.spacing, rule)


class CaseSpine:
    """Heights and completeness of every vertebra of one case found under ``label_dir``:
    each block measured once; a vertebra without a block of its own is measured inside a
    neighbour's block when it lies there."""

    def __init__(self, case: str, label_dir, block_labels: Sequence[int], rule: HeightRule):
        self.case, self.label_dir, self.rule = case, Path(label_dir), rule
        self.heights: Dict[int, np.ndarray] = {}
        self.flags: Dict[int, Completeness] = {}
        incomplete: Dict[int, str] = {}
        for lab in block_labels:
            key = make_key(case, lab)
            flag, inc = load_completeness(self.label_dir.parent, key)
            self.flags[lab] = flag
            incomplete.update(inc)
        for lab in set(incomplete) - set(self.flags):
            self.flags[lab] = Completeness("truncated", incomplete[lab] or "incomplete in the scan")
        self.positions = spine_positions(set(self.flags) | set(block_labels))
        self._block_labels = list(block_labels)

    def own(self, label: int) -> Optional[np.ndarray]:
        if label not in self.heights:
            path = block_path(self.label_dir, make_key(self.case, label))
            self.heights[label] = _heights_in(path, label, self.rule) if path.exists() else None
        return self.heights[label]

    def inside(self, label: int, host: int) -> Optional[np.ndarray]:
        """Heights of ``label`` measured inside ``host``'s block (a neighbour without a block)."""
        return _heights_in(block_path(self.label_dir, make_key(self.case, host)), label, self.rule)

    def complete(self, label: int) -> bool:
        return self.flags.get(label, Completeness()).complete

    def references(self, target: int) -> Dict[int, np.ndarray]:
        """{label: heights} of the complete vertebrae usable as references for ``target``."""
        out = {}
        for lab in self._block_labels:
            if lab != target and self.complete(lab) and self.own(lab) is not None:
                out[lab] = self.own(lab)
        for nb in neighbour_list(target, self.positions):
            if nb not in out and nb not in self._block_labels and self.complete(nb):
                h = self.inside(nb, target)
                if h is not None:
                    out[nb] = h
                    self.positions = spine_positions(set(self.positions) | {nb})
        return out


def morphometry_row(key: str, spine: CaseSpine, reference: str = "robust",
                    ref_rule: ReferenceRule = ReferenceRule(), split=None, grade=None) -> dict:
    """Heights, losses, completeness and the morphometric grade of one vertebra block."""
    case, label = parse_key(key)
    path = block_path(spine.label_dir, key)
    if not path.exists():
        raise UserError("file not found", path)
    flag = spine.flags.get(label, Completeness())
    row = {"key": key, "case": case, "label": label, "level": level_name(label),
           "split": split, "grade": grade, "complete": int(flag.complete),
           "truncated": int(flag.truncated), "reason": flag.reason, "reference": reference}
    if not flag.complete:  # never graded, never a reference
        row.update({f"H_{t}_mm": np.nan for t in THIRDS})
        row.update({"morph_loss": np.nan, "morph_grade": None, "morph_type": ""})
        return row
    h = spine.own(label)
    if h is None:
        raise UserError(f"label {label} is absent from the block", path)
    refs = spine.references(label)
    if reference == "neighbours":
        near = {l: v for l, v in refs.items() if l in neighbour_list(label, spine.positions)}
        exp, n_ref = expected_heights(near), len(near)
    else:
        exp = robust_expected(refs, spine.positions, label, ref_rule)
        n_ref = len(refs)
    row.update({f"H_{t}_mm": float(h[i]) for i, t in enumerate(THIRDS)})
    row.update({f"H_exp_{t}_mm": float(exp[i]) if exp is not None else np.nan
                for i, t in enumerate(THIRDS)})
    row["n_references"] = n_ref
    row["reference_labels"] = " ".join(str(l) for l in sorted(
        near if reference == "neighbours" else refs))
    row.update(grade_vertebra(h, exp))
    return row


def morphometry_table(items, label_dir, rule: HeightRule = HeightRule(),
                      reference: str = "robust", ref_rule: ReferenceRule = ReferenceRule(),
                      skip_missing: bool = False, progress: bool = False):
    """DataFrame of :func:`morphometry_row` for ``items`` = (key, split, grade) tuples, plus a
    row for every vertebra that straightening found incomplete and wrote no block for."""
    import pandas as pd
    from tqdm import tqdm
    by_case: Dict[str, list] = {}
    for k in list_keys(label_dir):
        try:
            c, l = parse_key(k)
        except UserError:
            continue
        by_case.setdefault(c, []).append(l)
    spines: Dict[str, CaseSpine] = {}
    rows = []
    for key, split, grade in tqdm(items, desc="morphometry", disable=not progress):
        if skip_missing and not block_path(label_dir, key).exists():
            log.warning("skipping %s: no block", key)
            continue
        case, _ = parse_key(key)
        if case not in spines:
            spines[case] = CaseSpine(case, label_dir, by_case.get(case, []), rule)
        rows.append(morphometry_row(key, spines[case], reference, ref_rule, split, grade))
    seen = {r["key"] for r in rows}
    for case, sp in spines.items():
        for lab, flag in sorted(sp.flags.items()):
            key = make_key(case, lab)
            if key not in seen and not flag.complete and not block_path(label_dir, key).exists():
                rows.append({"key": key, "case": case, "label": lab,
                             "level": level_name(lab), "complete": 0,
                             "truncated": int(flag.truncated), "reason": flag.reason,
                             "reference": reference, "morph_grade": None, "morph_type": ""})
    df = pd.DataFrame(rows)
    if len(df):
        df["morph_grade"] = pd.array([None if g is None or (isinstance(g, float) and np.isnan(g))
                                      else int(g) for g in df["morph_grade"]], dtype="Int64")
    return df


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Genant morphometry baseline on straightened label "
                                "blocks (no synthesis) -> CSV",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--label_dir", required=True, help="folder of straightened label blocks <key>.nii.gz")
    p.add_argument("--output", required=True, help="output CSV")
    p.add_argument("--vertebra_json", default=None,
                   help="split/grade file (keys to grade, split and true grade columns); "
                        "default: every block in --label_dir")
    add_phase_argument(p, "--phase", ("all",), "to grade", aliases=("--phases",))
    p.add_argument("--lr_fraction", type=float, default=0.4, help="central LR fraction measured")
    p.add_argument("--column_ratio", type=float, default=0.7,
                   help="keep columns taller than this x the centre column (0 disables)")
    p.add_argument("--reference", choices=("robust", "neighbours"), default="robust",
                   help="expected healthy heights: robust = fit over the patient's complete, "
                        "healthy-looking vertebrae with iterative exclusion (survives runs of "
                        "fractures, see evaluation/reference.py); neighbours = mean of the two "
                        "adjacent vertebrae (the earlier rule)")
    p.add_argument("--reference_window", type=int, default=ReferenceRule.window,
                   help="robust reference: levels on each side used first (grows when too few)")
    p.add_argument("--reference_tol", type=float, default=ReferenceRule.tol,
                   help="robust reference: exclude candidates this fraction below the fit")
    p.add_argument("--reference_slope", default=str(DEFAULT_PRIOR_SLOPE),
                   help="robust reference: normal log body-height increase per level down the "
                        "spine, or 'train' to learn it from the grade-0 train vertebrae")
    p.add_argument("--skip_missing", action="store_true", help="skip keys without a block file")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    rule = HeightRule(args.lr_fraction, args.column_ratio, "syn")
    if args.vertebra_json:
        splits = read_vertebra_json(args.vertebra_json)
        items = [(k, ph, g) for ph in args.phase for k, g in splits.get(ph, {}).items()]
    else:
        splits = None
        items = [(k, None, None) for k in list_keys(args.label_dir)]
    ref_rule = ReferenceRule(window=args.reference_window, tol=args.reference_tol,
                             prior_slope=_prior_slope(args, splits, rule))
    df = morphometry_table(items, args.label_dir, rule, args.reference, ref_rule,
                           args.skip_missing, not args.no_progress)
    if not len(df):
        raise UserError("no vertebra graded", args.label_dir)
    with atomic_path(args.output) as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    n_inc = int((df["complete"] == 0).sum())
    log.info("wrote %d vertebrae to %s (grades %s; %d incomplete, not graded)", len(df),
             args.output, df["morph_grade"].value_counts().sort_index().to_dict(), n_inc)
    return 0


def _prior_slope(args, splits, rule: HeightRule) -> float:
    """``--reference_slope``: a number, or 'train' (learned from the grade-0 train vertebrae)."""
    if args.reference_slope != "train":
        try:
            return float(args.reference_slope)
        except ValueError:
            raise UserError(f"--reference_slope must be a number or 'train', got "
                            f"{args.reference_slope!r}") from None
    if not splits or not splits.get("train"):
        raise UserError("--reference_slope train needs --vertebra_json with a train split")
    table: Dict[str, Dict[int, np.ndarray]] = {}
    for key, g in splits["train"].items():
        path = block_path(args.label_dir, key)
        if g != 0 or not path.exists():
            continue
        flag, _ = load_completeness(Path(args.label_dir).parent, key)
        case, lab = parse_key(key)
        h = _heights_in(path, lab, rule) if flag.complete else None
        if h is not None:
            table.setdefault(case, {})[lab] = h
    try:
        slope = learn_prior_slope(table)
    except ValueError as exc:
        raise UserError(str(exc), args.vertebra_json) from None
    log.info("reference slope learned from %d train cases: %.4f per level", len(table), slope)
    return slope


if __name__ == "__main__":
    run_cli(main)
