"""End-to-end tests of ``eval_3d_sagittal_twostage.py`` with real (tiny, randomly initialised)
generators saved as ``train.py``-format checkpoints at a reduced image size (64 px, 24-row band).

Random weights are a legitimate test of everything but image quality: batched == one slice at a
time, the output grid, painting back into a phantom patient, the checkpoint errors and
``--skip_existing``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from data.intensity import hu_to_unit
from data.io import load_volume, save_nifti
from data.volume import Volume, affine_from_spacing
from eval_3d_sagittal_twostage import main
from utils.errors import run_cli

SIZE, BAND = 64, 24


def save_tiny_checkpoint(path: Path, view: str = "sagittal", seed: int = 0) -> Path:
    from models.config import ModelConfig
    from models.healthivert_model import HealthiVertModel
    from utils.checkpoint import make_checkpoint, save_checkpoint
    torch.manual_seed(seed)
    model = HealthiVertModel(ModelConfig(ngf=4, ndf=4, image_size=SIZE, band_rows=BAND), "cpu")
    ckpt = make_checkpoint(model.state_dict(), [], None, 1, 1, 0,
                           {"dataset_mode": f"aligned_{view}", "band_mm": float(BAND)})
    return save_checkpoint(ckpt, path)


def write_blocks(root: Path, n: int = 2, shape=(SIZE, SIZE, 16)) -> list:
    """``n`` blocks with three bodies (19, 20, 21) on an oblique IPR grid, HU CT."""
    rng = np.random.default_rng(0)
    keys = []
    for k in range(n):
        lab = np.zeros(shape, np.uint8)
        lab[6 + k:18 + k, 20:44, 3:13] = 19
        lab[24:36, 20:44, 2:14] = 20
        lab[42:54, 20:44, 4:12] = 21
        ct = np.where(lab > 0, 300.0, -50.0) + rng.normal(0, 30, shape)
        ct[:, :4] = -1000.0  # air, outside the network's HU window
        aff = affine_from_spacing((1.0, 1.0, 1.0), "IPR", (10.0, -5.0, 3.0))
        aff[:3, :3] = aff[:3, :3] @ np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]])
        key = f"case{k}_20"
        save_nifti(Volume(ct.astype(np.float32), aff), root / "CT" / f"{key}.nii.gz")
        save_nifti(Volume(lab, aff), root / "label" / f"{key}.nii.gz")
        keys.append(key)
    return keys


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    keys = write_blocks(d / "blocks")
    return {"dir": d, "keys": keys, "sag": save_tiny_checkpoint(d / "sag.pth"),
            "cor": save_tiny_checkpoint(d / "cor.pth", "coronal", seed=1)}


def cli(args, capsys=None):
    """Run the CLI like the shell does; returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in args] + ["--no_progress"])
    err = capsys.readouterr().err if capsys is not None else ""
    return exc.value.code, err


def run_ok(setup, out, *extra):
    code, _ = cli(["--checkpoint", setup["sag"], "--dataroot", setup["dir"] / "blocks",
                   "--results_dir", out, *extra])
    assert code == 0
    return Path(out)


def test_batched_equals_one_slice_at_a_time(setup, tmp_path):
    one = run_ok(setup, tmp_path / "b1", "--batch", "1")
    many = run_ok(setup, tmp_path / "b7", "--batch", "7")
    for key in setup["keys"]:
        a = load_volume(one / "CT_fake" / f"{key}.nii.gz").array
        b = load_volume(many / "CT_fake" / f"{key}.nii.gz").array
        np.testing.assert_allclose(a, b, atol=0.05)  # HU; float rounding only
        la = load_volume(one / "label_fake" / f"{key}.nii.gz").array
        lb = load_volume(many / "label_fake" / f"{key}.nii.gz").array
        assert (la != lb).mean() < 1e-4


