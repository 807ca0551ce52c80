"""The two-stage HealthiVert generator (docs/METHOD.md section 3).

All images are (B, 1, H, W) in [-1, 1]; masks (B, 1, H, W) in {0, 1}; heights are sigmoid
outputs in (0, 1) that SHRM scales by ``band_rows``. Everything here is in the *input frame*
(A's frame: context shifted around the band); :mod:`models.shrm` maps it to the target frame.

Coarse stage (0.397 M parameters at ngf 16; paper ~0.41 M): [masked image, slice-ratio plane,
band mask] -> conv 5x5 -> two stride-2 downs -> 4*ngf channels at 1/4 -> dilated convs
(2, 4, 8, 16) -> two decoders (image; healthy-neighbour segmentation) with nearest upsampling;
HGAM: ``1 - CAM`` is concatenated into both decoders at 1/2 and full resolution.
Height: GAP -> linear -> sigmoid (float32 even under AMP).

Fine stage (0.574 M; paper ~0.58 M; generator total 0.971 M vs the paper's 0.99 M, -1.9 %):
[masked image, coarse seg, band mask, slice-ratio plane] -> a dilated branch and a
contextual-attention branch (per-sample masks) at 1/4, concatenated, decoded; the coarse image
joins at the last image layer. Outputs the refined image, the target-vertebra segmentation and
a second height.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn

from models.contextual_attention import ContextualAttention
from models.layers import SNConv, constant_plane, resize_to, up2
from models.registry import register_generator


class _Decoder(nn.Module):
    """4c channels at 1/4 -> (B, out, H, W). ``skip`` extra channels (1 - CAM) join at 1/2 and
    full resolution when ``skip_ch`` > 0."""

    def __init__(self, c: int, skip_ch: int = 0, final_extra: int = 0):
        super().__init__()
        self.skip_ch = skip_ch
        self.c13 = SNConv(4 * c + skip_ch, 2 * c)
        self.c14 = SNConv(2 * c, 2 * c)
        self.c15 = SNConv(2 * c + skip_ch, c)
        self.c16 = SNConv(c, c // 2)
        self.c17 = SNConv(c // 2 + final_extra, 1, activation="none")

    def forward(self, x, skip=None, final_extra=None):
        x = up2(x)
        if self.skip_ch:
            x = torch.cat([x, resize_to(skip, x.shape[-2:])], 1)
        x = self.c14(self.c13(x))
        x = up2(x)
        if self.skip_ch:
            x = torch.cat([x, skip], 1)
        x = self.c16(self.c15(x))
        if final_extra is not None:
            x = torch.cat([x, final_extra], 1)
        return self.c17(x)


def _encoder(in_ch: int, c: int, widths) -> nn.Sequential:
    """conv 5x5 -> down -> conv -> down with channel widths (w1, w2, w3, w4) in units of c."""
    w1, w2, w3, w4 = widths
    return nn.Sequential(SNConv(in_ch, w1 * c, 5), SNConv(w1 * c, w2 * c, 3, 2),
                         SNConv(w2 * c, w3 * c), SNConv(w3 * c, w4 * c, 3, 2))


def _height_head(linear: nn.Linear, feat: torch.Tensor) -> torch.Tensor:
    """Global average pool -> linear -> sigmoid, in float32 even under AMP: (B,) in (0, 1)."""
    with torch.autocast(device_type=feat.device.type, enabled=False):
        return torch.sigmoid(linear(feat.float().mean(dim=(2, 3)))).squeeze(1)


def _dilated(c4: int) -> nn.Sequential:
    return nn.Sequential(*[SNConv(c4, c4, 3, dilation=d) for d in (2, 4, 8, 16)])


class CoarseGenerator(nn.Module):
    """Stage 1. forward(x (B,3,H,W), inv_cam (B,1,H,W)) -> image, neighbour seg, height (B,)."""

    def __init__(self, ngf: int = 16):
        super().__init__()
        c = ngf
        self.enc = _encoder(3, c, (1, 2, 2, 4))
        self.mid = nn.Sequential(SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c), _dilated(4 * c),
                                 SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c))
        self.dec_img = _Decoder(c, skip_ch=1)
        self.dec_seg = _Decoder(c, skip_ch=1)
        self.height = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor, inv_cam: torch.Tensor):
        feat = self.mid(self.enc(x))
        img = torch.clamp(self.dec_img(feat, inv_cam), -1.0, 1.0)
        seg = torch.sigmoid(self.dec_seg(feat, inv_cam))
        return img, seg, _height_head(self.height, feat)


class _FineBranches(nn.Module):
    """The fine stage's two branches at 1/4 resolution, the same in both layouts: a dilated
    convolution branch and a contextual-attention branch (per-sample masks)."""

    def __init__(self, ngf: int, use_contextual_attention: bool):
        super().__init__()
        c = ngf
        self.conv_branch = nn.Sequential(_encoder(4, c, (1, 1, 2, 2)), SNConv(2 * c, 4 * c),
                                         SNConv(4 * c, 4 * c), _dilated(4 * c))
        self.att_enc = nn.Sequential(_encoder(4, c, (1, 1, 2, 4)), SNConv(4 * c, 4 * c),
                                     SNConv(4 * c, 4 * c, activation="relu"))
        self.use_ca = use_contextual_attention
        self.ca = ContextualAttention(ksize=3, rate=2, fuse_k=3, softmax_scale=10.0)
        self.att_dec = nn.Sequential(SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c))

    def branches(self, x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """(B, 4, H, W) -> both branches' features concatenated, (B, 8 ngf, H/4, W/4)."""
        fa = self.att_enc(x)
        if self.use_ca:
            fa = self.ca(fa, fa, band)
        return torch.cat([self.conv_branch(x), self.att_dec(fa)], 1)


