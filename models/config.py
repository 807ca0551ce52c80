"""The model configuration: every value the networks, losses and optimisers need, in one frozen
dataclass. Scripts turn options into a :class:`ModelConfig`; nothing below the model wrapper
sees the options object.

Loss terms and what each weight multiplies (see :mod:`models.losses` for the frames):

* ``gan_weight`` (1/6) multiplies the sum of the generator's vanilla-GAN terms (three
  discriminators x two generator stages; the coarse stage has no target mask, so 5 terms).
* ``lambda_L1`` multiplies the band L1 term (fine + coarse composites vs. the real slice, inside
  the band rows). With ``l1_norm='per_sample'`` each sample's absolute error is summed over its
  band and divided by its band area, averaged over the batch, and scaled by
  ``L1_BAND_SCALE = 200/12``: the factor the original applied at its batch size 12, so paper
  runs at batch 12 are identical in both modes while other batch sizes are not distorted.
  ``l1_norm='original'`` reproduces the original's batch-dependent factor
  ``200 * H * W / (band pixels in the whole batch)`` applied to the all-pixel mean.
* ``lambda_dice_fine`` x (1 - Dice(fine composite seg, A_mask)),
  ``lambda_dice_coarse`` x (1 - Dice(coarse seg, normal_vert)),
  ``lambda_edge`` x MSE(Sobel(composite seg), Sobel(A_mask)) (EEM),
  ``lambda_height`` x (|H1 - h| / h + |H2 - h| / h) with continuous heights in rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict

L1_NORMS = ("per_sample", "original")
EDGE_OPERATORS = ("sobel_clip", "sobel_normalised")
LOCAL_INPUTS = ("crop", "padded")
AMP_DTYPES = ("bfloat16", "float16")
L1_BAND_SCALE = 200.0 / 12.0  # original's 1280 / batch * (band / H) at its batch size 12


def patchgan_min_size(n_layers: int) -> int:
    """Smallest input side for which an ``n_layers`` PatchGAN (k4, stride 2 x n, then two
    stride-1 convs) gives a non-empty output: 3 * 2**n (24 for the 70x70 PatchGAN)."""
    return 3 * 2 ** n_layers


@dataclass(frozen=True)
class ModelConfig:
    """Networks, losses and optimiser settings of HealthiVert-GAN.

    Sizes are in pixels of the 2D slice (``image_size`` square, ``band_rows`` the fixed band
    height, the original's "40 mm" at 1 mm spacing). Ablations are flags: ``use_cam`` (HGAM
    input ``1 - CAM``; off -> all ones), ``use_edge`` (EEM loss), ``use_height`` (SHRM heads;
    off -> H = h, no height loss), ``use_contextual_attention`` (off -> the attention branch's
    convolutions run without the patch-matching step, same parameter count).
    """

    generator: str = "healthivert"
    discriminator: str = "patchgan"
    ngf: int = 16
    ndf: int = 64
    n_layers_D: int = 3
    band_rows: int = 40
    image_size: int = 256
    local_cols: int = 70
    local_input: str = "padded"
    use_cam: bool = True
    use_edge: bool = True
    edge_on_binary: bool = False
    use_height: bool = True
    use_contextual_attention: bool = True
    lambda_L1: float = 1.0
    l1_norm: str = "per_sample"
    lambda_dice_fine: float = 15.0
    lambda_dice_coarse: float = 10.0
    lambda_edge: float = 800.0
    lambda_height: float = 40.0
    gan_weight: float = 1.0 / 6.0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.0
    edge_operator: str = "sobel_clip"
    adv_coarse: bool = False
    hole_fill: float = -1.0
    amp: bool = False
    amp_dtype: str = "bfloat16"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        from models.registry import DISCRIMINATORS, GENERATORS  # late import: no cycle
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; "
                             f"choose from {sorted(GENERATORS)}")
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(f"unknown discriminator {self.discriminator!r}; "
                             f"choose from {sorted(DISCRIMINATORS)}")
        if self.l1_norm not in L1_NORMS:
            raise ValueError(f"l1_norm must be one of {L1_NORMS}, got {self.l1_norm!r}")
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        dmin = patchgan_min_size(self.n_layers_D)
        if not dmin <= self.band_rows <= self.image_size:
            raise ValueError(f"band_rows must be in [{dmin}, image_size={self.image_size}], got "
                             f"{self.band_rows} (a {self.n_layers_D}-layer PatchGAN needs "
                             f">= {dmin} rows)")
        if self.local_width < dmin:
            raise ValueError(f"local_cols must be >= {dmin}, got {self.local_cols}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {AMP_DTYPES}, got {self.amp_dtype!r}")
        if self.local_input not in LOCAL_INPUTS:
            raise ValueError(f"local_input must be one of {LOCAL_INPUTS}, got {self.local_input!r}")
        if self.edge_operator not in EDGE_OPERATORS:
            raise ValueError(f"edge_operator must be one of {EDGE_OPERATORS}, got {self.edge_operator!r}")
        if not -1.0 <= self.hole_fill <= 1.0:
            raise ValueError(f"hole_fill must be in [-1, 1], got {self.hole_fill}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ngf < 2 or self.ngf % 2 or self.ndf < 1:
            raise ValueError(f"ngf must be even and >= 2 and ndf >= 1 (got {self.ngf}, {self.ndf})")

    @classmethod
    def paper(cls, **overrides: Any) -> "ModelConfig":
        """The published setting: 256x256 slices, 40-row band, width 16 generator (~0.99 M
        parameters), three 70x70 PatchGANs (ndf 64, 3 layers, ~2.76 M each), the original loss
        weights, Adam 2e-4 / (0.5, 0.999)."""
        return replace(cls(), **overrides)

    @property
    def local_width(self) -> int:
        """Columns of the D_local crop: the central ``local_cols`` columns (all when narrower)."""
        return min(self.local_cols, self.image_size)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        """Build from a dict, ignoring unknown keys (e.g. a full options dump)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