def test_default_batch_is_4_on_cpu_and_matches_batch_1(setup, tmp_path, caplog):
    from synthesis.runner import default_batch
    assert default_batch("cpu") == 4 and default_batch(torch.device("cuda")) == 16
    one = run_ok(setup, tmp_path / "b1", "--batch", "1", "--device", "cpu")
    with caplog.at_level("INFO"):
        auto = run_ok(setup, tmp_path / "auto", "--device", "cpu")
    assert "batch 4, device cpu" in caplog.text
    for key in setup["keys"]:
        a = load_volume(one / "CT_fake" / f"{key}.nii.gz").array
        b = load_volume(auto / "CT_fake" / f"{key}.nii.gz").array
        np.testing.assert_allclose(a, b, atol=0.05)


def test_outputs_on_the_block_grid(setup, tmp_path):
    out = run_ok(setup, tmp_path / "o", "--batch", "8")
    blocks = setup["dir"] / "blocks"
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["key"] for r in rows] == setup["keys"] and all(r["status"] == "written" for r in rows)
    assert all(r["slices"] == "12" and float(r["pred_height_mm"]) >= 12.0 for r in rows)
    for key in setup["keys"]:
        ref = load_volume(blocks / "CT" / f"{key}.nii.gz")
        ct = load_volume(out / "CT_fake" / f"{key}.nii.gz")
        lab = load_volume(out / "label_fake" / f"{key}.nii.gz")
        for v in (ct, lab):
            assert v.shape == ref.shape and np.allclose(v.affine, ref.affine, atol=1e-5)
        assert ct.array.dtype == np.float32 and lab.array.dtype == np.uint8
        # slices without the target are the real block, HU exactly (also outside the window)
        np.testing.assert_array_equal(ct.array[:, :, [0, 1, 14, 15]], ref.array[:, :, [0, 1, 14, 15]])
        assert not np.allclose(ct.array[:, :, 8], ref.array[:, :, 8], atol=1.0)
        assert 20 in np.unique(lab.array[:, :, 2:14])


def test_two_views_fused_and_coronal_alone(setup, tmp_path):
    out = run_ok(setup, tmp_path / "f", "--coronal_checkpoint", setup["cor"])
    row = next(csv.DictReader(open(out / "summary.csv")))
    assert row["view"] == "sagittal+coronal" and row["slices"] == "12+24"
    code, _ = cli(["--coronal_checkpoint", setup["cor"], "--dataroot", setup["dir"] / "blocks",
                   "--results_dir", tmp_path / "c"])
    assert code == 0 and (tmp_path / "c" / "CT_fake" / "case0_20.nii.gz").is_file()


