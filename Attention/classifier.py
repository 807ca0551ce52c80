"""Binary fracture classifier (class 1 = fractured): network builders, CAM target layers and
checkpoints.

Architectures (keys are the ``--arch`` choices of ``train_classifier.py``):

* ``seresnet50`` - MONAI ``SEResNet50`` as in the paper (stride 32; CAM hooked at the last
  bottleneck ``layer4[-1]``).
* ``seresnet_small`` - MONAI ``SENet`` with SE-ResNet bottlenecks and one block per stage
  (same stride and channel widths, ~4x fewer layers).
* ``resnet_tiny`` - MONAI ``ResNet`` with basic blocks, widths 16-32-64-128 and no max-pool
  (stride 16, so the CAM is twice as fine). For CPU tests and the phantom demo; ``small`` is
  an alias.

All take ``spatial_dims`` 2 (sagittal slices) or 3 (whole blocks), one input channel, two outputs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict

import torch
from torch import nn

from utils.errors import UserError

CKPT_KIND = "fracture_classifier"
CKPT_VERSION = 1
log = logging.getLogger(__name__)

ARCHS: Dict[str, Callable[[int], nn.Module]] = {}


def register(name: str):
    """Decorator adding a builder ``f(spatial_dims) -> nn.Module`` to :data:`ARCHS`."""
    def deco(fn):
        ARCHS[name] = fn
        return fn
    return deco


@register("seresnet50")
def _seresnet50(spatial_dims: int) -> nn.Module:
    from monai.networks.nets import SEResNet50
    return SEResNet50(spatial_dims=spatial_dims, in_channels=1, num_classes=2)


@register("seresnet_small")
def _seresnet_small(spatial_dims: int) -> nn.Module:
    from monai.networks.nets import SENet
    return SENet(spatial_dims=spatial_dims, in_channels=1, block="se_resnet_bottleneck",
                 layers=(1, 1, 1, 1), groups=1, reduction=16, dropout_prob=None, inplanes=64,
                 downsample_kernel_size=1, input_3x3=False, num_classes=2)


@register("small")  # alias used by scripts/demo.py
@register("resnet_tiny")
def _resnet_tiny(spatial_dims: int) -> nn.Module:
    from monai.networks.nets import ResNet
    return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[16, 32, 64, 128],
                  spatial_dims=spatial_dims, n_input_channels=1, conv1_t_size=7,
                  conv1_t_stride=2, no_max_pool=True, num_classes=2)


def build_classifier(arch: str, spatial_dims: int) -> nn.Module:
    """A freshly initialised classifier ``(B, 1, *spatial) -> (B, 2)`` logits."""
    if arch not in ARCHS:
        raise UserError(f"unknown --arch {arch!r} (choose from {', '.join(sorted(ARCHS))})")
    if spatial_dims not in (2, 3):
        raise UserError(f"--dims must be 2 or 3, got {spatial_dims}")
    return ARCHS[arch](spatial_dims)


def cam_target_layer(net: nn.Module, which: str = "last") -> nn.Module:
    """The layer Grad-CAM hooks: ``last`` = the last residual block of the last stage
    (``layer4[-1]``, the paper's "last bottleneck"), ``layer3`` = the last block of stage 3
    (twice the resolution, for small inputs)."""
    name = {"last": "layer4", "layer4": "layer4", "layer3": "layer3"}.get(which)
    if name is None or not hasattr(net, name):
        raise UserError(f"unknown CAM target layer {which!r} (use last, layer4 or layer3)")
    return getattr(net, name)[-1]


def make_checkpoint(net: nn.Module, optimizer, epoch: int, step: int, options: dict,
                    history: list, best: dict) -> dict:
    """One complete, self-describing checkpoint dict (weights, optimizer, progress, options)."""
    return {"kind": CKPT_KIND, "version": CKPT_VERSION, "net": net.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "epoch": int(epoch), "step": int(step), "options": dict(options),
            "history": list(history), "best": dict(best)}


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict on CPU; missing / unreadable / foreign files are a UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError("classifier checkpoint not found", p)
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise UserError(f"not a readable checkpoint ({type(exc).__name__})", p) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CKPT_KIND:
        raise UserError("not a fracture-classifier checkpoint (written by train_classifier.py)", p)
    if int(ckpt.get("version", -1)) > CKPT_VERSION:
        raise UserError(f"checkpoint version {ckpt.get('version')} is newer than this code "
                        f"({CKPT_VERSION})", p)
    for k in ("net", "options"):
        if k not in ckpt:
            raise UserError(f"checkpoint lacks {k!r}", p)
    return ckpt


def load_classifier(path, device="cpu"):
    """(net in eval mode on ``device``, options dict) from a checkpoint written by
    ``train_classifier.py``; incompatible weights are a UserError."""
    ckpt = read_checkpoint(path)
    opts = ckpt["options"]
    net = build_classifier(opts.get("arch", "seresnet50"), int(opts.get("dims", 2)))
    try:
        net.load_state_dict(ckpt["net"])
    except RuntimeError as exc:
        raise UserError(f"weights do not fit arch {opts.get('arch')!r} / dims {opts.get('dims')} "
                        f"({str(exc).splitlines()[0][:100]})", path) from None
    return net.to(device).eval(), opts
