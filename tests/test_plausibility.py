"""A generator's artefacts must not pass as heights (issue #12): the height rule measures the body
itself, and implausible syntheses are flagged."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation.heights import HeightRule, measure_own, measure_pair
from evaluation.plausibility import implausible_reasons


def _body(shape=(80, 60, 40)):
    m = np.zeros(shape, bool)
    m[30:54, 10:40, 8:32] = True          # 24 mm tall, AP 10-39
    return m


def test_posterior_island_does_not_move_the_thirds():
    """A 2-voxel blob far posterior stretched the AP extent: the 'posterior third' fell on it and
    read 1-5 mm (phantom_008_21 in the 45-minute study). The body rule ignores it."""
    m = _body()
    m[40:42, 52:56, 18:22] = True
    all_voxels = measure_own(m, (1, 1, 1), HeightRule(column_filter="none", body="all"))
    body = measure_own(m, (1, 1, 1), HeightRule(column_filter="none"))
    assert all_voxels[2] < 12                       # the artefact the original rule measures
    np.testing.assert_allclose(body, 24.0)


def test_plausible_body_passes():
    real = np.zeros((80, 60, 40), np.int32)
    real[2:26][_body()[30:54]] = 19
    real[_body()] = 20
    real[56:80][_body()[30:54]] = 21
    assert implausible_reasons(real, real, 20, (1, 1, 1)) == []


@pytest.mark.parametrize("edit,expected", [
    (lambda f: f.__setitem__((slice(40, 42), slice(52, 56), slice(18, 22)), 20), "2 pieces"),
    (lambda f: f.__setitem__((slice(5, 75), slice(20, 30), slice(15, 25)), 20), "tall > band"),
    (lambda f: f.__setitem__((slice(0, 80), slice(0, 60), slice(0, 40)), np.where(f == 20, 0, f)), "empty"),
])
def test_implausible_syntheses_are_named(edit, expected):
    real = np.zeros((80, 60, 40), np.int32)
    real[_body()] = 20
    real[2:26, 10:40, 8:32] = 19
    fake = real.copy()
    edit(fake)
    assert any(expected in r for r in implausible_reasons(fake, real, 20, (1, 1, 1)))


def test_small_footprint_is_named():
    real = np.zeros((80, 60, 40), np.int32)
    real[2:26, 10:40, 8:32] = 19
    real[56:78, 10:40, 8:32] = 21
    fake = real.copy()
    fake[30:54, 20:30, 15:25] = 20                 # 100 mm^2 vs 720 mm^2
    assert any("footprint 0.14" in r for r in implausible_reasons(fake, real, 20, (1, 1, 1)))


def test_coronal_thirds_are_left_middle_right_as_the_authors():
    """A lateral wedge (the left third 6 mm shorter) shows in the first coronal third with the
    authors' LR thirds, and not at all in A/M/P thirds over the central LR slab."""
    syn = np.zeros((40, 40, 40), bool)
    syn[8:32, 5:35, 5:35] = True                       # 24 tall, AP 5-34, LR 5-34
    ori = syn.copy()
    ori[8:14, 5:35, 5:14] = False                      # LR 5-13 (9 of the first third's 10) 18 tall
    lr = measure_pair(syn, ori, (1, 1, 1), HeightRule(plane="coronal"))["RHLV"]
    np.testing.assert_allclose(lr, [0.9 * 6 / 24, 0.0, 0.0], atol=1e-9)
    ap = measure_pair(syn, ori, (1, 1, 1), HeightRule(plane="coronal", coronal_thirds="ap"))["RHLV"]
    np.testing.assert_allclose(ap, 0.0, atol=1e-9)