@pytest.mark.parametrize("problem", ["missing", "garbage", "wrong_view", "none"])
def test_bad_checkpoint_is_a_one_line_error(setup, tmp_path, capsys, problem):
    bad = {"missing": ["--checkpoint", tmp_path / "nope.pth"],
           "garbage": ["--checkpoint", tmp_path / "garbage.pth"],
           "wrong_view": ["--checkpoint", setup["cor"]], "none": []}[problem]
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    code, err = cli([*bad, "--dataroot", setup["dir"] / "blocks", "--results_dir", tmp_path / "r"], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "checkpoint" in err
    assert not (tmp_path / "r" / "CT_fake").exists()  # nothing written with random weights


def test_incompatible_weights(setup, tmp_path, capsys):
    ckpt = torch.load(setup["sag"], weights_only=False)
    ckpt["model"]["netG"].pop(next(iter(ckpt["model"]["netG"])))
    torch.save(ckpt, tmp_path / "cut.pth")
    code, err = cli(["--checkpoint", tmp_path / "cut.pth", "--dataroot", setup["dir"] / "blocks",
                     "--results_dir", tmp_path / "r"], capsys)
    assert code == 2 and "does not fit the model" in err


def test_skip_existing(setup, tmp_path):
    out = run_ok(setup, tmp_path / "s")
    target = out / "CT_fake" / "case0_20.nii.gz"
    stamp = target.stat().st_mtime_ns
    run_ok(setup, tmp_path / "s", "--skip_existing")
    assert target.stat().st_mtime_ns == stamp
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(float(r["pred_height_mm"]) > 0 for r in rows)  # previous results kept


def test_vertebra_json_selects_keys(setup, tmp_path):
    from data.splits import write_vertebra_json
    write_vertebra_json(tmp_path / "v.json", {"val": {"case1_20": 2, "missing_20": 0}})
    out = run_ok(setup, tmp_path / "j", "--vertebra_json", tmp_path / "v.json", "--phase", "val")
    assert [r["key"] for r in csv.DictReader(open(out / "summary.csv"))] == ["case1_20"]


# ---------------------------------------------------------------- painting back (phantom)
@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from phantom.case import render_case, write_case
    from straighten.straighten_mask_3d import main as straighten
    d = tmp_path_factory.mktemp("phantom")
    case = render_case(3, levels=("T12", "L1", "L2"), spacing=(1.5, 1.5, 1.5), orientation="LPS",
                       anatomy="box")   # straight columns: a 3-voxel cut reads back as 3 voxels
    write_case(case, d, "ph01")
    with pytest.raises(SystemExit) as exc:
        run_cli(straighten, ["--dataroot", str(d), "--output", str(d / "straight"),
                             "--block_size", str(SIZE), str(SIZE), "32", "--no_progress"])
    assert exc.value.code == 0
    return d


def test_identity_synthesis_paints_back_onto_the_vertebra(phantom, tmp_path):
    """Painting the real block back reproduces the patient's vertebral body in place."""
    from evaluation.metrics import dice
    from layout.blocks import load_block
    from synthesis.fusion import Synthesis
    from synthesis.paint import PatientPainter
    from layout.synthesis import OutputLayout
    ct, lab = load_block(phantom / "straight", "ph01_20")
    syn = Synthesis("ph01_20", 20, hu_to_unit(ct.array), lab.array.astype(np.int32),
                    np.zeros(ct.shape, np.float32))
    PatientPainter(phantom / "straight", phantom, 3.0).paint(syn, lab, OutputLayout(tmp_path))
    mask = load_volume(tmp_path / "patient_space" / "ph01_20_healthy_msk.nii.gz")
    painted_ct = load_volume(tmp_path / "patient_space" / "ph01_20_healthy.nii.gz")
    orig = load_volume(phantom / "raw" / "ph01" / "ph01_msk.nii.gz")
    orig_ct = load_volume(phantom / "raw" / "ph01" / "ph01.nii.gz")
    assert mask.same_grid(orig) and painted_ct.same_grid(orig_ct)
    assert dice(mask.array == 20, orig.array == 20) > 0.97
    inside = orig.array == 20
    # resampled twice (1.5 mm -> 1 mm block -> 1.5 mm): close to the real HU on average
    assert np.abs(painted_ct.array[inside] - orig_ct.array[inside]).mean() < 60


def test_cli_paint_back_lands_near_the_vertebra(phantom, tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "sag.pth")
    code, _ = cli(["--checkpoint", ckpt, "--dataroot", phantom / "straight", "--results_dir",
                   tmp_path / "r", "--paint_back", "--raw_root", phantom, "--batch", "16"])
    assert code == 0
    orig = load_volume(phantom / "raw" / "ph01" / "ph01_msk.nii.gz")
    for label in (19, 20, 21):
        out = load_volume(tmp_path / "r" / "patient_space" / f"ph01_{label}_healthy_msk.nii.gz")
        ct = load_volume(tmp_path / "r" / "patient_space" / f"ph01_{label}_healthy.nii.gz")
        assert out.same_grid(orig) and ct.shape == orig.shape
        changed = np.argwhere(out.array != orig.array)
        assert len(changed) > 0
        # every change lies within the block's reach around the vertebra (a random generator
        # paints anywhere in its block; the identity test above checks the exact placement)
        centre = np.argwhere(orig.array == label).mean(0)
        dist_mm = np.linalg.norm((changed - centre) * orig.spacing, axis=1)
        reach_mm = 0.5 * np.linalg.norm([SIZE, SIZE, 32]) + 3.0 + 2 * 1.5
        assert dist_mm.max() < reach_mm


def test_paint_back_needs_raw_root(setup, tmp_path, capsys):
    code, err = cli(["--checkpoint", setup["sag"], "--dataroot", setup["dir"] / "blocks",
                     "--results_dir", tmp_path, "--paint_back"], capsys)
    assert code == 2 and "--raw_root" in err


@pytest.mark.parametrize("fit", ["crop", "resize"])
@pytest.mark.parametrize("mode", ["aligned_sagittal", "aligned_coronal"])
def test_slices_match_the_training_dataset(setup, mode, fit):
    """SliceGrid.take (inference) == the dataset's slice (training), resampling included."""
    from training.dataset import GanDataConfig, HealthiVertDataset
    from data.splits import write_vertebra_json
    from layout.blocks import load_block
    from synthesis.views import SliceGrid
    root = setup["dir"] / "blocks"
    write_vertebra_json(setup["dir"] / "vj.json", {"train": {k: 0 for k in setup["keys"]}})
    size = 48  # 64-row blocks -> centre-cropped, or resampled by 0.75
    ds = HealthiVertDataset(GanDataConfig(str(root), str(setup["dir"] / "vj.json"), mode=mode,
                                          image_size=size, cache_blocks=0, fit=fit))
    ct, lab = load_block(root, setup["keys"][0])
    grid = SliceGrid(mode.replace("aligned_", ""), size, ct.shape, tuple(lab.spacing), fit)
    blk = ds.block(setup["keys"][0])
    for idx in (3, 8):
        img, labels, _, (sy, sx) = ds._slice(blk, idx)
        mine = grid.take(hu_to_unit(ct.array).astype(np.float16).astype(np.float32), [idx], "image")[0]
        np.testing.assert_allclose(mine, img, atol=1e-5)
        np.testing.assert_array_equal(grid.take(lab.array, [idx], "label")[0], labels)
        assert grid.pixel_mm == pytest.approx((sy, sx))
    # writing a slice back changes only its window (crop) or the whole slice (resize)
    out = np.zeros(ct.shape, np.float32)
    grid.put(out, [8], np.ones((1, size, size), np.float32), "image")
    sl = out[:, :, 8] if mode == "aligned_sagittal" else out[:, 8, :]
    assert sl.sum() == (size * min(size, sl.shape[1]) if fit == "crop" else sl.size)


def test_phantom_height_evaluation(phantom, tmp_path, capsys):
    """A 'synthesis' 3 voxels shorter than the real body in every column: the GAN columns read
    back 3 voxels (in mm) below the real heights, which agree with the truth file."""
    from data.io import load_label, save_nifti
    from data.splits import write_vertebra_json
    from synthesis.phantom_eval import main as phantom_eval
    real = load_label(phantom / "straight" / "label" / "ph01_20.nii.gz")
    arr = real.array.copy()
    body = arr == 20
    arr[body & (np.cumsum(body, axis=0) <= 3)] = 0
    save_nifti(real.with_array(arr), tmp_path / "label_fake" / "ph01_20.nii.gz", dtype=np.uint8)
    write_vertebra_json(tmp_path / "v.json", {"val": {"ph01_19": 0, "ph01_20": 2, "ph01_21": 0}})
    with pytest.raises(SystemExit) as exc:
        run_cli(phantom_eval, ["--results_dir", str(tmp_path), "--dataroot", str(phantom / "straight"),
                               "--cohort", str(phantom), "--vertebra_json", str(tmp_path / "v.json")])
    assert exc.value.code == 0
    row = next(csv.DictReader(open(tmp_path / "phantom_heights.csv")))
    assert row["key"] == "ph01_20"
    for t in "amp":
        assert float(row[f"gan_{t}"]) == pytest.approx(float(row[f"none_{t}"]) - 3 * real.spacing[0], abs=0.5)
    assert float(row["none_err_pct"]) < 10.0 < float(row["gan_err_pct"])
    assert "interp" in capsys.readouterr().out
