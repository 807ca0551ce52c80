"""Connected-component rules on boolean masks shared by synthesis and measurement."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a 3D bool mask (the mask itself when it is one)."""
    m = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(m, structure=np.ones((3,) * m.ndim, bool))
    if n <= 1:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def count_components(mask: np.ndarray, min_fraction: float = 0.0) -> int:
    """Number of 26-connected components holding at least ``min_fraction`` of the mask's voxels."""
    m = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(m, structure=np.ones((3,) * m.ndim, bool))
    if n == 0:
        return 0
    sizes = np.bincount(lab.ravel())[1:]
    return int((sizes >= min_fraction * sizes.sum()).sum())