class FineGenerator(_FineBranches):
    """Stage 2. forward(x (B,4,H,W), band (B,1,H,W), coarse_img) -> image, target seg, height."""

    def __init__(self, ngf: int = 16, use_contextual_attention: bool = True):
        super().__init__(ngf, use_contextual_attention)
        c = ngf
        self.merge = nn.Sequential(SNConv(8 * c, 4 * c), SNConv(4 * c, 4 * c))
        self.dec_img = _Decoder(c, final_extra=1)
        self.dec_seg = _Decoder(c)
        self.height = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor, band: torch.Tensor, coarse_img: torch.Tensor):
        feat = self.merge(self.branches(x, band))
        img = torch.clamp(self.dec_img(feat, final_extra=coarse_img), -1.0, 1.0)
        seg = torch.sigmoid(self.dec_seg(feat))
        return img, seg, _height_head(self.height, feat)


class HealthiVertGenerator(nn.Module):
    """Coarse + fine stages (the classes ``STAGES`` names). Inputs in A's frame; see
    :meth:`forward`."""

    STAGES = (CoarseGenerator, FineGenerator)

    def __init__(self, ngf: int = 16, use_contextual_attention: bool = True):
        super().__init__()
        coarse, fine = self.STAGES
        self.coarse = coarse(ngf)
        self.fine = fine(ngf, use_contextual_attention)

    def forward(self, A: torch.Tensor, band: torch.Tensor, slice_ratio: torch.Tensor,
                inv_cam: torch.Tensor) -> Dict[str, torch.Tensor]:
        """A (B,1,H,W) masked image in [-1,1]; band (B,1,H,W) 1 in the hole; slice_ratio (B,);
        inv_cam (B,1,H,W) = 1 - CAM (all ones without CAM).

        Returns (A's frame): ``coarse_img``, ``coarse_seg`` (healthy neighbours, [0,1]),
        ``coarse_height`` (B,) in (0,1), ``fine_img``, ``fine_seg`` (target, [0,1]),
        ``fine_height`` (B,) in (0,1).
        """
        ratio = constant_plane(slice_ratio, A)
        c_img, c_seg, c_h = self.coarse(torch.cat([A, ratio, band], 1), inv_cam)
        f_img, f_seg, f_h = self.fine(torch.cat([A, c_seg, band, ratio], 1), band, c_img)
        return {"coarse_img": c_img, "coarse_seg": c_seg, "coarse_height": c_h,
                "fine_img": f_img, "fine_seg": f_seg, "fine_height": f_h}


@register_generator("healthivert")
def build_healthivert(cfg) -> nn.Module:
    """The paper's two-stage generator (``cfg.use_contextual_attention`` switches the CA step)."""
    return HealthiVertGenerator(cfg.ngf, cfg.use_contextual_attention)


