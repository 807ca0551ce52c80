"""One spine-anatomy rule for every stage: Genant boundaries and T13 / L6 neighbours."""
from __future__ import annotations

import numpy as np
import pytest

from data.io import save_nifti
from data.volume import Volume, affine_from_spacing
from evaluation.baselines import baseline_block, baseline_slice, neighbour_health
from evaluation.heights import HeightRule, measure_own
from evaluation.morphometry import grade_vertebra, morphometry_table
from spine.anatomy import (GENANT_LOSS, genant_grade, level_name, neighbour_list, neighbours,
                           order_labels, rank)

T12, T13, L1, L2, L5, L6 = 19, 28, 20, 21, 24, 25


# --- Genant boundaries -------------------------------------------------------------------------

@pytest.mark.parametrize("kept, grade", [(16, 1), (15, 2), (12, 3), (17, 0)])
def test_grade_at_exactly_020_025_040_from_voxel_ratios(kept, grade):
    """Losses 1 - 16/20 = 0.20, 1 - 15/20 = 0.25, 1 - 12/20 = 0.40 open grades 1 / 2 / 3
    (1 - 16/20 is 0.19999999999999996 in floats; the earlier morphometry copy graded all
    three one grade lower, the phantom copy graded 0.20 as 0)."""
    assert genant_grade(1 - kept / 20) == grade
    # morphometry: anterior height kept/20 of the posterior (wedge)
    assert grade_vertebra(np.array([kept, 20.0, 20.0]), None)["morph_grade"] == grade
    # the phantom's planted grade comes from the same rule
    from phantom import fracture as phantom_fracture
    assert phantom_fracture.genant_grade(1 - kept / 20) == grade


def test_grade_bounds_and_nan():
    assert GENANT_LOSS == (0.20, 0.25, 0.40)
    assert [genant_grade(x) for x in (0.0, 0.1999, 0.2, 0.2499, 0.25, 0.3999, 0.4, 0.9)] == \
        [0, 0, 1, 1, 2, 2, 3, 3]
    assert genant_grade(float("nan")) == 0


# --- order and neighbours ----------------------------------------------------------------------

def test_order_and_names():
    assert order_labels([L1, T13, T12, L6, L5]) == [T12, T13, L1, L5, L6]
    assert rank(T13) == 19.5 and rank(L6) == 24.5
    assert [level_name(x) for x in (1, T12, T13, L1, L6, 99)] == ["C1", "T12", "T13", "L1", "L6", "99"]


def test_neighbours_follow_the_patients_spine():
    assert neighbours(L1) == (T12, L2)                              # no T13 in this spine
    assert neighbours(L1, [T12, T13, L1, L2]) == (T13, L2)
    assert neighbours(T12, [T12, T13, L1]) == (18, T13)
    assert neighbours(T13) == (T12, L1)
    assert neighbours(L5, [L5, L6]) == (23, L6)
    assert neighbours(L6) == (L5, None)
    assert neighbours(L5) == (23, None)
    assert neighbours(1) == (None, 2)
    assert neighbour_list(L1, [T13]) == [T13, L2]


def _t13_block():
    """(ct, label) block (SI, AP, LR): T12 12 rows, T13 16, L1 (fractured, 8 rows), L2 20 rows,
    4-row discs; T12 is far from the target and shorter than both true neighbours."""
    shape = (96, 24, 6)
    ct = np.full(shape, -100.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    r = 4
    for label, h in ((T12, 12), (T13, 16), (L1, 8), (L2, 20)):
        lab[r:r + h, 6:18] = label
        ct[r:r + h, 6:18] = 300.0
        r += h + 4
    return ct, lab


def _rows(mask):
    rr = np.flatnonzero(mask.any(axis=(1, 2)))
    return rr[-1] - rr[0] + 1


@pytest.mark.parametrize("method, height", [("interp", 18), ("copy", 16)])
def test_baselines_use_t13_as_l1s_upper_neighbour(method, height):
    """interp rebuilds L1 at the mean height of T13 and L2 (18 rows), copy at T13's (16, the
    nearer one); with ``label ± 1`` they used T12 (12 rows): 16 and 12."""
    ct, lab = _t13_block()
    _, out = baseline_block(ct, lab, L1, method, {})
    assert _rows(out == L1) == height


def test_copy_skips_a_fractured_t13_by_its_grade():
    ct, lab = _t13_block()
    health = neighbour_health("p", L1, {"p_28": 2, "p_21": 0}, np.unique(lab).tolist())
    assert health == {T13: False, L2: True}
    _, out = baseline_block(ct, lab, L1, "copy", health)
    assert _rows(out == L1) == 20                                   # L2's height
    # one slice at a time (test.py) decides the neighbours from the slice's labels
    _, out2d = baseline_slice(ct[:, :, 0], lab[:, :, 0], L1, "copy", health)
    assert np.array_equal(out2d, out[:, :, 0])


def test_morphometry_neighbour_reference_in_a_t13_spine(tmp_path):
    """``--reference neighbours`` expects L1 from T13 and L2, not from T12."""
    ct, lab = _t13_block()
    vol = Volume(lab, affine_from_spacing((1.0, 1.0, 1.0)))
    (tmp_path / "label").mkdir()
    for label in (T12, T13, L1, L2):
        save_nifti(vol, tmp_path / "label" / f"p_{label}.nii.gz")
    df = morphometry_table([("p_20", "val", 2)], tmp_path / "label", reference="neighbours")
    row = df.set_index("key").loc["p_20"]
    assert row["reference_labels"] == f"{L2} {T13}"
    want = np.mean([measure_own(lab == x, (1.0, 1.0, 1.0), HeightRule()) for x in (T13, L2)], axis=0)
    assert row["H_exp_m_mm"] == pytest.approx(want[1])


def test_morphometry_neighbour_reference_without_t13(tmp_path):
    """In a spine without T13, T12's lower neighbour is L1 (the earlier copy of the rule always
    put a T13 there, and T12 lost L1 as a reference)."""
    shape = (80, 24, 6)
    lab = np.zeros(shape, np.uint8)
    r = 4
    for label in (18, T12, L1):
        lab[r:r + 16, 6:18] = label
        r += 20
    vol = Volume(lab, affine_from_spacing((1.0, 1.0, 1.0)))
    (tmp_path / "label").mkdir()
    for label in (18, T12, L1):
        save_nifti(vol, tmp_path / "label" / f"p_{label}.nii.gz")
    df = morphometry_table([("p_19", "val", 0)], tmp_path / "label", reference="neighbours")
    assert df.set_index("key").loc["p_19", "reference_labels"] == f"18 {L1}"
