"""SHRM: integer heights and the paste / push-apart composite on hand-made cases."""
from __future__ import annotations

import torch

from models.shrm import band_crop, composite_index, height_rows, shrm_composite

R = 20  # rows of the toy image


def _toy(n=1):
    """real rows hold their row number, generated rows 100 + row number (B, 1, R, 2)."""
    r = torch.arange(R, dtype=torch.float32).view(1, 1, R, 1).expand(n, 1, R, 2).clone()
    return r, r + 100


def _rows(x):
    return x[:, 0, :, 0].long().tolist()


def _comp(x1, x2, a, band, H):
    real, gen = _toy(len(x1))
    t = lambda v: torch.tensor(v)  # noqa: E731
    idx = composite_index(t(x1), t(x2), t(a), band, t(H), R)
    return _rows(shrm_composite(gen, real, idx)), idx


def test_height_rows_ceil_and_floor():
    s = torch.tensor([0.5, 0.5, 0.0, 1.0, 0.51])
    h = torch.tensor([10, 25, 3, 3, 3])
    assert height_rows(s, h, 40).tolist() == [20, 25, 3, 40, 21]


def test_identity_outside_target_when_H_equals_h():
    # x1=8, x2=12 (h=4), band 8 at a=6 -> centre c=10, first generated row c - 2 = 8
    rows, idx = _comp([8], [12], [6], 8, [4])
    expect = list(range(8)) + [108, 109, 110, 111] + list(range(12, 20))
    assert rows == [expect]
    assert idx["top"].tolist() == [8] and idx["bottom"].tolist() == [12]


def test_push_apart_exact_rows():
    # H=7: Δ=3, Δtop=1, Δbot=2 -> pasted rows [7, 14) from generated rows 10-3=7 .. 13
    rows, idx = _comp([8], [12], [6], 8, [7])
    expect = ([r + 1 for r in range(7)] + [100 + g for g in range(7, 14)]
              + [r - 2 for r in range(14, 20)])
    assert rows == [expect]
    assert idx["top"].tolist() == [7] and idx["bottom"].tolist() == [14]


def test_batch_mixes_per_sample_parameters():
    rows, _ = _comp([8, 8, 3], [12, 12, 6], [6, 6, 0], 8, [4, 7, 3])
    single = [_comp([x1], [x2], [a], 8, [H])[0][0]
              for x1, x2, a, H in [(8, 12, 6, 4), (8, 12, 6, 7), (3, 6, 0, 3)]]
    assert rows == single


def test_rows_leaving_the_image():
    # x1=1, x2=3, band at 0 (c=4), H=9: Δ=7, Δtop=3 -> pasted [-2, 7): rows 0..6 from gen 2..8
    rows, _ = _comp([1], [3], [0], 8, [9])
    assert rows[0][:7] == [102 + r for r in range(7)]
    assert rows[0][7:] == [r - 4 for r in range(7, 20)]
    # H > band near the bottom: generated source rows past the last row are clamped to it
    rows, _ = _comp([8], [18], [12], 8, [10])  # c=16, first gen 11, pasted [8, 18)
    assert rows[0][8:18] == [111 + k for k in range(9)] + [119]
    assert rows[0][:8] == list(range(8)) and rows[0][18:] == [18, 19]


def test_mask_composite_is_zero_outside_pasted_rows_and_has_gradient():
    gen = torch.ones(1, 1, R, 2, requires_grad=True)
    idx = composite_index(torch.tensor([8]), torch.tensor([12]), torch.tensor([6]), 8,
                          torch.tensor([7]), R)
    out = shrm_composite(gen, None, idx)
    assert out[0, 0, :, 0].tolist() == [0.0] * 7 + [1.0] * 7 + [0.0] * 6
    out.sum().backward()
    assert gen.grad.sum() == 14  # 7 rows x 2 columns


def test_band_crop_rows_and_central_columns():
    x = torch.arange(20 * 10, dtype=torch.float32).view(1, 1, 20, 10).repeat(2, 1, 1, 1)
    crop = band_crop(x, torch.tensor([3, 5]), 4, 6)
    assert crop.shape == (2, 1, 4, 6)
    assert torch.equal(crop[0, 0], x[0, 0, 3:7, 2:8]) and torch.equal(crop[1, 0], x[1, 0, 5:9, 2:8])
