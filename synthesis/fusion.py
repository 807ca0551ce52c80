"""2.5D fusion of a sagittal and a coronal synthesis of the same block.

Each view moves the target's neighbours apart by its own SHRM heights, slice by slice: the
sagittal view by one height per sagittal slice, the coronal view by one per coronal slice, so the
two results place the same neighbour at different rows. Averaging them everywhere printed every
neighbour twice (a double edge, and striped posterior elements where the copies crossed). The rule
(voxel-wise, on the block grid) therefore lets one view own the context:

* **target mask**: the mean of the two target soft masks (each model's composite ``seg``; 0 in a
  view's slices without the target) >= 0.5 -- one view at 1.0 suffices -- except on the sagittal
  result's neighbours, which the target never overwrites.
* **image**: where either the fused target or the sagittal target lies, the two pseudo-healthy
  images weighted by their target probabilities (both views vote on the body's appearance by
  their confidence); everywhere else the sagittal result (its real neighbours moved apart by its
  SHRM, real voxels where it synthesised nothing).
* **other labels** (neighbours, moved apart by SHRM): from the sagittal result, the primary model of
  the original method, so that labels and image agree.

The original release has no image-level fusion (only its SVM sees 3 sagittal + 3 coronal RHLVs);
this rule is this project's, documented here and in the CLI help.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from data.masks import largest_component
from synthesis.iterative import ViewResult

THRESHOLD = 0.5


@dataclass
class Synthesis:
    """The final result of one block: ``image`` (X, Y, Z) float32 in [-1, 1], ``labels`` (X, Y, Z)
    int (target where ``prob >= 0.5``), ``prob`` float32 target probability; per-view slice counts,
    heights (mm) and seconds."""
    key: str
    label: int
    image: np.ndarray
    labels: np.ndarray
    prob: np.ndarray
    slices: Dict[str, int] = field(default_factory=dict)
    height_mm: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    touched: Optional[np.ndarray] = None  # (X, Y, Z) bool: synthesised voxels (None: all)


def keep_one_body(labels: np.ndarray, prob: np.ndarray, target: int):
    """``(labels, prob)`` with the target reduced to its largest 3D (26-connected) component; the
    dropped voxels become background and probability 0 (output rule ``target='body'``)."""
    t = labels == target
    body = largest_component(t)
    drop = t & ~body
    if not drop.any():
        return labels, prob
    return np.where(drop, 0, labels).astype(labels.dtype), np.where(drop, 0.0, prob).astype(np.float32)


def from_view(r: ViewResult, one_body: bool = False) -> Synthesis:
    """A single view's result as the final result (its running label map already holds the target
    exactly where its composite soft mask is >= 0.5); ``one_body``: keep the target's largest 3D
    component only."""
    labels, prob = keep_one_body(r.labels, r.prob, r.label) if one_body else (r.labels, r.prob)
    return Synthesis(r.key, r.label, r.image, labels, prob, {r.view: int(r.slices.size)},
                     {r.view: r.height_mm}, r.seconds, r.touched)


def fuse(sagittal: Optional[ViewResult], coronal: Optional[ViewResult], one_body: bool = False) -> Synthesis:
    """Fuse the two views by the rule in the module doc; either may be None (single view).
    ``one_body``: the fused target keeps its largest 3D component only."""
    if sagittal is None or coronal is None:
        only = sagittal if sagittal is not None else coronal
        if only is None:
            raise ValueError("fuse needs at least one view")
        return from_view(only, one_body)
    if sagittal.key != coronal.key or sagittal.image.shape != coronal.image.shape:
        raise ValueError(f"cannot fuse {sagittal.key} {sagittal.image.shape} with "
                         f"{coronal.key} {coronal.image.shape}")
    t = sagittal.label
    ps, pc = sagittal.prob, coronal.prob
    others = np.where(sagittal.labels == t, 0, sagittal.labels)
    prob = np.where(others > 0, 0.0, 0.5 * (ps + pc)).astype(np.float32)
    target = prob >= THRESHOLD
    labels = np.where(target, t, others).astype(sagittal.labels.dtype)
    # used where either probability is >= 0.5, so the weights never vanish there
    mixed = (ps * sagittal.image + pc * coronal.image) / np.maximum(ps + pc, 1e-6)
    image = np.where(target | (sagittal.labels == t), mixed, sagittal.image)
    touched = sagittal.touched | target
    if one_body:
        labels, prob = keep_one_body(labels, prob, t)
    return Synthesis(sagittal.key, t, image.astype(np.float32), labels, prob,
                     {"sagittal": int(sagittal.slices.size), "coronal": int(coronal.slices.size)},
                     {"sagittal": sagittal.height_mm, "coronal": coronal.height_mm},
                     sagittal.seconds + coronal.seconds, touched)