# ---------------------------------------------------------------------------------------------
# The authors' layout (``--generator healthivert_paper``; ``--preset paper``). Same encoders,
# dilated stacks and contextual attention as above; what differs:
#
# * one decoder per stage whose last features feed two 3x3 heads (image: linear, clamped;
#   segmentation: sigmoid) instead of two separate decoders;
# * in the coarse decoder the ``1 - CAM`` skip is mixed in by its own conv (4c + 1 -> 4c at 1/2
#   resolution before the 4c -> 2c conv, 2c + 1 -> 2c at full resolution before the 2c -> c conv),
#   and the skip is resized by nearest sampling (every other pixel), not by area;
# * the fine stage has three convs at 1/4 after the merge instead of two (merge, then two), and
#   both final heads see the coarse image;
# * the height heads read the coarse features after the dilated stack (before the two 1/4 convs)
#   and the fine features right after the merge conv.
# 0.987 M parameters at ngf 16 (ours 0.971 M).
# ---------------------------------------------------------------------------------------------


def _nearest_half(x: torch.Tensor, size) -> torch.Tensor:
    """Nearest resize of a skip map to ``size`` (the authors' ``1 - CAM`` at 1/2)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(size), mode="nearest")


class _Heads(nn.Module):
    """(B, in_ch, H, W) -> image (linear, clamped to [-1, 1]) and segmentation (sigmoid)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.img = SNConv(in_ch, 1, activation="none")
        self.seg = SNConv(in_ch, 1, activation="none")

    def forward(self, x):
        return torch.clamp(self.img(x), -1.0, 1.0), torch.sigmoid(self.seg(x))


class PaperCoarseGenerator(nn.Module):
    """Stage 1, the authors' layout. Same call and outputs as :class:`CoarseGenerator`."""

    def __init__(self, ngf: int = 16):
        super().__init__()
        c = ngf
        self.enc = _encoder(3, c, (1, 2, 2, 4))
        self.mid = nn.Sequential(SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c), _dilated(4 * c))
        self.post = nn.Sequential(SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c))
        self.mix_half = SNConv(4 * c + 1, 4 * c)
        self.dec_half = nn.Sequential(SNConv(4 * c, 2 * c), SNConv(2 * c, 2 * c))
        self.mix_full = SNConv(2 * c + 1, 2 * c)
        self.dec_full = nn.Sequential(SNConv(2 * c, c), SNConv(c, c // 2))
        self.heads = _Heads(c // 2)
        self.height = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor, inv_cam: torch.Tensor):
        feat = self.mid(self.enc(x))
        h = _height_head(self.height, feat)
        y = up2(self.post(feat))
        y = self.dec_half(self.mix_half(torch.cat([y, _nearest_half(inv_cam, y.shape[-2:])], 1)))
        y = up2(y)
        y = self.dec_full(self.mix_full(torch.cat([y, inv_cam], 1)))
        img, seg = self.heads(y)
        return img, seg, h


class PaperFineGenerator(_FineBranches):
    """Stage 2, the authors' layout. Same call and outputs as :class:`FineGenerator`."""

    def __init__(self, ngf: int = 16, use_contextual_attention: bool = True):
        super().__init__(ngf, use_contextual_attention)
        c = ngf
        self.merge = SNConv(8 * c, 4 * c)
        self.post = nn.Sequential(SNConv(4 * c, 4 * c), SNConv(4 * c, 4 * c))
        self.dec_half = nn.Sequential(SNConv(4 * c, 2 * c), SNConv(2 * c, 2 * c))
        self.dec_full = nn.Sequential(SNConv(2 * c, c), SNConv(c, c // 2))
        self.heads = _Heads(c // 2 + 1)
        self.height = nn.Linear(4 * c, 1)

    def forward(self, x: torch.Tensor, band: torch.Tensor, coarse_img: torch.Tensor):
        feat = self.merge(self.branches(x, band))
        h = _height_head(self.height, feat)
        y = self.dec_full(up2(self.dec_half(up2(self.post(feat)))))
        img, seg = self.heads(torch.cat([y, coarse_img.to(y.dtype)], 1))
        return img, seg, h


class PaperHealthiVertGenerator(HealthiVertGenerator):
    """The authors' layout of both stages; same inputs and outputs as :class:`HealthiVertGenerator`."""

    STAGES = (PaperCoarseGenerator, PaperFineGenerator)


@register_generator("healthivert_paper")
def build_healthivert_paper(cfg) -> nn.Module:
    """The authors' generator layout (shared decoder per stage with two heads; 0.987 M at ngf 16)."""
    return PaperHealthiVertGenerator(cfg.ngf, cfg.use_contextual_attention)
