"""End-to-end CLIs on synthetic blocks: train_classifier.py and grad_CAM_3d_sagittal.py (CPU)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from Attention import grad_CAM_3d_sagittal as gc
from Attention import train_classifier as tc
from Attention.synthetic import write_synthetic_blocks
from data.io import load_volume
from utils.errors import run_cli

TRAIN = ["--dims", "2", "--arch", "resnet_tiny", "--image_size", "48", "--batch_size", "16",
         "--no_progress", "--seed", "3"]


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    write_synthetic_blocks(root, n_blocks=10, seed=5, shape=(48, 48, 16))
    return root


@pytest.fixture(scope="module")
def trained(blocks, tmp_path_factory):
    ck = tmp_path_factory.mktemp("ck")
    assert tc.main(["--dataroot", str(blocks), "--checkpoints_dir", str(ck), "--name", "r",
                    "--n_epochs", "2", *TRAIN]) == 0
    return ck


def exit_code(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err


def test_train_writes_complete_run(blocks, trained):
    run = trained / "r"
    ck = torch.load(run / "ckpt" / "latest.pth", map_location="cpu", weights_only=False)
    assert {"net", "optimizer", "epoch", "options", "version", "history"} <= set(ck)
    assert ck["epoch"] == 2 and ck["options"]["arch"] == "resnet_tiny"
    assert (run / "ckpt" / "best.pth").is_file() and (run / "options.json").is_file()
    assert any((run / "tb").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    v = m["history"][-1]["vertebra"]
    assert set(v) >= {"auc", "balanced_accuracy", "confusion_matrix"}
    # selection on held-out *training* patients: the val split is never seen by the classifier
    from data.splits import inner_split, read_vertebra_json
    splits = read_vertebra_json(blocks / "vertebra_data.json")
    _, sel = inner_split(splits["train"], 0.2, 3,
                         classes={k: int(g >= 2) for k, g in splits["train"].items()})
    assert m["selected_on"] == "inner" and set(sel) <= set(splits["train"])
    assert np.array(v["confusion_matrix"]).sum() == v["n"] == len(sel)


def test_select_on_val_is_the_original(blocks, tmp_path):
    assert tc.main(["--dataroot", str(blocks), "--checkpoints_dir", str(tmp_path), "--name", "v",
                    "--n_epochs", "1", "--select_on", "val", *TRAIN]) == 0
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    v = m["history"][-1]["vertebra"]
    assert m["selected_on"] == "val" and np.array(v["confusion_matrix"]).sum() == v["n"] == 3


def test_refuses_overwrite_then_continues(blocks, trained, capsys):
    args = ["--dataroot", str(blocks), "--checkpoints_dir", str(trained), "--name", "r", *TRAIN]
    code, err = exit_code(tc.main, args + ["--n_epochs", "3"], capsys)
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    code, err = exit_code(tc.main, args + ["--n_epochs", "3", "--continue_train", "--image_size", "32"], capsys)
    assert code == 2 and "image_size" in err[0]
    assert tc.main(args + ["--n_epochs", "3", "--continue_train"]) == 0
    m = json.loads((trained / "r" / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]


def test_same_seed_same_losses(blocks, trained, tmp_path):
    assert tc.main(["--dataroot", str(blocks), "--checkpoints_dir", str(tmp_path), "--name", "r2",
                    "--n_epochs", "2", *TRAIN]) == 0
    a = json.loads((trained / "r" / "metrics.json").read_text())["history"][:2]
    b = json.loads((tmp_path / "r2" / "metrics.json").read_text())["history"]
    assert [h["train_loss"] for h in a] == pytest.approx([h["train_loss"] for h in b], rel=1e-5)


def test_grad_cam_cli_writes_block_shaped_cams(blocks, trained, tmp_path):
    out = tmp_path / "cam"
    args = ["--dataroot", str(blocks), "--checkpoints_dir", str(trained), "--name", "r",
            "--epoch", "latest", "--output", str(out), "--no_progress", "--batch_size", "5",
            "--vertebra_json", str(blocks / "vertebra_data.json"), "--phase", "val"]
    assert gc.main(args) == 0
    keys = json.loads((blocks / "vertebra_data.json").read_text())["val"]
    for key in keys:
        cam = load_volume(out / f"{key}.nii.gz")
        ct = load_volume(blocks / "CT" / f"{key}.nii.gz")
        lab = load_volume(blocks / "label" / f"{key}.nii.gz").array == int(key.rsplit("_", 1)[1])
        assert cam.shape == ct.shape and np.allclose(cam.affine, ct.affine)
        assert cam.array.min() >= 0 and cam.array.max() <= 1
        ks = np.flatnonzero(lab.any((0, 1)))
        assert all(cam.array[:, :, k].max() > 0 for k in ks)  # every slice with the target
        assert (out / "png" / f"{key}.png").stat().st_size > 1000
    s = json.loads((out / "summary.json").read_text())
    assert s["n_keys"] == len(keys) and s["method"] == "gradcam++"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert gc.main(args + ["--skip_existing", "--no_png", "--on_masked"]) == 0
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert gc.main(args + ["--on_masked", "--method", "gradcam", "--norm", "volume", "--no_png"]) == 0


def test_grad_cam_3d(blocks, tmp_path):
    ck = tmp_path / "ck"
    assert tc.main(["--dataroot", str(blocks), "--checkpoints_dir", str(ck), "--name", "r3",
                    "--n_epochs", "1", *TRAIN[2:], "--dims", "3"]) == 0
    out = tmp_path / "cam3"
    assert gc.main(["--dataroot", str(blocks), "--checkpoint", str(ck / "r3" / "ckpt" / "best.pth"),
                    "--output", str(out), "--no_progress", "--no_png"]) == 0
    cams = sorted(out.glob("*.nii.gz"))
    assert len(cams) == 10
    arr = load_volume(cams[0]).array
    assert arr.shape == (48, 48, 16) and np.isclose(arr.max(), 1.0) and arr.min() >= 0


def test_cli_errors_one_line_exit_2(blocks, trained, tmp_path, capsys):
    code, err = exit_code(gc.main, ["--dataroot", str(blocks), "--output", str(tmp_path / "o"),
                                    "--checkpoint", str(tmp_path / "missing.pth")], capsys)
    assert code == 2 and len(err) == 1 and "missing.pth" in err[0]
    code, err = exit_code(tc.main, ["--dataroot", str(tmp_path / "nope"), "--checkpoints_dir",
                                    str(tmp_path), *TRAIN], capsys)
    assert code == 2 and len(err) == 1 and "nope" in err[0]
    code, err = exit_code(gc.main, ["--dataroot", str(tmp_path / "nope"), "--output", str(tmp_path / "o"),
                                    "--checkpoint", str(trained / "r" / "ckpt" / "best.pth")], capsys)
    assert code == 2 and len(err) == 1 and "nope" in err[0]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    code, err = exit_code(gc.main, ["--dataroot", str(blocks), "--output", str(tmp_path / "o"),
                                    "--checkpoint", str(bad)], capsys)
    assert code == 2 and len(err) == 1 and "bad.pth" in err[0]
    ck = torch.load(trained / "r" / "ckpt" / "best.pth", weights_only=False)
    ck["options"]["arch"] = "seresnet_small"
    torch.save(ck, tmp_path / "wrong.pth")
    code, err = exit_code(gc.main, ["--dataroot", str(blocks), "--output", str(tmp_path / "o"),
                                    "--checkpoint", str(tmp_path / "wrong.pth")], capsys)
    assert code == 2 and len(err) == 1 and "do not fit" in err[0]


def test_missing_checkpoint_subprocess(blocks, tmp_path, repo_root):
    r = subprocess.run([sys.executable, "Attention/grad_CAM_3d_sagittal.py", "--dataroot", str(blocks),
                        "--output", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "none.pth")],
                       cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'none.pth'}: classifier checkpoint not found"]
