"""Heatmap networks for vertebral landmarks, the training loss, sub-pixel decoding and
Monte-Carlo-dropout uncertainty.

* ``unet``: a strided convolution then MONAI's BasicUNet (2D) with dropout in every block;
  heatmaps at 1/``stride`` of the input (``cpu`` preset 2, ``paper`` 1), decoded back to input
  pixels.
* ``hrnet``: timm's ``hrnet_w18_small`` (``pretrained=False``: no download, runs offline) as a
  multi-resolution encoder; its four finest feature maps are upsampled to stride 2, concatenated
  and mapped to heatmaps by a small head (HRNet's "V2" representation), then upsampled x2.
* Targets: one Gaussian per channel (σ in pixels, peak 1); channels without a visible point
  are all zero and weigh nothing. Loss: weighted MSE (foreground weight ``fg_weight`` where the
  target > 0.1, 1 elsewhere; the seed project used 5.0 vs 0.05, the same ratio ×1/100 at our
  scale) or Adaptive Wing (Wang et al., ICCV 2019).
* Decoding: argmax, then DARK (Zhang et al., CVPR 2020): a Newton step on the log of the
  Gaussian-smoothed heatmap (first and second derivatives at the peak). ``quadratic`` fits a
  parabola per axis instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "unet"                      # unet | hrnet
    channels: int = 38
    features: Tuple[int, ...] = (16, 32, 64, 128, 256, 16)   # unet
    dropout: float = 0.1
    size: int = 256                         # input side (pixels)
    stride: int = 2                         # input pixels per heatmap pixel (1 or 2)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "cpu": dict(features=(16, 16, 32, 64, 128, 16), stride=2),
    "paper": dict(features=(32, 32, 64, 128, 256, 32), stride=1),
}


class StridedUNet(nn.Module):
    """A strided 3 × 3 convolution (learned downsampling, keeps the input's detail in
    ``features[0]`` channels), then MONAI's BasicUNet at 1/``stride`` resolution."""

    def __init__(self, cfg: "ModelConfig"):
        super().__init__()
        from monai.networks.nets import BasicUNet
        self.stride = cfg.stride
        first = cfg.features[0]
        self.down = (nn.Sequential(nn.Conv2d(1, first, 3, stride=cfg.stride, padding=1),
                                   nn.InstanceNorm2d(first), nn.LeakyReLU(0.1))
                     if cfg.stride > 1 else nn.Identity())
        self.unet = BasicUNet(spatial_dims=2, in_channels=first if cfg.stride > 1 else 1,
                              out_channels=cfg.channels, features=tuple(cfg.features),
                              dropout=cfg.dropout)

    def forward(self, x):
        return self.unet(self.down(x))


def to_heatmap(points: torch.Tensor, stride: int) -> torch.Tensor:
    """Input-pixel coordinates -> heatmap-pixel coordinates (pixel centres map exactly)."""
    return (points - (stride - 1) / 2.0) / stride


def from_heatmap(points: torch.Tensor, stride: int) -> torch.Tensor:
    return points * stride + (stride - 1) / 2.0


class HRNetHeatmaps(nn.Module):
    stride = 1

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        import timm
        self.body = timm.create_model("hrnet_w18_small", pretrained=False, features_only=True,
                                      in_chans=1, out_indices=(0, 1, 2, 3))
        ch = sum(self.body.feature_info.channels())
        self.head = nn.Sequential(nn.Conv2d(ch, 64, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.Dropout2d(dropout), nn.Conv2d(64, channels, 1))

    def forward(self, x):
        feats = self.body(x)
        size = feats[0].shape[-2:]
        cat = torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear",
                                                    align_corners=False) for f in feats[1:]], 1)
        out = self.head(cat)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "unet":
        return StridedUNet(cfg)
    if cfg.arch == "hrnet":
        return HRNetHeatmaps(cfg.channels, cfg.dropout)
    raise ValueError(f"unknown arch {cfg.arch!r} (unet or hrnet)")


