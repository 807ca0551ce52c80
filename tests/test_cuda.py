"""The CUDA code paths (marker ``cuda``; ``scripts/gpu_check.sh`` runs them on a GPU machine).

Each test takes its device from the ``device`` fixture: CUDA when present, else skipped, except
under ``HV_CUDA_TESTS_ON_CPU=1`` (``scripts/gpu_check.sh --dry_run``), where the same code runs on
the CPU so that the tests cannot rot on machines without a GPU. What only CUDA can show is
checked only there: the bfloat16 autocast of ``--amp`` (no GradScaler), the absence of host syncs
in a training step (``torch.cuda.set_sync_debug_mode('error')``), and that a checkpoint written
from CUDA tensors loads on a CPU-only process.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

from models.config import ModelConfig
from models.healthivert_model import HealthiVertModel
from tests.test_models_synthetic import make_batch

pytestmark = pytest.mark.cuda
SMALL = dict(image_size=64, band_rows=24, ndf=8)


@pytest.fixture
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("HV_CUDA_TESTS_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("no CUDA device (HV_CUDA_TESTS_ON_CPU=1 runs these on the CPU)")


def _steps(model, batch, n):
    for _ in range(n):
        model.set_input(batch)
        model.optimize_parameters()
    return {k: v.detach().float().cpu() for k, v in model.get_current_losses().items()}


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_training_step_forward_backward_amp(device, amp_dtype):
    """Two training steps with --amp: finite losses, weights that moved, the configured autocast
    type, and a GradScaler only for float16 (bfloat16 needs no loss scaling)."""
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(**SMALL, amp=True, amp_dtype=amp_dtype), device)
    before = {k: v.detach().clone() for k, v in m.netG.state_dict().items()}
    losses = _steps(m, make_batch(4, 64, 24), 2)
    assert all(bool(torch.isfinite(v)) for v in losses.values()), losses
    assert any(not torch.equal(v, m.netG.state_dict()[k]) for k, v in before.items())
    on_cuda = device.type == "cuda"
    assert m.use_amp == on_cuda
    assert m.scaler.is_enabled() == (on_cuda and amp_dtype == "float16")
    if on_cuda:
        m.set_input(make_batch(2, 64, 24, seed=1))
        with m._autocast():
            out = m.netG(m.inp["A"], m.inp["mask"], m.inp["slice_ratio"], torch.ones_like(m.inp["A"]))
        assert out["fine_img"].dtype in (getattr(torch, amp_dtype), torch.float32)


@contextlib.contextmanager
def _no_host_sync(device):
    """CUDA: any device -> host synchronisation raises. CPU (dry run): the Python-level ways a
    step could ask for a tensor's value (``item``, ``bool``, ``int``, ``float``, ``tolist``,
    ``numpy``) raise, which is what would sync on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    names = ("item", "__bool__", "__int__", "__float__", "tolist", "numpy")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def forbid(name):
        def f(*_a, **_k):
            raise AssertionError(f"host sync in the training step: Tensor.{name}")
        return f
    for n in names:
        setattr(torch.Tensor, n, forbid(n))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_training_step_has_no_host_sync(device):
    """A training step (bfloat16 AMP on CUDA) reads no value back to the host. On CUDA the whole
    step with its optimiser updates runs under sync-debug mode 'error'; on the CPU the forward and
    the losses run with the value accessors disabled (the optimisers' own step counters are host
    tensors there, so the CPU check stops before them)."""
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(**SMALL, amp=True, ema_decay=0.999), device)
    batch = make_batch(4, 64, 24, seed=2)
    _steps(m, batch, 1)  # first step: lazy initialisation (cuDNN plans, optimiser state)
    m.set_input(batch)
    if device.type == "cuda":
        with _no_host_sync(device):
            m.optimize_parameters()
    else:
        with _no_host_sync(device):
            m.forward()
            m._d_losses()
            m._g_losses()
    assert bool(torch.isfinite(m.get_current_losses()["G"]))


def test_synthesis_batched_equals_batch_one(device):
    """The iterative 3D synthesis on the device gives the same volume in batches of 16 as one slice
    at a time (the generator treats samples independently)."""
    from synthesis.iterative import ModelStep, VertebraInput, synthesize_view
    torch.manual_seed(0)
    cfg = ModelConfig(ngf=4, ndf=4, image_size=64, band_rows=24)
    model = HealthiVertModel(cfg, device).prepare_inference()
    rng = np.random.default_rng(0)
    lab = np.zeros((64, 64, 12), np.int32)
    lab[8:20, 20:44, 1:11], lab[26:38, 20:44, 1:11], lab[44:56, 20:44, 2:10] = 19, 20, 21
    img = (np.where(lab > 0, 0.3, -0.5) + rng.normal(0, 0.05, lab.shape)).astype(np.float32)
    blocks = [VertebraInput("c_20", 20, img, lab, None, (1.0, 1.0, 1.0))]
    step = ModelStep(model, device)
    (one,) = synthesize_view(blocks, step, "sagittal", 64, 24, 1)
    (many,) = synthesize_view(blocks, step, "sagittal", 64, 24, 16)
    np.testing.assert_array_equal(one.slices, many.slices)
    np.testing.assert_allclose(many.image, one.image, atol=2e-4)
    assert one.height_mm == pytest.approx(many.height_mm, abs=1e-3)


def test_checkpoint_from_device_loads_on_cpu(device, tmp_path):
    """A train.py-format checkpoint written from a model on the device (RNG states included) loads
    with map_location='cpu' into a CPU model whose generator gives the same output."""
    from synthesis.model_io import load_generator
    from utils.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL)  # fp32: the comparison below is across devices, not precisions
    m = HealthiVertModel(cfg, device)
    batch = make_batch(2, 64, 24, seed=3)
    _steps(m, batch, 2)
    path = save_checkpoint(make_checkpoint(m.state_dict(), [], m.scaler, 1, 2, 0,
                                           {"dataset_mode": "aligned_sagittal"},
                                           {"model_config": cfg.to_dict()}), tmp_path / "latest.pth")
    ck = load_checkpoint(path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in ck["model"]["netG"].values())
    loaded = load_generator(path, "cpu")
    cpu_model = loaded.model if hasattr(loaded, "model") else loaded
    ref = m.infer(batch)
    got = cpu_model.infer(batch)
    torch.testing.assert_close(got["fake_B_raw"].cpu(), ref["fake_B_raw"].float().cpu(), atol=2e-3, rtol=0)
