"""Synthetic GAN batches for the model tests (the batch contract of data/sample.py, built here so the model tests
do not depend on the dataset code), plus a check that they follow the band rule."""
from __future__ import annotations

import torch


def spine_slice(size: int, x1: int, x2: int, seed: int) -> tuple:
    """A sagittal-like slice (1, S, S) in [-1, 1]: bright vertebral bodies (h = x2 - x1 rows for
    the target, neighbours of similar height) separated by dark discs, smooth texture; plus the
    target mask and the neighbours' mask (1, S, S)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.full((size, size), -0.8)
    target = torch.zeros(size, size)
    neigh = torch.zeros(size, size)
    c0, c1 = size // 4, 3 * size // 4
    disc = 4
    h = x2 - x1
    tops = [x1 - 2 * (h + disc), x1 - (h + disc), x1, x2 + disc, x2 + disc + h + disc]
    for i, t in enumerate(tops):
        lo, hi = max(t, 0), min(t + h, size)
        if hi <= lo:
            continue
        level = 0.3 + 0.2 * torch.rand((), generator=g)
        img[lo:hi, c0:c1] = level
        (target if t == x1 else neigh)[lo:hi, c0:c1] = 1.0
    yy = torch.linspace(0, 6.28, size).view(-1, 1)
    img = img + 0.05 * torch.sin(yy * (1 + seed % 3) + yy.t())
    return img.clamp(-1, 1)[None], target[None], neigh[None]


def shift_rows(img: torch.Tensor, x1: int, x2: int, a: int, band: int, fill: float = -1.0):
    """The band rule (docs/METHOD.md §2) on (C, S, S): context above ends at row a, below starts at a + band."""
    size = img.shape[-2]
    out = torch.full_like(img, fill)
    for r in range(size):
        src = r + (x1 - a) if r < a else (x2 + (r - a - band) if r >= a + band else None)
        if src is not None and 0 <= src < size:
            out[:, r] = img[:, src]
    if fill != 0.0:
        out[:, a:a + band] = 0.0
    return out


def make_batch(n: int = 2, size: int = 64, band: int = 24, seed: int = 0, heights=None) -> dict:
    """A GAN batch dict of ``n`` samples (different heights and band positions per sample)."""
    g = torch.Generator().manual_seed(seed)
    keys = ["A", "B", "mask", "A_mask", "normal_vert", "CAM"]
    cols = {k: [] for k in keys}
    x1s, x2s, tops = [], [], []
    for i in range(n):
        h = (int(heights[i]) if heights is not None
             else int(torch.randint(10, band - 4, (), generator=g)))
        x1 = size // 2 - h // 2 + int(torch.randint(-3, 4, (), generator=g))
        x2 = x1 + h
        a = max(0, min((x1 + x2) // 2 - band // 2, size - band))
        B, tgt, neigh = spine_slice(size, x1, x2, seed * 100 + i)
        mask = torch.zeros(1, size, size)
        mask[:, a:a + band] = 1
        cam = torch.zeros(1, size, size)
        cam[:, max(x1 - 6, 0):x2 + 6, size // 3:size // 2] = 0.7  # spills onto the neighbours
        cols["A"].append(shift_rows(B, x1, x2, a, band, fill=-1.0))
        cols["B"].append(B)
        cols["mask"].append(mask)
        cols["A_mask"].append(tgt)
        cols["normal_vert"].append(shift_rows(neigh, x1, x2, a, band, fill=0.0))
        cols["CAM"].append(shift_rows(cam, x1, x2, a, band, fill=0.0))
        x1s.append(x1), x2s.append(x2), tops.append(a)
    batch = {k: torch.stack(v) for k, v in cols.items()}
    x1t, x2t = torch.tensor(x1s), torch.tensor(x2s)
    batch.update(slice_ratio=torch.rand(n, generator=g), height=(x2t - x1t).float(), x1=x1t,
                 x2=x2t, band_top=torch.tensor(tops), band_rows=torch.full((n,), band),
                 key=[f"synth_{i}" for i in range(n)], slice_index=torch.arange(n))
    return batch


def test_synthetic_batch_follows_band_rule():
    b = make_batch(3, 64, 24, seed=1)
    for i in range(3):
        x1, x2, a = int(b["x1"][i]), int(b["x2"][i]), int(b["band_top"][i])
        assert (x1 + x2) // 2 - 24 // 2 == a  # centred (no clamping at this size)
        A, B = b["A"][i, 0], b["B"][i, 0]
        assert torch.equal(A[a - 1], B[x1 - 1])  # context above ends at the band
        assert torch.equal(A[a + 24], B[x2])  # context below starts at x2 (no leak)
        assert float(A[a:a + 24].abs().sum()) == 0.0
        assert b["A_mask"][i, 0, x1:x2].sum() > 0 and b["A_mask"][i, 0, :x1].sum() == 0
        assert b["mask"][i, 0, :, 0].sum() == 24
