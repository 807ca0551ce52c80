"""HealthiVert-GAN losses (docs/METHOD.md section 3) and the frame each one is computed in.

Frames: the generator works in A's frame (context shifted around the band); the SHRM composite
(:mod:`models.shrm`) is in B's (target) frame. Because the band is centred on the target, the
band rows [a, a + band) are the same rows in both frames.

* GAN (vanilla, BCE with logits), target frame: D_global on the fine and coarse image
  composites, D_local on their band crops, D_shape on the fine soft composite target mask
  (the coarse stage segments neighbours, not the target, so it has no shape term): 5 terms,
  each weighted ``gan_weight`` = 1/6 as in the original's ΣGAN/6.
* L1, target frame: fine and coarse image composites vs B inside the band rows (``mask``).
  Rows of the band outside the pasted range are real context on both sides (no gradient).
* Dice fine, target frame: soft composite target mask vs ``A_mask``.
* Dice coarse, A's frame: raw coarse neighbour segmentation vs ``normal_vert``.
* Edge (EEM), target frame: MSE between Sobel magnitudes of the soft composite target mask
  and of ``A_mask``; ``edge_on_binary`` thresholds the prediction at 0.5 first (zero gradient,
  the original's behaviour).
* Height: continuous heights ``band_rows * sigmoid`` (no ceil) vs h, relative L1, both heads.

Dice and L1 are computed per sample, then averaged, so results do not depend on batch size
(except ``l1_norm='original'``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.config import L1_BAND_SCALE

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Vanilla GAN: BCE with logits against all-ones / all-zeros, mean over patches and batch."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def band_l1(fake: torch.Tensor, real: torch.Tensor, band: torch.Tensor, norm: str) -> torch.Tensor:
    """L1 inside the band (B, 1, H, W), scaled as documented in :mod:`models.config`.

    ``per_sample``: ``L1_BAND_SCALE * mean_b(sum_band |fake - real| / band_area_b)``.
    ``original``: ``200 * H * W / sum(band) * mean(|fake*band - real*band|)`` (= 1280 / batch at
    256^2 with a 40-row band: depends on the batch size, kept for reproduction)."""
    diff = (fake.float() - real.float()).abs() * band
    if norm == "per_sample":
        area = band.flatten(1).sum(1).clamp_min(1.0)
        return L1_BAND_SCALE * (diff.flatten(1).sum(1) / area).mean()
    if norm == "original":
        h, w = band.shape[-2:]
        return 200.0 * h * w / band.sum().clamp_min(1.0) * diff.mean()
    raise ValueError(f"unknown l1_norm {norm!r}")


def soft_dice(pred: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per sample (B, 1, H, W) -> mean over the batch, in [0, 1]."""
    p, t = pred.float().flatten(1), target.float().flatten(1)
    inter = (p * t).sum(1)
    return ((2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Normalised Sobel edge magnitude of (B, 1, H, W) maps (replicate padding), like
    kornia.filters.sobel: sqrt(gx^2 + gy^2 + eps)."""
    kx = _SOBEL_X.to(device=x.device, dtype=torch.float32)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="replicate"), k)
    return torch.sqrt(g.pow(2).sum(1, keepdim=True) + eps)


def edge_map(x: torch.Tensor, operator: str = "sobel_clip") -> torch.Tensor:
    """The EEM edge map: ``sobel_clip`` (the authors': unnormalised Sobel magnitude, clipped at 1)
    or ``sobel_normalised`` (:func:`sobel_magnitude`, kernel / 8)."""
    if operator == "sobel_clip":
        return (8.0 * sobel_magnitude(x)).clamp(max=1.0)
    return sobel_magnitude(x)


def edge_loss(pred_seg: torch.Tensor, target_mask: torch.Tensor,
              on_binary: bool = False, operator: str = "sobel_clip") -> torch.Tensor:
    """EEM: MSE(edges(pred), edges(target)). ``on_binary`` thresholds pred at 0.5 first, which
    (as in the original) makes the gradient exactly zero."""
    if on_binary:
        pred_seg = (pred_seg.detach() > 0.5).float()
    return F.mse_loss(edge_map(pred_seg, operator), edge_map(target_mask, operator))


def height_loss(height_sigmoid: torch.Tensor, h: torch.Tensor, band_rows: int) -> torch.Tensor:
    """Relative L1 |band_rows * sigmoid - h| / h, mean over the batch (continuous, no ceil)."""
    h = h.float().clamp_min(1.0)
    return ((band_rows * height_sigmoid.float() - h).abs() / h).mean()
