"""Building blocks of the generators: spectral-norm convolutions with ELU (DeepFill-v1 style, no
normalisation), 'same' padding for any dilation, and nearest 2x upsampling."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

ACTIVATIONS = {
    "elu": lambda: nn.ELU(inplace=False),
    "relu": lambda: nn.ReLU(inplace=False),
    "none": lambda: nn.Identity(),
}


class SNConv(nn.Module):
    """Spectral-norm ``Conv2d`` + activation with 'same' padding for odd kernels.

    ``stride=2`` halves the spatial size (even inputs). Shapes: (B, in_ch, H, W) ->
    (B, out_ch, H / stride, W / stride).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 dilation: int = 1, activation: str = "elu"):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.conv = spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad,
                                            dilation=dilation))
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def fold_spectral_norm(module: nn.Module) -> int:
    """Replace every spectral-norm parametrisation in ``module`` by the plain weight it produces
    now (``W / sigma`` with the stored power-iteration vectors), for inference: the same outputs
    up to float rounding, without recomputing ``sigma`` on every call (about a quarter of a
    256-px generator forward on CPU). Call in eval mode; the module cannot be trained or saved as
    a training checkpoint afterwards. Returns the number of weights folded."""
    import torch.nn.utils.parametrize as parametrize
    n = 0
    for mod in module.modules():
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
            n += 1
    return n


def up2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling: (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def resize_to(x: torch.Tensor, size) -> torch.Tensor:
    """Area-resize a map (e.g. 1 - CAM, (B, 1, H, W)) to ``size`` (h, w) for decoder skips."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.adaptive_avg_pool2d(x, size)


def constant_plane(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, 1, H, W) plane filled per sample with ``values`` (B,), e.g. the slice ratio."""
    b, _, h, w = like.shape
    return values.to(like.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
