"""Flags for :class:`models.config.ModelConfig` (networks, losses, optimiser).

The flags are generated from the dataclass fields; help texts live here so the model package
stays free of CLI concerns. Registry keys are the ``choices`` of ``--netG`` / ``--netD``.
``image_size``, ``band_rows`` and ``amp`` are not flags here: the scripts derive them (image size
from ``--image_size``, band rows from ``--band_mm`` and the block spacing, AMP from ``--amp`` and
the device).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict

DERIVED = ("image_size", "band_rows", "amp")
RENAME = {"generator": "netG", "discriminator": "netD"}

HELP = {
    "generator": "generator architecture: healthivert (ours: separate image and segmentation "
                 "decoders, 0.971 M) or healthivert_paper (the authors' layout: one decoder per "
                 "stage with two heads, 0.987 M; --preset paper)",
    "discriminator": "discriminator architecture (registry key; three are built: global, "
                     "shape, local band)",
    "ngf": "generator base width (paper 16: ~0.99 M parameters)",
    "ndf": "discriminator base width (paper 64: ~2.76 M parameters each)",
    "n_layers_D": "PatchGAN layers (3 = 70x70 receptive field)",
    "local_cols": "columns of the local-band discriminator crop (central columns)",
    "local_input": "local discriminator input: padded (the whole image with everything outside "
                   "the band rows x local_cols set to 0, the authors') or crop (those pixels as "
                   "a band_rows x local_cols crop)",
    "use_cam": "HGAM: feed 1 - CAM into the coarse decoder (--no-use_cam: all ones; ablation)",
    "use_edge": "EEM edge loss (--no-use_edge: ablation)",
    "edge_on_binary": "original EEM: edges of the thresholded segmentation (zero gradient)",
    "use_height": "SHRM height heads and paste/push-apart (--no-use_height: H = h; ablation)",
    "use_contextual_attention": "contextual-attention patch matching in the fine generator "
                                "(--no-use_contextual_attention: ablation)",
    "lambda_L1": "weight of the band L1 term",
    "l1_norm": "band L1 normalisation: per_sample (corrected) or original (batch-dependent)",
    "lambda_dice_fine": "weight of 1 - Dice(fine segmentation, target mask)",
    "lambda_dice_coarse": "weight of 1 - Dice(coarse segmentation, healthy neighbours)",
    "lambda_edge": "weight of the EEM edge MSE",
    "lambda_height": "weight of the relative height L1 of both height heads",
    "gan_weight": "weight of the summed generator GAN terms (original 1/6)",
    "lr": "Adam learning rate (G and each D)",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "ema_decay": "keep an exponential moving average of the generator's weights with this decay "
                 "(0 = off, the paper; e.g. 0.999) and synthesise with it",
    "edge_operator": "EEM edge map: sobel_clip (the authors': raw Sobel magnitude clipped at 1) or "
                     "sobel_normalised (kernel / 8, a quarter of the squared scale)",
    "adv_coarse": "also score the coarse composites by the global and local discriminators (5 "
                  "adversarial terms instead of the paper's 3)",
    "amp_dtype": "autocast type with --amp on CUDA: bfloat16 (no loss scaling, so no host sync "
                 "in the step) or float16 (with a GradScaler, whose inf check syncs every step)",
    "channels_last": "channels-last memory layout for the generator and discriminators (CUDA "
                     "tensor cores prefer it; see docs/BENCHMARKS.md)",
    "compile": "torch.compile the generator and discriminators for training (the first steps "
               "compile; the checkpoint holds the plain weights)",
    "hole_fill": "value of the band (hole) rows in the generator input, in [-1, 1] units (paper -1)",
}


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ModelConfig field (except the derived ones)."""
    from models.config import ModelConfig
    from models.registry import DISCRIMINATORS, GENERATORS
    choices = {"generator": sorted(GENERATORS), "discriminator": sorted(DISCRIMINATORS),
               "l1_norm": None}
    from models.config import AMP_DTYPES, L1_NORMS, LOCAL_INPUTS
    choices["l1_norm"] = list(L1_NORMS)
    choices["amp_dtype"] = list(AMP_DTYPES)
    choices["local_input"] = list(LOCAL_INPUTS)
    group = parser.add_argument_group("model (models.config.ModelConfig)")
    for f in dataclasses.fields(ModelConfig):
        if f.name in DERIVED:
            continue
        kw: Dict[str, Any] = dict(dest=f.name, default=f.default,
                                  help=f"{HELP.get(f.name, f.name)} (default: %(default)s)")
        if isinstance(f.default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = type(f.default)
            if choices.get(f.name):
                kw["choices"] = choices[f.name]
        group.add_argument(f"--{RENAME.get(f.name, f.name)}", **kw)


def model_values(ns: argparse.Namespace) -> Dict[str, Any]:
    """The ModelConfig fields present in a parsed namespace (derived ones excluded)."""
    from models.config import ModelConfig
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(ModelConfig)
            if f.name not in DERIVED and hasattr(ns, f.name)}


def make_model_config(values: Dict[str, Any], image_size: int, band_rows: int, amp: bool):
    """Build the frozen ModelConfig; invalid combinations become a one-line UserError."""
    from models.config import ModelConfig
    from utils.errors import UserError
    try:
        return ModelConfig(**values, image_size=int(image_size), band_rows=int(band_rows),
                           amp=bool(amp))
    except ValueError as exc:
        raise UserError(f"invalid model options: {exc}") from None
