"""The three networks: a 3D U-Net with average-pooling down and linear up-sampling (stages 1 and 3)
and the SpatialConfiguration-Net (stage 2), local appearance x spatial configuration."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from segmentation.heatmaps import LearnableSigma


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers = [nn.Conv3d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
              nn.Conv3d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
    if dropout > 0:
        layers.append(nn.Dropout3d(dropout))
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """``levels`` resolutions of ``filters`` channels each (Payer: constant width); average-pool
    down, trilinear up, additive skip connections. Input sides must be divisible by
    2 ** (levels - 1)."""

    def __init__(self, in_ch: int, out_ch: int, filters: int = 16, levels: int = 4, dropout: float = 0.0):
        super().__init__()
        self.levels = levels
        self.inp = _block(in_ch, filters, 0.0)
        self.down = nn.ModuleList(_block(filters, filters, dropout) for _ in range(levels - 1))
        self.up = nn.ModuleList(_block(filters, filters, 0.0) for _ in range(levels - 1))
        self.out = nn.Conv3d(filters, out_ch, 1)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inp(x)]
        for blk in self.down:
            skips.append(blk(F.avg_pool3d(skips[-1], 2)))
        h = skips.pop()
        for blk in self.up:
            s = skips.pop()
            h = blk(F.interpolate(h, size=s.shape[2:], mode="trilinear", align_corners=False) + s)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class SCN(nn.Module):
    """SpatialConfiguration-Net (Payer et al. 2019): a local U-Net gives candidate heatmaps
    (tanh); a spatial branch at 1/``factor`` resolution (``spatial_convs`` convolutions of
    ``kernel``^3) turns them into configuration heatmaps (tanh, up-sampled); the output is their
    product, one channel per landmark."""

    def __init__(self, in_ch: int, n_landmarks: int, filters: int = 16, levels: int = 4, dropout: float = 0.0,
                 factor: int = 4, spatial_filters: int = 16, spatial_convs: int = 4, kernel: int = 7):
        super().__init__()
        self.local = UNet3D(in_ch, n_landmarks, filters, levels, dropout)
        self.factor = factor
        layers, c = [], n_landmarks
        for _ in range(spatial_convs):
            layers += [nn.Conv3d(c, spatial_filters, kernel, padding=kernel // 2), nn.LeakyReLU(0.1, inplace=True)]
            c = spatial_filters
        layers.append(nn.Conv3d(c, n_landmarks, kernel, padding=kernel // 2))
        self.spatial = nn.Sequential(*layers)
        nn.init.normal_(self.local.out.weight, std=1e-3)
        nn.init.normal_(self.spatial[-1].weight, std=1e-3)
        # the product of two near-zero branches has no gradient into either: start the spatial
        # branch at tanh(1) = 0.76 everywhere, so the local heatmaps learn first
        nn.init.constant_(self.spatial[-1].bias, 1.0)

    @property
    def multiple(self) -> int:
        return max(self.local.multiple, self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hla = torch.tanh(self.local(x))
        low = F.avg_pool3d(hla, self.factor)
        hsc = torch.tanh(self.spatial(low))
        hsc = F.interpolate(hsc, size=hla.shape[2:], mode="trilinear", align_corners=False)
        return hla * hsc


@dataclass
class StageConfig:
    """Everything that fixes a stage's network and grid (stored in its checkpoint)."""
    stage: str                      # spine | vertebrae | segmentation
    spacing: float                  # mm, isotropic
    patch: Tuple[int, int, int]     # training / tile size (voxels, RAS axes)
    filters: int
    levels: int
    sigma_mm: float                 # target Gaussian width
    dropout: float = 0.0
    spatial_filters: int = 16
    spatial_kernel: int = 7
    learn_sigma: bool = False
    sigma_alpha: float = 100.0
    fg_weight: float = 0.0          # heatmap loss weight 1 + fg_weight * target (0 = plain L2, the paper)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StageConfig":
        d = dict(d)
        d["patch"] = tuple(d["patch"])
        return cls(**d)


# paper: Payer et al. (8 mm 64x64x128 / 2 mm 96x96x128 / 1 mm 128x128x96, 64-96 filters)
# cpu:   coarser grids and fewer filters, so that all three train on two CPU cores in tens of minutes
PRESETS = {
    "paper": {
        "spine": StageConfig("spine", 8.0, (64, 64, 128), 64, 5, 24.0),
        "vertebrae": StageConfig("vertebrae", 2.0, (96, 96, 128), 96, 4, 6.0, dropout=0.25, spatial_filters=64,
                                 learn_sigma=True),
        "segmentation": StageConfig("segmentation", 1.0, (128, 128, 96), 64, 5, 3.0),
    },
    "cpu": {
        "spine": StageConfig("spine", 8.0, (32, 32, 48), 12, 3, 16.0, fg_weight=10.0),
        "vertebrae": StageConfig("vertebrae", 4.0, (32, 32, 48), 16, 4, 12.0, spatial_filters=16,
                                 spatial_kernel=5, fg_weight=10.0),
        "segmentation": StageConfig("segmentation", 2.0, (48, 48, 32), 16, 3, 3.0),
    },
}

STAGES = ("spine", "vertebrae", "segmentation")
KIND = "segmentation-stage"             # the ``kind`` of a stage checkpoint


def build(cfg: StageConfig) -> nn.Module:
    from segmentation.heatmaps import CHANNELS
    if cfg.stage == "spine":
        return UNet3D(1, 1, cfg.filters, cfg.levels, cfg.dropout)
    if cfg.stage == "vertebrae":
        net = SCN(1, len(CHANNELS), cfg.filters, cfg.levels, cfg.dropout, factor=4,
                  spatial_filters=cfg.spatial_filters, kernel=cfg.spatial_kernel)
        if cfg.learn_sigma:
            net.sigma = LearnableSigma(len(CHANNELS), cfg.sigma_mm / cfg.spacing)
        return net
    if cfg.stage == "segmentation":
        return UNet3D(2, 1, cfg.filters, cfg.levels, cfg.dropout)
    raise ValueError(f"unknown stage {cfg.stage!r}")
