"""The authors' RHLV rule on a hand-computed example (issue #13)."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation.heights_original import original_rhlv


def _pair():
    syn = np.zeros((10, 9, 11), bool)
    ori = np.zeros((10, 9, 11), bool)
    syn[0:8, 1:7, :] = True                                   # 8 tall, AP columns 1..6
    for col, h in zip(range(1, 7), (4, 5, 6, 7, 8, 8)):       # a wedge, anterior low
        ori[8 - h:8, col, :] = True
    return syn, ori


def test_original_rule_equals_the_hand_computation():
    """By hand: LR slab = slices 3..6 (c = 5, n = 10 // 5 = 2). Synthetic AP extent 1..6:
    t1 = int(1 + 5/3) = 2, t2 = int(1 + 10/3) = 4, so 'anterior' = columns 0-1, middle 2-3,
    posterior 4-8. Centre columns: synthetic int(3.5) = 3 (8 tall), real int(148/38 = 3.89) = 3
    (6 tall). No rescale (no real part is taller). Kept at 0.7: synthetic > 5.6 -> A [8],
    M [8, 8], P [8, 8, 8]; real > 4.2 -> A [] (column 1 is 4 tall), M [5, 6], P [7, 8, 8].
    RHLV: A (8 - 0) / 8 = 1, M (8 - 5.5) / 8 = 0.3125, P (8 - 23/3) / 8 = 1/24."""
    r = original_rhlv(*_pair(), threshold=0.7)
    assert r["H_syn"]["a"] == 8 and r["H_ori"]["a"] == 0
    assert r["H_ori"]["m"] == pytest.approx(5.5) and r["H_ori"]["p"] == pytest.approx(23 / 3)
    assert r["RHLV"]["a"] == pytest.approx(1.0, abs=1e-6)
    assert r["RHLV"]["m"] == pytest.approx(0.3125, abs=1e-6)
    assert r["RHLV"]["p"] == pytest.approx(1 / 24, abs=1e-6)


def test_original_rescale_is_per_part():
    """A synthetic body shorter than the real one is scaled up part by part (never negative)."""
    syn, ori = _pair()
    short = np.zeros_like(syn)
    short[2:8, 1:7, :] = True                                 # 6 tall, real max 8
    r = original_rhlv(short, ori, threshold=0.7)
    assert r["RHLV"]["p"] >= 0 and r["H_syn"]["p"] == pytest.approx(8.0, rel=1e-5)


def test_narrow_body_gives_an_empty_slab():
    syn, ori = _pair()
    r = original_rhlv(syn[:, :, :4], ori[:, :, :4])           # 4 slices: (3 - 0) // 5 = 0
    assert r["H_syn"]["m"] == 0 and r["RHLV"]["m"] == 0