def gaussian_targets(points: torch.Tensor, visible: torch.Tensor, size: int,
                     sigma: float) -> torch.Tensor:
    """(B, C, size, size) Gaussians of peak 1 at ``points`` (B, C, 2) pixels; zero where not
    visible."""
    ax = torch.arange(size, dtype=torch.float32, device=points.device)
    px = torch.nan_to_num(points[..., 0])[..., None]
    py = torch.nan_to_num(points[..., 1])[..., None]
    gx = torch.exp(-(ax - px) ** 2 / (2 * sigma ** 2))          # (B, C, W)
    gy = torch.exp(-(ax - py) ** 2 / (2 * sigma ** 2))          # (B, C, H)
    return gy[..., :, None] * gx[..., None, :] * visible[..., None, None].float()


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
                 kind: str = "mse", fg_weight: float = 10.0, neg_weight: float = 1.0) -> torch.Tensor:
    """Mean over visible channels of the weighted MSE or Adaptive Wing loss.

    ``neg_weight`` > 1 weighs, in each channel, the pixels that are *another* channel's
    foreground (its target > 0.1) and not this one's: an answer there is a point of the wrong
    type or level. With weight 1 a channel can grow a second peak on a neighbouring point at
    almost no cost (L5's mid-inferior channel on L5's anterior-inferior corner: 0.57 -> 0.78
    over a fine-tune while its own peak stayed at 0.66-0.74, docs/RADIOGRAPH.md)."""
    vis = visible[..., None, None].float()
    if kind == "mse":
        w = 1.0 + (fg_weight - 1.0) * (target > 0.1).float()
        per = w * (pred - target) ** 2
    elif kind == "awing":
        omega, theta, eps, alpha = 14.0, 0.5, 1.0, 2.1
        d = (pred - target).abs()
        p = alpha - target
        a = omega * (1 / (1 + (theta / eps) ** p)) * p * ((theta / eps) ** (p - 1)) / eps
        c = theta * a - omega * torch.log1p((theta / eps) ** p)
        per = torch.where(d < theta, omega * torch.log1p((d / eps) ** p), a * d - c)
    else:
        raise ValueError(f"unknown loss {kind!r} (mse or awing)")
    if neg_weight != 1.0:
        fg = (target > 0.1).float()
        others = (fg.sum(1, keepdim=True) - fg) > 0
        per = per * torch.where(others & (fg == 0), neg_weight, 1.0)
    return (per * vis).sum() / (vis.sum() * pred.shape[-1] * pred.shape[-2]).clamp_min(1.0)


