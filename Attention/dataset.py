"""Classifier inputs from straightened blocks, and slice / block datasets with class balance.

Block layout (layout/blocks.py): ``<root>/CT/<key>.nii.gz`` (HU), ``<root>/label/<key>.nii.gz``
(VerSe ids, bodies only), shape (SI, AP, LR) = (256, 256, 64) by default, target at the centre.

Network input (shared by training and CAM, so both see the same thing):

1. HU -> [-1, 1] with :func:`data.intensity.hu_to_unit`;
2. optionally (``margin_mm``) everything outside the target body's bounding box grown by
   ``margin_mm`` is set to -1 (the "target neighbourhood" input);
3. optionally a central ``crop`` x ``crop`` (SI x AP) window of the block (the target is at the
   block centre) - default: the whole slice;
4. resized (bilinear with antialiasing; 3D: area averaging / trilinear) to ``image_size`` x ``image_size``. 2D: one sagittal slice per LR
   index, (S, S) each; 3D: the whole block to (S, S, round(D * S / crop)).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, WeightedRandomSampler

from data.intensity import hu_to_unit
from data.splits import parse_key
from layout.blocks import block_keys, block_paths, load_block
from utils.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preproc:
    """How a block becomes network input. ``crop``: central SI x AP window in block voxels
    (None = whole slice); ``margin_mm``: neighbourhood masking (None = off)."""
    dims: int = 2
    image_size: int = 256
    crop: Optional[int] = None
    margin_mm: Optional[float] = None

    @classmethod
    def from_options(cls, opts: dict) -> "Preproc":
        return cls(int(opts.get("dims", 2)), int(opts.get("image_size", 256)),
                   opts.get("crop") or None, opts.get("mask_margin_mm"))


def load_block_arrays(root, key: str):
    """(ct HU float32 (SI, AP, LR), target bool mask, Volume of the CT) for one key.
    Read with ``layout.blocks.load_block``."""
    root = Path(root)
    ct, lab = load_block(root, key)
    if ct is None:
        raise UserError(f"no CT block for {key}", block_paths(root, key)[0])
    target = np.asarray(lab.array) == parse_key(key)[1]
    if not target.any():
        raise UserError(f"target label {parse_key(key)[1]} is absent from the label block", lab.path)
    return np.asarray(ct.array, dtype=np.float32), target, ct


def target_slices(target: np.ndarray) -> np.ndarray:
    """LR indices (axis 2) of the sagittal slices that contain the target."""
    return np.flatnonzero(target.any(axis=(0, 1)))


def central_slices(slices: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of a run of slice indices (at least one)."""
    n = len(slices)
    keep = max(1, int(round(n * fraction)))
    start = (n - keep) // 2
    return slices[start:start + keep]


def crop_box(shape_hw: Sequence[int], crop: Optional[int]) -> Tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of the central ``crop`` window (whole slice when None)."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if not crop or crop >= max(h, w):
        return 0, h, 0, w
    r0, c0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return r0, min(h, r0 + crop), c0, min(w, c0 + crop)


def neighbourhood_mask(unit: np.ndarray, target: np.ndarray, spacing_mm, margin_mm) -> np.ndarray:
    """Set voxels outside the target's bounding box grown by ``margin_mm`` to -1 (copy)."""
    if margin_mm is None:
        return unit
    out = np.full_like(unit, -1.0)
    idx = np.argwhere(target)
    lo, hi = idx.min(0), idx.max(0) + 1
    grow = np.ceil(float(margin_mm) / np.asarray(spacing_mm, dtype=float)).astype(int)
    lo, hi = np.maximum(lo - grow, 0), np.minimum(hi + grow, unit.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    out[sl] = unit[sl]
    return out


def block_to_unit(ct_hu: np.ndarray, target: np.ndarray, spacing_mm, margin_mm=None) -> np.ndarray:
    """Steps 1-2: (SI, AP, LR) HU -> [-1, 1], optionally masked to the target neighbourhood."""
    return neighbourhood_mask(hu_to_unit(ct_hu).astype(np.float32), target, spacing_mm, margin_mm)


def resize_for_net(unit: np.ndarray, pre: Preproc) -> np.ndarray:
    """Steps 3-4. 2D: (SI, AP, LR) -> (LR, S, S) slices; 3D: -> (S, S, Ds) volume."""
    r0, r1, c0, c1 = crop_box(unit.shape, pre.crop)
    t = torch.from_numpy(np.ascontiguousarray(unit[r0:r1, c0:c1]))
    s = pre.image_size
    if pre.dims == 2:
        x = t.permute(2, 0, 1)[:, None]  # (LR, 1, h, w)
        if (r1 - r0, c1 - c0) == (s, s):
            return x[:, 0].numpy().copy()
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)[:, 0].numpy()
    ds = max(1, int(round(unit.shape[2] * s / (r1 - r0))))
    down = s <= min(r1 - r0, c1 - c0) and ds <= unit.shape[2]
    mode = {"mode": "area"} if down else {"mode": "trilinear", "align_corners": False}
    return F.interpolate(t[None, None], size=(s, s, ds), **mode)[0, 0].numpy()


