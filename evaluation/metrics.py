"""Image and mask metrics shared by training, validation and evaluation (docs/EVALUATION.md §2).

All image metrics take 2D numpy arrays in [-1, 1] (the HU window mapped by
``data.intensity.hu_to_unit``), so ``data_range`` defaults to 2.0 (the fixed window, never the
image's own min/max). An optional boolean ``mask`` of the same shape restricts the metric to a
region (the in-band metrics of docs/EVALUATION.md §2):

* :func:`psnr` with a mask uses the mean squared error over the masked pixels only;
* :func:`ssim` with a mask computes the full SSIM map over the whole image
  (``skimage.metrics.structural_similarity(..., full=True)``, so each window still sees its
  neighbourhood) and averages the map inside the mask.

Mask metrics (:func:`dice`, :func:`iou`, :func:`rvd`) take arrays of any dimension, binarised as
``!= 0``.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["psnr", "ssim", "dice", "iou", "rvd", "height_error_pct"]


def _check_pair(pred: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray]):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != pred.shape:
            raise ValueError(f"mask shape {mask.shape} != image shape {pred.shape}")
    return pred, target, mask


def psnr(pred: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray] = None,
         data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)``.

    ``mask`` restricts the MSE to its pixels. Identical inputs give ``inf``; an empty mask gives
    ``nan`` (nothing to measure).
    """
    pred, target, mask = _check_pair(pred, target, mask)
    diff2 = (pred - target) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        diff2 = diff2[mask]
    mse = float(diff2.mean())
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(data_range ** 2 / mse)


def _win_size(shape) -> int:
    """skimage's default 7×7 window, shrunk (odd, >= 3) for tiny images."""
    side = min(shape)
    win = min(7, side if side % 2 == 1 else side - 1)
    if win < 3:
        raise ValueError(f"image {shape} too small for SSIM (needs >= 3 pixels per side)")
    return win


def ssim_map(pred: np.ndarray, target: np.ndarray, data_range: float = 2.0) -> np.ndarray:
    """The full 2D SSIM map (skimage, 7×7 uniform window, data range fixed) that :func:`ssim`
    averages; compute it once when several regions of the same pair are scored."""
    pred, target, _ = _check_pair(pred, target, None)
    if pred.ndim != 2:
        raise ValueError(f"ssim expects 2D images, got shape {pred.shape}")
    _, smap = structural_similarity(pred, target, data_range=data_range, full=True,
                                    win_size=_win_size(pred.shape))
    return smap


def masked_mean(smap: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Mean of a metric map, over ``mask`` when given (``nan`` for an empty mask)."""
    if mask is None:
        return float(smap.mean())
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    return float(smap[mask].mean())


def ssim(pred: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray] = None,
         data_range: float = 2.0) -> float:
    """Structural similarity (skimage, 7×7 uniform window, data range fixed).

    Without a mask: the mean of the SSIM map (skimage's usual value). With a mask: the SSIM map is
    computed on the whole 2D image and averaged over the masked pixels; an empty mask gives
    ``nan``.
    """
    _, _, mask = _check_pair(pred, target, mask)
    return masked_mean(ssim_map(pred, target, data_range), mask)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2|A∩B| / (|A|+|B|)`` of two masks (non-zero = foreground); 1.0 when both
    are empty."""
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    denom = int(a.sum()) + int(b.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / denom


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union (Jaccard) of two masks; 1.0 when both are empty."""
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


def rvd(pred: np.ndarray, ref: np.ndarray) -> float:
    """Signed relative volume difference ``(|pred| − |ref|) / |ref|`` (0 = same volume; report
    ``abs()`` for an error). ``nan`` when the reference is empty."""
    p = int((np.asarray(pred) != 0).sum())
    r = int((np.asarray(ref) != 0).sum())
    if r == 0:
        return float("nan")
    return (p - r) / r


def height_error_pct(h_pred, h_true):
    """Height error in percent, ``100 · |h_pred − h_true| / h_true`` (scalars or arrays; any unit
    as long as both agree). ``nan`` where ``h_true`` is 0."""
    h_pred = np.asarray(h_pred, dtype=np.float64)
    h_true = np.asarray(h_true, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(h_true != 0, 100.0 * np.abs(h_pred - h_true) / np.where(h_true != 0, h_true, 1), np.nan)
    return float(out) if out.ndim == 0 else out
