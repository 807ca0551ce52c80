"""Centroid heatmaps: Gaussian targets with a fixed or learnable width per landmark, the loss with
Payer et al.'s width regulariser, and candidate peaks."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spine.anatomy import L6, T13, spine_sequence

CHANNELS: Tuple[int, ...] = tuple(spine_sequence({T13, L6}))   # 26 VerSe ids, C1 ... T12, T13, L1 ... L6
CHANNEL_OF = {lab: i for i, lab in enumerate(CHANNELS)}


def gaussian_heatmaps(shape, centres: torch.Tensor, present: torch.Tensor, sigma: torch.Tensor,
                      amplitude: float = 1.0) -> torch.Tensor:
    """(B, C, *shape) Gaussians of width ``sigma`` (C,) voxels at ``centres`` (B, C, 3) voxel
    indices; zero where ``present`` (B, C) is False. Differentiable in ``sigma``."""
    dev = centres.device
    axes = [torch.arange(n, device=dev, dtype=torch.float32) for n in shape]
    b, c = centres.shape[:2]
    d2 = 0.0
    for ax, coords in enumerate(axes):   # separable: sum of squared distances per axis
        view = [1, 1, 1, 1, 1]
        view[2 + ax] = -1
        diff = coords.view(*view) - centres[..., ax].view(b, c, 1, 1, 1)
        d2 = d2 + diff ** 2
    s = sigma.view(1, -1, 1, 1, 1).to(dev)
    h = amplitude * torch.exp(-d2 / (2 * s ** 2))
    return h * present.view(b, c, 1, 1, 1).to(h.dtype)


class LearnableSigma(nn.Module):
    """One target width per landmark (voxels), learnt with the network (Payer et al. 2019), kept
    positive and above ``floor``."""

    def __init__(self, n: int, init: float, floor: float = 1.0):
        super().__init__()
        self.floor = float(floor)
        self.raw = nn.Parameter(torch.full((n,), float(np.log(np.expm1(max(init - floor, 1e-3))))))

    def forward(self) -> torch.Tensor:
        return self.floor + F.softplus(self.raw)


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 sigma: torch.Tensor = None, alpha: float = 0.0, fg_weight: float = 0.0) -> torch.Tensor:
    """Mean squared error over the channels that are ``valid`` (B, C) (a landmark outside the crop
    still has a known zero heatmap; an unlabelled one is not scored), each voxel weighted
    1 + ``fg_weight`` * target (0: plain L2, the paper; more: the few voxels near a centroid are not
    drowned by the empty rest of the volume in a short training), plus ``alpha`` * mean(sigma^2)
    (the regulariser that stops a learnt width from growing to flatten the target)."""
    w = valid.view(*valid.shape, 1, 1, 1).to(pred.dtype)
    if fg_weight:
        w = w * (1.0 + fg_weight * target.detach())
    n = valid.sum().clamp_min(1) * pred[0, 0].numel()
    loss = (((pred - target) ** 2) * w).sum() / n
    if sigma is not None and alpha > 0:
        loss = loss + alpha * (sigma ** 2).mean() / pred[0, 0].numel()
    return loss


def find_peaks(heat: np.ndarray, threshold: float = 0.1, max_per_channel: int = 3,
               min_separation: int = 2) -> List[Tuple[int, np.ndarray, float]]:
    """Local maxima of each channel of ``heat`` (C, X, Y, Z) at or above ``threshold``:
    ``[(channel, sub-voxel index (3,), value)]``, at most ``max_per_channel`` each, strongest first.
    The sub-voxel position is the vertex of a parabola through the log values along each axis
    (exact for a Gaussian)."""
    t = torch.as_tensor(heat, dtype=torch.float32)[None]
    k = 2 * min_separation + 1
    mx = F.max_pool3d(t, k, stride=1, padding=min_separation)[0]
    is_peak = (t[0] == mx) & (t[0] >= threshold)
    out = []
    hp = np.pad(heat, ((0, 0), (1, 1), (1, 1), (1, 1)), mode="edge")
    for c in range(heat.shape[0]):
        idx = torch.nonzero(is_peak[c]).numpy()
        if not len(idx):
            continue
        vals = heat[c][tuple(idx.T)]
        for j in np.argsort(-vals)[:max_per_channel]:
            i = idx[j]
            out.append((c, i + _log_parabola_offset(hp[c], i + 1), float(vals[j])))
    return out


def _log_parabola_offset(h: np.ndarray, i) -> np.ndarray:
    """Per axis, the vertex of the parabola through log h at i - 1, i, i + 1 (within ±0.5)."""
    off = np.zeros(3)
    c = np.log(max(float(h[tuple(i)]), 1e-6))
    for ax in range(3):
        lo, hi = np.array(i), np.array(i)
        lo[ax] -= 1
        hi[ax] += 1
        a, b = np.log(max(float(h[tuple(lo)]), 1e-6)), np.log(max(float(h[tuple(hi)]), 1e-6))
        den = a - 2 * c + b
        if den < -1e-9:
            off[ax] = np.clip(0.5 * (a - b) / den, -0.5, 0.5)
    return off