def decode(heatmaps: torch.Tensor, method: str = "dark", blur_sigma: float = 1.0):
    """(B, C, H, W) -> (points (B, C, 2) pixels x, y; peak value (B, C))."""
    b, c, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, c, -1)
    peak, idx = flat.max(-1)
    y, x = (idx // w).float(), (idx % w).float()
    if method == "argmax":
        return torch.stack([x, y], -1), peak
    hm = heatmaps
    if method == "dark" and blur_sigma > 0:
        k = int(2 * round(3 * blur_sigma) + 1)
        ax = torch.arange(k, dtype=hm.dtype, device=hm.device) - k // 2
        g = torch.exp(-ax ** 2 / (2 * blur_sigma ** 2))
        g = g / g.sum()
        hm = F.conv2d(hm.reshape(-1, 1, h, w), g.view(1, 1, 1, k), padding=(0, k // 2))
        hm = F.conv2d(hm, g.view(1, 1, k, 1), padding=(k // 2, 0)).reshape(b, c, h, w)
    if method == "dark":
        hm = torch.log(hm.clamp_min(1e-10))
    xi, yi = x.long().clamp(1, w - 2), y.long().clamp(1, h - 2)
    bi = torch.arange(b, device=hm.device)[:, None].expand(b, c)
    ci = torch.arange(c, device=hm.device)[None, :].expand(b, c)

    def at(dy, dx):
        return hm[bi, ci, yi + dy, xi + dx]
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    dyy = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    if method == "dark":
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy ** 2
        ok = det.abs() > 1e-12
        ox = torch.where(ok, -(dyy * dx - dxy * dy) / det.where(ok, torch.ones_like(det)), 0.0)
        oy = torch.where(ok, -(dxx * dy - dxy * dx) / det.where(ok, torch.ones_like(det)), 0.0)
    elif method == "quadratic":
        ox = torch.where(dxx < 0, -dx / dxx.where(dxx < 0, -torch.ones_like(dxx)), 0.0)
        oy = torch.where(dyy < 0, -dy / dyy.where(dyy < 0, -torch.ones_like(dyy)), 0.0)
    else:
        raise ValueError(f"unknown decoding {method!r} (argmax, quadratic or dark)")
    pts = torch.stack([xi.float() + ox.clamp(-1, 1), yi.float() + oy.clamp(-1, 1)], -1)
    return pts, peak


def enable_mc_dropout(model: nn.Module) -> None:
    """Eval mode (batch norm frozen) with dropout layers sampling."""
    model.eval()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Dropout3d)):
            m.train()


TTAS = ("mirror", "none")
TTA_HELP = ("mirror (default): the heatmaps of the image and of its left-right mirror, averaged "
            "(a lateral film may face either way; tuning DRRs of seed 7: MRE 1.14 -> 1.08 mm "
            "realistic, 1.10 -> 1.01 mm box; one more forward pass: 0.076 -> 0.095 s per image on two "
            "CPU cores, docs/BENCHMARKS.md); none: the image only")


def _heatmaps(model: nn.Module, images: torch.Tensor, mirror: bool) -> torch.Tensor:
    """The network's heatmaps; with ``mirror`` the mean with those of the mirrored image, mirrored
    back (channels are anatomical, so a mirror moves points, not names)."""
    hm = model(images)
    return (hm + model(images.flip(-1)).flip(-1)) / 2 if mirror else hm


@torch.no_grad()
def predict_points(model: nn.Module, images: torch.Tensor, mc: int = 0, method: str = "dark",
                   channels=None, mirror: bool = False):
    """Points (B, C, 2) and peak (B, C) of the network without dropout, and per-landmark spread
    (B, C) in pixels: the median distance of the ``mc`` dropout samples from those points (NaN
    when ``mc`` < 2). With the channel names, the levels are placed in anatomical order
    (:mod:`radiograph.ordering`); without, each channel's own maximum.

    The samples only measure the uncertainty. Their mean is not the answer: a sample whose
    ordering puts a point on the neighbouring vertebra pulls the mean a tenth of a vertebra away
    (realistic tuning DRRs of seed 7, the earlier weights: MRE 2.18 mm for the mean of 10 samples
    against 1.66 mm without dropout), and the root-mean-square spread such a sample inflates
    dropped 66 of 168 levels, 28 of them right; the median ignores a minority of such samples
    (docs/RADIOGRAPH.md).

    ``mirror``: the heatmaps are averaged with those of the mirrored image (:data:`TTA_HELP`)."""
    model.eval()
    st = getattr(model, "stride", 1)
    pts, peak = _points(_heatmaps(model, images, mirror), method, st, channels)
    if mc < 2:
        return pts, peak, torch.full(peak.shape, float("nan"))
    enable_mc_dropout(model)
    samples = torch.stack([_points(_heatmaps(model, images, mirror), method, st, channels)[0]
                           for _ in range(mc)])
    model.eval()
    spread = (samples - pts).norm(dim=-1).median(0).values
    return pts, peak, spread


def _points(hm: torch.Tensor, method: str, stride: int, channels):
    pts, peak = decode(hm, method)
    pts = from_heatmap(pts, stride)
    if channels is None:
        return pts, peak
    from radiograph.ordering import order_levels
    h, p, k = hm.float().cpu().numpy(), pts.cpu().numpy(), peak.float().cpu().numpy()
    for b in range(len(h)):
        p[b], k[b] = order_levels(h[b], channels, p[b], k[b], stride)
    return torch.as_tensor(p, device=pts.device), torch.as_tensor(k, device=peak.device)
