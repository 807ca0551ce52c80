"""Robustness audit (issue 8): every CLI against bad input, as a user would meet it.

Scenarios: missing input folder, empty folder, wrong file type, CT/mask grid mismatch, a vertebra
listed in the JSON but absent from the mask/blocks, a case with a single vertebra, labels outside
the VerSe range, a truncated ``.nii.gz``, an unwritable output folder (a path below a regular
file: the tests run as root, where chmod does not block writes), and an interrupted run resumed
with ``--skip_existing`` / ``--continue_train``.

Each CLI runs as its own process from the repository root (see tests/robustness_fixtures.py).
Expected outcomes:

* ``error``: exit status 2, the last stderr line starts with ``error:`` and names the file (or
  item), no Python traceback, and nothing written for the failed run (no output file, no
  ``.<name>*`` temp file).
* ``warn``: a batch CLI reports the bad item on stderr, carries on with the others (exit 0),
  and writes nothing for the bad item.
* ``either``: one of the two (per-item problems where stopping is as sensible as skipping).

The shared inputs (a 2-case phantom, L1-L3 at 2 mm, straightened into 64 x 64 x 16 blocks, a
tiny classifier, CAMs, a 2-step GAN, its 3D synthesis and RHLV table) are built once per module
by running the pipeline CLIs themselves (those runs are the ``happy path`` cases).
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.robustness_fixtures import (Runner, add_label_99, afile_out, changed, copy_tree,
                                       crop_last_axis, drop_label, edit_volume, empty_dir, expect_either,
                                       expect_error, expect_ok, expect_warn, mtimes, only_label,
                                       problems_common, text_as_nii, truncate_gz, write_png, write_vj)

LEVELS = ("L1", "L2", "L3")                 # VerSe ids 20, 21, 22
CASES = {"c1": 1, "c2": 2}                  # case id -> phantom seed
SPLITS = {"train": {"c1_20": 0, "c1_21": 2, "c1_22": 0, "c2_20": 0},
          "val": {"c2_21": 3}, "test": {"c2_22": 0}}
KEYS = [k for s in SPLITS.values() for k in s]
BLOCK = ["--spacing", "2", "--block_size", "64", "64", "16"]
CLS = ["--dims", "2", "--arch", "resnet_tiny", "--image_size", "48", "--batch_size", "8",
       "--n_epochs", "1", "--no_progress", "--device", "cpu", "--seed", "0"]
GAN = ["--image_size", "64", "--band_mm", "48", "--ngf", "4", "--ndf", "4", "--batch_size", "2",
       "--n_epochs", "3", "--n_epochs_decay", "0", "--eval_freq", "0", "--save_epoch_freq", "1",
       "--num_threads", "0", "--no_progress", "--device", "cpu", "--seed", "0"]

STRAIGHTEN = "straighten/straighten_mask_3d.py"
LOCATION = "straighten/location_json.py"
PHANTOM = "scripts/make_phantom.py"
CLASSIFIER = "Attention/train_classifier.py"
CAM = "Attention/grad_CAM_3d_sagittal.py"
SYNTH = "eval_3d_sagittal_twostage.py"
RHLV = "evaluation/RHLV_quantification.py"
MORPH = "evaluation/morphometry.py"
SVM = "evaluation/SVM_grading.py"
GENEVAL = "evaluation/generation_eval.py"
FIGURES = "scripts/make_figures.py"


# ====================================================================== shared inputs
@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("cli_logs"))
    yield r
    r.close()


def _ok(res):
    assert res.rc == 0, res.describe()
    assert "Traceback" not in res.stderr, res.describe()
    return res


@pytest.fixture(scope="module")
def world(runner, tmp_path_factory):
    """Raw phantom cases, blocks, classifier, CAMs, GAN checkpoint, synthesis and RHLV table."""
    from phantom.case import render_case, write_case
    from data.splits import write_vertebra_json
    w = {"dir": tmp_path_factory.mktemp("world")}
    d = w["dir"]
    for case, seed in CASES.items():
        write_case(render_case(seed, levels=LEVELS, spacing=(2, 2, 2)), d / "cohort", case)
    w["raw"] = d / "cohort" / "raw"
    w["vj"] = d / "cohort" / "vertebra_data.json"
    write_vertebra_json(w["vj"], SPLITS)
    w["blocks"] = d / "blocks"
    w["happy"] = {}
    w["happy"]["straighten"] = _ok(runner.run(STRAIGHTEN, ["--dataroot", d / "cohort", "--output",
                                                          w["blocks"], *BLOCK, "--no_progress"]))
    w["ck"] = d / "checkpoints"
    w["happy"]["classifier"] = _ok(runner.run(CLASSIFIER, [
        "--dataroot", w["blocks"], "--vertebra_json", w["vj"], "--checkpoints_dir", w["ck"],
        "--name", "cls", *CLS]))
    w["cls_ckpt"] = w["ck"] / "cls" / "ckpt" / "latest.pth"
    w["cam"] = d / "cam"
    w["happy"]["cam"] = _ok(runner.run(CAM, ["--dataroot", w["blocks"], "--checkpoint", w["cls_ckpt"],
                                             "--output", w["cam"], "--no_progress", "--device", "cpu",
                                             "--no_png"]))
    w["happy"]["train"] = _ok(runner.run("train.py", [
        "--dataroot", w["blocks"], "--vertebra_json", w["vj"], "--cam_folder", w["cam"],
        "--checkpoints_dir", w["ck"], "--name", "gan", "--max_steps", "2", *GAN]))
    w["gan_ckpt"] = w["ck"] / "gan" / "ckpt" / "latest.pth"
    w["synth"] = d / "synth"
    w["happy"]["synth"] = _ok(runner.run(SYNTH, [
        "--checkpoint", w["gan_ckpt"], "--dataroot", w["blocks"], "--cam_folder", w["cam"],
        "--results_dir", w["synth"], "--device", "cpu", "--no_progress", "--batch", "16"]))
    w["rhlv"] = d / "rhlv.csv"
    w["happy"]["rhlv"] = _ok(runner.run(RHLV, [
        "--label_dir", w["blocks"] / "label", "--fake_dir", w["synth"] / "label_fake",
        "--vertebra_json", w["vj"], "--output", w["rhlv"], "--no_progress"]))
    return w


def test_happy_path(world):
    """The pipeline runs end to end on the tiny inputs (the baseline every scenario perturbs)."""
    assert sorted(p.name for p in (world["blocks"] / "label").iterdir()) == sorted(f"{k}.nii.gz" for k in KEYS)
    assert world["cls_ckpt"].is_file() and world["gan_ckpt"].is_file()
    assert len(list(world["cam"].glob("*.nii.gz"))) == len(KEYS)
    assert len(list((world["synth"] / "CT_fake").glob("*.nii.gz"))) == len(KEYS)
    assert len(world["rhlv"].read_text().splitlines()) == len(KEYS) + 1
    times = {k: round(r.seconds, 1) for k, r in world["happy"].items()}
    print("happy-path seconds:", times)


# ====================================================================== helpers
def copy_raw(world, tmp, cases=tuple(CASES)):
    """Copy of the raw phantom cases (CT, mask, centroid JSON only) under ``tmp/cohort/raw``."""
    dst = tmp / "cohort" / "raw"
    for c in cases:
        (dst / c).mkdir(parents=True)
        for suffix in (".nii.gz", "_msk.nii.gz", ".json"):
            shutil.copy2(world["raw"] / c / f"{c}{suffix}", dst / c / f"{c}{suffix}")
    return tmp / "cohort"


def block_files(root, key, ct=True):
    out = [root / "label" / f"{key}.nii.gz"]
    return out + ([root / "CT" / f"{key}.nii.gz"] if ct else [])


SCENARIOS = {}


def scenario(cli, name):
    def deco(fn):
        SCENARIOS[f"{cli}-{name}"] = fn
        return fn
    return deco


# ---------------------------------------------------------------------- scripts/make_phantom.py
@scenario("make_phantom", "missing_input")
def _(w, tmp, run):
    out = tmp / "o" / "ct.nii.gz"
    expect_error(run(PHANTOM, ["--from_mask", tmp / "nope_msk.nii.gz", "--output", out]),
                 ["nope_msk.nii.gz"], [out], [tmp])


@scenario("make_phantom", "empty_folder")
def _(w, tmp, run):
    out = tmp / "o" / "ct.nii.gz"
    expect_error(run(PHANTOM, ["--from_mask", empty_dir(tmp), "--output", out]), ["empty"], [out], [tmp])


@scenario("make_phantom", "wrong_type_png")
def _(w, tmp, run):
    out = tmp / "o" / "ct.nii.gz"
    expect_error(run(PHANTOM, ["--from_mask", write_png(tmp / "m.png"), "--output", out]),
                 ["m.png"], [out], [tmp])


@scenario("make_phantom", "wrong_type_text_as_nii")
def _(w, tmp, run):
    out = tmp / "o" / "ct.nii.gz"
    expect_error(run(PHANTOM, ["--from_mask", text_as_nii(tmp / "m_msk.nii.gz"), "--output", out]),
                 ["m_msk.nii.gz"], [out], [tmp])


@scenario("make_phantom", "truncated_nii")
def _(w, tmp, run):
    bad = truncate_gz(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "cut_msk.nii.gz")
    out = tmp / "o" / "ct.nii.gz"
    expect_error(run(PHANTOM, ["--from_mask", bad, "--output", out]), ["cut_msk.nii.gz"], [out], [tmp])


@scenario("make_phantom", "label_99")
def _(w, tmp, run):
    bad = edit_volume(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "l99_msk.nii.gz", add_label_99)
    out = tmp / "o" / "ct.nii.gz"
    res = run(PHANTOM, ["--from_mask", bad, "--output", out])
    expect_either(res, "99", names=["l99_msk.nii.gz"], present=[out], scan=[tmp])


@scenario("make_phantom", "single_vertebra")
def _(w, tmp, run):
    res = run(PHANTOM, ["--output", tmp / "o", "--case", "s1", "--levels", "L1", "L1",
                        "--spacing", "2", "2", "2", "--seed", "1", "--no_progress"])
    expect_ok(res, [tmp / "o" / "raw" / "s1" / "s1_msk.nii.gz", tmp / "o" / "raw" / "s1" / "s1.nii.gz"],
              [tmp])


@scenario("make_phantom", "unwritable_output")
def _(w, tmp, run):
    out = afile_out(tmp)
    expect_error(run(PHANTOM, ["--output", out, "--n_cases", "1", "--levels", "L1", "L2",
                               "--spacing", "3", "3", "3", "--no_progress"]), ["afile"], [], [tmp])


@scenario("make_phantom", "existing_output_not_overwritten")
def _(w, tmp, run):
    (tmp / "o").mkdir()
    keep = tmp / "o" / "mine.txt"
    keep.write_text("user data\n")
    expect_error(run(PHANTOM, ["--output", tmp / "o", "--n_cases", "1", "--levels", "L1", "L2",
                               "--spacing", "3", "3", "3", "--no_progress"]), [str(tmp / "o")],
                 [tmp / "o" / "raw"], [tmp])
    assert keep.read_text() == "user data\n"


# ---------------------------------------------------------------------- straighten/location_json.py
@scenario("location_json", "missing_input_folder")
def _(w, tmp, run):
    expect_error(run(LOCATION, ["--dataroot", tmp / "nope"]), ["nope"], [], [tmp])


@scenario("location_json", "empty_folder")
def _(w, tmp, run):
    expect_error(run(LOCATION, ["--dataroot", empty_dir(tmp)]), ["empty"], [], [tmp])


@scenario("location_json", "missing_mask_file")
def _(w, tmp, run):
    out = tmp / "c.json"
    expect_error(run(LOCATION, ["--mask", tmp / "nope_msk.nii.gz", "--output", out]),
                 ["nope_msk.nii.gz"], [out], [tmp])


@scenario("location_json", "wrong_type_png")
def _(w, tmp, run):
    out = tmp / "c.json"
    expect_error(run(LOCATION, ["--mask", write_png(tmp / "m.png"), "--output", out]), ["m.png"], [out], [tmp])


@scenario("location_json", "wrong_type_text_as_nii")
def _(w, tmp, run):
    out = tmp / "c.json"
    expect_error(run(LOCATION, ["--mask", text_as_nii(tmp / "m_msk.nii.gz"), "--output", out]),
                 ["m_msk.nii.gz"], [out], [tmp])


@scenario("location_json", "truncated_nii")
def _(w, tmp, run):
    out = tmp / "c.json"
    bad = truncate_gz(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "cut_msk.nii.gz")
    expect_error(run(LOCATION, ["--mask", bad, "--output", out]), ["cut_msk.nii.gz"], [out], [tmp])


@scenario("location_json", "truncated_nii_in_batch")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    for c in CASES:
        (root / "raw" / c / f"{c}.json").unlink()
    truncate_gz(w["raw"] / "c2" / "c2_msk.nii.gz", root / "raw" / "c2" / "c2_msk.nii.gz")
    expect_warn(run(LOCATION, ["--dataroot", root]), "c2_msk.nii.gz", [root / "raw" / "c1" / "c1.json"],
                [root / "raw" / "c2" / "c2.json"], [root])


@scenario("location_json", "all_masks_fail")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    for c in CASES:
        (root / "raw" / c / f"{c}.json").unlink()
        text_as_nii(root / "raw" / c / f"{c}_msk.nii.gz")
    res = run(LOCATION, ["--dataroot", root])
    expect_error(res, ["c1_msk.nii.gz", "c2_msk.nii.gz", str(root)], [root / "raw" / c / f"{c}.json" for c in CASES],
                 [root])


@scenario("location_json", "grid_mismatch_subreg")
def _(w, tmp, run):
    sub = edit_volume(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "c1_subreg.nii.gz", crop_last_axis)
    out = tmp / "c.json"
    expect_error(run(LOCATION, ["--mask", w["raw"] / "c1" / "c1_msk.nii.gz", "--subreg", sub,
                                "--body_only", "--output", out]), ["c1_subreg.nii.gz"], [out], [tmp])


@scenario("location_json", "label_99")
def _(w, tmp, run):
    bad = edit_volume(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "l99_msk.nii.gz", add_label_99)
    out = tmp / "c.json"
    res = run(LOCATION, ["--mask", bad, "--output", out])
    expect_either(res, "99", names=["l99_msk.nii.gz"], present=[out], scan=[tmp])
    if res.rc == 0:
        assert 99 not in {c["label"] for c in json.loads(out.read_text())}


@scenario("location_json", "single_vertebra")
def _(w, tmp, run):
    one = edit_volume(w["raw"] / "c1" / "c1_msk.nii.gz", tmp / "one_msk.nii.gz", only_label(20))
    out = tmp / "c.json"
    expect_ok(run(LOCATION, ["--mask", one, "--output", out]), [out], [tmp])
    assert [c["label"] for c in json.loads(out.read_text())] == [20]


@scenario("location_json", "unwritable_output")
def _(w, tmp, run):
    out = afile_out(tmp, "c.json")
    expect_error(run(LOCATION, ["--mask", w["raw"] / "c1" / "c1_msk.nii.gz", "--output", out]),
                 ["afile"], [], [tmp])


@scenario("location_json", "resume_rewrites_only_missing")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    for c in CASES:
        (root / "raw" / c / f"{c}.json").unlink()
    expect_ok(run(LOCATION, ["--dataroot", root]), [root / "raw" / c / f"{c}.json" for c in CASES])
    before = mtimes(root)
    (root / "raw" / "c2" / "c2.json").unlink()
    expect_ok(run(LOCATION, ["--dataroot", root]), [root / "raw" / "c2" / "c2.json"], [root])
    after = mtimes(root)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"raw/c2/c2.json"}, changed


# ---------------------------------------------------------------------- straighten/straighten_mask_3d.py
def _straighten(run, root, out, *extra):
    return run(STRAIGHTEN, ["--dataroot", root, "--output", out, *BLOCK, "--no_progress", *extra])


def _case_blocks(out, case, labels=(20, 21, 22)):
    return [p for l in labels for p in block_files(out, f"{case}_{l}")]


@scenario("straighten", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_straighten(run, tmp / "nope", tmp / "out"), ["nope"], [tmp / "out"], [tmp])


@scenario("straighten", "empty_folder")
def _(w, tmp, run):
    expect_error(_straighten(run, empty_dir(tmp), tmp / "out"), ["empty"], [tmp / "out"], [tmp])


@scenario("straighten", "wrong_type_text_as_nii")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    text_as_nii(root / "raw" / "c2" / "c2_msk.nii.gz")
    expect_warn(_straighten(run, root, tmp / "out"), "c2", _case_blocks(tmp / "out", "c1"),
                _case_blocks(tmp / "out", "c2"), [tmp])


@scenario("straighten", "grid_mismatch")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    edit_volume(w["raw"] / "c2" / "c2.nii.gz", root / "raw" / "c2" / "c2.nii.gz", crop_last_axis)
    expect_warn(_straighten(run, root, tmp / "out"), "c2", _case_blocks(tmp / "out", "c1"),
                _case_blocks(tmp / "out", "c2"), [tmp])


@scenario("straighten", "json_vertebra_absent_from_mask")
def _(w, tmp, run):
    root = copy_raw(w, tmp, ("c1",))
    vj = write_vj(tmp / "vj.json", {"train": {"c1_20": 0, "c1_23": 0}})
    expect_warn(_straighten(run, root, tmp / "out", "--vertebra_json", vj), "c1_23",
                block_files(tmp / "out", "c1_20"), block_files(tmp / "out", "c1_23"), [tmp])


@scenario("straighten", "single_vertebra_case")
def _(w, tmp, run):
    from phantom.case import render_case, write_case
    root = copy_raw(w, tmp, ("c1",))
    case = render_case(5, levels=("L1",), spacing=(2, 2, 2))
    write_case(case, root, "s1")
    res = _straighten(run, root, tmp / "out")
    expect_ok(res, _case_blocks(tmp / "out", "c1"), [tmp])
    if not (tmp / "out" / "label" / "s1_20.nii.gz").exists():   # a warning is acceptable too
        assert "s1" in res.stderr, res.describe()


@scenario("straighten", "label_99")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    (root / "raw" / "c2" / "c2.json").unlink()   # centroids from the mask
    edit_volume(w["raw"] / "c2" / "c2_msk.nii.gz", root / "raw" / "c2" / "c2_msk.nii.gz", add_label_99)
    res = _straighten(run, root, tmp / "out")
    expect_warn(res, "99", _case_blocks(tmp / "out", "c1"), block_files(tmp / "out", "c2_99"), [tmp])


@scenario("straighten", "truncated_nii")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    truncate_gz(w["raw"] / "c2" / "c2.nii.gz", root / "raw" / "c2" / "c2.nii.gz")
    expect_warn(_straighten(run, root, tmp / "out"), "c2", _case_blocks(tmp / "out", "c1"),
                _case_blocks(tmp / "out", "c2"), [tmp])


@scenario("straighten", "truncated_nii_two_workers")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    truncate_gz(w["raw"] / "c2" / "c2_msk.nii.gz", root / "raw" / "c2" / "c2_msk.nii.gz")
    expect_warn(_straighten(run, root, tmp / "out", "--workers", "2"), "c2_msk.nii.gz",
                _case_blocks(tmp / "out", "c1"), _case_blocks(tmp / "out", "c2"), [tmp])


@scenario("straighten", "all_cases_fail")
def _(w, tmp, run):
    root = copy_raw(w, tmp)
    for c in CASES:
        truncate_gz(w["raw"] / c / f"{c}_msk.nii.gz", root / "raw" / c / f"{c}_msk.nii.gz")
    res = _straighten(run, root, tmp / "out")
    probs = problems_common(res, _case_blocks(tmp / "out", "c1") + _case_blocks(tmp / "out", "c2"), [tmp])
    # every case failed: a message per case and a non-zero exit (no traceback, no blocks)
    assert res.rc != 0 and not probs and all(f"{c}_msk.nii.gz" in res.stderr for c in CASES), res.describe()


@scenario("straighten", "unwritable_output")
def _(w, tmp, run):
    expect_error(_straighten(run, copy_raw(w, tmp), afile_out(tmp)), ["afile"], [], [tmp])


@scenario("straighten", "resume_skip_existing")
def _(w, tmp, run):
    out = copy_tree(w["blocks"], tmp / "out")
    before = mtimes(out)
    (out / "label" / "c1_21.nii.gz").unlink()
    res = _straighten(run, w["dir"] / "cohort", out, "--skip_existing")
    expect_ok(res, block_files(out, "c1_21"), [out])
    after = mtimes(out)
    changed = {k for k in after if before.get(k) != after[k] and k != "summary.csv"}
    assert changed <= {"label/c1_21.nii.gz", "CT/c1_21.nii.gz", "geometry/c1_21.npz"}, changed
    assert "label/c1_21.nii.gz" in changed


# ---------------------------------------------------------------------- block consumers: shared bad blocks
def bad_blocks(w, tmp, kind, key="c1_20"):
    """A copy of the blocks with one problem in block ``key``; returns (root, bad file names)."""
    root = copy_tree(w["blocks"], tmp / "blocks")
    ct, lab = root / "CT" / f"{key}.nii.gz", root / "label" / f"{key}.nii.gz"
    if kind == "truncated":
        truncate_gz(w["blocks"] / "CT" / f"{key}.nii.gz", ct)
    elif kind == "text_as_nii":
        text_as_nii(lab)
    elif kind == "grid_mismatch":
        edit_volume(w["blocks"] / "CT" / f"{key}.nii.gz", ct, crop_last_axis)
    elif kind == "target_absent":
        from data.splits import parse_key
        edit_volume(w["blocks"] / "label" / f"{key}.nii.gz", lab, drop_label(parse_key(key)[1]))
    elif kind == "single_vertebra":
        from data.splits import parse_key
        edit_volume(w["blocks"] / "label" / f"{key}.nii.gz", lab, only_label(parse_key(key)[1]))
    else:
        raise ValueError(kind)
    return root, [key]


BLOCK_PROBLEMS = ("truncated", "text_as_nii", "grid_mismatch")


def vj_with_absent_key(tmp, phase="train", key="c9_20"):
    splits = {s: dict(v) for s, v in SPLITS.items()}
    splits[phase][key] = 0
    return write_vj(tmp / "vj_absent.json", splits)


# ---------------------------------------------------------------------- Attention/train_classifier.py
def _cls(run, tmp, root, vj, *extra):
    return run(CLASSIFIER, ["--dataroot", root, "--vertebra_json", vj, "--checkpoints_dir", tmp / "ck",
                            "--name", "r", *CLS, *extra])


@scenario("train_classifier", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_cls(run, tmp, tmp / "nope", w["vj"]), ["nope"], [tmp / "ck" / "r"], [tmp])


@scenario("train_classifier", "empty_folder")
def _(w, tmp, run):
    expect_error(_cls(run, tmp, empty_dir(tmp), w["vj"]), ["empty"], [tmp / "ck" / "r"], [tmp])


@scenario("train_classifier", "wrong_type_vertebra_json")
def _(w, tmp, run):
    expect_error(_cls(run, tmp, w["blocks"], write_png(tmp / "vj.png")), ["vj.png"], [tmp / "ck" / "r"], [tmp])


for _kind in BLOCK_PROBLEMS:
    @scenario("train_classifier", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        root, (key,) = bad_blocks(w, tmp, kind)
        expect_either(_cls(run, tmp, root, w["vj"]), key, present=[tmp / "ck" / "r" / "ckpt" / "latest.pth"],
                      absent=[], scan=[tmp])


@scenario("train_classifier", "json_key_absent")
def _(w, tmp, run):
    expect_either(_cls(run, tmp, w["blocks"], vj_with_absent_key(tmp)), "c9_20",
                  present=[tmp / "ck" / "r" / "ckpt" / "latest.pth"], scan=[tmp])


@scenario("train_classifier", "unwritable_output")
def _(w, tmp, run):
    res = run(CLASSIFIER, ["--dataroot", w["blocks"], "--vertebra_json", w["vj"], "--checkpoints_dir",
                           afile_out(tmp), "--name", "r", *CLS])
    expect_error(res, ["afile"], [], [tmp])


@scenario("train_classifier", "continue_without_run")
def _(w, tmp, run):
    expect_error(_cls(run, tmp, w["blocks"], w["vj"], "--continue_train"), [str(tmp / "ck" / "r")],
                 [tmp / "ck" / "r" / "ckpt" / "latest.pth"], [tmp])


@scenario("train_classifier", "continue_truncated_checkpoint")
def _(w, tmp, run):
    shutil.copytree(w["ck"] / "cls", tmp / "ck" / "r")
    truncate_gz(w["ck"] / "cls" / "ckpt" / "latest.pth", tmp / "ck" / "r" / "ckpt" / "latest.pth")
    expect_error(_cls(run, tmp, w["blocks"], w["vj"], "--continue_train", "--n_epochs", "2"),
                 ["latest.pth"], [], [tmp])


@scenario("train_classifier", "resume_continue_train")
def _(w, tmp, run):
    shutil.copytree(w["ck"] / "cls", tmp / "ck" / "r")
    res = _cls(run, tmp, w["blocks"], w["vj"], "--continue_train", "--n_epochs", "2")
    expect_ok(res, [tmp / "ck" / "r" / "ckpt" / "latest.pth"], [tmp])
    hist = json.loads((tmp / "ck" / "r" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]


# ---------------------------------------------------------------------- Attention/grad_CAM_3d_sagittal.py
def _cam(run, root, out, ckpt, *extra):
    return run(CAM, ["--dataroot", root, "--checkpoint", ckpt, "--output", out, "--no_progress",
                     "--device", "cpu", "--no_png", *extra])


def _cams(out, keys):
    return [out / f"{k}.nii.gz" for k in keys]


@scenario("grad_cam", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_cam(run, tmp / "nope", tmp / "cam", w["cls_ckpt"]), ["nope"], [tmp / "cam"], [tmp])


@scenario("grad_cam", "empty_folder")
def _(w, tmp, run):
    expect_error(_cam(run, empty_dir(tmp), tmp / "cam", w["cls_ckpt"]), ["empty"], [tmp / "cam"], [tmp])


@scenario("grad_cam", "missing_checkpoint")
def _(w, tmp, run):
    expect_error(_cam(run, w["blocks"], tmp / "cam", tmp / "nope.pth"), ["nope.pth"], [tmp / "cam"], [tmp])


@scenario("grad_cam", "wrong_type_checkpoint")
def _(w, tmp, run):
    bad = tmp / "ck.pth"
    bad.write_text("not a checkpoint\n")
    expect_error(_cam(run, w["blocks"], tmp / "cam", bad), ["ck.pth"], [tmp / "cam"], [tmp])


@scenario("grad_cam", "truncated_checkpoint")
def _(w, tmp, run):
    bad = truncate_gz(w["cls_ckpt"], tmp / "cut.pth")
    expect_error(_cam(run, w["blocks"], tmp / "cam", bad), ["cut.pth"], [tmp / "cam"], [tmp])


for _kind in BLOCK_PROBLEMS:
    @scenario("grad_cam", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        root, (key,) = bad_blocks(w, tmp, kind)
        out = tmp / "cam"
        expect_warn(_cam(run, root, out, w["cls_ckpt"]), key, _cams(out, [k for k in KEYS if k != key]),
                    _cams(out, [key]), [tmp])


@scenario("grad_cam", "all_blocks_fail")
def _(w, tmp, run):
    root = copy_tree(w["blocks"], tmp / "blocks", ["c1_20"])
    truncate_gz(w["blocks"] / "CT" / "c1_20.nii.gz", root / "CT" / "c1_20.nii.gz")
    res = _cam(run, root, tmp / "cam", w["cls_ckpt"])
    expect_error(res, ["c1_20", str(root)], _cams(tmp / "cam", ["c1_20"]), [tmp])
    assert "c1_20" in res.stderr


@scenario("grad_cam", "json_key_absent")
def _(w, tmp, run):
    out = tmp / "cam"
    res = _cam(run, w["blocks"], out, w["cls_ckpt"], "--vertebra_json", vj_with_absent_key(tmp))
    expect_either(res, "c9_20", present=_cams(out, KEYS), absent=_cams(out, ["c9_20"]), scan=[tmp])


@scenario("grad_cam", "unwritable_output")
def _(w, tmp, run):
    expect_error(_cam(run, w["blocks"], afile_out(tmp), w["cls_ckpt"]), ["afile"], [], [tmp])


@scenario("grad_cam", "resume_skip_existing")
def _(w, tmp, run):
    out = tmp / "cam"
    shutil.copytree(w["cam"], out)
    before = mtimes(out)
    (out / "c1_21.nii.gz").unlink()
    expect_ok(_cam(run, w["blocks"], out, w["cls_ckpt"], "--skip_existing"), _cams(out, KEYS), [out])
    assert changed(before, mtimes(out), ".nii.gz") == {"c1_21.nii.gz"}


# ---------------------------------------------------------------------- train.py
def _train(run, tmp, root, vj, *extra, ck=None):
    return run("train.py", ["--dataroot", root, "--vertebra_json", vj, "--checkpoints_dir", ck or tmp / "ck",
                            "--name", "g", "--max_steps", "2", *GAN, *extra])


@scenario("train", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_train(run, tmp, tmp / "nope", w["vj"]), ["nope"], [tmp / "ck" / "g"], [tmp])


@scenario("train", "empty_folder")
def _(w, tmp, run):
    expect_error(_train(run, tmp, empty_dir(tmp), w["vj"]), ["empty"], [tmp / "ck" / "g"], [tmp])


@scenario("train", "wrong_type_vertebra_json")
def _(w, tmp, run):
    expect_error(_train(run, tmp, w["blocks"], write_png(tmp / "vj.png")), ["vj.png"], [tmp / "ck" / "g"], [tmp])


for _kind in BLOCK_PROBLEMS:
    @scenario("train", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        root, (key,) = bad_blocks(w, tmp, kind)
        expect_either(_train(run, tmp, root, w["vj"]), key, present=[tmp / "ck" / "g" / "ckpt" / "latest.pth"],
                      scan=[tmp])


@scenario("train", "json_key_absent")
def _(w, tmp, run):
    expect_either(_train(run, tmp, w["blocks"], vj_with_absent_key(tmp)), "c9_20",
                  present=[tmp / "ck" / "g" / "ckpt" / "latest.pth"], scan=[tmp])


@scenario("train", "unwritable_output")
def _(w, tmp, run):
    expect_error(_train(run, tmp, w["blocks"], w["vj"], ck=afile_out(tmp)), ["afile"], [], [tmp])


@scenario("train", "existing_run_not_overwritten")
def _(w, tmp, run):
    shutil.copytree(w["ck"] / "gan", tmp / "ck" / "g")
    before = mtimes(tmp / "ck")
    expect_error(_train(run, tmp, w["blocks"], w["vj"]), [str(tmp / "ck" / "g")], [], [tmp])
    assert mtimes(tmp / "ck") == before


@scenario("train", "continue_without_run")
def _(w, tmp, run):
    expect_error(_train(run, tmp, w["blocks"], w["vj"], "--continue_train"), [str(tmp / "ck" / "g")],
                 [tmp / "ck" / "g" / "ckpt" / "latest.pth"], [tmp])


@scenario("train", "continue_truncated_checkpoint")
def _(w, tmp, run):
    shutil.copytree(w["ck"] / "gan", tmp / "ck" / "g")
    truncate_gz(w["gan_ckpt"], tmp / "ck" / "g" / "ckpt" / "latest.pth")
    expect_error(_train(run, tmp, w["blocks"], w["vj"], "--continue_train"), ["latest.pth"], [], [tmp])


@scenario("train", "resume_continue_train")
def _(w, tmp, run):
    import torch
    shutil.copytree(w["ck"] / "gan", tmp / "ck" / "g")
    res = run("train.py", ["--dataroot", w["blocks"], "--vertebra_json", w["vj"], "--checkpoints_dir",
                           tmp / "ck", "--name", "g", "--max_steps", "4", *GAN, "--continue_train"])
    expect_ok(res, [tmp / "ck" / "g" / "ckpt" / "latest.pth"], [tmp])
    ck = torch.load(tmp / "ck" / "g" / "ckpt" / "latest.pth", map_location="cpu", weights_only=False)
    assert ck["step"] == 4


# ---------------------------------------------------------------------- test.py
def _test(run, w, tmp, root, vj, *extra, ckpt=None, results=None):
    return run("test.py", ["--dataroot", root, "--vertebra_json", vj, "--checkpoint", ckpt or w["gan_ckpt"],
                           "--phase", "train", "--vert_class", "all", "--results_dir", results or tmp / "res",
                           "--no_progress", "--device", "cpu", "--batch_size", "4", *extra])


@scenario("test", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_test(run, w, tmp, tmp / "nope", w["vj"]), ["nope"], [tmp / "res"], [tmp])


@scenario("test", "empty_folder")
def _(w, tmp, run):
    expect_error(_test(run, w, tmp, empty_dir(tmp), w["vj"]), ["empty"], [tmp / "res"], [tmp])


@scenario("test", "missing_checkpoint")
def _(w, tmp, run):
    expect_error(_test(run, w, tmp, w["blocks"], w["vj"], ckpt=tmp / "nope.pth"), ["nope.pth"], [tmp / "res"], [tmp])


@scenario("test", "wrong_type_checkpoint")
def _(w, tmp, run):
    bad = tmp / "ck.pth"
    bad.write_text("not a checkpoint\n")
    expect_error(_test(run, w, tmp, w["blocks"], w["vj"], ckpt=bad), ["ck.pth"], [tmp / "res"], [tmp])


@scenario("test", "truncated_checkpoint")
def _(w, tmp, run):
    bad = truncate_gz(w["gan_ckpt"], tmp / "cut.pth")
    expect_error(_test(run, w, tmp, w["blocks"], w["vj"], ckpt=bad), ["cut.pth"], [tmp / "res"], [tmp])


for _kind in BLOCK_PROBLEMS:
    @scenario("test", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        root, (key,) = bad_blocks(w, tmp, kind)
        expect_either(_test(run, w, tmp, root, w["vj"]), key, scan=[tmp])


@scenario("test", "json_key_absent")
def _(w, tmp, run):
    expect_either(_test(run, w, tmp, w["blocks"], vj_with_absent_key(tmp)), "c9_20", scan=[tmp])


@scenario("test", "unwritable_output")
def _(w, tmp, run):
    expect_error(_test(run, w, tmp, w["blocks"], w["vj"], results=afile_out(tmp)), ["afile"], [], [tmp])


# ---------------------------------------------------------------------- eval_3d_sagittal_twostage.py
def _synth(run, w, root, out, *extra, ckpt=None):
    return run(SYNTH, ["--checkpoint", ckpt or w["gan_ckpt"], "--dataroot", root, "--results_dir", out,
                       "--device", "cpu", "--no_progress", "--batch", "16", *extra])


def _fakes(out, keys):
    return [out / sub / f"{k}.nii.gz" for k in keys for sub in ("CT_fake", "label_fake")]


@scenario("synthesis_3d", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_synth(run, w, tmp / "nope", tmp / "r"), ["nope"], [tmp / "r" / "CT_fake"], [tmp])


@scenario("synthesis_3d", "empty_folder")
def _(w, tmp, run):
    expect_error(_synth(run, w, empty_dir(tmp), tmp / "r"), ["empty"], [tmp / "r" / "CT_fake"], [tmp])


@scenario("synthesis_3d", "wrong_type_checkpoint")
def _(w, tmp, run):
    expect_error(_synth(run, w, w["blocks"], tmp / "r", ckpt=write_png(tmp / "ck.png")), ["ck.png"],
                 [tmp / "r" / "CT_fake"], [tmp])


@scenario("synthesis_3d", "truncated_checkpoint")
def _(w, tmp, run):
    bad = truncate_gz(w["gan_ckpt"], tmp / "cut.pth")
    expect_error(_synth(run, w, w["blocks"], tmp / "r", ckpt=bad), ["cut.pth"], [tmp / "r" / "CT_fake"], [tmp])


for _kind in BLOCK_PROBLEMS + ("target_absent",):
    @scenario("synthesis_3d", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        root, (key,) = bad_blocks(w, tmp, kind)
        out = tmp / "r"
        expect_warn(_synth(run, w, root, out), key, _fakes(out, [k for k in KEYS if k != key]),
                    _fakes(out, [key]), [tmp])


@scenario("synthesis_3d", "truncated_cam")
def _(w, tmp, run):
    cam = tmp / "cam"
    shutil.copytree(w["cam"], cam)
    truncate_gz(w["cam"] / "c1_20.nii.gz", cam / "c1_20.nii.gz")
    out = tmp / "r"
    expect_either(_synth(run, w, w["blocks"], out, "--cam_folder", cam), "c1_20",
                  present=_fakes(out, [k for k in KEYS if k != "c1_20"]), absent=_fakes(out, ["c1_20"]),
                  scan=[tmp])


@scenario("synthesis_3d", "all_blocks_fail")
def _(w, tmp, run):
    root = copy_tree(w["blocks"], tmp / "blocks", ["c1_20"])
    truncate_gz(w["blocks"] / "CT" / "c1_20.nii.gz", root / "CT" / "c1_20.nii.gz")
    res = _synth(run, w, root, tmp / "r")
    expect_error(res, ["c1_20", str(root)], _fakes(tmp / "r", ["c1_20"]), [tmp])
    assert "c1_20" in res.stderr


@scenario("synthesis_3d", "json_key_absent")
def _(w, tmp, run):
    out = tmp / "r"
    res = _synth(run, w, w["blocks"], out, "--vertebra_json", vj_with_absent_key(tmp), "--phase", "train")
    train = list(SPLITS["train"])
    expect_either(res, "c9_20", present=_fakes(out, train), absent=_fakes(out, ["c9_20"]), scan=[tmp])


@scenario("synthesis_3d", "single_vertebra_block")
def _(w, tmp, run):
    root, (key,) = bad_blocks(w, tmp, "single_vertebra")
    out = tmp / "r"
    expect_ok(_synth(run, w, root, out), _fakes(out, KEYS), [tmp])


@scenario("synthesis_3d", "paint_back_missing_raw_root")
def _(w, tmp, run):
    out = tmp / "r"
    expect_error(_synth(run, w, w["blocks"], out, "--paint_back", "--raw_root", tmp / "noraw"), ["noraw"],
                 [out / "CT_fake"], [tmp])


@scenario("synthesis_3d", "unwritable_output")
def _(w, tmp, run):
    expect_error(_synth(run, w, w["blocks"], afile_out(tmp)), ["afile"], [], [tmp])


@scenario("synthesis_3d", "resume_skip_existing")
def _(w, tmp, run):
    out = tmp / "r"
    shutil.copytree(w["synth"], out)
    before = mtimes(out)
    (out / "CT_fake" / "c1_21.nii.gz").unlink()
    expect_ok(_synth(run, w, w["blocks"], out, "--skip_existing"), _fakes(out, KEYS), [out])
    got = changed(before, mtimes(out), ".nii.gz")
    assert "CT_fake/c1_21.nii.gz" in got and got <= {"CT_fake/c1_21.nii.gz", "label_fake/c1_21.nii.gz"}, got


# ---------------------------------------------------------------------- evaluation/RHLV_quantification.py
def _rhlv(run, label_dir, fake_dir, out, *extra):
    return run(RHLV, ["--label_dir", label_dir, "--fake_dir", fake_dir, "--output", out, "--no_progress", *extra])


def _csv_keys(path):
    return [r["key"] for r in csv.DictReader(open(path))]


@scenario("rhlv", "missing_input_folder")
def _(w, tmp, run):
    out = tmp / "rhlv.csv"
    expect_error(_rhlv(run, tmp / "nope", w["synth"] / "label_fake", out), ["nope"], [out], [tmp])


@scenario("rhlv", "empty_folder")
def _(w, tmp, run):
    out = tmp / "rhlv.csv"
    expect_error(_rhlv(run, empty_dir(tmp), w["synth"] / "label_fake", out), ["empty"], [out], [tmp])


@scenario("rhlv", "missing_fake_file")
def _(w, tmp, run):
    fake = tmp / "fake"
    shutil.copytree(w["synth"] / "label_fake", fake)
    (fake / "c1_20.nii.gz").unlink()
    out = tmp / "rhlv.csv"
    expect_error(_rhlv(run, w["blocks"] / "label", fake, out), ["c1_20"], [out], [tmp])
    res = _rhlv(run, w["blocks"] / "label", fake, out, "--skip_missing")
    expect_warn(res, "c1_20", [out], [], [tmp])
    assert sorted(_csv_keys(out)) == sorted(k for k in KEYS if k != "c1_20")


for _kind in ("truncated", "text_as_nii", "grid_mismatch", "target_absent"):
    @scenario("rhlv", f"fake_{_kind}")
    def _(w, tmp, run, kind=_kind):
        fake = tmp / "fake"
        shutil.copytree(w["synth"] / "label_fake", fake)
        src = w["synth"] / "label_fake" / "c1_20.nii.gz"
        {"truncated": lambda: truncate_gz(src, fake / "c1_20.nii.gz"),
         "text_as_nii": lambda: text_as_nii(fake / "c1_20.nii.gz"),
         "grid_mismatch": lambda: edit_volume(src, fake / "c1_20.nii.gz", crop_last_axis),
         "target_absent": lambda: edit_volume(src, fake / "c1_20.nii.gz", drop_label(20))}[kind]()
        out = tmp / "rhlv.csv"
        res = _rhlv(run, w["blocks"] / "label", fake, out)
        expect_either(res, "c1_20", present=[out], scan=[tmp])
        if res.rc == 0:  # a per-vertebra warning: the row is absent or its RHLVs are empty (NaN)
            import pandas as pd
            df = pd.read_csv(out).set_index("key")
            assert "c1_20" not in df.index or df.loc["c1_20", ["RHLV_a", "RHLV_m", "RHLV_p"]].isna().all()


@scenario("rhlv", "json_key_absent")
def _(w, tmp, run):
    out = tmp / "rhlv.csv"
    res = _rhlv(run, w["blocks"] / "label", w["synth"] / "label_fake", out, "--vertebra_json",
                vj_with_absent_key(tmp))
    expect_error(res, ["c9_20"], [out], [tmp])


@scenario("rhlv", "single_vertebra")
def _(w, tmp, run):
    lab = copy_tree(w["blocks"], tmp / "b", ["c1_21"]) / "label"
    out = tmp / "rhlv.csv"
    expect_ok(_rhlv(run, lab, w["synth"] / "label_fake", out), [out], [tmp])
    assert _csv_keys(out) == ["c1_21"]


@scenario("rhlv", "unwritable_output")
def _(w, tmp, run):
    expect_error(_rhlv(run, w["blocks"] / "label", w["synth"] / "label_fake", afile_out(tmp, "r.csv")),
                 ["afile"], [], [tmp])


# ---------------------------------------------------------------------- evaluation/morphometry.py
def _morph(run, label_dir, out, *extra):
    return run(MORPH, ["--label_dir", label_dir, "--output", out, "--no_progress", *extra])


@scenario("morphometry", "missing_input_folder")
def _(w, tmp, run):
    out = tmp / "m.csv"
    expect_error(_morph(run, tmp / "nope", out), ["nope"], [out], [tmp])


@scenario("morphometry", "empty_folder")
def _(w, tmp, run):
    out = tmp / "m.csv"
    expect_error(_morph(run, empty_dir(tmp), out), ["empty"], [out], [tmp])


for _kind in ("truncated", "text_as_nii", "target_absent"):
    @scenario("morphometry", f"block_{_kind}")
    def _(w, tmp, run, kind=_kind):
        lab = copy_tree(w["blocks"], tmp / "b") / "label"
        src = w["blocks"] / "label" / "c1_20.nii.gz"
        {"truncated": lambda: truncate_gz(src, lab / "c1_20.nii.gz"),
         "text_as_nii": lambda: text_as_nii(lab / "c1_20.nii.gz"),
         "target_absent": lambda: edit_volume(src, lab / "c1_20.nii.gz", drop_label(20))}[kind]()
        out = tmp / "m.csv"
        res = _morph(run, lab, out)
        expect_either(res, "c1_20", present=[out], scan=[tmp])
        if res.rc == 0:  # a per-vertebra warning: the row is absent or its RHLVs are empty (NaN)
            import pandas as pd
            df = pd.read_csv(out).set_index("key")
            assert "c1_20" not in df.index or df.loc["c1_20", ["RHLV_a", "RHLV_m", "RHLV_p"]].isna().all()


@scenario("morphometry", "json_key_absent")
def _(w, tmp, run):
    out = tmp / "m.csv"
    expect_error(_morph(run, w["blocks"] / "label", out, "--vertebra_json", vj_with_absent_key(tmp)),
                 ["c9_20"], [out], [tmp])


@scenario("morphometry", "single_vertebra")
def _(w, tmp, run):
    lab = copy_tree(w["blocks"], tmp / "b", ["c1_21"]) / "label"
    out = tmp / "m.csv"
    expect_ok(_morph(run, lab, out), [out], [tmp])
    assert _csv_keys(out) == ["c1_21"]


@scenario("morphometry", "unwritable_output")
def _(w, tmp, run):
    expect_error(_morph(run, w["blocks"] / "label", afile_out(tmp, "m.csv")), ["afile"], [], [tmp])


# ---------------------------------------------------------------------- evaluation/SVM_grading.py
RHLV_FIELDS = ["key", "case", "label", "level", "split", "grade", "H_syn_a_mm", "H_syn_m_mm", "H_syn_p_mm",
               "H_ori_a_mm", "H_ori_m_mm", "H_ori_p_mm", "RHLV_a", "RHLV_m", "RHLV_p"]


def synthetic_rhlv_csv(path, n_cases=16, grade_of=None):
    """A plausible RHLV table (4 vertebrae per case, RHLV grows with the grade)."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_cases):
        split = ("train", "train", "test", "val")[c % 4]
        for i, lab in enumerate((19, 20, 21, 22)):
            g = (c + i) % 4 if grade_of is None else grade_of(c, i)
            loss = {0: 0.05, 1: 0.22, 2: 0.32, 3: 0.5}.get(g, 0.3) + rng.normal(0, 0.02, 3)
            h = 25.0 + rng.normal(0, 1, 3)
            rows.append([f"p{c}_{lab}", f"p{c}", lab, "", split, g, *np.round(h, 2),
                         *np.round(h * (1 - loss), 2), *np.round(loss, 4)])
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(RHLV_FIELDS)
        wr.writerows(rows)
    return Path(path)


