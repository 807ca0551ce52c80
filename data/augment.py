"""Optional training augmentation that keeps the band logic valid (off by default).

TorchIO style: :func:`draw_augment` draws the parameters from a seeded generator, and
:func:`apply_augment` is the deterministic twin that applies them, so a run replays exactly.
Both are applied to the 2D slice *before* the band is placed, so the band, the shift and every
mask are computed on the augmented slice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    scale: float = 1.0      # intensity gain in unit space (about the window centre 0)
    offset: float = 0.0     # intensity offset in unit space ([-1, 1] = the HU window)
    shift_rows: int = 0     # in-plane shift, rows (SI), positive = down
    shift_cols: int = 0     # in-plane shift, columns, positive = right

    @property
    def identity(self) -> bool:
        return self == AugmentParams()


def draw_augment(rng: np.random.Generator, intensity: float = 0.0,
                 shift_px: int = 0) -> AugmentParams:
    """Draw parameters: gain in ``[1 - intensity, 1 + intensity]``, offset in
    ``[-intensity/2, intensity/2]`` (unit space), integer shifts in ``[-shift_px, shift_px]``."""
    if intensity <= 0 and shift_px <= 0:
        return AugmentParams()
    scale = float(rng.uniform(1 - intensity, 1 + intensity)) if intensity > 0 else 1.0
    offset = float(rng.uniform(-intensity / 2, intensity / 2)) if intensity > 0 else 0.0
    dr, dc = (rng.integers(-shift_px, shift_px + 1, size=2) if shift_px > 0 else (0, 0))
    return AugmentParams(scale, offset, int(dr), int(dc))


def _shift2d(x: np.ndarray, dr: int, dc: int, fill) -> np.ndarray:
    out = np.full_like(x, fill)
    h, w = x.shape
    src_r = slice(max(0, -dr), min(h, h - dr))
    dst_r = slice(max(0, dr), min(h, h + dr))
    src_c = slice(max(0, -dc), min(w, w - dc))
    dst_c = slice(max(0, dc), min(w, w + dc))
    out[dst_r, dst_c] = x[src_r, src_c]
    return out


def apply_augment(p: AugmentParams, image: np.ndarray, labels: np.ndarray,
                  cam: Optional[np.ndarray], fill: float = -1.0
                  ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Apply ``p`` to a 2D slice: image ``(H, W)`` in [-1, 1], labels ``(H, W)`` int, cam or None.
    Returns new arrays (inputs untouched). Intensity is clipped back to [-1, 1]."""
    if p.identity:
        return image, labels, cam
    img = np.clip(image * p.scale + p.offset, -1.0, 1.0).astype(image.dtype)
    if p.shift_rows or p.shift_cols:
        img = _shift2d(img, p.shift_rows, p.shift_cols, fill)
        labels = _shift2d(labels, p.shift_rows, p.shift_cols, 0)
        cam = None if cam is None else _shift2d(cam, p.shift_rows, p.shift_cols, 0.0)
    return img, labels, cam
