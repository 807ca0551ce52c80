"""Tests of the ground-truth spine phantom (data/phantom*.py, scripts/make_phantom.py)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.centroids import centroids_from_mask, read_centroids
from data.io import load_ct, load_label
from phantom.case import mask_centroids, render_case, write_case
from phantom.cohort import write_cohort
from spine.anatomy import GENANT_LOSS, genant_grade
from phantom.paint import paint_from_mask
from data.splits import read_vertebra_json, parse_key
from utils.errors import UserError, run_cli
from utils.fileio import read_json

FRACTURES = {"T12": (2, "biconcave"), "L1": (3, "wedge"), "L3": (1, "crush")}
LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4")


@pytest.fixture(scope="module")
def case():
    return render_case(3, levels=LEVELS, fractures=FRACTURES, case_id="c3")


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    return write_case(case, root, "c3")


# ---------------------------------------------------------------------------------------------
# an independent height measurement: runs of the label along lines parallel to the SI axis

def measure_heights(mask, label, centre_vox, si, ap, step=0.1):
    """A/M/P heights (mm) of ``label``'s body by the thirds rule, measured on ``mask``."""
    arr = mask.array
    si, ap = np.asarray(si, float), np.asarray(ap, float)
    lr = np.cross(ap, si)
    c = mask.voxel_to_world(np.asarray(centre_vox, float))[0]

    def hits(direction, ts):
        pts = c + np.outer(ts, direction)
        idx = np.round(mask.world_to_voxel(pts)).astype(int)
        ok = np.all((idx >= 0) & (idx < arr.shape), axis=1)
        out = np.zeros(len(ts), bool)
        out[ok] = arr[tuple(idx[ok].T)] == label
        return out

    def extent(direction):           # contiguous run through the centre along +/- direction
        ts = np.arange(0, 60, step)
        lengths = [np.argmin(np.append(hits(s * direction, ts), False)) * step for s in (1, -1)]
        return lengths                # [forward, backward]
    ant, post = extent(ap)
    right, left = extent(lr)
    ts = np.arange(-45, 45, step)
    width_lo, width_hi = -left + 0.3 * (left + right), right - 0.3 * (left + right)
    out = {}
    for name, (lo, hi) in {"anterior": (ant - (ant + post) / 3, ant),
                           "middle": (-post + (ant + post) / 3, ant - (ant + post) / 3),
                           "posterior": (-post, -post + (ant + post) / 3)}.items():
        runs = []
        for u in np.linspace(lo, hi, 17)[1:-1]:
            for v in np.linspace(width_lo, width_hi, 5):
                pts = c + u * ap + v * lr + np.outer(ts, si)
                idx = np.round(mask.world_to_voxel(pts)).astype(int)
                ok = np.all((idx >= 0) & (idx < arr.shape), axis=1)
                line = np.zeros(len(ts), bool)
                line[ok] = arr[tuple(idx[ok].T)] == label
                if line.any():
                    d = np.diff(np.concatenate([[0], line.astype(int), [0]]))
                    runs.append(((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max()) * step)
        runs = np.asarray(runs)            # drop grazing lines through a staircase corner
        out[name] = float(np.mean(runs[runs >= 0.5 * np.median(runs)]))
    return out


def _check_heights(mask, truth_v, heights_key, centre_key, tol):
    meas = measure_heights(mask, int(truth_v["_label"]), truth_v[centre_key],
                           truth_v["si_axis_world"], truth_v["ap_axis_world"])
    for third, h in truth_v[heights_key].items():
        assert abs(meas[third] - h) <= tol, (truth_v["level"], third, meas[third], h)


# ---------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_arrays(case):
    again = render_case(3, levels=LEVELS, fractures=FRACTURES, case_id="c3")
    for name in ("ct", "mask", "healthy_ct", "healthy_mask"):
        a, b = getattr(case, name), getattr(again, name)
        assert a.array.tobytes() == b.array.tobytes() and np.array_equal(a.affine, b.affine)
    other = render_case(4, levels=LEVELS, fractures=FRACTURES)
    assert other.ct.shape != case.ct.shape or not np.array_equal(other.ct.array, case.ct.array)


def test_written_files_round_trip(case, written):
    ct = load_ct(written / "c3.nii.gz")
    msk = load_label(written / "c3_msk.nii.gz")
    assert np.array_equal(ct.array, case.ct.array) and np.allclose(ct.affine, case.ct.affine)
    assert np.array_equal(msk.array, case.mask.array)
    assert np.array_equal(load_label(written / "c3_healthy_msk.nii.gz").array, case.healthy_mask.array)
    cents = read_centroids(written / "c3.json")
    ref = centroids_from_mask(msk.array)
    assert sorted(cents) == sorted(ref) == [18, 19, 20, 21, 22, 23]
    for k in ref:
        np.testing.assert_allclose(cents[k], ref[k], atol=1e-6)
    hc = read_centroids(written / "c3_healthy.json")
    href = centroids_from_mask(load_label(written / "c3_healthy_msk.nii.gz").array)
    for k in href:
        np.testing.assert_allclose(hc[k], href[k], atol=1e-6)
    assert np.linalg.norm(hc[23] - cents[23]) > 1.0          # caudal of the fractures: shifted
    truth = read_json(written / "c3_truth.json")
    assert truth["case"] == "c3" and truth["levels"] == list(LEVELS)


def test_truth_grades_follow_genant_rule(case):
    verts = case.truth["vertebrae"]
    planted = {"19": (2, "biconcave"), "20": (3, "wedge"), "22": (1, "crush")}
    for lab, v in verts.items():
        worst = max(v["height_loss"].values())
        assert v["grade"] == genant_grade(worst)
        if lab in planted:
            assert (v["grade"], v["morphology"]) == planted[lab]
            lo = GENANT_LOSS[v["grade"] - 1]
            assert worst >= lo
            for t in ("anterior", "middle", "posterior"):
                ratio = v["heights_mm"][t] / v["healthy_heights_mm"][t]
                assert abs(1 - ratio - v["height_loss"][t]) < 1e-3
        else:
            assert v["grade"] == 0 and v["morphology"] == "none" and worst == 0
    assert max(verts["20"]["height_loss"], key=verts["20"]["height_loss"].get) == "anterior"
    assert max(verts["19"]["height_loss"], key=verts["19"]["height_loss"].get) == "middle"


def test_planted_heights_measured_on_written_mask(case, written):
    msk = load_label(written / "c3_msk.nii.gz")
    hmsk = load_label(written / "c3_healthy_msk.nii.gz")
    for lab, v in case.truth["vertebrae"].items():
        v = {**v, "_label": lab}
        _check_heights(msk, v, "heights_mm", "body_centroid_vox", tol=1.0)
        _check_heights(hmsk, v, "healthy_heights_mm", "healthy_body_centroid_vox", tol=1.0)


@pytest.mark.parametrize("orientation,spacing", [("PIR", (1.0, 1.0, 1.0)),
                                                 ("LPS", (0.8, 0.8, 3.0))])
def test_heights_in_other_orientations_and_spacings(orientation, spacing):
    c = render_case(5, levels=("L1", "L2", "L3"), spacing=spacing, orientation=orientation,
                    fractures={"L2": (3, "crush")})
    assert c.ct.orientation == orientation and np.allclose(c.ct.spacing, spacing)
    for lab, v in c.truth["vertebrae"].items():
        _check_heights(c.mask, {**v, "_label": lab}, "heights_mm", "body_centroid_vox",
                       tol=max(spacing))


def test_orientation_gives_same_world_anatomy():
    kw = dict(levels=("T12", "L1", "L2"), fractures={"L1": (2, "wedge")})
    ras = render_case(9, orientation="RAS", **kw)
    for code in ("LPS", "PIR", "IPL"):
        c = render_case(9, orientation=code, **kw)
        assert c.ct.orientation == code
        for name in ("ct", "mask", "healthy_ct", "healthy_mask"):
            back = getattr(c, name).reorient("RAS")
            assert np.array_equal(back.array, getattr(ras, name).array)
            assert np.allclose(back.affine, getattr(ras, name).affine)
    # anterior is +y in world: bodies lie anterior of the whole-vertebra centroid (arches behind)
    for c in (ras, render_case(9, orientation="PIR", **kw)):
        for lab, v in c.truth["vertebrae"].items():
            body = c.mask.voxel_to_world(np.array(v["body_centroid_vox"]))[0]
            whole = c.mask.voxel_to_world(c.centroids[int(lab)])[0]
            assert body[1] > whole[1] + 5 and v["ap_axis_world"][1] > 0.8


def test_twin_differs_only_caudal_of_fracture():
    c = render_case(11, levels=LEVELS, fractures={"L1": (3, "crush")}, anatomy="box")  # flat endplates
    v = c.truth["vertebrae"]["20"]
    assert v["collapse_shift_mm"] > 5
    diff = (c.ct.array != c.healthy_ct.array) | (c.mask.array != c.healthy_mask.array)
    world = c.mask.voxel_to_world(np.argwhere(diff))
    top = c.mask.voxel_to_world(np.array(v["healthy_body_centroid_vox"]))[0]
    si = np.array(v["si_axis_world"])
    top = top + si * v["healthy_heights_mm"]["middle"] / 2
    assert diff.any() and ((world - top) @ si).max() <= 1.0
    for lab in (18, 19):                      # cranial vertebrae untouched
        assert np.array_equal(c.mask.array == lab, c.healthy_mask.array == lab)
    ch, cf = mask_centroids(c.healthy_mask.array), mask_centroids(c.mask.array)
    for lab in (21, 22, 23):                  # caudal vertebrae moved cranially by the collapse
        t = c.truth["vertebrae"][str(lab)]
        assert t["shift_mm"] == pytest.approx(v["collapse_shift_mm"], abs=1e-3)
        moved = c.mask.voxel_to_world(cf[lab])[0] - c.mask.voxel_to_world(ch[lab])[0]
        assert abs(np.linalg.norm(moved) - t["shift_mm"]) < 1.0
        n_h, n_f = (c.healthy_mask.array == lab).sum(), (c.mask.array == lab).sum()
        assert abs(n_f - n_h) / n_h < 0.03
    healthy = render_case(11, levels=LEVELS, anatomy="box")
    assert np.array_equal(healthy.ct.array, c.healthy_ct.array)
    assert np.array_equal(healthy.mask.array, c.healthy_mask.array)
    assert healthy.ct is healthy.healthy_ct


def test_random_fractures_follow_grade_mix():
    c = render_case(2, levels=("L1", "L2", "L3"), fractures="random", grade_mix=(0, 0, 0, 1))
    assert [v["grade"] for v in c.truth["vertebrae"].values()] == [3, 3, 3]
    c = render_case(2, levels=("L1", "L2", "L3"), fractures="random", grade_mix=(1, 0, 0, 0))
    assert all(v["grade"] == 0 for v in c.truth["vertebrae"].values()) and c.ct is c.healthy_ct


def test_mask_centroids_match_reference(case):
    ref = centroids_from_mask(case.mask.array)
    for k, v in mask_centroids(case.mask.array).items():
        np.testing.assert_allclose(v, ref[k], atol=1e-6)


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError, match="orientation"):
        render_case(0, orientation="RAR")
    with pytest.raises(UserError, match="level"):
        render_case(0, levels=("L1", "X9"))
    with pytest.raises(UserError, match="rendered levels"):
        render_case(0, levels=("L1", "L2"), fractures={"T4": (2, "wedge")})
    with pytest.raises(UserError, match="spacing"):
        render_case(0, spacing=(1, 0, 1))


