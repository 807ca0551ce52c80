"""Contextual attention (DeepFill v1), vectorised over the batch with *per-sample* masks.

The original used sample 0's mask for the whole batch and looped over samples. Here every sample
matches its own hole against its own known-background patches, all in one batched ``bmm``:

1. raw 4x4 background patches (stride ``rate`` = 2) of ``b`` at feature resolution ->
   (B, C*16, L) for the reconstruction;
2. ``f`` and ``b`` subsampled by ``rate`` (nearest) -> 3x3 patches of ``b`` (L2-normalised) are
   matched against 3x3 neighbourhoods of ``f``: scores (B, L, Q), L = Q = (H/2)*(W/2);
3. scores of patches touching the hole (max-pooled mask, so no hole pixel leaks into a raw
   patch) are zeroed, then optional 3x3 identity "fuse" convolutions along both patch
   orderings (coherent matches; zeroing first keeps hole content out of the fused scores,
   the original zeroed only afterwards);
4. hole patches are excluded from the softmax over L (scale 10, float32);
5. reconstruction = transposed convolution of the attention with the raw patches, done as
   ``bmm`` + ``fold`` (stride 2, padding 1), divided by 4 (each pixel is covered 4 times).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ContextualAttention(nn.Module):
    """Fill hole features of ``f`` from known-region patches of ``b`` (same sample only).

    Args: ``ksize`` matching patch size (3), ``rate`` subsampling for matching (2; raw patches
    are ``2*rate`` wide), ``fuse_k`` fuse kernel (3), ``softmax_scale`` (10).
    """

    def __init__(self, ksize: int = 3, rate: int = 2, fuse_k: int = 3,
                 softmax_scale: float = 10.0, fuse: bool = True):
        super().__init__()
        if ksize % 2 == 0 or fuse_k % 2 == 0:
            raise ValueError("ksize and fuse_k must be odd")
        self.ksize, self.rate, self.fuse_k = ksize, rate, fuse_k
        self.softmax_scale, self.fuse = softmax_scale, fuse
        self.register_buffer("fuse_weight", torch.eye(fuse_k).view(1, 1, fuse_k, fuse_k),
                             persistent=False)

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``f``, ``b``: (B, C, H, W) features (H, W divisible by ``rate``); ``mask``:
        (B, 1, Hm, Wm) with 1 in the hole, Hm/H an integer (e.g. the image-resolution band).
        Returns (B, C, H, W)."""
        bsz, ch, hh, ww = f.shape
        r, kraw = self.rate, 2 * self.rate
        raw = F.unfold(b, kernel_size=kraw, stride=r, padding=(kraw - r) // 2)  # (B, C*16, L)
        pad = self.ksize // 2
        fd = F.interpolate(f, scale_factor=1.0 / r, mode="nearest")
        fpatch = F.unfold(fd, self.ksize, padding=pad)  # (B, C*9, Q)
        if b is f:  # the generator's self-attention: background patches = foreground patches
            wpatch = fpatch
        else:
            bd = F.interpolate(b, scale_factor=1.0 / r, mode="nearest")
            wpatch = F.unfold(bd, self.ksize, padding=pad)  # (B, C*9, L)
        wpatch = wpatch / wpatch.norm(dim=1, keepdim=True).clamp_min(1e-4)
        h, w = fd.shape[-2:]
        known = self.known_patches(mask, (h, w))  # (B, L) bool
        scores = torch.bmm(wpatch.transpose(1, 2), fpatch)  # (B, L, Q)
        scores = scores * known[:, :, None].to(scores.dtype)  # hole patches never score
        if self.fuse:
            scores = self._fuse(scores, h, w)
        logits = (scores.float() * self.softmax_scale).masked_fill(~known[:, :, None], -1e9)
        attn = torch.softmax(logits, dim=1) * known[:, :, None].float()  # no hole patch used
        cols = torch.bmm(raw.float(), attn)  # (B, C*16, Q)
        out = F.fold(cols, (hh, ww), kernel_size=kraw, stride=r, padding=(kraw - r) // 2)
        return (out / 4.0).to(f.dtype)

    def known_patches(self, mask: torch.Tensor, size) -> torch.Tensor:
        """(B, L) True where the 3x3 matching patch (and so the 4x4 raw patch) lies entirely in
        the known region of that sample. The mask is max-pooled to the matching grid."""
        m = F.adaptive_max_pool2d(mask.float(), size)
        touched = F.unfold(m, self.ksize, padding=self.ksize // 2).amax(dim=1)  # (B, L)
        return touched == 0

    def _fuse(self, s: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Identity-kernel convolutions over (L, Q) in row-major then column-major patch order,
        as DeepFill's fuse step. s: (B, L, Q) with L = Q = h * w."""
        bsz = s.shape[0]
        k = self.fuse_weight.to(s.dtype)
        p = self.fuse_k // 2
        s = F.conv2d(s.unsqueeze(1), k, padding=p)  # (B, 1, L, Q)
        s = s.view(bsz, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(bsz, 1, h * w, h * w)
        s = F.conv2d(s, k, padding=p)
        s = s.view(bsz, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(bsz, h * w, h * w)
        return s
