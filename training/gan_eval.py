"""Per-slice synthesis metrics for train.py's periodic evaluation and test.py (docs/EVALUATION.md §2).

Uses :mod:`evaluation.metrics` (psnr/ssim on [-1, 1] images with a fixed data range of 2, mask
metrics, height error). Regions: the *band* (rows [a, a + band), all columns), the *strip* (the
target's SI rows [x1, x2) in B, the original's strip metric) and the whole slice.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List

import numpy as np

from evaluation.metrics import dice, height_error_pct, iou, psnr, ssim

METRIC_COLUMNS = ("psnr_band", "ssim_band", "psnr_strip", "ssim_strip", "psnr_slice",
                  "ssim_slice", "dice", "iou", "height_true", "height_pred", "height_error_pct", "height_cont",
                  "height_error_cont_pct", "height_error_composite_pct", "height_ref", "height_error_ref_pct", "height_gain_pct",
                  "ref_error_pct")


def _run_rows(rows_present: np.ndarray, start: int, step: int) -> int:
    """Length of the first run of True rows met walking from ``start`` by ``step`` (0 if none)."""
    n, r = 0, start
    while 0 <= r < rows_present.size and not rows_present[r]:
        r += step
    while 0 <= r < rows_present.size and rows_present[r]:
        n, r = n + 1, r + step
    return n


def neighbour_height_rows(normal_vert: np.ndarray, band_top: int, band_rows: int) -> float:
    """The healthy-neighbour reference height (rows) of one sample: the mean SI extent of the
    nearest neighbour above the band and below it in the input's ``normal_vert`` mask (H, W)
    (shifted like the input, so both lie whole outside the band); NaN when neither is there."""
    present = np.asarray(normal_vert) > 0.5
    rows = present.any(axis=1)
    h = [n for n in (_run_rows(rows, band_top - 1, -1), _run_rows(rows, band_top + band_rows, 1)) if n > 0]
    return float(np.mean(h)) if h else float("nan")


def slice_metrics(fake: np.ndarray, real: np.ndarray, band: np.ndarray, x1: int, x2: int,
                  seg_pred: np.ndarray, target_mask: np.ndarray, height_pred: float,
                  height_true: float) -> Dict[str, float]:
    """Metrics of one slice. fake/real ``(H, W)`` in [-1, 1]; band/target_mask ``(H, W)`` {0,1};
    seg_pred ``(H, W)`` soft target segmentation (binarised at 0.5); heights in rows (the integer
    SHRM height H, floored at the current height, is what the composite uses)."""
    strip = np.zeros_like(band, dtype=bool)
    strip[x1:x2] = True
    band = band > 0.5
    pred_bin = seg_pred > 0.5
    tgt = target_mask > 0.5
    return {
        "psnr_band": psnr(fake, real, band), "ssim_band": ssim(fake, real, band),
        "psnr_strip": psnr(fake, real, strip), "ssim_strip": ssim(fake, real, strip),
        "psnr_slice": psnr(fake, real), "ssim_slice": ssim(fake, real),
        "dice": dice(pred_bin, tgt), "iou": iou(pred_bin, tgt),
        "height_true": float(height_true), "height_pred": float(height_pred),
        "height_error_pct": height_error_pct(height_pred, height_true),
    }


def batch_metrics(batch: dict, out: dict) -> List[Dict[str, float]]:
    """Metrics of every sample of a batch. ``out`` is the model's ``infer`` dict (target frame)."""
    fake = out["fake_B"].detach().float().cpu().numpy()[:, 0]
    seg = out["seg"].detach().float().cpu().numpy()[:, 0]
    h_pred = out["height_pred"].detach().float().cpu().numpy().reshape(-1)
    h_cont = out["height_cont"].detach().float().cpu().numpy().reshape(-1)
    real = batch["B"].numpy()[:, 0]
    band = batch["mask"].numpy()[:, 0]
    tmask = batch["A_mask"].numpy()[:, 0]
    nv = batch["normal_vert"].numpy()[:, 0]
    rows = []
    for i in range(fake.shape[0]):
        m = slice_metrics(fake[i], real[i], band[i], int(batch["x1"][i]), int(batch["x2"][i]),
                          seg[i], tmask[i], float(h_pred[i]), float(batch["height"][i]))
        m["height_cont"] = float(h_cont[i])
        m["height_error_cont_pct"] = height_error_pct(h_cont[i], float(batch["height"][i]))
        # the head's own error: the composite's H is floored at the current height, so its error
        # scores every under-prediction 0 (kept as height_error_composite_pct)
        m["height_error_composite_pct"] = m["height_error_pct"]
        m["height_error_pct"] = m["height_error_cont_pct"]
        # the neighbours' height: what a fractured target should be restored to, and how well it
        # predicts a healthy target's own height (the baseline the height head must beat)
        ref = neighbour_height_rows(nv[i], int(batch["band_top"][i]), int(batch["band_rows"][i]))
        m["height_ref"] = ref
        m["height_error_ref_pct"] = height_error_pct(h_cont[i], ref)
        m["height_gain_pct"] = 100.0 * (h_cont[i] - float(batch["height"][i])) / max(float(batch["height"][i]), 1.0)
        m["ref_error_pct"] = height_error_pct(ref, float(batch["height"][i]))
        rows.append({"key": batch["key"][i], "slice_index": int(batch["slice_index"][i]), **m})
    return rows


def summarise(rows: Iterable[Dict[str, float]]) -> Dict[str, float]:
    """Mean of every metric over rows (non-finite values such as inf PSNR are skipped)."""
    rows = list(rows)
    out: Dict[str, float] = {"n": float(len(rows))}
    for c in METRIC_COLUMNS:
        vals = [r[c] for r in rows if c in r and r[c] is not None and math.isfinite(r[c])]
        out[c] = float(np.mean(vals)) if vals else float("nan")
    return out
