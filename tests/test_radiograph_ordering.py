"""Level-ordered decoding (radiograph/ordering.py): each level on its own corner, in order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radiograph.cohort import channel_names
from radiograph.model import decode, from_heatmap
from radiograph.ordering import align, order_levels

LEVELS = ["L1", "L2", "L3", "L4", "L5"]


def _blob(h, w, y, x, amp, sd=1.5):
    yy, xx = np.mgrid[:h, :w]
    return amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sd ** 2))


def _heatmaps(flip=False, l3_on_l2=True):
    """64 x 64 maps, stride 1; one point type per level (``sa``), the levels 10 px apart down
    column 32 (up it when ``flip``). L3's channel peaks on L2's corner (1.0) and answers only
    0.4 on its own; L2's own channel is 0.9 there."""
    ch = [c for c in channel_names(LEVELS, sacrum=False) if c.endswith("_sa")]
    ys = {lv: (54 - 10 * i if flip else 10 + 10 * i) for i, lv in enumerate(LEVELS)}
    hm = np.zeros((len(ch), 64, 64))
    for k, lv in enumerate(LEVELS):
        hm[k] = _blob(64, 64, ys[lv], 32, 0.9 if lv == "L2" else 1.0)
    if l3_on_l2:
        hm[2] = _blob(64, 64, ys["L2"], 32, 1.0) + _blob(64, 64, ys["L3"], 32, 0.4)
    return hm, ch, ys


def _channel_maxima(hm):
    p, k = decode(torch.as_tensor(hm[None], dtype=torch.float32), "quadratic")
    return from_heatmap(p, 1)[0].numpy().astype(float), k[0].numpy().astype(float)


@pytest.mark.parametrize("flip", [False, True])
def test_a_level_whose_maximum_sits_on_its_neighbour_is_put_back_on_its_own_corner(flip):
    hm, ch, ys = _heatmaps(flip)
    own, peak = _channel_maxima(hm)
    assert abs(own[2, 1] - ys["L2"]) < 0.5                 # each channel's maximum: L3 on L2
    pts, pk = order_levels(hm, ch, own, peak, stride=1)
    for k, lv in enumerate(LEVELS):
        assert np.allclose(pts[k], (32, ys[lv]), atol=0.3), (lv, pts[k])
    assert pk[2] == pytest.approx(0.4, abs=0.05)          # its own, weaker answer there


def test_a_level_out_of_view_keeps_its_own_maximum_and_a_spurious_peak_is_skipped():
    hm, ch, ys = _heatmaps(l3_on_l2=False)
    hm[4] = 0.01 * _blob(64, 64, 5, 5, 1.0)                # L5 out of view: nothing over the floor
    hm[0] += _blob(64, 64, 15, 50, 0.3)                    # a weak stray peak beside L1 / L2
    own, peak = _channel_maxima(hm)
    pts, _ = order_levels(hm, ch, own, peak, stride=1)
    for k, lv in enumerate(LEVELS[:4]):
        assert np.allclose(pts[k], (32, ys[lv]), atol=0.3), (lv, pts[k])
    assert np.allclose(pts[4], own[4])


def test_alignment_keeps_the_order_and_uses_each_candidate_once():
    v = np.array([[1.0, 0.0, 0.0],
                  [0.9, 1.0, 0.0],      # level 1 and 2 both like candidate 1 best
                  [0.0, 0.4, 0.0],
                  [0.0, 0.0, 0.8]])
    v[1, 1] = 1.0
    v[1, 2] = 0.0
    assert align(v) == [(0, 0), (1, 1), (3, 2)]
    w = np.array([[0.2, 1.0], [0.1, 0.0]])                  # level 1 first even though it is
    assert align(w) == [(0, 1)]                           # the only strong one: nothing after


def test_a_place_belongs_to_the_point_type_that_answers_most_there():
    """L2's mid-inferior channel answers 0.9 on L2's anterior-inferior corner (where that
    corner's own channel answers 1.0) and 0.5 on its own point: it must take its own point."""
    ch = ["L1_ia", "L1_im", "L2_ia", "L2_im"]
    at = {"L1_ia": (20, 20), "L1_im": (20, 32), "L2_ia": (40, 20), "L2_im": (40, 32)}   # (y, x)
    hm = np.stack([_blob(64, 64, *at[c], 1.0) for c in ch])
    hm[3] = _blob(64, 64, *at["L2_ia"], 0.9) + _blob(64, 64, *at["L2_im"], 0.5)
    own, peak = _channel_maxima(hm)
    assert np.allclose(own[3], at["L2_ia"][::-1], atol=0.3)     # its own maximum: the corner
    pts, pk = order_levels(hm, ch, own, peak, stride=1)
    for k, c in enumerate(ch):
        assert np.allclose(pts[k], at[c][::-1], atol=0.3), (c, pts[k])
    assert pk[3] == pytest.approx(0.5, abs=0.05)
