"""The authors' RHLV rule, reproduced for comparability with the published numbers
(``--height_rule original`` of ``RHLV_quantification.py``; ``reproduce_paper.sh`` uses it for the
paper row). Read from their ``evaluation/RHLV_quantification.py``; every step, quirks included:

1. **LR slab from the real body**: ``c = int(mean LR index of the real body's voxels)``,
   ``n = (max - min LR index) // 5``; slices ``[c - n, c + n)`` (empty when the body spans fewer
   than 5 slices, which gives heights 0 and RHLV 0).
2. Per slice holding both bodies, **thirds of the synthetic body's AP extent in that slice**:
   ``t1 = int(y0 + (y1 - y0) / 3)``, ``t2 = int(y0 + 2 (y1 - y0) / 3)``; the anterior part is every
   column before ``t1`` (from column 0), the middle ``[t1, t2)``, the posterior ``t2`` onwards.
3. Column heights = foreground counts along SI, in voxels, for both bodies on those columns.
4. **Per-slice, per-part rescale**: when the real part's tallest column exceeds the synthetic
   part's, the synthetic part's columns are scaled by their ratio; the synthetic centre column by
   the whole slice's ratio.
5. **Each body filtered by its own centre column**: the column at ``int(mean AP index)`` of the
   body's pixels in the slice; columns taller than ``threshold`` x its height are kept (0.7 in
   their runs).
6. Means over the kept columns of all slab slices (0 when none); ``RHLV = (H_syn - H_ori) /
   (H_syn + 1e-6)``.

Heights are in voxels, as theirs (1 mm blocks); ``measure_original`` returns them in mm too.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

PARTS = ("all", "a", "m", "p")


def _parts(mask2d: np.ndarray, t1: int, t2: int) -> Dict[str, np.ndarray]:
    h = np.count_nonzero(mask2d, axis=0).astype(np.float64)
    return {"all": h, "a": h[:t1], "m": h[t1:t2], "p": h[t2:]}


def _centre_height(mask2d: np.ndarray) -> float:
    cols = np.nonzero(mask2d)[1]
    return float(np.count_nonzero(mask2d[:, int(np.mean(cols))]))


def original_rhlv(syn_mask: np.ndarray, ori_mask: np.ndarray, threshold: float = 0.7,
                  length_divisor: int = 5) -> Dict[str, Dict[str, float]]:
    """``{"H_syn": {part: voxels}, "H_ori": {...}, "RHLV": {...}}`` for parts all/a/m/p."""
    syn = np.asarray(syn_mask, bool)
    ori = np.asarray(ori_mask, bool)
    kept = {s: {p: [] for p in PARTS} for s in ("syn", "ori")}
    z = np.nonzero(ori)[2]
    if z.size:
        c, n = int(np.mean(z)), (int(z.max()) - int(z.min())) // int(length_divisor)
        for k in range(max(c - n, 0), c + n):
            if k >= syn.shape[2]:
                break
            s2, o2 = syn[:, :, k], ori[:, :, k]
            if not (s2.any() and o2.any()):
                continue
            cols = np.nonzero(s2)[1]
            y0, y1 = int(cols.min()), int(cols.max())
            t1, t2 = int(y0 + (y1 - y0) / 3), int(y0 + 2 * (y1 - y0) / 3)
            hs, ho = _parts(s2, t1, t2), _parts(o2, t1, t2)
            cs, co = _centre_height(s2), _centre_height(o2)
            for p in PARTS:
                if hs[p].size and ho[p].size and ho[p].max() > hs[p].max():
                    ratio = ho[p].max() / (hs[p].max() + 1e-6)
                    hs[p] = hs[p] * ratio
                    if p == "all":
                        cs = cs * ratio
            for p in PARTS:
                kept["syn"][p].extend(hs[p][hs[p] > cs * threshold])
                kept["ori"][p].extend(ho[p][ho[p] > co * threshold])
    mean = lambda v: float(np.mean(v)) if len(v) else 0.0  # noqa: E731
    h_syn = {p: mean(kept["syn"][p]) for p in PARTS}
    h_ori = {p: mean(kept["ori"][p]) for p in PARTS}
    return {"H_syn": h_syn, "H_ori": h_ori,
            "RHLV": {p: (h_syn[p] - h_ori[p]) / (h_syn[p] + 1e-6) for p in PARTS}}


def measure_original(syn_mask: np.ndarray, ori_mask: np.ndarray, spacing_mm: Sequence[float],
                     threshold: float = 0.7) -> dict:
    """:func:`original_rhlv` in the shape of :func:`evaluation.heights.measure_pair` (A/M/P arrays,
    heights in mm = voxels x SI spacing)."""
    r = original_rhlv(syn_mask, ori_mask, threshold)
    sy = float(spacing_mm[0])
    return {"H_syn": np.array([r["H_syn"][p] for p in "amp"]) * sy,
            "H_ori": np.array([r["H_ori"][p] for p in "amp"]) * sy,
            "RHLV": np.array([r["RHLV"][p] for p in "amp"]), "scale": 1.0, "shift_vox": (0, 0)}
