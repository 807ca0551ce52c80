"""utils/checkpoint.py: RNG capture/restore, paths, atomic save and bad files."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from layout.runs import checkpoint_path, resolve_checkpoint
from utils import checkpoint as ck
from utils.errors import UserError


def test_rng_roundtrip():
    state = ck.capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(1))
    ck.restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_paths_and_errors(tmp_path):
    assert checkpoint_path(tmp_path, "latest").name == "latest.pth"
    assert checkpoint_path(tmp_path, "15").name == "epoch_0015.pth"
    assert checkpoint_path(tmp_path, "best").name == "best.pth"
    with pytest.raises(UserError, match="no ckpt/latest.pth"):
        resolve_checkpoint(tmp_path)                 # a run folder without a checkpoint
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "latest.pth").write_bytes(b"")
    assert resolve_checkpoint(tmp_path) == tmp_path / "ckpt" / "latest.pth"
    with pytest.raises(UserError):
        checkpoint_path(tmp_path, "best?")
    with pytest.raises(UserError, match="not found"):
        ck.load_checkpoint(tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        ck.load_checkpoint(tmp_path / "junk.pth")


def test_save_load_scheduler_and_version(tmp_path):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e)
    opt.step()
    sched.step()
    state = ck.make_checkpoint({"net": net.state_dict()}, [sched], None, 3, 30, 2, {"a": 1})
    ck.save_checkpoint(state, tmp_path / "ckpt" / "latest.pth")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["latest.pth"]  # no temp left
    got = ck.load_checkpoint(tmp_path / "ckpt" / "latest.pth")
    assert (got["epoch"], got["step"], got["epoch_step"], got["options"]) == (3, 30, 2, {"a": 1})
    opt2 = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda e: 0.5 ** e)
    ck.restore_training(got, [sched2], None)
    assert sched2.last_epoch == 1
    got["version"] = 99
    torch.save(got, tmp_path / "new.pth")
    with pytest.raises(UserError, match="newer"):
        ck.load_checkpoint(tmp_path / "new.pth")
