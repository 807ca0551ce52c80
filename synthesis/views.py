"""How a 3D block is cut into the 2D images a generator sees, and put back together.

Block axes (docs/METHOD.md §0): axis0 = SI (cranial at row 0), axis1 = AP (anterior at 0), axis2 = LR.

* ``sagittal``: slice ``z`` is ``block[:, :, z]`` -> ``(SI, AP)`` image.
* ``coronal``: slice ``y`` is ``block[:, y, :]`` -> ``(SI, LR)`` image, pasted into the centre of a
  canvas of the model's width (padding: image -1, labels 0, CAM 0).

Both follow ``training.dataset.HealthiVertDataset._slice`` exactly, so inference sees what training
saw (the checkpoint's ``slice_fit``): a block taller than the model's image is centre-cropped
(``fit='crop'``: same mm per pixel, the target stays at the centre) or resampled in-plane by
``size / H`` (``fit='resize'``: images and CAM bilinear with antialiasing, labels nearest with the
same index rule); smaller blocks are always resampled. :meth:`SliceGrid.put` undoes this when
writing a result back: resampled slices are resampled back (bilinear / nearest); with a crop only
the cropped window is written, the rest of the slice stays real.

Stacks are ``(N, size, size)`` arrays; one call moves all requested slices of a block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from data.sample import IMAGE_FILL

VIEWS = ("sagittal", "coronal")
CORONAL_BANDS = ("slice", "canvas")  # band mask columns of coronal slices (training option)


def trained_coronal_band(options) -> str:
    """The ``coronal_band`` a run was trained with, from its options; runs that predate the option
    spread the band over the whole canvas."""
    return str((options or {}).get("coronal_band", "canvas"))


def _resize_stack(x: np.ndarray, h: int, w: int, antialias: bool) -> np.ndarray:
    """Bilinear resize of a stack ``(N, H0, W0)`` float -> ``(N, h, w)`` float32."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=antialias)[:, 0].numpy()


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """The dataset's nearest-neighbour index rule: output pixel i <- input floor((i + .5) n_in / n_out)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), n_in - 1)


@dataclass(frozen=True)
class SliceGrid:
    """The mapping between one block's slices of a view and model images of ``size`` x ``size``."""

    view: str               # 'sagittal' | 'coronal'
    size: int               # model image size (rows = columns)
    block_shape: Tuple[int, int, int]
    spacing_mm: Tuple[float, float, float]
    fit: str = "crop"       # 'crop' | 'resize' (the training option ``slice_fit``)

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r} (expected one of {VIEWS})")
        if self.fit not in ("crop", "resize"):
            raise ValueError(f"unknown fit {self.fit!r} (expected crop or resize)")
        if self.new_w > self.size:
            raise ValueError(f"block of shape {self.block_shape} does not fit a {self.size} canvas")

    @property
    def axis(self) -> int:
        """Block axis that is sliced (2 = LR for sagittal, 1 = AP for coronal)."""
        return 2 if self.view == "sagittal" else 1

    @property
    def full_h(self) -> int:  # slice rows in the block
        return int(self.block_shape[0])

    @property
    def full_w(self) -> int:  # slice columns in the block
        return int(self.block_shape[1] if self.view == "sagittal" else self.block_shape[2])

    @property
    def cropped(self) -> bool:
        return self.fit == "crop" and self.full_h >= self.size

    @property
    def r0(self) -> int:  # first block row of the window
        return (self.full_h - self.size) // 2 if self.cropped else 0

    @property
    def col0(self) -> int:  # first block column of the window
        return max(0, (self.full_w - self.size) // 2) if self.cropped else 0

    @property
    def h(self) -> int:  # window rows
        return self.size if self.cropped else self.full_h

    @property
    def w(self) -> int:  # window columns
        return min(self.size, self.full_w - self.col0) if self.cropped else self.full_w

    @property
    def new_w(self) -> int:  # window columns at model resolution
        if self.view == "sagittal" or self.w >= self.size:
            return self.size
        return max(1, int(round(self.w * self.size / self.h)))

    @property
    def c0(self) -> int:  # first canvas column of the slice
        return (self.size - self.new_w) // 2

    def band_cols(self, coronal_band: str):
        """Columns ``(c0, c1)`` of the band (hole) mask on the canvas: the slice's own columns for
        a coronal slice narrower than the canvas under ``coronal_band='slice'`` (the training
        option of the same name), None (every column) otherwise."""
        if self.view != "coronal" or coronal_band == "canvas" or self.new_w >= self.size:
            return None
        return self.c0, self.c0 + self.new_w

    @property
    def resampled(self) -> bool:
        return (self.h, self.w) != (self.size, self.new_w)

    @property
    def pixel_mm(self) -> Tuple[float, float]:
        """(row, column) pixel size in mm at model resolution."""
        col = self.spacing_mm[1] if self.view == "sagittal" else self.spacing_mm[2]
        return float(self.spacing_mm[0]) * self.h / self.size, float(col) * self.w / self.new_w

    @property
    def pixel_area_mm2(self) -> float:
        r, c = self.pixel_mm
        return r * c

    def slices_with(self, mask3d: np.ndarray) -> np.ndarray:
        """Indices (ascending) of the slices in which ``mask3d`` has any voxel."""
        other = tuple(a for a in range(3) if a != self.axis)
        return np.flatnonzero(np.asarray(mask3d, dtype=bool).any(axis=other))

    def _window(self):
        return slice(self.r0, self.r0 + self.h), slice(self.col0, self.col0 + self.w)

    def _raw(self, block: np.ndarray, idx: np.ndarray) -> np.ndarray:
        sl = block[:, :, idx] if self.axis == 2 else block[:, idx, :]
        rows, cols = self._window()
        return np.moveaxis(sl, self.axis, 0)[:, rows, cols]  # (N, h, w)

    def take(self, block: np.ndarray, indices, kind: str) -> np.ndarray:
        """Slices ``indices`` of ``block`` at model resolution, ``(N, size, size)``.
        ``kind``: 'image' (float32, pad -1), 'cam' (float32, pad 0) or 'label' (pad 0, nearest)."""
        idx = np.asarray(indices, dtype=np.int64)
        raw = self._raw(block, idx)
        if kind == "label":
            out = raw[:, _nearest_index(self.size, self.h)][:, :, _nearest_index(self.new_w, self.w)]
            fill = 0
        else:
            out = _resize_stack(raw, self.size, self.new_w, True) if self.resampled \
                else raw.astype(np.float32)
            fill = IMAGE_FILL if kind == "image" else 0.0
        if self.new_w == self.size:
            return np.ascontiguousarray(out)
        canvas = np.full((idx.size, self.size, self.size), fill, dtype=out.dtype)
        canvas[:, :, self.c0:self.c0 + self.new_w] = out
        return canvas

    def put(self, block: np.ndarray, indices, stack: np.ndarray, kind: str) -> None:
        """Write a model-resolution stack ``(N, size, size)`` into ``block`` at ``indices`` (in
        place), cropping the canvas and resampling back to the block grid when needed."""
        idx = np.asarray(indices, dtype=np.int64)
        x = np.asarray(stack)[:, :, self.c0:self.c0 + self.new_w]
        if self.resampled:
            if kind == "label":
                x = x[:, _nearest_index(self.h, self.size)][:, :, _nearest_index(self.w, self.new_w)]
            else:
                x = _resize_stack(x, self.h, self.w, False)
        x = x.astype(block.dtype, copy=False)
        rows, cols = self._window()
        if self.axis == 2:
            block[rows, cols, idx] = np.moveaxis(x, 0, 2)
        else:
            block[rows, idx, cols] = np.moveaxis(x, 0, 1)
