"""Hand-made vertebral-body label blocks with known heights (tests, benchmarks, figures).

A body is an elliptic cylinder in the axial (AP × LR) plane whose SI height varies over the
AP position to model Genant morphologies: ``wedge`` (anterior loss, tapering linearly to none at
the posterior wall), ``biconcave`` (middle loss, tapering to none at both walls) and ``crush``
(uniform loss). Blocks follow the straightened-block axes: (SI, AP, LR), cranial row 0,
anterior column 0. Heights are in voxels of the block (spacing given separately).
"""
from __future__ import annotations

import numpy as np

MORPHOLOGIES = ("none", "wedge", "biconcave", "crush")


def loss_profile(t_ap: np.ndarray, morphology: str, loss: float) -> np.ndarray:
    """Fractional height loss at AP position ``t_ap`` in [0, 1] (0 = anterior wall)."""
    t = np.clip(np.asarray(t_ap, dtype=float), 0, 1)
    if morphology == "none" or loss == 0:
        return np.zeros_like(t)
    if morphology == "wedge":
        return loss * (1 - t)
    if morphology == "biconcave":
        return loss * np.clip(1 - np.abs(2 * t - 1) * 1.25, 0, 1) ** 0.5
    if morphology == "crush":
        return np.full_like(t, loss)
    raise ValueError(f"unknown morphology {morphology!r}; choose from {MORPHOLOGIES}")


def body_block(shape=(96, 96, 64), centre=None, height=26.0, depth=34.0, width=44.0,
               morphology="none", loss=0.0, label=20) -> np.ndarray:
    """uint8 (SI, AP, LR) block holding one body of the given healthy ``height``/``depth``/
    ``width`` (voxels) and deformation, centred at ``centre`` (default: block centre)."""
    si, ap, lr = shape
    c = np.array(centre if centre is not None else (si / 2, ap / 2, lr / 2), dtype=float)
    y = np.arange(ap) + 0.5
    z = np.arange(lr) + 0.5
    yy, zz = np.meshgrid(y, z, indexing="ij")
    inside = ((yy - c[1]) / (depth / 2)) ** 2 + ((zz - c[2]) / (width / 2)) ** 2 <= 1
    t_ap = (yy - (c[1] - depth / 2)) / depth
    h = height * (1 - loss_profile(t_ap, morphology, loss))
    rows = np.arange(si)[:, None, None] + 0.5
    top = c[0] - h[None] / 2
    block = (rows >= top) & (rows < top + h[None]) & inside[None]
    return (block * label).astype(np.uint8)


def planted_loss_thirds(depth=34.0, width=44.0, morphology="none", loss=0.0,
                        lr_fraction=0.4, n=2001) -> np.ndarray:
    """Analytic planted loss per third (a, m, p): 1 − mean(h_frac) over each third's AP range
    within the central ``lr_fraction`` of the width, over the elliptic cross-section."""
    y = (np.arange(n) + 0.5) / n  # AP fraction of depth
    zf = np.linspace(-lr_fraction / 2, lr_fraction / 2, 201)  # LR fraction of width around centre
    yy, zz = np.meshgrid(y, zf, indexing="ij")
    inside = ((yy - 0.5) / 0.5) ** 2 + (zz / 0.5) ** 2 <= 1
    frac = 1 - loss_profile(yy, morphology, loss)
    out = np.zeros(3)
    for t in range(3):
        sel = inside & (yy >= t / 3) & (yy < (t + 1) / 3)
        out[t] = 1 - frac[sel].mean()
    return out