def test_cohort_layout_and_splits(tmp_path):
    root = tmp_path / "cohort"
    summary = write_cohort(root, n_cases=5, seed=2, spacing=(2.5, 2.5, 2.5), progress=False)
    splits = read_vertebra_json(root / "vertebra_data.json")
    cases = {s: {parse_key(k)[0] for k in d} for s, d in splits.items()}
    assert all(cases[s] for s in ("train", "val", "test"))
    assert not (cases["train"] & cases["val"] or cases["train"] & cases["test"]
                or cases["val"] & cases["test"])
    for split, d in splits.items():
        for key, grade in d.items():
            name, lab = parse_key(key)
            truth = read_json(root / "raw" / name / f"{name}_truth.json")
            assert truth["vertebrae"][str(lab)]["grade"] == grade
            for suf in (".nii.gz", "_msk.nii.gz", "_healthy.nii.gz", "_healthy_msk.nii.gz", ".json"):
                assert (root / "raw" / name / f"{name}{suf}").is_file()
    for split in ("train", "val"):           # stratified: every grade present
        assert set(splits[split].values()) == {0, 1, 2, 3}, split
    assert summary["grade_counts"]["train"][0] > sum(summary["grade_counts"]["train"][1:])
    with pytest.raises(UserError, match="not empty"):
        write_cohort(root, n_cases=1, seed=2, levels=("L1",), progress=False)


