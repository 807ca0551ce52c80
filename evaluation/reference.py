"""Expected healthy A/M/P heights of a vertebra from the patient's own healthy-looking vertebrae.

The mean of the two neighbours (the classic "neighbour-expected height") fails on runs of
fractures: two or three adjacent fractures of similar depth look normal to each other. Here the
reference survives any run:

1. **Candidates**: the patient's *complete* vertebrae (truncated ones are never a reference,
   :mod:`straighten.completeness`) whose own ratios look healthy (wedge and biconcave loss below
   20 %), within ``window`` positions of the target along the spine. The target takes part in
   choosing the healthy ones but is left out of the fit (unless it is the only healthy one: then
   it is its own reference and reads as normal).
2. **Fit**: per third, log-height against spine position (the vertebra's rank along the patient's
   spine, so T13 / L6 spines count right) by a line whose slope is pulled towards the normal
   level-to-level height ratio ``prior_slope`` (ridge weight ``slope_weight``): with candidates on
   both sides the patient's own trend decides, at the ends of the spine the prior does.
3. **Robust**: fractures only shorten a body, so the fit starts from the candidates within
   ``tol`` (15 %) of the tallest one (after the normal level-to-level trend) and is refitted with
   every candidate within ``tol`` of the line, until nothing changes: a crushed neighbour (its
   own ratios look healthy) drops out, however many there are, as long as one healthy vertebra
   is in the window. If fewer than ``min_candidates`` remain, the window grows (up to the whole
   spine). A body segmented far too tall would lift the reference; the CSV lists the labels
   offered as references (``reference_labels``) so such a case can be traced.

``prior_slope`` is the normal increase of log body height per level down the spine. Default
0.04 per level: the log-slopes of the complete vertebrae T1-L2 of the chest CT in
``../shared/data`` are 0.039 / 0.035 / 0.043 (A / M / P; ``evaluation/morphometry.py`` on its
straightened blocks, then a line fit of log-height on level), the phantom's T10-L5 design is
0.048. ``evaluation/morphometry.py --reference_slope train`` learns it instead from the grade-0
training vertebrae (median log-slope between adjacent healthy levels), and any number can be
given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from spine.anatomy import order_labels

DEFAULT_PRIOR_SLOPE = 0.04
HEALTHY_OWN_LOSS = 0.20


@dataclass(frozen=True)
class ReferenceRule:
    window: int = 4
    tol: float = 0.15
    prior_slope: float = DEFAULT_PRIOR_SLOPE
    slope_weight: float = 10.0
    min_candidates: int = 2


def own_max_loss(h_amp: Sequence[float]) -> float:
    """Largest of the wedge (1 − a/p) and biconcave (1 − m/p) losses; NaN without p."""
    a, m, p = (float(x) for x in h_amp)
    if not (np.isfinite(p) and p > 0):
        return float("nan")
    return max(1 - a / p, 1 - m / p)


def _fit_line(x: np.ndarray, y: np.ndarray, x0: float, rule: ReferenceRule) -> tuple:
    """(intercept at x0, slope) minimising Σ(y − a − b(x − x0))² + w(b − b0)²."""
    xc = x - x0
    n, sx, sxx = len(x), xc.sum(), (xc * xc).sum()
    sy, sxy = y.sum(), (xc * y).sum()
    w, b0 = rule.slope_weight, rule.prior_slope
    A = np.array([[n, sx], [sx, sxx + w]], float)
    rhs = np.array([sy, sxy + w * b0], float)
    a, b = np.linalg.solve(A, rhs)
    return float(a), float(b)


def _robust_at(x: np.ndarray, y: np.ndarray, x0: float, is_target: np.ndarray,
               rule: ReferenceRule, min_others: int) -> Optional[float]:
    """Fitted log-height at ``x0`` from the vertebrae that are not markedly shorter than the
    tallest (after the prior level-to-level trend). The target takes part in that selection (a
    healthy target beside crushed neighbours keeps them out) but not in the fit, unless it is
    the only one left. None if fewer than ``min_others`` other vertebrae remain."""
    ok = np.isfinite(y)
    cut = np.log(1.0 - rule.tol)
    c = np.where(ok, y - rule.prior_slope * (x - x0), -np.inf)
    keep = ok & (c >= c.max() + cut)
    a = None
    for _ in range(len(x) + 1):
        others = keep & ~is_target
        if others.sum() < min_others:
            return None
        fit = others if others.any() else keep
        a, b = _fit_line(x[fit], y[fit], x0, rule)
        new = ok & (y - (a + b * (x - x0)) >= cut)
        if np.array_equal(new, keep):
            return a
        keep = new
    return a


def expected_heights(heights: Mapping[int, Sequence[float]], positions: Mapping[int, float],
                     target: int, rule: ReferenceRule = ReferenceRule()) -> Optional[np.ndarray]:
    """Expected healthy A/M/P heights (mm) of ``target``, or None when no reference exists.

    ``heights``: {label: A/M/P heights} of the patient's *complete* vertebrae (the target's own
    entry takes part in choosing the healthy ones, never alone in the fit unless it is the only
    healthy-looking vertebra); ``positions``: {label: position along the spine}."""
    cand = {l: np.asarray(h, float) for l, h in heights.items()
            if l in positions and np.all(np.isfinite(h)) and np.all(np.asarray(h) > 0)
            and own_max_loss(h) < HEALTHY_OWN_LOSS}
    if target not in positions or not (set(cand) - {target}):
        return None
    x0 = float(positions[target])
    span = max(abs(positions[l] - x0) for l in cand)
    w = rule.window
    while True:
        sel = [l for l in cand if abs(positions[l] - x0) <= w]
        last = w >= span
        out = _fit_all(sel, cand, positions, x0, target, rule, 0 if last else rule.min_candidates)
        if out is not None or last:
            return out
        w += 2


def _fit_all(sel, cand, positions, x0, target, rule, min_others) -> Optional[np.ndarray]:
    if not (set(sel) - {target}):
        return None
    x = np.array([positions[l] for l in sel], float)
    y = np.log(np.array([cand[l] for l in sel], float))       # (n, 3)
    is_t = np.array([l == target for l in sel])
    out = []
    for t in range(3):
        v = _robust_at(x, y[:, t], x0, is_t, rule, min_others)
        if v is None:
            return None
        out.append(np.exp(v))
    return np.array(out)


def spine_positions(labels: Sequence[int]) -> Dict[int, float]:
    """{label: rank along the patient's spine} in anatomical order (T13 after T12, L6 after L5)."""
    return {int(l): float(i) for i, l in enumerate(order_labels(list(labels)))}


def learn_prior_slope(table: Mapping[str, Mapping[int, Sequence[float]]]) -> float:
    """Median log-slope of the posterior height between adjacent levels over patients:
    ``table`` = {case: {label: A/M/P heights}} of healthy (grade 0) complete vertebrae."""
    slopes = []
    for per_case in table.values():
        pos = spine_positions(per_case)
        labs = sorted(per_case, key=pos.get)
        for a, b in zip(labs, labs[1:]):
            ha, hb = float(per_case[a][2]), float(per_case[b][2])
            if ha > 0 and hb > 0 and pos[b] - pos[a] == 1:
                slopes.append(np.log(hb / ha))
    if not slopes:
        raise ValueError("no adjacent pair of healthy vertebrae to learn the slope from")
    return float(np.median(slopes))
