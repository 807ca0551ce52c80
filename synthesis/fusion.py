"""2.5D fusion of a sagittal and a coronal synthesis of the same block.

The rule (voxel-wise, on the block grid):

* **image**: the mean of the two pseudo-healthy images (in [-1, 1], i.e. the mean HU). Where one
  view left a voxel real (a slice without the target) and the other synthesised it, the mean is
  half real, half synthetic -- both views vote with equal weight everywhere; voxels neither view
  synthesised keep the real block's HU exactly (``touched``).
* **target mask**: the mean of the two target soft masks (each model's composite ``seg``; 0 in a
  view's slices without the target), thresholded at 0.5 -- a voxel is target when the two
  probabilities average to at least one half (one view at 1.0 suffices, as the image is then at
  least half that view's).
* **other labels** (neighbours, moved apart by SHRM): from the sagittal result, the primary
  model of the original method; the coronal result's where the sagittal one is background.

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
    image = 0.5 * (sagittal.image + coronal.image)
    prob = 0.5 * (sagittal.prob + coronal.prob)
    sag_other = np.where(sagittal.labels == t, 0, sagittal.labels)
    cor_other = np.where(coronal.labels == t, 0, coronal.labels)
    others = np.where(sag_other > 0, sag_other, cor_other)
    labels = np.where(prob >= THRESHOLD, t, others).astype(sagittal.labels.dtype)
    prob = prob.astype(np.float32)
    if one_body:
        labels, prob = keep_one_body(labels, prob, t)
    return Synthesis(sagittal.key, t, image.astype(np.float32), labels, prob,
                     {"sagittal": int(sagittal.slices.size), "coronal": int(coronal.slices.size)},
                     {"sagittal": sagittal.height_mm, "coronal": coronal.height_mm},
                     sagittal.seconds + coronal.seconds, sagittal.touched | coronal.touched)
