"""Options: presets vs explicit flags, choices from the registries, frozen results, help text."""
from __future__ import annotations

import dataclasses
import json

import pytest

from options.train_options import options_from_dict, parse_train_options, train_parser
from options.test_options import make_test_parser
from utils.errors import UserError


def test_defaults_and_paper_preset():
    o = parse_train_options([])
    m = o.model_dict()
    assert (o.schedule.batch_size, m["lr"], m["beta1"], o.data.band_mm) == (12, 2e-4, 0.5, 40.0)
    p = parse_train_options(["--preset", "paper", "--batch_size", "3", "--lambda_L1", "2"])
    assert p.schedule.batch_size == 3                     # explicit flag wins over the preset
    assert p.model_dict()["lambda_L1"] == 2.0
    assert (p.schedule.n_epochs, p.schedule.n_epochs_decay, p.schedule.eval_freq) == (200, 800, 15)
    # the authors' generator layout, local discriminator input and coronal band (issue #13)
    assert (p.model_dict()["generator"], p.model_dict()["local_input"], p.data.coronal_band) == \
        ("healthivert_paper", "padded", "slice")
    assert (m["generator"], m["local_input"], o.data.coronal_band) == ("healthivert", "padded", "slice")


def test_preset_file_and_errors(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"n_epochs": 3, "ngf": 8}))
    o = parse_train_options(["--preset", str(f)])
    assert o.schedule.n_epochs == 3 and o.model_dict()["ngf"] == 8
    f.write_text(json.dumps({"no_such_option": 1}))
    with pytest.raises(UserError, match="unknown options"):
        parse_train_options(["--preset", str(f)])
    with pytest.raises(UserError, match="unknown preset"):
        parse_train_options(["--preset", "nope"])


def test_choices_and_frozen(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_train_options(["--netD", "nope"])
    assert exc.value.code == 2 and "patchgan" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_train_options(["--dataset_mode", "axial"])
    o = parse_train_options(["--no-use_cam", "--edge_on_binary", "--l1_norm", "original"])
    assert o.model_dict()["use_cam"] is False and o.model_dict()["edge_on_binary"] is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.schedule.batch_size = 1  # type: ignore[misc]
    assert options_from_dict(o.to_dict()) == o                 # options.json round trip


def test_every_flag_has_help():
    for parser in (train_parser(), make_test_parser()):
        for a in parser._actions:
            if a.dest != "help":
                assert a.help and len(a.help) > 15, a.dest
    flags = {s for a in train_parser()._actions for s in a.option_strings}
    for name in ("--dataroot", "--name", "--checkpoints_dir", "--batch_size", "--n_epochs",
                 "--n_epochs_decay", "--lr", "--beta1", "--lambda_L1", "--continue_train",
                 "--epoch", "--phase", "--device", "--preset", "--seed", "--num_threads",
                 "--vertebra_json", "--cam_folder", "--band_mm", "--vert_class",
                 "--healthy_max_grade", "--dataset_mode", "--eval_freq", "--save_epoch_freq",
                 "--amp", "--overwrite", "--max_steps", "--image_size", "--no_progress",
                 "--netG", "--netD", "--no-use_edge", "--no-use_height",
                 "--no-use_contextual_attention"):
        assert name in flags, name
    assert "--results_dir" in {s for a in make_test_parser()._actions for s in a.option_strings}


def test_cpu_2mm_preset_is_the_half_resolution_field_of_view():
    """--preset cpu_2mm: 128 px slices resized from the 256 mm blocks (2 mm pixels), a 2-layer
    PatchGAN (12-row minimum instead of 24), so the 40 mm band (20 rows at 2 mm) is valid, and a
    35-column (70 mm) local discriminator."""
    from options.model_options import make_model_config
    o = parse_train_options(["--preset", "cpu_2mm"])
    assert (o.data.image_size, o.data.slice_fit, o.data.band_mm) == (128, "resize", 40.0)
    cfg = make_model_config(o.model_dict(), o.data.image_size, round(40.0 / 2.0), False)
    assert (cfg.n_layers_D, cfg.local_cols, cfg.band_rows) == (2, 35, 20)
    with pytest.raises(UserError, match="band_rows"):  # the paper's 3-layer PatchGAN would refuse it
        make_model_config({**o.model_dict(), "n_layers_D": 3}, 128, 20, False)