def test_cohort_workers_match_serial(tmp_path):
    kw = dict(n_cases=3, seed=4, levels=("L1", "L2", "L3"), spacing=(3.0, 3.0, 3.0), progress=False)
    write_cohort(tmp_path / "serial", **kw)
    write_cohort(tmp_path / "parallel", workers=2, **kw)
    assert read_json(tmp_path / "serial" / "vertebra_data.json") == \
        read_json(tmp_path / "parallel" / "vertebra_data.json")
    for name in ("phantom_000", "phantom_002"):
        a, b = (load_ct(tmp_path / d / "raw" / name / f"{name}.nii.gz") for d in ("serial", "parallel"))
        assert np.array_equal(a.array, b.array)


def test_a_cohort_with_the_sacrum_draws_s1_below_l5_and_grades_only_vertebrae(tmp_path):
    kw = dict(n_cases=3, seed=4, levels=("L4", "L5"), spacing=(3.0, 3.0, 3.0), progress=False)
    plain = write_cohort(tmp_path / "plain", **kw)
    with_s1 = write_cohort(tmp_path / "s1", sacrum=True, **kw)
    assert with_s1["grade_counts"] == plain["grade_counts"] and with_s1["sacrum"] and not plain["sacrum"]
    for name in ("phantom_000", "phantom_002"):
        m = load_label(tmp_path / "s1" / "raw" / name / f"{name}_msk.nii.gz")
        m0 = load_label(tmp_path / "plain" / "raw" / name / f"{name}_msk.nii.gz")
        assert 26 in np.unique(m.array) and 26 not in np.unique(m0.array)
        c = {k: m.voxel_to_world(v)[0] for k, v in centroids_from_mask(m.array).items()}
        assert c[26][2] < c[24][2] < c[23][2]                 # S1 below L5 (world S axis)
    with pytest.raises(UserError, match="L5"):
        write_cohort(tmp_path / "bad", sacrum=True, **{**kw, "levels": ("L3", "L4")})


