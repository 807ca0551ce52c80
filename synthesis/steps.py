"""One synthesis step on a stack of slices: build the GAN batch, read the composite back.

A *step* rebuilds one vertebra (``step_labels[i]``, per slice) in each slice of a stack:

1. :func:`build_batch` makes the batch dict from the running images and label maps with the
   one slice-to-sample rule of training (:mod:`data.sample`), for all slices at once.
2. The model's ``infer(batch)`` returns the SHRM composite ``fake_B`` (the new running image), the
   composite soft mask ``seg`` and the predicted height ``height_pred`` (rows, >= h).
3. :func:`update_labels` moves the label map the way the composite moved the image: rows above the
   pasted block shift up by ``dtop``, rows below shift down by ``dbot`` (docs/METHOD.md §3, SHRM), the
   pasted rows are cleared, and the rebuilt vertebra is where ``seg >= 0.5``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from data.sample import build_samples
from models.shrm import composite_index

MASK_THRESHOLD = 0.5


def build_batch(images: np.ndarray, labels: np.ndarray, cams: np.ndarray, step_labels: Sequence[int],
                ratios: Sequence[float], band_rows: int, min_px, keys: Sequence[str],
                slice_indices: Sequence[int], device, band_cols=None) -> Dict:
    """The GAN batch dict for a stack (:func:`data.sample.build_samples`, the rule training uses)."""
    return build_samples(images, labels, cams, step_labels, ratios, band_rows, min_px, keys,
                         slice_indices, device, band_cols=band_cols)


def update_labels(labels: np.ndarray, step_labels, x1, x2, band_top, band_rows: int, height_pred,
                  seg: np.ndarray) -> np.ndarray:
    """The label maps after the composite, ``(N, H, W)``: every label but the rebuilt one moves
    with the rows the composite moved (``models.shrm.composite_index``, the same row map the model
    used for the image), the pasted rows are cleared, and the rebuilt vertebra is exactly
    ``seg >= 0.5``. ``height_pred`` (N,) rows; H = max(round(height_pred), h)."""
    step_labels = np.asarray(step_labels).reshape(-1, 1, 1)
    others = torch.from_numpy(np.where(labels == step_labels, 0, labels).astype(np.int64))
    x1, x2 = torch.as_tensor(np.asarray(x1)).long(), torch.as_tensor(np.asarray(x2)).long()
    big_h = torch.maximum(torch.as_tensor(np.rint(np.asarray(height_pred, np.float64))).long(), x2 - x1)
    idx = composite_index(x1, x2, torch.as_tensor(np.asarray(band_top)).long(), int(band_rows), big_h,
                          labels.shape[1])
    n, h, w = labels.shape
    moved = torch.gather(others, 1, idx["src_real"].view(n, h, 1).expand(n, h, w))
    moved = torch.where(idx["from_gen"].view(n, h, 1), torch.zeros_like(moved), moved).numpy()
    return np.where(seg >= MASK_THRESHOLD, step_labels, moved).astype(labels.dtype)
