"""70x70 PatchGAN discriminators (pix2pix ``NLayerDiscriminator``): ndf 64, 3 strided layers,
BatchNorm, LeakyReLU 0.2; ~2.76 M parameters for a 1-channel input. Outputs logits
(B, 1, h', w') for BCE-with-logits. Registered as ``patchgan`` (BatchNorm, the paper) and
``patchgan_instance`` (InstanceNorm, no running statistics: robust at tiny batches)."""
from __future__ import annotations

import torch.nn as nn

from models.registry import register_discriminator


class NLayerDiscriminator(nn.Module):
    """PatchGAN. (B, in_ch, H, W) -> (B, 1, H/8 - 2, W/8 - 2) logits for n_layers 3 (H >= 24)."""

    def __init__(self, in_ch: int = 1, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        norm_layer = {"batch": nn.BatchNorm2d,
                      "instance": lambda c: nn.InstanceNorm2d(c, affine=False)}[norm]
        layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        self.apply(_init_normal)

    def forward(self, x):
        return self.model(x)


def _init_normal(m: nn.Module) -> None:
    """pix2pix 'normal' init: N(0, 0.02) conv weights, N(1, 0.02) BatchNorm scales."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@register_discriminator("patchgan")
def build_patchgan(cfg) -> nn.Module:
    return NLayerDiscriminator(1, cfg.ndf, cfg.n_layers_D, "batch")


@register_discriminator("patchgan_instance")
def build_patchgan_instance(cfg) -> nn.Module:
    return NLayerDiscriminator(1, cfg.ndf, cfg.n_layers_D, "instance")