def _svm(run, csv_path, out, *extra):
    return run(SVM, ["--rhlv_csv", csv_path, "--output_dir", out, "--bootstrap", "0", *extra])


@scenario("svm_grading", "happy_path")
def _(w, tmp, run):
    expect_ok(_svm(run, synthetic_rhlv_csv(tmp / "r.csv"), tmp / "o"), [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "missing_input")
def _(w, tmp, run):
    expect_error(_svm(run, tmp / "nope.csv", tmp / "o"), ["nope.csv"], [tmp / "o"], [tmp])


@scenario("svm_grading", "empty_file")
def _(w, tmp, run):
    (tmp / "r.csv").write_text("")
    expect_error(_svm(run, tmp / "r.csv", tmp / "o"), ["r.csv"], [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "wrong_type_png")
def _(w, tmp, run):
    expect_error(_svm(run, write_png(tmp / "r.png"), tmp / "o"), ["r.png"], [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "missing_columns")
def _(w, tmp, run):
    (tmp / "r.csv").write_text("key,grade\nc1_20,0\n")
    expect_error(_svm(run, tmp / "r.csv", tmp / "o"), ["r.csv"], [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "single_vertebra")
def _(w, tmp, run):
    src = synthetic_rhlv_csv(tmp / "all.csv").read_text().splitlines()
    (tmp / "r.csv").write_text("\n".join(src[:2]) + "\n")
    expect_error(_svm(run, tmp / "r.csv", tmp / "o"), ["r.csv"], [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "grade_out_of_range")
def _(w, tmp, run):
    path = synthetic_rhlv_csv(tmp / "r.csv", grade_of=lambda c, i: 7 if (c, i) == (0, 0) else (c + i) % 4)
    expect_error(_svm(run, path, tmp / "o"), ["r.csv"], [tmp / "o" / "svm_sound.json"], [tmp])


@scenario("svm_grading", "unwritable_output")
def _(w, tmp, run):
    expect_error(_svm(run, synthetic_rhlv_csv(tmp / "r.csv"), afile_out(tmp)), ["afile"], [], [tmp])


# ---------------------------------------------------------------------- evaluation/generation_eval.py
def _geneval(run, w, root, results, out, vj=None, *extra):
    return run(GENEVAL, ["--dataroot", root, "--results_dir", results, "--vertebra_json", vj or w["vj"],
                         "--phase", "train", "--output_dir", out, "--no_progress", *extra])


@scenario("generation_eval", "happy_path")
def _(w, tmp, run):
    res = _geneval(run, w, w["blocks"], w["synth"], tmp / "o")
    expect_ok(res, [], [tmp])
    assert any((tmp / "o").glob("*.csv")), res.describe()


@scenario("generation_eval", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_geneval(run, w, tmp / "nope", w["synth"], tmp / "o"), ["nope"], [tmp / "o"], [tmp])


@scenario("generation_eval", "missing_results_folder")
def _(w, tmp, run):
    expect_error(_geneval(run, w, w["blocks"], tmp / "nores", tmp / "o"), ["nores"], [tmp / "o"], [tmp])


@scenario("generation_eval", "empty_results_folder")
def _(w, tmp, run):
    expect_error(_geneval(run, w, w["blocks"], empty_dir(tmp), tmp / "o"), ["empty"], [tmp / "o"], [tmp])


for _kind in ("truncated", "grid_mismatch"):
    @scenario("generation_eval", f"fake_{_kind}")
    def _(w, tmp, run, kind=_kind):
        res_dir = tmp / "r"
        shutil.copytree(w["synth"], res_dir)
        src = w["synth"] / "CT_fake" / "c1_20.nii.gz"
        if kind == "truncated":
            truncate_gz(src, res_dir / "CT_fake" / "c1_20.nii.gz")
        else:
            edit_volume(src, res_dir / "CT_fake" / "c1_20.nii.gz", crop_last_axis)
        expect_either(_geneval(run, w, w["blocks"], res_dir, tmp / "o"), "c1_20", scan=[tmp])


@scenario("generation_eval", "json_key_absent")
def _(w, tmp, run):
    expect_either(_geneval(run, w, w["blocks"], w["synth"], tmp / "o", vj_with_absent_key(tmp)), "c9_20",
                  scan=[tmp])


@scenario("generation_eval", "unwritable_output")
def _(w, tmp, run):
    expect_error(_geneval(run, w, w["blocks"], w["synth"], afile_out(tmp)), ["afile"], [], [tmp])


# ---------------------------------------------------------------------- scripts/make_figures.py
def _figs(run, out, *extra):
    return run(FIGURES, ["--output_dir", out, *extra])


@scenario("make_figures", "happy_path")
def _(w, tmp, run):
    res = _figs(run, tmp / "f", "--loss_log", w["ck"] / "gan" / "loss_log.csv", "--rhlv_csv", w["rhlv"],
                "--keys", "c1_21", "--dataroot", w["blocks"], "--results_dir", w["synth"],
                "--cam_folder", w["cam"])
    expect_ok(res, [], [tmp])
    assert len(list((tmp / "f").glob("*.png"))) >= 2, res.describe()


@scenario("make_figures", "keys_picked_from_json")
def _(w, tmp, run):
    res = _figs(run, tmp / "f", "--vertebra_json", w["vj"], "--pick", "2", "--dataroot", w["blocks"],
                "--results_dir", w["synth"])
    expect_ok(res, [], [tmp])
    assert (tmp / "f" / "comparison_grid.png").is_file(), res.describe()


@scenario("make_figures", "missing_input")
def _(w, tmp, run):
    expect_error(_figs(run, tmp / "f", "--loss_log", tmp / "nope.csv"), ["nope.csv"], [], [tmp])


@scenario("make_figures", "missing_input_folder")
def _(w, tmp, run):
    expect_error(_figs(run, tmp / "f", "--keys", "c1_21", "--dataroot", w["blocks"], "--results_dir",
                       tmp / "nores"), ["nores"], [], [tmp])


@scenario("make_figures", "wrong_type_png")
def _(w, tmp, run):
    expect_error(_figs(run, tmp / "f", "--rhlv_csv", write_png(tmp / "r.png")), ["r.png"], [], [tmp])


@scenario("make_figures", "key_absent")
def _(w, tmp, run):
    expect_either(_figs(run, tmp / "f", "--keys", "c9_20", "--dataroot", w["blocks"], "--results_dir",
                        w["synth"]), "c9_20", scan=[tmp])


@scenario("make_figures", "truncated_nii")
def _(w, tmp, run):
    res_dir = tmp / "r"
    shutil.copytree(w["synth"], res_dir)
    truncate_gz(w["synth"] / "CT_fake" / "c1_21.nii.gz", res_dir / "CT_fake" / "c1_21.nii.gz")
    expect_either(_figs(run, tmp / "f", "--keys", "c1_21", "--dataroot", w["blocks"], "--results_dir",
                        res_dir), "c1_21", scan=[tmp])


@scenario("make_figures", "unwritable_output")
def _(w, tmp, run):
    expect_error(_figs(run, afile_out(tmp), "--rhlv_csv", w["rhlv"]), ["afile"], [], [tmp])


# ====================================================================== the matrix
@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_cli_robustness(case, world, runner, tmp_path):
    SCENARIOS[case](world, tmp_path, runner.run)
