"""One synthesis step on a stack of slices: build the GAN batch, read the composite back.

A *step* rebuilds one vertebra (``step_labels[i]``, per slice) in each slice of a stack:

1. :func:`build_batch` makes the batch dict of BRIEF.md from the running images and label maps,
   exactly as ``data.gan_dataset.make_sample`` does for training (same band rows, same neighbour
   shift via :mod:`data.band`, same fills), but for all slices at once.
2. The model's ``infer(batch)`` returns the SHRM composite ``fake_B`` (the new running image), the
   composite soft mask ``seg`` and the predicted height ``height_pred`` (rows, >= h).
3. :func:`update_labels` moves the label map the way the composite moved the image: rows above the
   pasted block shift up by ``dtop``, rows below shift down by ``dbot`` (BRIEF.md SHRM rule), the
   pasted rows are cleared, and the rebuilt vertebra is where ``seg >= 0.5``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from data import band as bd
from models.shrm import composite_index
from synthesis.views import IMAGE_FILL

MASK_THRESHOLD = 0.5


def target_rows_batch(labels: np.ndarray, step_labels: np.ndarray, min_px):
    """Per slice, the vertebra mask (components < ``min_px`` removed, as in training; the raw mask
    when cleaning would leave nothing, e.g. on the outermost slices) and its rows ``[x1, x2)``.
    labels: ``(N, H, W)`` int; min_px: int or ``(N,)``; returns ``(masks (N, H, W) bool, x1 (N,),
    x2 (N,))``."""
    raw = labels == np.asarray(step_labels).reshape(-1, 1, 1)
    min_px = np.broadcast_to(np.asarray(min_px, np.int64), (len(raw),))
    masks = np.empty_like(raw)
    x1 = np.zeros(len(raw), np.int64)
    x2 = np.zeros(len(raw), np.int64)
    for i, m in enumerate(raw):  # connected components: per slice (cheap, outside the network)
        c = bd.clean_mask(m, int(min_px[i]))
        masks[i] = c if c.any() else m
        x1[i], x2[i] = bd.target_rows(masks[i])
    return masks, x1, x2


def build_batch(images: np.ndarray, labels: np.ndarray, cams: np.ndarray, step_labels: Sequence[int],
                ratios: Sequence[float], band_rows: int, min_px, keys: Sequence[str],
                slice_indices: Sequence[int], device) -> Dict:
    """The GAN batch dict for a stack: images ``(N, H, W)`` in [-1, 1], labels ``(N, H, W)``,
    cams ``(N, H, W)`` in [0, 1]; ``band_rows`` the training band height (rows)."""
    n, h, w = images.shape
    step_labels = np.asarray(step_labels).reshape(-1)
    tgt, x1, x2 = target_rows_batch(labels, step_labels, min_px)
    a = np.atleast_1d(bd.band_top(x1, x2, band_rows, h))
    src = bd.context_source_rows(x1, x2, a, band_rows, h)
    a_img = bd.apply_source_rows(images.astype(np.float32), src, fill=IMAGE_FILL, band_value=0.0)
    neigh = ((labels != step_labels.reshape(-1, 1, 1)) & (labels > 0)).astype(np.float32)
    stack = bd.apply_source_rows(np.stack([neigh, cams.astype(np.float32)], axis=1), src, 0.0, 0.0)
    band = np.repeat(bd.band_mask_rows(a, band_rows, h)[:, :, None], w, axis=2)

    def t(x):  # (N, H, W) -> (N, 1, H, W) float32 tensor on device
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None].to(device)

    def s(x, dtype=torch.long):
        return torch.as_tensor(np.asarray(x), dtype=dtype).to(device)

    return {"A": t(a_img), "B": t(images), "mask": t(band), "A_mask": t(tgt),
            "normal_vert": t(stack[:, 0]), "CAM": t(stack[:, 1]),
            "slice_ratio": s(np.asarray(ratios, np.float32), torch.float32),
            "height": s((x2 - x1).astype(np.float32), torch.float32), "x1": s(x1), "x2": s(x2),
            "band_top": s(a), "band_rows": s(np.full(n, int(band_rows))),
            "key": list(keys), "slice_index": [int(i) for i in slice_indices]}


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
