"""The one slice-to-sample rule of training and synthesis: from a stack of 2D slices (image in
[-1, 1], VerSe label map, attention map) and the vertebra to rebuild in each, the GAN's input
and targets (the batch dict of ``models.healthivert_model``).

* target mask: the vertebra's pixels with 8-connected components under ``min_px`` removed; when
  that leaves nothing (the outermost slices) the raw mask is kept, so an empty cleaned mask never
  reaches the band rule (the one empty-mask behaviour);
* the band: ``band_rows`` rows placed around the target's rows ``[x1, x2)`` (:mod:`data.band`),
  with the context moved apart so the target's rows are removed (``A``), the band mask
  (``mask``), the neighbours' mask (``normal_vert``, the coarse stage's target: every other
  vertebra, or all but the patient's fractured ones) and the attention map (``CAM``) moved with
  the same row map;
* ``height`` = ``x2 - x1`` rows, ``slice_ratio`` the slice's position in the body.

:func:`build_samples` is batched; the training dataset's item is the same call with one slice
(:func:`one_sample`), 3D synthesis calls it with all the slices of a step.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from data import band as bd

IMAGE_FILL = -1.0  # [-1, 1] value for rows shifted in from beyond the image / canvas padding


def target_rows_batch(labels: np.ndarray, step_labels, min_px):
    """Per slice, the vertebra mask (module rule) and its rows ``[x1, x2)``.
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


def build_samples(images: np.ndarray, labels: np.ndarray, cams: Optional[np.ndarray],
                  step_labels: Sequence[int], ratios: Sequence[float], band_rows: int, min_px,
                  keys: Sequence[str], slice_indices: Sequence[int], device=None,
                  not_healthy: Optional[Sequence[Sequence[int]]] = None,
                  band_cols: Optional[Sequence[int]] = None) -> Dict:
    """The GAN batch dict for a stack: images ``(N, H, W)`` in [-1, 1], labels ``(N, H, W)``,
    cams ``(N, H, W)`` in [0, 1] or None (zeros); ``band_rows`` the training band height (rows);
    ``not_healthy[i]``: labels left out of slice i's ``normal_vert``; ``band_cols`` ``(c0, c1)``
    or ``(N, 2)``: the band (hole) mask covers only these columns (a coronal slice on a wider
    canvas; outside them the band rows of ``A`` keep the canvas padding), None: every column.
    Image tensors are ``(N, 1, H, W)`` float32 on ``device``."""
    n, h, w = images.shape
    step_labels = np.asarray(step_labels).reshape(-1)
    tgt, x1, x2 = target_rows_batch(labels, step_labels, min_px)
    a = np.atleast_1d(bd.band_top(x1, x2, band_rows, h))
    src = bd.context_source_rows(x1, x2, a, band_rows, h)
    a_img = bd.apply_source_rows(images.astype(np.float32), src, fill=IMAGE_FILL, band_value=0.0)
    neigh = (labels != step_labels.reshape(-1, 1, 1)) & (labels > 0)
    if not_healthy is not None:
        for i, skip in enumerate(not_healthy):
            if len(skip):
                neigh[i] &= ~np.isin(labels[i], np.asarray(skip))
    cams = np.zeros((n, h, w), np.float32) if cams is None else cams.astype(np.float32)
    stack = bd.apply_source_rows(np.stack([neigh.astype(np.float32), cams], axis=1), src, 0.0, 0.0)
    rows = bd.band_mask_rows(a, band_rows, h).astype(bool)  # (N, H)
    band = np.repeat(rows[:, :, None], w, axis=2).astype(np.float32)
    if band_cols is not None:  # the hole is the slice's columns; the canvas padding stays padding
        cols = np.broadcast_to(np.asarray(band_cols, np.int64).reshape(-1, 2), (n, 2))
        c = np.arange(w)[None, :]
        outside = (c < cols[:, :1]) | (c >= cols[:, 1:])  # (N, W)
        band[np.broadcast_to(outside[:, None, :], band.shape)] = 0.0
        a_img[rows[:, :, None] & outside[:, None, :]] = IMAGE_FILL

    def t(x):  # (N, H, W) -> (N, 1, H, W) float32 tensor
        out = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
        return out if device is None else out.to(device)

    def s(x, dtype=torch.long):
        out = torch.as_tensor(np.asarray(x), dtype=dtype)
        return out if device is None else out.to(device)

    return {"A": t(a_img), "B": t(images), "mask": t(band), "A_mask": t(tgt),
            "normal_vert": t(stack[:, 0]), "CAM": t(stack[:, 1]),
            "slice_ratio": s(np.asarray(ratios, np.float32), torch.float32),
            "height": s((x2 - x1).astype(np.float32), torch.float32), "x1": s(x1), "x2": s(x2),
            "band_top": s(a), "band_rows": s(np.full(n, int(band_rows))),
            "key": list(keys), "slice_index": [int(i) for i in slice_indices]}


def one_sample(img: np.ndarray, lab: np.ndarray, cam: Optional[np.ndarray], label: int,
               band_rows: int, min_px: int, ratio: float, key: str, slice_index: int,
               not_healthy: Sequence[int] = (), band_cols: Optional[Sequence[int]] = None) -> dict:
    """:func:`build_samples` for one slice ``(H, W)``, as a dataset item (no batch axis: image
    tensors ``(1, H, W)``, scalars 0-d)."""
    batch = build_samples(img[None], lab[None], None if cam is None else cam[None], [label],
                          [ratio], band_rows, min_px, [key], [slice_index],
                          not_healthy=[list(not_healthy)], band_cols=band_cols)
    return {k: v[0] for k, v in batch.items()}
