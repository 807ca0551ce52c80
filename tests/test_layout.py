"""The on-disk contracts (layout/) and the one --phase convention."""
from __future__ import annotations

import argparse
import json

import pytest

from data.splits import add_phase_argument, expand_phases
from layout.blocks import block_keys, block_paths, select_blocks
from layout.raw import case_paths, find_cases, mask_files, raw_base, truth_path
from layout.runs import checkpoint_path
from utils.errors import UserError


def test_expand_phases():
    assert expand_phases("val,test") == expand_phases(["val", "test"]) == ["val", "test"]
    assert expand_phases(["all"]) == ["train", "val", "test"]
    assert expand_phases(["test", "all"]) == ["test", "train", "val"]
    with pytest.raises(UserError, match="unknown split 'vali'"):
        expand_phases("vali")


def test_phase_argument_is_the_same_everywhere():
    p = argparse.ArgumentParser()
    add_phase_argument(p, default=("val",))
    assert p.parse_args([]).phase == ["val"]
    assert p.parse_args(["--phase", "val,test"]).phase == p.parse_args(["--phase", "val", "test"]).phase
    with pytest.raises(SystemExit):
        p.parse_args(["--phase", "nope"])


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")


def test_label_decides_a_block_and_ct_is_asked_for(tmp_path, caplog):
    for key in ("a_20", "a_21", "b_20"):
        _touch(block_paths(tmp_path, key)[1])
    _touch(block_paths(tmp_path, "a_20")[0])           # only a_20 has a CT
    assert block_keys(tmp_path) == ["a_20", "a_21", "b_20"]
    assert block_keys(tmp_path, need_ct=True) == ["a_20"]
    vj = tmp_path / "v.json"
    vj.write_text(json.dumps({"train": {"a_20": 0, "a_21": 2}, "val": {"b_20": 1, "c_20": 0}}))
    assert select_blocks(tmp_path, vj, ["val"]) == {"b_20": 1}
    assert "c_20" in caplog.text                        # the missing one is named
    # "all" means the splits the file has (no test split here)
    assert select_blocks(tmp_path, vj, ["all"]) == {"a_20": 0, "a_21": 2, "b_20": 1}
    assert select_blocks(tmp_path, vj, ["all"], need_ct=True) == {"a_20": 0}
    with pytest.raises(UserError, match="split 'test' is not in"):
        select_blocks(tmp_path, vj, ["test"])
    with pytest.raises(UserError, match="no label/ folder"):
        block_keys(tmp_path / "nothing")


def test_raw_layout_round_trip(tmp_path):
    p = case_paths(tmp_path, "c1")
    for k in ("ct", "mask", "healthy_ct", "healthy_mask", "truth"):
        _touch(p[k])
    assert raw_base(tmp_path) == tmp_path / "raw"
    assert truth_path(tmp_path, "c1") == p["truth"]
    assert mask_files(tmp_path) == [p["mask"]]          # the healthy twin's mask is not a case
    cases = find_cases(tmp_path)
    assert [c.case for c in cases] == ["c1"] and cases[0].ct == p["ct"]
    twin = find_cases(tmp_path, mask_suffix="_healthy_msk", ct_suffix="_healthy")
    assert twin[0].mask == p["healthy_mask"] and twin[0].ct == p["healthy_ct"]


def test_run_paths(tmp_path):
    assert checkpoint_path(tmp_path, "best") == tmp_path / "ckpt" / "best.pth"
    assert checkpoint_path(tmp_path, 3) == tmp_path / "ckpt" / "epoch_0003.pth"


def test_cam_folder_written_and_read_by_one_rule(tmp_path):
    """grad_CAM writes where the one reader looks (layout.cams.cam_path)."""
    import numpy as np
    from data.io import save_nifti
    from data.volume import Volume, affine_from_spacing
    from layout.cams import CamReader, cam_path
    save_nifti(Volume(np.full((4, 4, 2), 2.0, np.float32), affine_from_spacing((1.0, 1.0, 1.0))),
               cam_path(tmp_path, "c_20"))
    cam = CamReader(str(tmp_path)).load("c_20", (4, 4, 2))
    assert cam.shape == (4, 4, 2) and float(cam.max()) == 1.0      # clipped to [0, 1]
    with pytest.raises(UserError, match="c_21"):
        CamReader(str(tmp_path)).load("c_21", (4, 4, 2))
