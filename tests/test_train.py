"""train.py / test.py end to end on a small straightened phantom cohort (CPU, 64 px, 2 mm)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# 64 px slices of 2 mm blocks: band 48 mm = 24 rows (the local PatchGAN's minimum)
SMALL = ["--image_size", "64", "--band_mm", "48", "--no_progress", "--num_threads", "0"]
TINY_NETS = ["--ngf", "8", "--ndf", "8"]


def make_phantom_blocks(root: Path, n_cases: int = 4, seed: int = 1) -> Path:
    """Phantom cohort (T12-L3, 2 mm) straightened into 64 x 64 x 16 blocks at 2 mm."""
    from phantom.cohort import write_cohort
    write_cohort(root, n_cases, seed=seed, levels=("T12", "L1", "L2", "L3"), spacing=(2, 2, 2),
                 progress=False)
    cmd = [sys.executable, str(ROOT / "straighten" / "straighten_mask_3d.py"), "--dataroot",
           str(root), "--output", str(root / "straight"), "--spacing", "2", "--block_size", "64",
           "64", "16", "--vertebra_json", str(root / "vertebra_data.json")]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=_env())
    return root


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_blocks(tmp_path_factory.mktemp("phantom"))


def data_args(ph: Path):
    return ["--dataroot", str(ph / "straight"), "--vertebra_json", str(ph / "vertebra_data.json")]


def run_train(argv):
    import train
    from options.train_options import parse_train_options
    from utils.distributed import init_distributed
    opts = parse_train_options(argv)
    return train.train(opts, init_distributed(opts.run.device))


def _cli(script, args, tmp_path):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(), timeout=170)


def test_smoke_train_then_test_cli(phantom, tmp_path):
    """The CLIs end to end: 2 epochs, eval, checkpoint, then test.py panels + metrics."""
    ck = tmp_path / "ck"
    r = _cli("train.py", [*data_args(phantom), "--name", "smoke", "--checkpoints_dir", str(ck),
                          *SMALL, "--batch_size", "4", "--n_epochs", "1", "--n_epochs_decay", "1",
                          "--eval_freq", "2", "--save_epoch_freq", "1"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run = ck / "smoke"
    for f in ("options.json", "env.json", "loss_log.csv", "eval_log.csv", "ckpt/latest.pth",
              "ckpt/epoch_0001.pth", "ckpt/epoch_0002.pth"):
        assert (run / f).is_file(), f
    assert any((run / "tensorboard").iterdir())
    opts = json.loads((run / "options.json").read_text())
    assert opts["band_rows"] == 24 and opts["lr"] == 2e-4 and opts["beta1"] == 0.5
    r = _cli("test.py", [*data_args(phantom), "--name", "smoke", "--checkpoints_dir", str(ck),
                         "--results_dir", str(tmp_path / "res"), "--no_progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "summary val" in r.stdout and "band PSNR" in r.stdout
    out = tmp_path / "res" / "smoke" / "val_latest"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("key,grade,slice_index,psnr_band,ssim_band") and len(rows) == 5
    PANELS = load_test_script().PANELS
    key = rows[1].split(",")[0]
    for p in PANELS:
        assert (out / "images" / f"{key}_{p}.png").is_file(), p
    assert "fake_B_local" in (out / "index.html").read_text()


def _main_exit(main, argv, capsys):
    from utils.errors import run_cli
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err


def test_errors_exit_2_one_line(phantom, tmp_path, capsys):
    test_script = load_test_script()
    import train
    r = _cli("train.py", ["--dataroot", str(tmp_path / "nope"), "--vertebra_json", "x.json"],
             tmp_path)                                   # the real CLI: exit 2, one line
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "dataroot" in r.stderr
    code, err = _main_exit(train.main, ["--dataroot", str(phantom / "straight")], capsys)
    assert code == 2 and "vertebra_json" in err and err.count("\n") == 1
    code, err = _main_exit(test_script.main, [*data_args(phantom), "--checkpoint",
                                              str(tmp_path / "none.pth")], capsys)
    assert code == 2 and "checkpoint not found" in err and err.count("\n") == 1
    code, err = _main_exit(test_script.main, [*data_args(phantom), "--name", "nothing",
                                              "--checkpoints_dir", str(tmp_path)], capsys)
    assert code == 2 and "latest.pth" in err
    with pytest.raises(SystemExit) as exc:              # registry keys are argparse choices
        train.main([*data_args(phantom), "--netG", "typo"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_run_folder_not_overwritten(phantom, tmp_path):
    from utils.errors import UserError
    args = [*data_args(phantom), "--name", "r", "--checkpoints_dir", str(tmp_path), *SMALL,
            *TINY_NETS, "--batch_size", "2", "--max_steps", "1", "--eval_freq", "0"]
    run_train(args)
    with pytest.raises(UserError, match="already exists"):
        run_train(args)
    run_train(args + ["--overwrite"])


def load_test_script():
    """test.py as a module (the name ``test`` would clash with the standard library's package)."""
    import importlib.util
    if "hv_test_script" in sys.modules:
        return sys.modules["hv_test_script"]
    spec = importlib.util.spec_from_file_location("hv_test_script", ROOT / "test.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hv_test_script"] = mod
    spec.loader.exec_module(mod)
    return mod


def _weights(run_dir: Path):
    from utils.checkpoint import load_checkpoint
    return load_checkpoint(run_dir / "ckpt" / "latest.pth")["model"]


def test_continue_train_matches_uninterrupted(phantom, tmp_path):
    """3 steps + resume (mid-epoch) + 1 step == 4 uninterrupted steps, bit for bit (CPU)."""
    base = [*data_args(phantom), "--checkpoints_dir", str(tmp_path), *SMALL, *TINY_NETS,
            "--batch_size", "2", "--n_epochs", "1", "--n_epochs_decay", "1", "--eval_freq", "0",
            "--seed", "7"]                      # 5 healthy train vertebrae: 3 steps per epoch
    full = run_train(base + ["--name", "full", "--max_steps", "5"])
    part = run_train(base + ["--name", "part", "--max_steps", "4"])
    assert (part.step, part.epoch, part.epoch_step) == (4, 1, 1)
    resumed = run_train(base + ["--name", "part", "--max_steps", "5", "--continue_train"])
    assert resumed.step == full.step == 5
    a, b = _weights(full.run_dir), _weights(resumed.run_dir)
    for net in ("netG", "netD_global", "netD_shape", "netD_local"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    assert a["optimizer_G"]["state"][0]["step"] == b["optimizer_G"]["state"][0]["step"]
    # the lr schedule was restored too (epoch 2 of 1 + 1 decay: 0.5 x lr)
    assert resumed.model.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_checkpoint_roundtrip_identical_outputs(phantom, tmp_path):
    """The one generator loader (test.py and synthesis) gives the trained model's outputs, up
    to the rounding of the folded spectral norms."""
    from synthesis.model_io import load_generator
    from torch.utils.data import DataLoader
    tr = run_train([*data_args(phantom), "--name", "ck", "--checkpoints_dir", str(tmp_path),
                    *SMALL, *TINY_NETS, "--batch_size", "2", "--max_steps", "2",
                    "--eval_freq", "0"])
    batch = next(iter(DataLoader(tr.eval_ds or tr.train_ds, batch_size=3)))
    before = tr.model.infer(batch)
    loaded = load_generator(tr.run_dir, "cpu")
    after = loaded.model.infer(batch)
    assert loaded.checkpoint["step"] == 2
    for k in ("fake_B", "seg", "height_pred"):
        assert torch.allclose(before[k], after[k], atol=1e-5), k


def test_incompatible_checkpoint_is_user_error(phantom, tmp_path):
    from synthesis.model_io import load_generator as load_trained_model
    from utils.errors import UserError
    bad = tmp_path / "bad.pth"
    torch.save({"hello": 1}, bad)
    with pytest.raises(UserError, match="not a HealthiVert-GAN checkpoint"):
        load_trained_model(bad, "cpu")
    tr = run_train([*data_args(phantom), "--name", "w", "--checkpoints_dir", str(tmp_path),
                    *SMALL, *TINY_NETS, "--batch_size", "2", "--max_steps", "1",
                    "--eval_freq", "0"])
    state = torch.load(tr.run_dir / "ckpt" / "latest.pth", weights_only=False)
    state["model"]["netG"].pop(next(iter(state["model"]["netG"])))
    torch.save(state, bad)
    with pytest.raises(UserError, match="does not fit"):
        load_trained_model(bad, "cpu")


def test_init_generator_starts_from_given_weights_and_refuses_a_mismatch(phantom, tmp_path):
    """--init_generator: the new run's generator (and its EMA copy) starts as the source run's
    moving average, the discriminators do not; another view, another size or a changed shipped
    file is a one-line error."""
    from synthesis.model_io import init_generator
    from utils.errors import UserError
    ck = tmp_path / "ck"
    src = run_train([*data_args(phantom), "--name", "src", "--checkpoints_dir", str(ck), *SMALL,
                     "--batch_size", "4", "--max_steps", "3", "--ema_decay", "0.9", "--no_progress"])
    src_file = ck / "src" / "ckpt" / "latest.pth"
    ema = {k: v.clone() for k, v in src.model.netG_ema.state_dict().items()}
    assert any(not torch.equal(ema[k], v) for k, v in src.model.netG.state_dict().items() if v.is_floating_point())
    # one step at learning rate 0: the parameters are still the loaded ones
    dst = run_train([*data_args(phantom), "--name", "dst", "--checkpoints_dir", str(ck), *SMALL,
                     "--batch_size", "4", "--max_steps", "1", "--lr", "0", "--ema_decay", "0.9", "--no_progress",
                     "--init_generator", str(src_file)])
    for k, v in dst.model.netG.named_parameters():
        assert torch.equal(v.detach(), ema[k]), k
    for k, v in dst.model.netG_ema.named_parameters():
        assert torch.equal(v.detach(), ema[k]), k
    d_src = src.model.netD_global.state_dict()
    assert any(not torch.equal(v, d_src[k]) for k, v in dst.model.netD_global.state_dict().items()
               if v.is_floating_point())
    with pytest.raises(UserError, match="coronal"):
        init_generator(dst.model, src_file, "aligned_coronal")
    import dataclasses
    dst.model.cfg = dataclasses.replace(dst.model.cfg, image_size=dst.model.cfg.image_size * 2)
    with pytest.raises(UserError, match="image_size"):
        init_generator(dst.model, src_file, "aligned_sagittal")
    shipped = tmp_path / "weights"
    shipped.mkdir()
    (shipped / "g.pth").write_bytes(src_file.read_bytes())
    (shipped / "MANIFEST.json").write_text(json.dumps({"files": {"g.pth": {"sha256": "0" * 64}}}))
    with pytest.raises(UserError, match="sha256"):
        init_generator(dst.model, shipped / "g.pth", "aligned_sagittal")


def test_init_generator_average_keeps_the_trained_weights(phantom, tmp_path):
    """From trained weights the moving average runs at its full decay from the first update: two
    steps at a high learning rate move the raw generator, its average by under 1 % as far (the
    warm-up, meant for random initial weights, gave the first update 90 % weight)."""
    ck = tmp_path / "ck"
    run_train([*data_args(phantom), "--name", "src", "--checkpoints_dir", str(ck), *SMALL,
               "--batch_size", "4", "--max_steps", "2", "--ema_decay", "0.9", "--no_progress"])
    src_file = ck / "src" / "ckpt" / "latest.pth"
    from utils.checkpoint import load_checkpoint
    init = load_checkpoint(src_file, map_location="cpu")["model"]["netG_ema"]
    dst = run_train([*data_args(phantom), "--name", "dst", "--checkpoints_dir", str(ck), *SMALL,
                     "--batch_size", "4", "--max_steps", "2", "--lr", "0.01", "--ema_decay", "0.999",
                     "--no_progress", "--init_generator", str(src_file)])
    raw = sum(float((v.detach() - init[k]).norm()) for k, v in dst.model.netG.named_parameters())
    avg = sum(float((v.detach() - init[k]).norm()) for k, v in dst.model.netG_ema.named_parameters())
    assert raw > 0 and avg < 0.01 * raw, (avg, raw)
