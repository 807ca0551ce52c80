"""What a target step writes into the output: the pseudo-healthy target, its neighbours and the
image around it (the *output rule*; the generator's SHRM composite is only one of its options).

The generator's composite pastes every column of the generated rows into the slice and takes the
target wherever its soft mask is >= 0.5 in those rows. Measured on the phantom study (issue #12),
that leaves three artefacts in the written blocks, each handled here by one option:

* ``target``: ``"body"`` keeps one connected body per slice -- the largest 8-connected component
  of ``seg >= 0.5`` among those that reach the columns of the real target (widened by
  ``margin_mm``); blobs the generator puts elsewhere in the pasted rows (the posterior "islands"
  that stretched the body's AP extent and made its posterior third 1-5 mm tall) are dropped.
  ``"threshold"`` (the paper) keeps every pixel >= 0.5.
* ``neighbours``: ``"real"`` builds the output from the *real* slice: the real neighbours and the
  rest of the slice are moved apart by the target's SHRM row map, exactly as the composite moves
  its context, but are never replaced by the regenerated neighbours of the earlier steps (which
  served as the target step's context only; their masks came out in fragments).
  ``"regenerated"`` (the paper) writes the running image, regenerated neighbours included.
* ``paste``: ``"footprint"`` pastes generated pixels only in the columns of the target (real or
  synthesised, widened by ``margin_mm``); the other columns of the pasted rows take the real rows
  of the target's SI range stretched to the new height, so soft tissue stays continuous. ``"band"``
  (the paper) pastes the whole row, including what the generator paints far from the spine (the
  dark patch beside the body).

:data:`PAPER_OUTPUT` reproduces the composite exactly (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from models.shrm import composite_index

TARGET_RULES = ("body", "threshold")
NEIGHBOUR_RULES = ("real", "regenerated")
PASTE_RULES = ("footprint", "band")
MASK_THRESHOLD = 0.5
_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class OutputRule:
    target: str = "body"
    neighbours: str = "real"
    paste: str = "footprint"
    margin_mm: float = 5.0

    def __post_init__(self):
        for name, allowed in (("target", TARGET_RULES), ("neighbours", NEIGHBOUR_RULES),
                              ("paste", PASTE_RULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"output rule {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.margin_mm < 0:
            raise ValueError(f"margin_mm must be >= 0, got {self.margin_mm}")

    @property
    def one_body(self) -> bool:
        return self.target == "body"


PAPER_OUTPUT = OutputRule("threshold", "regenerated", "band")


def widen(cols: np.ndarray, margin: int) -> np.ndarray:
    """(N, W) bool columns widened by ``margin`` columns on each side."""
    if margin <= 0 or not cols.any():
        return cols.copy()
    return ndimage.binary_dilation(cols, structure=np.ones((1, 2 * margin + 1), bool))


def one_body_2d(mask: np.ndarray, allowed_cols: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (H, W) that has a pixel in ``allowed_cols``
    (W,) bool; empty when none does."""
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return np.zeros_like(mask, bool)
    ok = np.zeros(n + 1, bool)
    ok[np.unique(lab[:, allowed_cols])] = True
    ok[0] = False
    if not ok.any():
        return np.zeros_like(mask, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[~ok] = 0
    return lab == int(np.argmax(sizes))


def _take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x (N, H, W), rows (N, H) -> x[n, rows[n, r], :]."""
    return np.take_along_axis(x, rows[:, :, None], axis=1)


def compose_target(base_image: np.ndarray, base_labels: np.ndarray, targets: np.ndarray,
                   target_masks: np.ndarray, x1: np.ndarray, x2: np.ndarray, gen_image: np.ndarray,
                   gen_seg: np.ndarray, height_rows: np.ndarray, band_top: np.ndarray,
                   band_rows: int, rule: OutputRule, margin_px: np.ndarray):
    """The output slices of target steps, ``(image (N, H, W), labels (N, H, W), prob (N, H, W))``.

    ``base_*``: the slices the output is built from (the real slices, or the running ones for
    ``neighbours='regenerated'``); ``target_masks``/``x1``/``x2``: the target's (cleaned) mask and
    rows ``[x1, x2)`` in them; ``gen_image``/``gen_seg``: the generator's raw fine image and target
    mask in the input's frame, whose band ``[band_top, band_top + band_rows)`` holds the rebuilt
    target centred; ``height_rows`` the SHRM height H (floored at ``x2 - x1`` here);
    ``margin_px`` (N,) the column margin of the rule in pixels.
    """
    n, h, w = base_image.shape
    targets = np.asarray(targets).reshape(-1)
    big_h = np.maximum(np.rint(np.asarray(height_rows, np.float64)).astype(np.int64), x2 - x1)
    idx = composite_index(torch.as_tensor(x1), torch.as_tensor(x2), torch.as_tensor(band_top),
                          int(band_rows), torch.as_tensor(big_h), h)
    src_real, src_gen = idx["src_real"].numpy(), idx["src_gen"].numpy()
    from_gen = idx["from_gen"].numpy()[:, :, None]
    top = idx["top"].numpy()
    seg = np.where(from_gen, _take_rows(gen_seg.astype(np.float32), src_gen), 0.0).astype(np.float32)
    real_cols = target_masks.any(axis=1)
    keep = seg >= MASK_THRESHOLD
    if rule.one_body:
        allowed = np.stack([widen(real_cols[i:i + 1], int(margin_px[i]))[0] for i in range(n)])
        keep = np.stack([one_body_2d(keep[i], allowed[i]) for i in range(n)])
        seg = np.where(keep, seg, 0.0).astype(np.float32)
    if rule.paste == "band":
        cols = np.ones((n, w), bool)
    else:
        cols = np.stack([widen((real_cols | keep.any(axis=1))[i:i + 1], int(margin_px[i]))[0]
                         for i in range(n)])
    others = np.where(base_labels == targets[:, None, None], 0, base_labels)
    # pasted rows outside the pasted columns: the target's real rows stretched to H
    r = np.arange(h)[None, :]
    stretch = x1[:, None] + ((r - top[:, None]) * (x2 - x1)[:, None]) // np.maximum(big_h, 1)[:, None]
    stretch = np.clip(stretch, 0, h - 1)
    inside = from_gen & cols[:, None, :]
    image = np.where(inside, _take_rows(gen_image, src_gen),
                     np.where(from_gen, _take_rows(base_image, stretch), _take_rows(base_image, src_real)))
    moved = np.where(inside, 0, np.where(from_gen, _take_rows(others, stretch), _take_rows(others, src_real)))
    labels = np.where(keep, targets[:, None, None], moved).astype(base_labels.dtype)
    return image.astype(np.float32), labels, seg
