"""Band placement, neighbour shift and slice choice (data/band.py) on hand-made arrays."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data import band as bd


def _row_coded(h=64, w=8):
    """Image whose every row holds its own row index (so shifts are readable)."""
    return np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)


def test_band_rows_from_mm():
    assert bd.band_rows_from_mm(40, 1.0) == 40
    assert bd.band_rows_from_mm(40, 0.8) == 50
    assert bd.band_rows_from_mm(40, 4.0) == 10
    with pytest.raises(ValueError):
        bd.band_rows_from_mm(40, 0)


def test_band_top_centre_and_clamp():
    assert bd.band_top(100, 124, 40, 256) == 112 - 20
    assert bd.band_top(0, 10, 40, 256) == 0          # clamped at the top
    assert bd.band_top(250, 256, 40, 256) == 216     # clamped at the bottom
    np.testing.assert_array_equal(bd.band_top([100, 0], [124, 10], 40, 256), [92, 0])


def test_shift_exact_rows_and_no_leak():
    h, band = 64, 16
    img = _row_coded(h)
    x1, x2 = 26, 36                       # h = 10 < band
    out, a, mask = bd.shift_context(img[None], [x1], [x2], band, fill=-7, band_value=-5)
    a = int(a[0])
    assert a == (x1 + x2) // 2 - band // 2 == 23
    col = out[0, :, 0]
    # above: rows [0, a) hold B rows [x1 - a, x1)
    np.testing.assert_array_equal(col[:a], np.arange(x1 - a, x1))
    # band
    assert (col[a:a + band] == -5).all()
    np.testing.assert_array_equal(mask[0], (np.arange(h) >= a) & (np.arange(h) < a + band))
    # below: rows [a + band, H) hold B rows from x2 onwards
    n_below = h - a - band
    np.testing.assert_array_equal(col[a + band:], np.arange(x2, x2 + n_below))
    # no target row leaks into A
    assert not np.isin(col, np.arange(x1, x2)).any()


def test_shift_tall_target_uses_fill():
    h, band = 64, 8
    img = _row_coded(h)
    out, a, _ = bd.shift_context(img[None], [20], [40], band, fill=-7, band_value=-5)
    col = out[0, :, 0]
    assert int(a[0]) == 26
    # above rows r < a take r + (x1 - a) = r - 6: the first 6 rows have no source -> fill
    assert (col[:6] == -7).all() and col[6] == 0
    assert not np.isin(col, np.arange(20, 40)).any()


def test_numpy_and_torch_batched_agree():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(3, 2, 32, 5)).astype(np.float32)
    x1 = np.array([5, 10, 20]); x2 = np.array([12, 14, 31]); band = 10
    a = bd.band_top(x1, x2, band, 32)
    src = bd.context_source_rows(x1, x2, a, band, 32)
    out_np = bd.apply_source_rows(imgs, src, fill=-1, band_value=0)
    out_t = bd.apply_source_rows(torch.from_numpy(imgs), src, fill=-1, band_value=0)
    np.testing.assert_allclose(out_np, out_t.numpy())
    for i in range(3):   # batched == one at a time
        single, _, _ = bd.shift_context(imgs[i:i + 1], [x1[i]], [x2[i]], band, -1, 0)
        np.testing.assert_allclose(single[0], out_np[i])


def test_clean_mask_and_validity():
    m = np.zeros((40, 40), bool)
    m[5:20, 5:20] = True          # 225 px
    m[30, 30] = True              # 1 px speck
    c = bd.clean_mask(m, 50)
    assert c.sum() == 225 and not c[30, 30]
    assert bd.slice_is_valid(c, 50, band_rows=40)
    assert not bd.slice_is_valid(c, 50, band_rows=15)      # extent 15 >= band
    assert not bd.slice_is_valid(c, 300, band_rows=40)     # too few pixels
    assert bd.min_target_pixels(1.0) == 50 and bd.min_target_pixels(16.0) == 3


def test_candidates_triangular_and_ratio():
    z, w = bd.central_candidates(10, 30, 0.8)    # L = 20, centre 19.5, half-width 8
    assert z.min() == 12 and z.max() == 27
    assert np.isclose(w.sum(), 1) and w[np.argmin(np.abs(z - 19.5))] == w.max()
    # linear fall to half the centre's weight at the edge of the central range (the authors')
    np.testing.assert_allclose(w / w.max(), (1 - 0.5 * np.abs(z - 19.5) / 8) / (1 - 0.5 * 0.5 / 8))
    assert 0.5 < w[0] / w.max() < 0.55
    assert bd.slice_ratio(19.5, 10, 30) == 0.0
    assert np.isclose(bd.slice_ratio(10, 10, 30), 0.95)


def test_choose_slice_respects_validity_and_seed():
    z, w = bd.central_candidates(0, 20)
    valid = np.zeros(len(z), bool); valid[[0, 3]] = True
    picks = {bd.choose_slice(valid, w, np.random.default_rng(s)) for s in range(30)}
    assert picks <= {0, 3}
    assert bd.choose_slice(valid, w, np.random.default_rng(5)) == \
        bd.choose_slice(valid, w, np.random.default_rng(5))
    assert bd.choose_slice(np.zeros(len(z), bool), w, np.random.default_rng(0)) == -1
    assert bd.deterministic_slice(valid, z, 9.5) == 3


def test_one_empty_mask_rule_for_training_and_synthesis():
    """A target made only of specks smaller than min_px: the cleaned mask would be empty, so
    the raw mask is kept, in the dataset item and in the synthesis batch alike (the training
    copy used to give an empty mask and rows (0, 0))."""
    import numpy as np
    from data.sample import one_sample
    from synthesis.steps import build_batch
    img = np.full((64, 32), -1.0, np.float32)
    lab = np.zeros((64, 32), np.uint8)
    lab[30:33, 10:12] = 20                      # 6 px, under min_px = 50
    lab[10:20, 5:25] = 19
    item = one_sample(img, lab, None, 20, 24, 50, 0.5, "c_20", 0)
    batch = build_batch(img[None], lab[None], np.zeros((1, 64, 32), np.float32), [20], [0.5], 24, 50,
                        ["c_20"], [0], "cpu")
    for s, a_mask in ((item, item["A_mask"][0]), (batch, batch["A_mask"][0, 0])):
        assert int(a_mask.sum()) == 6
        assert (int(s["x1"].reshape(-1)[0]), int(s["x2"].reshape(-1)[0])) == (30, 33)
