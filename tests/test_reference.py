"""The robust height reference: runs of fractures are measured against the healthy vertebrae
further away; T13 spines count right; NaN CT voxels outside the spine become air."""
from __future__ import annotations

import numpy as np
import pytest

from data.io import load_ct_and_label, save_nifti
from data.volume import Volume
from evaluation.morphometry import expected_heights as neighbour_mean, grade_vertebra
from evaluation.reference import (ReferenceRule, expected_heights, learn_prior_slope,
                                  spine_positions)
from utils.errors import UserError

LABELS = list(range(14, 25))   # T7-L5


def _spine(run, loss=0.33, slope=0.045, base=20.0):
    """{label: A/M/P heights}: a healthy log-linear trend with a crush ``run`` (labels)."""
    out, truth = {}, {}
    for i, lab in enumerate(LABELS):
        h = base * np.exp(slope * i) * np.array([0.98, 0.97, 1.0])
        truth[lab] = h
        out[lab] = h * (1 - loss) if lab in run else h
    return out, truth


@pytest.mark.parametrize("run", [[19], [19, 20], [18, 19, 20], [14, 15, 16], [22, 23, 24]])
def test_runs_of_crush_fractures_are_graded(run):
    heights, truth = _spine(run)
    pos = spine_positions(heights)
    for lab in run:
        exp = expected_heights(heights, pos, lab)
        assert np.allclose(exp, truth[lab], rtol=0.03), (run, lab, exp, truth[lab])
        assert grade_vertebra(heights[lab], exp)["morph_grade"] == 2, (run, lab)
    for lab in set(LABELS) - set(run):                     # no false positives around the run
        assert grade_vertebra(heights[lab], expected_heights(heights, pos, lab))["morph_grade"] == 0


def test_neighbour_mean_misses_the_middle_of_a_run():
    """The earlier rule, kept as --reference neighbours: the middle of a 3-run looks normal."""
    heights, _ = _spine([18, 19, 20])
    exp = neighbour_mean({18: heights[18], 20: heights[20]})
    assert grade_vertebra(heights[19], exp)["morph_grade"] == 0


def test_t13_spine_positions_and_references():
    labels = [17, 18, 19, 28, 20, 21, 22]          # T10 T11 T12 T13 L1 L2 L3
    pos = spine_positions(labels)
    assert [pos[l] for l in (19, 28, 20)] == [2.0, 3.0, 4.0]
    heights = {l: 20.0 * np.exp(0.04 * pos[l]) * np.ones(3) for l in labels}
    heights[28] = heights[28] * 0.6                 # fractured T13
    exp = expected_heights(heights, pos, 28)
    assert np.allclose(exp, 20.0 * np.exp(0.04 * 3), rtol=0.02)


def test_no_reference_without_candidates():
    assert expected_heights({20: [20, 20, 20]}, {20: 0.0}, 20) is None
    one = expected_heights({19: [20, 20, 20], 20: [15, 15, 15]}, {19: 0.0, 20: 1.0}, 20,
                           ReferenceRule(prior_slope=0.0))
    assert np.allclose(one, 20.0)                    # a single healthy neighbour still serves


def test_learned_slope():
    table = {f"p{i}": {l: 20.0 * np.exp(0.05 * k) * np.ones(3) for k, l in enumerate(LABELS)}
             for i in range(3)}
    assert learn_prior_slope(table) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        learn_prior_slope({"p": {20: [1, 1, 1]}})


def _ct_and_mask(tmp_path, nan_at):
    ct = np.full((40, 40, 40), 100.0, np.float32)
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[15:25, 15:25, 15:25] = 20
    ct[nan_at] = np.nan
    aff = np.eye(4)
    return (save_nifti(Volume(ct, aff), tmp_path / "ct.nii.gz"),
            save_nifti(Volume(lab, aff), tmp_path / "msk.nii.gz"))


def test_nan_outside_the_spine_becomes_air(tmp_path, caplog):
    ctp, mp = _ct_and_mask(tmp_path, (slice(0, 3), slice(None), slice(None)))
    ct, _ = load_ct_and_label(ctp, mp)
    assert np.isfinite(ct.array).all() and (ct.array[0:3] == -1024).all()
    assert (ct.array[3:] == 100).all()
    assert "replaced with air" in caplog.text and "ct.nii.gz" in caplog.text


def test_nan_inside_the_spine_is_an_error(tmp_path):
    ctp, mp = _ct_and_mask(tmp_path, (20, 20, 20))
    with pytest.raises(UserError, match="inside the spine"):
        load_ct_and_label(ctp, mp)


def test_healthy_target_between_crushed_neighbours_reads_normal():
    """Three levels, both neighbours crushed by 35 %: the healthy middle one must not be read as
    too tall nor graded; each crushed one is found against it."""
    heights = {19: np.array([20.0, 20.0, 20.5]) * 0.65, 20: np.array([21.0, 21.0, 21.5]),
               21: np.array([22.0, 22.0, 22.5]) * 0.65}
    pos = spine_positions(heights)
    exp = expected_heights(heights, pos, 20)
    assert np.allclose(exp, heights[20], rtol=0.01)
    for lab in (19, 21):
        assert grade_vertebra(heights[lab], expected_heights(heights, pos, lab))["morph_grade"] == 2
