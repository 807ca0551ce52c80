"""Resampling between a scan's own grid and the axis-aligned RAS grids the networks work on.

Every stage works on a canonical grid: array axes point R, A, S, isotropic voxels of the stage's
spacing, covering the scan's extent. Results go back to the scan's own voxels (any orientation,
any spacing) by sampling at each of its voxels' world positions, so the output grid is the input
grid exactly."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from data.volume import Volume

HU_SCALE = 2048.0                      # Payer et al.: intensity / 2048 clamped to [-1, 1]


@dataclass
class Grid:
    """An axis-aligned RAS grid: ``affine`` maps voxel index -> world mm."""
    shape: tuple
    affine: np.ndarray

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])

    def world_to_index(self, pts_mm: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts_mm, np.float64).reshape(-1, 3)
        return (pts - self.affine[:3, 3]) / np.diag(self.affine)[:3]

    def index_to_world(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, np.float64).reshape(-1, 3)
        return idx * np.diag(self.affine)[:3] + self.affine[:3, 3]


def scan_corners_mm(vol: Volume) -> np.ndarray:
    """(8, 3) RAS mm of the corner voxel centres of ``vol``."""
    corners = np.array([[i, j, k] for i in (0, vol.shape[0] - 1) for j in (0, vol.shape[1] - 1)
                        for k in (0, vol.shape[2] - 1)], np.float64)
    return vol.voxel_to_world(corners)


def canonical_grid(vol: Volume, spacing: float) -> Grid:
    """The RAS grid of ``spacing`` mm covering every voxel centre of ``vol``."""
    w = scan_corners_mm(vol)
    lo, hi = w.min(0), w.max(0)
    shape = tuple(int(np.floor((h - l) / spacing + 1e-6)) + 1 for l, h in zip(lo, hi))
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = lo
    return Grid(shape, aff)


def _sample(src_array: np.ndarray, src_affine: np.ndarray, dst_shape, dst_affine: np.ndarray,
            order: int, cval: float) -> np.ndarray:
    """Values of ``src`` at the voxel centres of the destination grid."""
    m = np.linalg.inv(src_affine) @ dst_affine
    return ndimage.affine_transform(src_array, m[:3, :3], offset=m[:3, 3], output_shape=tuple(dst_shape),
                                    order=order, mode="constant", cval=cval, prefilter=False)


def to_grid(vol: Volume, grid: Grid, order: int = 1, cval: float = 0.0, smooth_mm: float = 0.0) -> np.ndarray:
    """``vol`` sampled on ``grid`` (order 1 for images, 0 for label maps). Images are smoothed
    first (Gaussian, ``smooth_mm`` plus what the downsampling needs against aliasing)."""
    arr = vol.array
    if order > 0:
        arr = arr.astype(np.float32)
        sp = vol.spacing
        sig_mm = np.sqrt(smooth_mm ** 2 + np.maximum(grid.spacing ** 2 - sp ** 2, 0.0) / 4.0)
        sig = sig_mm / sp
        if np.any(sig > 0.3):
            arr = ndimage.gaussian_filter(arr, sig, mode="nearest")
    return _sample(arr, vol.affine, grid.shape, grid.affine, order, cval)


def to_scan(array: np.ndarray, grid: Grid, ref: Volume, order: int = 1, cval: float = 0.0,
            box=None) -> np.ndarray:
    """An array on ``grid`` sampled at the voxels of ``ref`` (or of its sub-box ``box``, a tuple of
    slices), the way back to the scan's own grid."""
    if box is None:
        box = tuple(slice(0, n) for n in ref.shape)
    start = np.array([b.start for b in box], np.float64)
    shape = tuple(b.stop - b.start for b in box)
    sub_aff = ref.affine.copy()
    sub_aff[:3, 3] = ref.affine[:3, 3] + ref.affine[:3, :3] @ start
    return _sample(array, grid.affine, shape, sub_aff, order, cval)


def normalise_ct(hu: np.ndarray) -> np.ndarray:
    """HU / 2048 clamped to [-1, 1] (float32)."""
    return np.clip(np.asarray(hu, np.float32) / HU_SCALE, -1.0, 1.0)


def box_in_scan(ref: Volume, lo_mm: np.ndarray, hi_mm: np.ndarray):
    """The slices of ``ref``'s voxels whose world positions fall in the RAS box [lo, hi] (None when
    the box misses the scan)."""
    corners = np.array([[a, b, c] for a in (lo_mm[0], hi_mm[0]) for b in (lo_mm[1], hi_mm[1])
                        for c in (lo_mm[2], hi_mm[2])])
    idx = ref.world_to_voxel(corners)
    lo = np.maximum(np.floor(idx.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(0)).astype(int) + 1, np.array(ref.shape))
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