@dataclass
class CachedBlock:
    key: str
    grade: int
    net_input: np.ndarray      # 2D: (LR, S, S); 3D: (S, S, Ds), values in [-1, 1]
    slices: np.ndarray         # LR indices containing the target


def cache_blocks(root, grades: Dict[str, int], pre: Preproc, progress=None) -> List[CachedBlock]:
    """Load and pre-process every key once (keys without a block are skipped with a warning)."""
    out, missing = [], []
    have = set(block_keys(root, need_ct=True))
    for key in (progress(grades) if progress else grades):
        if key not in have:
            missing.append(key)
            continue
        ct, target, vol = load_block_arrays(root, key)
        unit = block_to_unit(ct, target, vol.spacing, pre.margin_mm)
        out.append(CachedBlock(key, int(grades[key]), resize_for_net(unit, pre), target_slices(target)))
    if missing:
        log.warning("%d keys have no block under %s (skipped), e.g. %s", len(missing), root, missing[:3])
    if not out:
        raise UserError("none of the vertebra keys has a straightened block", Path(root))
    return out


class VertebraDataset(Dataset):
    """Samples ``(x, y, index)``: x (1, S, S) for 2D (one sagittal slice through the target) or
    (1, S, S, Ds) for 3D; y = 1 when grade >= ``min_grade``; index into :attr:`items`."""

    def __init__(self, blocks: List[CachedBlock], dims: int, min_grade: int,
                 slice_fraction: float = 1.0, augment: bool = False, shift_px: int = 2):
        self.blocks, self.dims, self.augment, self.shift_px = blocks, dims, augment, shift_px
        self.items: List[Tuple[int, int]] = []  # (block index, LR slice or -1)
        for b, blk in enumerate(blocks):
            if dims == 2:
                self.items += [(b, int(k)) for k in central_slices(blk.slices, slice_fraction)]
            else:
                self.items.append((b, -1))
        self.labels = np.array([int(blocks[b].grade >= min_grade) for b, _ in self.items])

    def __len__(self) -> int:
        return len(self.items)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shift_px
        dy, dx = np.random.randint(-s, s + 1, size=2)
        x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(1, 2))
        gain, bias = np.random.uniform(0.9, 1.1), np.random.uniform(-0.05, 0.05)
        return (x * gain + bias).clamp(-1.0, 1.0)

    def __getitem__(self, i: int):
        b, k = self.items[i]
        arr = self.blocks[b].net_input[k] if self.dims == 2 else self.blocks[b].net_input
        x = torch.from_numpy(np.array(arr, dtype=np.float32))[None]
        if self.augment:
            x = self._augment(x)
        return x, int(self.labels[i]), i


def balanced_sampler(labels: np.ndarray, num_samples: int, seed: int) -> WeightedRandomSampler:
    """Draw both classes equally often (weights 1 / class count), seeded."""
    counts = np.bincount(labels, minlength=2).astype(float)
    if (counts == 0).any():
        raise UserError(f"the training split has only one class (counts {counts.astype(int).tolist()}); "
                        "check --fracture_min_grade and the vertebra JSON")
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(weights, num_samples=int(num_samples), replacement=True, generator=gen)
