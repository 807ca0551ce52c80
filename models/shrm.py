"""SHRM: self-adaptive height restoration. Turns the height heads into integer row counts and
pastes the generated rows into the real slice, pushing the context apart (docs/METHOD.md §3).

With h = x2 - x1 (current height), H >= h (predicted), Δ = H - h, Δtop = Δ // 2,
Δbot = Δ - Δtop, band centre c = a + band // 2, for each output row r (target frame):

* r <  x1 - Δtop            -> real[r + Δtop]       (context above, pushed up)
* x1 - Δtop <= r < x2 + Δbot -> gen[c - H // 2 + (r - (x1 - Δtop))]
* r >= x2 + Δbot            -> real[r - Δbot]       (context below, pushed down)

Real rows always stay inside the image; generated source rows leaving the image (only possible
when H exceeds the band near the border) are clamped to the nearest row. Context pushed past the
border is dropped. Everything is vectorised with ``torch.gather`` (no loops, no host syncs).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch


def height_rows(height_sigmoid: torch.Tensor, h: torch.Tensor, band_rows: int) -> torch.Tensor:
    """Integer predicted height H = max(ceil(band_rows * sigmoid), h) as long (B,). No gradient
    flows through the ceil; the height loss uses the continuous ``band_rows * sigmoid``."""
    cont = band_rows * height_sigmoid.detach().float()
    H = torch.ceil(cont).long()
    return torch.maximum(H, h.long())


def composite_index(x1: torch.Tensor, x2: torch.Tensor, band_top: torch.Tensor, band_rows: int,
                    H: torch.Tensor, n_rows: int) -> Dict[str, torch.Tensor]:
    """Row maps of the composite. All inputs (B,) long; returns per-sample (B, n_rows) long source
    rows ``src_real`` and ``src_gen``, bool ``from_gen``, and the pasted range ``top``/``bottom``
    (B,) = [x1 - Δtop, x2 + Δbot)."""
    x1, x2, a, H = x1.long(), x2.long(), band_top.long(), H.long()
    delta = H - (x2 - x1)
    d_top = torch.div(delta, 2, rounding_mode="floor")
    d_bot = delta - d_top
    top, bottom = x1 - d_top, x2 + d_bot
    r = torch.arange(n_rows, device=x1.device).view(1, -1)
    col = lambda t: t.view(-1, 1)  # noqa: E731
    src_real = torch.where(r < col(top), r + col(d_top), r - col(d_bot)).clamp(0, n_rows - 1)
    first = a + band_rows // 2 - torch.div(H, 2, rounding_mode="floor")
    src_gen = (col(first) + r - col(top)).clamp(0, n_rows - 1)
    from_gen = (r >= col(top)) & (r < col(bottom))
    return {"src_real": src_real, "src_gen": src_gen, "from_gen": from_gen,
            "top": top, "bottom": bottom}


def _gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x (B, C, R, W), rows (B, R) -> x[b, :, rows[b, r], :]."""
    b, c, _, w = x.shape
    idx = rows.view(b, 1, -1, 1).expand(b, c, rows.shape[1], w)
    return torch.gather(x, 2, idx)


def shrm_composite(gen: torch.Tensor, real: Optional[torch.Tensor], index: Dict[str, torch.Tensor],
                   fill: float = 0.0) -> torch.Tensor:
    """Composite (B, C, R, W) in the target frame: generated rows (from ``gen``, A's frame) in
    the pasted range, real context pushed apart elsewhere. ``real=None`` fills the context with
    ``fill`` (used for the target segmentation: no target vertebra outside the pasted rows)."""
    pasted = _gather_rows(gen, index["src_gen"])
    if real is None:
        context = torch.full_like(pasted, fill)
    else:  # keep the real rows exact under AMP: promote (float16 gen, float32 real) -> float32
        context = _gather_rows(real, index["src_real"])
        dtype = torch.promote_types(pasted.dtype, context.dtype)
        pasted, context = pasted.to(dtype), context.to(dtype)
    sel = index["from_gen"].view(gen.shape[0], 1, -1, 1)
    return torch.where(sel, pasted, context)


def band_crop(x: torch.Tensor, band_top: torch.Tensor, band_rows: int, width: int) -> torch.Tensor:
    """Rows [a, a + band_rows) per sample and the central ``width`` columns: (B, C, band, width)
    (the D_local input)."""
    b, c, n_rows, w = x.shape
    c0 = (w - width) // 2
    x = x[..., c0:c0 + width]
    rows = (band_top.long().view(-1, 1) + torch.arange(band_rows, device=x.device).view(1, -1))
    return _gather_rows(x, rows.clamp(0, n_rows - 1))
