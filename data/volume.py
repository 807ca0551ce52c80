"""A 3D image that carries its voxels together with its affine (voxel index -> RAS+ mm).

Spacing, orientation codes and reorientation are derived from the affine, so they never
disagree. Reading and writing live in :mod:`data.io`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import nibabel as nib
import numpy as np
from nibabel import orientations as nio


@dataclass
class Volume:
    """``array``: 3D voxels, ``affine``: 4 x 4 voxel-index -> RAS+ world (mm)."""

    array: np.ndarray
    affine: np.ndarray
    path: Optional[str] = field(default=None, compare=False)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self):
        return self.array.shape

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along array axes 0, 1, 2."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def orientation(self) -> str:
        """Orientation codes, e.g. ``'RAS'``: the direction each array axis points to."""
        return "".join(nio.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray) -> "Volume":
        """Same geometry, new voxels (shape must match)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} != {self.array.shape}")
        return Volume(array, self.affine.copy(), self.path)

    def reorient(self, codes: str) -> "Volume":
        """Return the same image with array axes pointing to ``codes`` (e.g. ``'RAS'``, ``'PIR'``).
        Exact (flips and transposes only); the world position of every voxel is unchanged."""
        codes = codes.upper()
        start = nio.io_orientation(self.affine)
        end = nio.axcodes2ornt(tuple(codes))
        xform = nio.ornt_transform(start, end)
        arr = nio.apply_orientation(self.array, xform)
        aff = self.affine @ nio.inv_ornt_aff(xform, self.array.shape)
        return Volume(np.ascontiguousarray(arr), aff, self.path)

    def canonical(self) -> "Volume":
        """Reoriented to RAS."""
        return self.reorient("RAS")

    def world_to_voxel(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) RAS mm -> (N, 3) continuous voxel indices."""
        pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        inv = np.linalg.inv(self.affine)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices -> (N, 3) RAS mm."""
        idx = np.asarray(index, dtype=np.float64).reshape(-1, 3)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def same_grid(self, other: "Volume", atol: float = 1e-3) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


def affine_from_spacing(spacing: Sequence[float], orientation: str = "RAS",
                        origin: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """An axis-aligned affine with the given voxel size (mm) and orientation codes."""
    ornt = nio.axcodes2ornt(tuple(orientation.upper()))
    aff = np.eye(4)
    for ax, (world_axis, flip) in enumerate(ornt):
        aff[:3, ax] = 0.0
        aff[int(world_axis), ax] = float(spacing[ax]) * flip
    aff[:3, 3] = origin
    return aff


def to_nifti(vol: Volume, dtype=None) -> nib.Nifti1Image:
    arr = vol.array if dtype is None else vol.array.astype(dtype)
    img = nib.Nifti1Image(arr, vol.affine)
    img.set_qform(vol.affine, code=1)
    img.set_sform(vol.affine, code=1)
    img.header.set_xyzt_units("mm")
    return img
