"""DDP: ``torchrun --nproc_per_node 2`` (gloo, CPU) trains 2 steps; both ranks end with identical
parameters. (BatchNorm running statistics of the discriminators are per-rank between forwards and
re-broadcast from rank 0 by DDP; checkpoints are written by rank 0.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.test_train import ROOT, SMALL, TINY_NETS, _env, data_args, phantom  # noqa: F401

WRAPPER = textwrap.dedent("""
    import importlib.util, sys, torch
    spec = importlib.util.spec_from_file_location("train", {root!r} + "/train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    from options.train_options import parse_train_options
    from utils.distributed import cleanup, init_distributed
    opts = parse_train_options(sys.argv[1:])
    info = init_distributed(opts.run.device)
    tr = train.train(opts, info)
    params = {{name: {{k: p.detach().clone() for k, p in net.named_parameters()}}
              for name, net in tr.model.networks().items()}}
    torch.save(params, f"{{tr.run_dir}}/rank{{info.rank}}.pt")
    cleanup(info)
""")


def test_ddp_two_ranks_identical_weights(phantom, tmp_path):  # noqa: F811  (~16 s CPU)
    torchrun = shutil.which("torchrun", path=str(ROOT / ".venv" / "bin")) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    script = tmp_path / "ddp_train.py"
    script.write_text(WRAPPER.format(root=str(ROOT)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), *data_args(phantom), "--name", "ddp", "--checkpoints_dir", str(tmp_path),
           *SMALL, *TINY_NETS, "--batch_size", "2", "--max_steps", "2", "--eval_freq", "0",
           "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = torch.load(tmp_path / "ddp" / "rank0.pt")
    w1 = torch.load(tmp_path / "ddp" / "rank1.pt")
    assert set(w0) == {"netG", "netD_global", "netD_shape", "netD_local"}
    for net in w0:
        for k in w0[net]:
            assert torch.equal(w0[net][k], w1[net][k]), (net, k)
    from utils.checkpoint import load_checkpoint
    ck = load_checkpoint(tmp_path / "ddp" / "ckpt" / "latest.pth")
    assert ck["step"] == 2
    for k, v in w0["netG"].items():   # rank 0's checkpoint holds these weights
        assert torch.equal(ck["model"]["netG"][k], v), k
