"""The one place where HU values meet network units.

The network sees a CT window (default [-300, 800] HU, the original's) mapped linearly to [-1, 1].
PNG export uses the same window mapped to [0, 255]; never measure anything on those.
"""
from __future__ import annotations

import numpy as np

HU_WINDOW = (-300.0, 800.0)  # (low, high) HU, the original's window


def hu_to_unit(hu, window=HU_WINDOW):
    """HU -> [-1, 1] (clipped to the window). Works on NumPy arrays and torch tensors."""
    lo, hi = window
    x = (hu - lo) / (hi - lo) * 2.0 - 1.0
    return x.clamp(-1.0, 1.0) if hasattr(x, "clamp") else np.clip(x, -1.0, 1.0)


def unit_to_hu(x, window=HU_WINDOW):
    """[-1, 1] -> HU (inverse of :func:`hu_to_unit` inside the window)."""
    lo, hi = window
    return (x + 1.0) / 2.0 * (hi - lo) + lo


def hu_to_uint8(hu, window=HU_WINDOW) -> np.ndarray:
    """HU -> [0, 255] uint8 for display only."""
    lo, hi = window
    x = (np.asarray(hu, dtype=np.float32) - lo) / (hi - lo)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def unit_to_uint8(x) -> np.ndarray:
    """[-1, 1] -> [0, 255] uint8 for display only."""
    x = np.asarray(x, dtype=np.float32)
    return (np.clip((x + 1.0) / 2.0, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
