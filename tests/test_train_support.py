"""Sampler sharding / resume skipping and the learning-rate rules of training/support.py."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from training.support import EpochSampler, LinearDecay, lr_lambda, shard


def test_epoch_sampler_matches_distributed_sampler_and_skips():
    for world, rank in ((1, 0), (2, 0), (2, 1), (3, 2)):
        ds = list(range(10))
        ref = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=4)
        ref.set_epoch(3)
        s = EpochSampler(10, world, rank, seed=4)
        s.set_epoch(3)
        assert [i for _, i in s] == list(ref)
        assert all(e == 3 for e, _ in s) and len(s) == len(ref)
        s.set_epoch(3, skip=2)
        assert [i for _, i in s] == list(ref)[2:] and len(s) == len(ref) - 2
    # ranks together cover every index
    assert set(shard(5, 2, 0) + shard(5, 2, 1)) == set(range(5))


def test_linear_decay_rule():
    rule = LinearDecay(2, 3)
    assert [rule(e) for e in range(5)] == pytest.approx([1, 1, 0.75, 0.5, 0.25])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda("linear", 2, 3))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4])
    assert lr_lambda("constant", 2, 3)(10) == 1.0
    assert lr_lambda("cosine", 2, 3)(1) == 1.0 and lr_lambda("cosine", 2, 3)(4) < 0.5