def _cli(*args):
    return subprocess.run([sys.executable, "scripts/make_phantom.py", *args], capture_output=True,
                          text=True, cwd=str(Path(__file__).parents[1]))


def _run_main(capsys, *args):
    """Run the CLI in-process through ``run_cli``; return (exit code, stderr)."""
    spec = importlib.util.spec_from_file_location(
        "make_phantom_cli", Path(__file__).parents[1] / "scripts" / "make_phantom.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(SystemExit) as exc:
        run_cli(mod.main, list(args))
    return exc.value.code, capsys.readouterr().err


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    for args in (["--output", str(tmp_path / "full"), "--n_cases", "1"],
                 ["--output", str(tmp_path / "o"), "--orientation", "RAQ"],
                 ["--output", str(tmp_path / "o"), "--levels", "L1", "Q7"],
                 ["--output", str(tmp_path / "o"), "--fracture", "L1:2"],
                 ["--output", str(tmp_path / "o"), "--case", "a", "--fracture", "L1:7:wedge"],
                 ["--output", str(tmp_path / "o"), "--case", "../a"],
                 ["--output", str(tmp_path / "o.nii.gz"), "--from_mask", str(tmp_path / "none.nii.gz")]):
        code, err = _run_main(capsys, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert list((tmp_path / "full").iterdir()) == [tmp_path / "full" / "x.txt"]
    r = _cli("--output", str(tmp_path / "full"), "--n_cases", "1")      # real process exit code
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not empty" in r.stderr


def test_cli_single_case(tmp_path):
    r = _cli("--output", str(tmp_path), "--case", "one", "--seed", "1", "--levels", "L2", "L4",
             "--fracture", "L3:2:wedge", "--orientation", "PIR", "--spacing", "2", "2", "2")
    assert r.returncode == 0, r.stderr
    truth = read_json(tmp_path / "raw" / "one" / "one_truth.json")
    assert truth["vertebrae"]["22"]["grade"] == 2 and truth["orientation"] == "PIR"
    assert load_label(tmp_path / "raw" / "one" / "one_msk.nii.gz").orientation == "PIR"


MASKS = ["hv0007/0007_msk.nii.gz", "totalseg_example/vertebrae_body_verse_labels.nii.gz",
         "totalseg_example/totalseg_vertebrae_tsnumbering.nii.gz",
         "tptbox_sample/sub-ct_seg-vert_label-22_msk.nii.gz",
         "tptbox_sample/sub-ct_seg-subreg_label-22_msk.nii.gz"]


@pytest.mark.parametrize("rel", MASKS)
def test_paint_from_mask_puts_bone_inside_mask(shared_data, rel):
    mask = load_label(shared_data / rel)
    before = mask.array.copy()
    ct = paint_from_mask(mask, seed=1)
    assert ct.same_grid(mask) and np.array_equal(mask.array, before)
    bone = mask.array > 0
    assert np.all(bone[ct.array > 200])                    # bright voxels only inside the mask
    assert ct.array[bone].mean() > 150 and abs(ct.array[~bone].mean() - 40) < 10
    if rel.startswith("hv0007"):                          # discs between bodies: ~80-100 HU
        assert ((ct.array > 70) & (ct.array < 120) & ~bone).sum() > 1000


def test_plot_phantom_writes_png(written, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "plot_phantom_cli", Path(__file__).parents[1] / "scripts" / "plot_phantom.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.plot_case(written, tmp_path / "fig.png", dpi=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exc:
        run_cli(mod.main, ["--case_dir", str(tmp_path), "--output", str(tmp_path / "x.png")])
    assert exc.value.code == 2 and "missing phantom file" in capsys.readouterr().err
