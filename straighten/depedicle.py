"""De-pedicle: keep the vertebral body, remove the arch, in the straightened frame.

The straightened label array is (SI, AP, LR) with AP increasing posteriorly. For each label, walk
posteriorly along the mid-LR column from the centre line; the first AP row where the label is
absent is the spinal canal. Per SI row that gives one canal row; the label's canal row is their
median -- unless the rows split into two groups (median more than ``gap`` voxels anterior of the
third-largest value): in a severe biconcave fracture many rows through the depressed centre end
early, before the posterior wall, and the median would cut off the posterior third of the body;
then the median of the posterior group is used. The label is deleted everywhere at or posterior
to that row (all SI rows, all LR columns).
The body plus short pedicle stubs remain. Because it works in the block frame (anterior always
at AP row 0), it is correct whatever the orientation of the input scan.

``start='curve'`` walks from the centre line (the curve passes through the body centroid);
``start='anterior'`` walks from the anterior-most solid run of the column instead (used when the
curve passes through whole-vertebra centroids, which may lie in the canal or the arch).
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np


def _first_false(col_2d: np.ndarray) -> np.ndarray:
    """Per row of a boolean (R, N) array, index of the first False (N if none)."""
    n = col_2d.shape[1]
    idx = np.argmin(col_2d, axis=1)
    idx[col_2d.all(axis=1)] = n
    return idx


def canal_row(present_rows_ap: np.ndarray, centre_ap: int, start: str = "curve",
              min_run: int = 3, body_tol: int = 5) -> Optional[int]:
    """AP index of the canal for one label from its mid-LR column ``present_rows_ap``
    (SI, AP) bool. None when the label never reaches the column. ``start='anterior'`` uses the
    SI rows whose first solid run starts within ``body_tol`` voxels of the most anterior one."""
    col = present_rows_ap
    if start == "curve":
        rows = col[:, centre_ap]
        if rows.any():
            tail = col[rows, centre_ap:]
            return int(_canal_of_rows(_first_false(tail)) + centre_ap)
    # anterior-most run of at least `min_run` voxels in each SI row; only rows whose run starts
    # near the most anterior start are body rows (above/below a flat body the first run is arch)
    starts, canals = [], []
    for row in col[col.any(axis=1)]:
        run_start = _first_solid(row, min_run)
        if run_start is None:
            continue
        tail = row[run_start:]
        gap = np.flatnonzero(~tail)
        starts.append(run_start)
        canals.append(run_start + (gap[0] if gap.size else len(tail)))
    if not canals:
        return None
    starts, canals = np.array(starts), np.array(canals)
    body_rows = starts <= starts.min() + body_tol
    return int(_canal_of_rows(canals[body_rows]))


def _canal_of_rows(canals: np.ndarray, gap: int = 5, cluster: int = 3) -> float:
    """One canal row from per-SI-row candidates: the median, or the median of the posterior
    group when the median lies more than ``gap`` voxels anterior of the third-largest value."""
    v = np.sort(np.asarray(canals))[::-1]
    top = v[min(2, len(v) - 1)]
    med = float(np.median(v))
    if top - med <= gap:
        return med
    return float(np.median(v[v >= top - cluster]))


def _first_solid(row: np.ndarray, min_run: int) -> Optional[int]:
    """Start of the first run of >= ``min_run`` True values in a 1D bool array."""
    if min_run <= 1:
        nz = np.flatnonzero(row)
        return int(nz[0]) if nz.size else None
    win = np.convolve(row.astype(np.int32), np.ones(min_run, np.int32), mode="valid")
    hits = np.flatnonzero(win == min_run)
    return int(hits[0]) if hits.size else None


def depedicle(labels: np.ndarray, centre_ap: int, centre_lr: int,
              only: Optional[Iterable[int]] = None, start: str = "curve",
              lr_halfwidth: int = 0) -> np.ndarray:
    """Copy of the straightened label array (SI, AP, LR) with every label's arch removed.
    ``lr_halfwidth`` > 0 uses the union of the mid columns ``centre_lr +- lr_halfwidth``."""
    out = labels.copy()
    ids = [int(l) for l in np.unique(labels) if l != 0] if only is None else list(only)
    lo, hi = max(centre_lr - lr_halfwidth, 0), min(centre_lr + lr_halfwidth + 1, labels.shape[2])
    mid = labels[:, :, lo:hi]
    for lab in ids:
        col = (mid == lab).any(axis=2)
        canal = canal_row(col, centre_ap, start)
        if canal is None:
            continue
        sub = out[:, canal:, :]
        sub[sub == lab] = 0
    return out
