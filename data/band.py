"""The fixed-height band ("40 mm mask"), the neighbour shift and slice choice (docs/METHOD.md §2).

Pure functions on arrays; everything that acts on images works on NumPy arrays *and* torch tensors
and is batched: per-sample ``x1``, ``x2``, ``band_top`` are 1-D arrays of length B, images are
``(B, H, W)`` or ``(B, C, H, W)`` (NumPy or torch). The GAN dataset uses them one sample at a time
(B = 1); the 3D-synthesis stage uses them on whole stacks of slices at once.

Band rule (docs/METHOD.md §2): target rows ``[x1, x2)``, centre ``m = (x1 + x2) // 2``,
``a = clamp(m - band // 2, 0, H - band)``. The shifted input ``A`` has

* rows ``r < a``          <- B row ``r + (x1 - a)`` (context above the target, ending at x1 - 1),
* rows ``a <= r < a+band`` <- the band (hole; filled with ``band_value``),
* rows ``r >= a + band``   <- B row ``x2 + (r - a - band)`` (context below, starting at x2).

So no target row ``[x1, x2)`` ever reaches ``A``. Source rows outside ``[0, H)`` take ``fill``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage

HOLE = -1    # source-row code: inside the band
OUTSIDE = -2  # source-row code: beyond the image (fill value)

MIN_TARGET_MM2 = 50.0  # original: 50 px at 1 mm (components smaller than this are removed)


def band_rows_from_mm(band_mm: float, spacing_si_mm: float) -> int:
    """Band height in rows: ``round(band_mm / spacing_si_mm)`` (>= 1)."""
    if spacing_si_mm <= 0:
        raise ValueError(f"SI spacing must be positive, got {spacing_si_mm}")
    return max(1, int(round(float(band_mm) / float(spacing_si_mm))))


def band_top(x1, x2, band_rows: int, height: int):
    """Top row ``a`` of the band for target rows ``[x1, x2)`` (scalars or arrays, ints)."""
    x1 = np.asarray(x1, dtype=np.int64)
    x2 = np.asarray(x2, dtype=np.int64)
    m = (x1 + x2) // 2
    a = np.clip(m - band_rows // 2, 0, max(0, height - band_rows))
    return a if a.ndim else int(a)


def context_source_rows(x1, x2, a, band_rows: int, height: int) -> np.ndarray:
    """Source-row table ``(B, H)`` int64: for each output row of ``A``, the row of ``B`` it copies,
    or :data:`HOLE` (band) / :data:`OUTSIDE` (beyond the image)."""
    x1 = np.atleast_1d(np.asarray(x1, dtype=np.int64))[:, None]
    x2 = np.atleast_1d(np.asarray(x2, dtype=np.int64))[:, None]
    a = np.atleast_1d(np.asarray(a, dtype=np.int64))[:, None]
    r = np.arange(height, dtype=np.int64)[None, :]
    above = r + (x1 - a)
    below = x2 + (r - a - band_rows)
    src = np.where(r < a, above, below)
    src = np.where((src < 0) | (src >= height), OUTSIDE, src)
    return np.where((r >= a) & (r < a + band_rows), HOLE, src)


def band_mask_rows(a, band_rows: int, height: int) -> np.ndarray:
    """``(B, H)`` float32: 1 on rows ``[a, a + band_rows)``."""
    a = np.atleast_1d(np.asarray(a, dtype=np.int64))[:, None]
    r = np.arange(height)[None, :]
    return ((r >= a) & (r < a + band_rows)).astype(np.float32)


def apply_source_rows(images, src_rows, fill: float = 0.0, band_value: float = 0.0):
    """Rebuild images from a source-row table.

    images: ``(B, H, W)`` or ``(B, C, H, W)`` NumPy array or torch tensor; src_rows: ``(B, H)`` from
    :func:`context_source_rows`. Rows coded HOLE take ``band_value``, OUTSIDE take ``fill``.
    """
    src = np.asarray(src_rows)
    idx = np.clip(src, 0, None)
    is_torch = hasattr(images, "gather")
    if is_torch:
        import torch
        x = images if images.dim() == 4 else images[:, None]
        b, c, h, w = x.shape
        ind = torch.as_tensor(idx, device=x.device).view(b, 1, h, 1).expand(b, c, h, w)
        out = torch.gather(x, 2, ind)
        code = torch.as_tensor(src, device=x.device).view(b, 1, h, 1)
        out = torch.where(code == HOLE, torch.full_like(out, band_value), out)
        out = torch.where(code == OUTSIDE, torch.full_like(out, fill), out)
        return out if images.dim() == 4 else out[:, 0]
    x = np.asarray(images)
    x4 = x if x.ndim == 4 else x[:, None]
    b, c, h, w = x4.shape
    out = np.take_along_axis(x4, idx.reshape(b, 1, h, 1), axis=2)
    code = src.reshape(b, 1, h, 1)
    out = np.where(code == HOLE, np.asarray(band_value, dtype=x.dtype), out)
    out = np.where(code == OUTSIDE, np.asarray(fill, dtype=x.dtype), out)
    return out if x.ndim == 4 else out[:, 0]


def shift_context(images, x1, x2, band_rows: int, fill: float = 0.0, band_value: float = 0.0):
    """Band + neighbour shift in one call. Returns ``(shifted, a (B,), band_mask (B, H))``."""
    h = images.shape[-2]
    a = np.atleast_1d(band_top(x1, x2, band_rows, h))
    src = context_source_rows(x1, x2, a, band_rows, h)
    return apply_source_rows(images, src, fill, band_value), a, band_mask_rows(a, band_rows, h)


# ---------------------------------------------------------------- target masks and slice choice

def min_target_pixels(pixel_area_mm2: float) -> int:
    """Pixel threshold for the 50 mm^2 rule (50 px at 1 mm, as in the original)."""
    return max(1, int(round(MIN_TARGET_MM2 / max(pixel_area_mm2, 1e-6))))


def clean_mask(mask2d: np.ndarray, min_px: int) -> np.ndarray:
    """Remove 8-connected components smaller than ``min_px`` from a 2D boolean mask."""
    mask2d = np.asarray(mask2d, dtype=bool)
    lab, n = ndimage.label(mask2d, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return mask2d
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def target_rows(mask2d: np.ndarray) -> Tuple[int, int]:
    """``(x1, x2)``: first row with target pixels and one past the last. ``(0, 0)`` if empty."""
    rows = np.flatnonzero(np.asarray(mask2d).any(axis=-1))
    if rows.size == 0:
        return 0, 0
    return int(rows[0]), int(rows[-1]) + 1


def slice_is_valid(clean2d: np.ndarray, min_px: int, band_rows: int) -> bool:
    """Reject rule: fewer than ``min_px`` target pixels, or SI extent >= ``band_rows``."""
    if int(clean2d.sum()) < min_px:
        return False
    x1, x2 = target_rows(clean2d)
    return (x2 - x1) < band_rows


def central_candidates(lo: int, hi: int, fraction: float = 0.8) -> Tuple[np.ndarray, np.ndarray]:
    """Slices of the central ``fraction`` of the extent ``[lo, hi)`` and triangular weights that
    peak at the centre ``c = (lo + hi - 1) / 2`` and fall linearly to half the centre's weight at
    the edge of the central range (``1 - 0.5 |z - c| / half``, the authors' sampling), normalised
    to sum 1. Returns ``(indices, weights)``."""
    length = hi - lo
    if length <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    c = (lo + hi - 1) / 2.0
    half = max(0.5, fraction * length / 2.0)
    z = np.arange(lo, hi)
    z = z[np.abs(z - c) <= half]
    if z.size == 0:
        z = np.array([int(round(c))])
    w = np.maximum(1.0 - 0.5 * np.abs(z - c) / half, 1e-6)
    return z.astype(np.int64), w / w.sum()


def slice_ratio(z, lo: int, hi: int):
    """``2 |z - c| / L`` with ``c`` the centre and ``L = hi - lo`` the target's extent (0 at the
    centre, ~1 at the edge). Scalars or arrays."""
    length = max(hi - lo, 1)
    c = (lo + hi - 1) / 2.0
    r = 2.0 * np.abs(np.asarray(z, dtype=np.float64) - c) / length
    return float(r) if r.ndim == 0 else r


def choose_slice(valid: np.ndarray, weights: np.ndarray, rng: np.random.Generator,
                 max_draws: int = 100) -> int:
    """Draw a candidate index with ``weights``, redrawing rejected ones (``valid`` False) at most
    ``max_draws`` times; after that, draw directly from the valid ones (same distribution
    conditioned on validity). Returns -1 only if no candidate is valid."""
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return -1
    for _ in range(max_draws):
        i = int(rng.choice(len(weights), p=weights))
        if valid[i]:
            return i
    w = np.where(valid, weights, 0.0)
    return int(rng.choice(len(w), p=w / w.sum()))


def deterministic_slice(valid: np.ndarray, candidates: np.ndarray, centre: float) -> int:
    """Eval/test choice: the valid candidate nearest the centre (ties -> the lower index)."""
    valid = np.asarray(valid, dtype=bool)
    if not valid.any():
        return -1
    d = np.where(valid, np.abs(candidates - centre), np.inf)
    return int(np.argmin(d))

