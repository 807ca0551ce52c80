"""Level-ordered decoding of landmark heatmaps: each level's point on a peak, levels in order.

A channel's own maximum names a corner *and* its level. In the middle of the lumbar spine the
level is the weak part: L3's maximum may sit on L2's corner, which then carries two levels while
L3's corner carries none. The corners themselves are found well. So, per point type (``sa``,
``sm``, ..., ``ip``):

1. the level-agnostic map is the maximum over the levels' channels of that type; its local
   maxima above ``floor`` are the candidate corners, one per vertebra, except where another
   type's agnostic map is higher: one place is one kind of point (L5's mid-inferior channel
   also answers on L5's anterior-inferior corner, and without this takes it);
2. the candidates are ordered along the spine's main axis (from the channels' own maxima of the
   levels in view, its direction set so that cranial levels come first);
3. the levels (in anatomical order) are aligned to the ordered candidates by dynamic programming:
   each level takes at most one candidate, each candidate at most one level, the order is kept,
   and the alignment maximises the sum of each level's own heatmap value at its candidate.
   Levels or candidates may be skipped (levels out of view, spurious peaks);
4. a level aligned to a candidate gets that peak's sub-pixel position (quadratic on the log of
   the agnostic map) and its value; a level left out keeps its own maximum.

A level whose maximum is on a neighbour's corner has a weaker response on its own corner, and the
neighbour holds the stronger claim to the shared one, so the order makes each level take its own.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from radiograph.cohort import parse_channel
from spine.anatomy import rank

DECODINGS = ("ordered", "channel")
DECODING_HELP = ("ordered (default): each level on a corner peak, levels in anatomical order "
                 "(radiograph/ordering.py); channel: each channel's own maximum (held-out MRE "
                 "9.2 mm against 1.1 mm, docs/RADIOGRAPH.md)")


def main_axis(centres: np.ndarray) -> np.ndarray:
    """Unit vector (x, y) along the main axis of level centres (n, 2) given in anatomical order,
    pointing from the first (cranial) to the last."""
    c = np.asarray(centres, dtype=float)
    u = np.linalg.svd(c - c.mean(0))[2][0]
    t = (c - c.mean(0)) @ u
    r = np.corrcoef(np.arange(len(t)), t)[0, 1] if np.ptp(t) > 0 else 1.0
    return -u if r < 0 else u


def spine_axis(points: np.ndarray, labels: Sequence[int], peak: np.ndarray,
               floor: float) -> np.ndarray:
    """Unit vector along the spine's main axis (x, y), pointing from cranial to caudal levels,
    from the channels' points (C, 2) of the levels whose peaks all exceed ``floor`` (a level out
    of view has its maximum anywhere); None with fewer than two such levels."""
    lab, peak = np.asarray(labels), np.asarray(peak)
    levels = [l for l in sorted(set(labels), key=rank) if np.all(peak[lab == l] > floor)]
    if len(levels) < 2:
        return None
    return main_axis(np.array([points[lab == l].mean(0) for l in levels]))


def align(values: np.ndarray) -> List[Tuple[int, int]]:
    """Order-keeping one-to-one matching of candidates (rows, in order along the spine) to levels
    (columns, in anatomical order) that maximises the summed values: [(candidate, level)]."""
    n, m = values.shape
    score = np.zeros((n + 1, m + 1))
    move = np.zeros((n + 1, m + 1), np.int8)       # 0 skip candidate, 1 skip level, 2 match
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            opts = (score[i - 1, j], score[i, j - 1], score[i - 1, j - 1] + values[i - 1, j - 1])
            move[i, j] = int(np.argmax(opts))
            score[i, j] = opts[move[i, j]]
    out, i, j = [], n, m
    while i > 0 and j > 0:
        if move[i, j] == 2:
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif move[i, j] == 0:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def _refine(log_map: np.ndarray, y: int, x: int) -> Tuple[float, float]:
    """Sub-pixel (x, y) of the peak at integer (y, x): a parabola per axis through the log."""
    h, w = log_map.shape
    y, x = int(np.clip(y, 1, h - 2)), int(np.clip(x, 1, w - 2))
    off = []
    for d in ((0, 1), (1, 0)):
        a, b, c = log_map[y - d[0], x - d[1]], log_map[y, x], log_map[y + d[0], x + d[1]]
        curv = a - 2 * b + c
        off.append(float(np.clip(-0.5 * (c - a) / curv, -1, 1)) if curv < 0 else 0.0)
    return x + off[0], y + off[1]


def order_levels(heatmaps: np.ndarray, channels: Sequence[str], points: np.ndarray,
                 peak: np.ndarray, stride: int = 1, floor: float = 0.05, nms: int = 3):
    """One image: heatmaps (C, h, w), the channels' own decoded points (C, 2, input pixels) and
    peaks (C,) -> (points, peak) with each level placed on a corner in anatomical order."""
    parsed = [parse_channel(str(c)) for c in channels]
    labels = [l for l, _ in parsed]
    axis = spine_axis(points, labels, peak, floor)
    pts, pk = np.array(points, dtype=np.float64), np.array(peak, dtype=np.float64)
    if axis is None:
        return pts, pk
    kinds = sorted({t for _, t in parsed})
    of_kind = {kind: sorted((k for k, (_, t) in enumerate(parsed) if t == kind), key=lambda k: rank(labels[k]))
               for kind in kinds}
    agnostic_of = {kind: heatmaps[ks].max(0) for kind, ks in of_kind.items()}
    for kind in kinds:
        ks = of_kind[kind]
        own, agnostic = heatmaps[ks], agnostic_of[kind]          # levels x h x w; h x w
        is_max = (agnostic == ndimage.maximum_filter(agnostic, size=2 * nms + 1)) & (agnostic > floor)
        for other in kinds:
            if other != kind:
                is_max &= agnostic >= agnostic_of[other]
        yx = np.argwhere(is_max)
        if not len(yx):
            continue
        xy_in = yx[:, ::-1] * stride + (stride - 1) / 2.0
        yx = yx[np.argsort(xy_in @ axis, kind="stable")]
        values = own[:, yx[:, 0], yx[:, 1]].T                   # candidates x levels
        log_map = np.log(np.clip(agnostic, 1e-10, None))
        for i, j in align(values):
            x, y = _refine(log_map, *yx[i])
            pts[ks[j]] = (x * stride + (stride - 1) / 2.0, y * stride + (stride - 1) / 2.0)
            pk[ks[j]] = agnostic[tuple(yx[i])]
    return pts, pk
