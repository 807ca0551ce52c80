"""The model wrapper: checkpoints, determinism, AMP switch, DDP wrapping, overfitting."""
from __future__ import annotations

import os

import pytest
import torch

from models.config import ModelConfig
from models.healthivert_model import HealthiVertModel, build_model
from tests.test_models_synthetic import make_batch

SMALL = dict(image_size=64, band_rows=24, ndf=8)


def _steps(model, batch, n):
    for _ in range(n):
        model.set_input(batch)
        model.optimize_parameters()
    return {k: v.clone() for k, v in model.get_current_losses().items()}


def test_checkpoint_roundtrip_gives_identical_outputs_and_training(tmp_path):
    torch.manual_seed(0)
    b = make_batch(2, 64, 24, seed=1)
    m1 = build_model(ModelConfig(**SMALL))
    _steps(m1, b, 1)
    torch.save(m1.state_dict(), tmp_path / "ckpt.pth")
    torch.manual_seed(123)  # a differently initialised model
    m2 = HealthiVertModel(ModelConfig(**SMALL))
    assert not torch.equal(m2.infer(b)["fake_B_raw"], m1.infer(b)["fake_B_raw"])
    m2.load_state_dict(torch.load(tmp_path / "ckpt.pth", map_location="cpu", weights_only=False))
    o1, o2 = m1.infer(b), m2.infer(b)
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    # optimiser state came along: one more step stays identical
    l1, l2 = _steps(m1, b, 1), _steps(m2, b, 1)
    for k in l1:
        assert torch.equal(l1[k], l2[k]), k
    # every network (generator and the three discriminators), parameters and buffers
    for name, net in m1.networks().items():
        other = m2.networks()[name]
        for (n, p), q in zip(net.state_dict().items(), other.state_dict().values()):
            assert torch.equal(p, q), f"{name}.{n}"


def test_prepare_inference_keeps_outputs_and_locks_training():
    torch.manual_seed(0)
    b = make_batch(3, 64, 24, seed=2)
    m1 = build_model(ModelConfig(**SMALL))
    _steps(m1, b, 2)  # trained a little: the spectral-norm vectors are no longer their init
    m2 = HealthiVertModel(ModelConfig(**SMALL))
    m2.load_state_dict(m1.state_dict())
    o1 = m1.infer(b)
    m2.prepare_inference()
    assert not any(n.endswith("original") for n, _ in m2.netG.named_parameters())  # SN folded
    o2 = m2.infer(b)
    for k in ("fake_B", "fake_B_raw", "seg", "seg_raw", "height_cont"):
        assert torch.allclose(o1[k], o2[k], atol=1e-5), k
    assert torch.equal(o1["height_pred"], o2["height_pred"])
    with pytest.raises(RuntimeError, match="inference only"):
        m2.train()
    with pytest.raises(RuntimeError, match="inference only"):
        m2.state_dict()


def test_load_rejects_other_architecture_and_missing_parts():
    m = HealthiVertModel(ModelConfig(**SMALL))
    sd = m.state_dict()
    other = HealthiVertModel(ModelConfig(**{**SMALL, "ngf": 8}))
    with pytest.raises(ValueError, match="ngf"):
        other.load_state_dict(sd)
    partial = {k: v for k, v in sd.items() if k != "optimizer_D"}
    with pytest.raises(ValueError, match="optimizer_D"):
        m.load_state_dict(partial)
    m.load_state_dict(partial, strict=False)


def test_same_seed_same_losses_after_two_steps():
    b = make_batch(2, 64, 24, seed=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(_steps(HealthiVertModel(ModelConfig(**SMALL)), b, 2))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k
    assert float(runs[0]["G"]) > 0


def test_amp_only_on_cuda():
    m = HealthiVertModel(ModelConfig(**SMALL, amp=True), "cpu")
    assert not m.use_amp and not m.scaler.is_enabled()


def test_ablation_flags_run_a_step():
    b = make_batch(2, 64, 24, seed=3)
    for flags in ({"use_contextual_attention": False}, {"use_cam": False},
                  {"edge_on_binary": True}, {"l1_norm": "original"},
                  {"discriminator": "patchgan_instance"}):
        torch.manual_seed(0)
        losses = _steps(HealthiVertModel(ModelConfig(**SMALL, **flags)), b, 1)
        assert all(torch.isfinite(v) for v in losses.values()), flags


def test_cam_changes_the_output_only_with_use_cam():
    b = make_batch(2, 64, 24, seed=4)
    b2 = dict(b, CAM=torch.zeros_like(b["CAM"]))
    for use_cam in (True, False):
        torch.manual_seed(0)
        m = HealthiVertModel(ModelConfig(**SMALL, use_cam=use_cam))
        same = torch.equal(m.infer(b)["fake_B_coarse"], m.infer(b2)["fake_B_coarse"])
        assert same != use_cam


def _ddp_worker(rank, world, port, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same init on both ranks (DDP also broadcasts rank 0's)
    m = HealthiVertModel(ModelConfig(**SMALL))
    m.wrap_ddp()
    _steps(m, make_batch(2, 64, 24, seed=10 + rank), 2)  # different data per rank
    torch.save({k: v for k, v in m.netG.state_dict().items()}, f"{out}/rank{rank}.pth")
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_end_with_identical_weights(tmp_path):
    import torch.multiprocessing as mp
    port = 29500 + os.getpid() % 1000
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pth") for r in range(2))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k


def _band_l1(model, batch):
    o = model.infer(batch)
    band = batch["mask"]
    return float(((o["fake_B"] - batch["B"]).abs() * band).sum() / band.sum())


@pytest.mark.slow
def test_overfit_band_l1_falls_by_80_percent():
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(image_size=64, band_rows=24, ndf=16, lr=1e-3))
    b = make_batch(4, 64, 24, seed=3)
    before = _band_l1(m, b)
    _steps(m, b, 200)
    after = _band_l1(m, b)
    print(f"band L1 {before:.4f} -> {after:.4f} ({100 * (1 - after / before):.1f} % lower)")
    assert after <= 0.2 * before


def test_mixed_precision_path_keeps_real_rows_exact():
    """The autocast path (bfloat16 on CPU stands in for float16 on CUDA) trains and the
    composite keeps the real context rows bit-exact."""
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(image_size=32, band_rows=24, ngf=8, ndf=8, use_height=False))
    m._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    b = make_batch(2, 32, 24, seed=5)
    losses = _steps(m, b, 1)
    assert all(torch.isfinite(v) for v in losses.values())
    o = m.infer(b)
    assert o["fake_B"].dtype == torch.float32 and o["height_cont"].dtype == torch.float32
    for i in range(2):
        x1, x2 = int(b["x1"][i]), int(b["x2"][i])
        assert torch.equal(o["fake_B"][i, 0, :x1], b["B"][i, 0, :x1])
        assert torch.equal(o["fake_B"][i, 0, x2:], b["B"][i, 0, x2:])


def test_compute_losses_changes_no_weights():
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(**SMALL)).eval()
    m.set_input(make_batch(2, 64, 24, seed=6))
    before = {k: v.clone() for k, v in m.netD_global.state_dict().items()}
    losses = m.compute_losses()
    assert {"G", "D", "G_L1", "D_shape"} <= set(losses)
    assert all(torch.equal(v, m.netD_global.state_dict()[k]) for k, v in before.items())


def test_ema_generator_averages_and_travels_in_the_checkpoint(tmp_path):
    """--ema_decay d: after n updates every EMA parameter is e * old + (1 - e) * new with the
    warm-up e = min(d, (1 + n) / (10 + n)) (0.1 at the first step, so the random initial weights
    do not dominate a short run); the average and its step count are saved, restored, and are
    what synthesis loads."""
    torch.manual_seed(0)
    b = make_batch(2, 64, 24, seed=4)
    m = HealthiVertModel(ModelConfig(**SMALL, ema_decay=0.9))
    before = [p.detach().clone() for p in m.netG_ema.parameters()]
    _steps(m, b, 1)
    for old, pe, p in zip(before, m.netG_ema.parameters(), m.netG.parameters()):
        torch.testing.assert_close(pe, 0.1 * old + 0.9 * p.detach())
    m.ema_updates = 200                                 # warm-up over: the decay itself
    before = [p.detach().clone() for p in m.netG_ema.parameters()]
    _steps(m, b, 1)
    for old, pe, p in zip(before, m.netG_ema.parameters(), m.netG.parameters()):
        torch.testing.assert_close(pe, 0.9 * old + 0.1 * p.detach())
    assert any(not torch.equal(pe, p) for pe, p in zip(m.netG_ema.parameters(), m.netG.parameters()))
    sd = m.state_dict()
    assert "netG_ema" in sd
    m2 = HealthiVertModel(ModelConfig(**SMALL, ema_decay=0.9))
    m2.load_state_dict(sd)
    for a, c in zip(m.netG_ema.state_dict().values(), m2.netG_ema.state_dict().values()):
        assert torch.equal(a, c)
    assert m2.ema_updates == 201                        # exact resume of the warm-up
    assert HealthiVertModel(ModelConfig(**SMALL)).netG_ema is None      # off by default (paper)


def test_synthesis_loads_the_ema_generator(tmp_path):
    from synthesis.model_io import load_generator
    from utils import checkpoint as ck
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(**SMALL, ema_decay=0.5))
    with torch.no_grad():
        for p in m.netG_ema.parameters():
            p.mul_(0.5)                                   # the EMA differs from netG
    path = tmp_path / "ck.pth"
    ck.save_checkpoint(ck.make_checkpoint(m.state_dict(), [], None, 1, 1, 0,
                                          {"dataset_mode": "aligned_sagittal"}), path)
    lm = load_generator(path, "cpu", "sagittal")
    ref = HealthiVertModel(ModelConfig(**SMALL))
    ref.netG.load_state_dict(m.netG_ema.state_dict())
    ref.prepare_inference()
    b = make_batch(1, 64, 24, seed=5)
    torch.testing.assert_close(lm.model.infer(b)["fake_B_raw"], ref.infer(b)["fake_B_raw"])


def test_paper_adversarial_terms_hole_fill_and_edge_scale(monkeypatch):
    """The paper's G has 3 adversarial terms (fine composite, fine band, fine shape; --adv_coarse
    adds the 2 coarse ones), its hole rows are -1, and its edge map is the raw Sobel clipped at 1."""
    from models import losses as L
    b = make_batch(2, 64, 24, seed=6)
    calls = []
    real = L.gan_loss
    monkeypatch.setattr(L, "gan_loss", lambda *a: calls.append(1) or real(*a))
    for coarse, n in ((False, 3), (True, 5)):
        m = HealthiVertModel(ModelConfig(**SMALL, adv_coarse=coarse))
        m.set_input(b)
        m.forward()
        calls.clear()
        m._g_losses()
        assert len(calls) == n
    m = HealthiVertModel(ModelConfig(**SMALL))
    m.set_input(b)
    band = m.inp["mask"] > 0.5
    assert torch.all(m.inp["A"][band] == -1.0)
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    assert float(L.edge_map(step, "sobel_clip").max()) == 1.0
    assert abs(float(L.edge_map(step, "sobel_normalised").max()) - 0.5) < 1e-3


def test_paper_generator_is_the_authors_layout():
    """``healthivert_paper``: 0.987 M parameters at ngf 16 (coarse 0.410 M, fine 0.577 M; ours
    0.971 M), one decoder per stage feeding both heads, and height heads that read the features
    the authors read: the coarse one before the two 1/4 convs, the fine one right after the merge."""
    from models.generator import HealthiVertGenerator, PaperHealthiVertGenerator
    from models.registry import build_generator
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    paper, ours = PaperHealthiVertGenerator(16).eval(), HealthiVertGenerator(16).eval()
    assert (count(paper), count(paper.coarse), count(paper.fine)) == (986888, 409771, 577117)
    assert count(ours) == 970767
    assert isinstance(build_generator(ModelConfig(generator="healthivert_paper")), PaperHealthiVertGenerator)
    torch.manual_seed(0)
    b = make_batch(2, 64, 24, seed=3)
    args = (b["A"], b["mask"], b["slice_ratio"].float(), 1 - b["CAM"])
    for g, late in ((paper.coarse, "post"), (paper.fine, "post")):
        before = paper(*args)
        with torch.no_grad():
            for p in getattr(g, late).parameters():
                p.add_(torch.randn_like(p))
        after = paper(*args)
        stage = "coarse" if g is paper.coarse else "fine"
        assert torch.equal(before[f"{stage}_height"], after[f"{stage}_height"])
        assert not torch.equal(before[f"{stage}_img"], after[f"{stage}_img"])
        assert not torch.equal(before[f"{stage}_seg"], after[f"{stage}_seg"])
    # ours reads the coarse height after its last 1/4 convs: the same perturbation moves it
    before = ours(*args)["coarse_height"]
    with torch.no_grad():
        for p in ours.coarse.mid[-1].parameters():
            p.add_(torch.randn_like(p))
    assert not torch.equal(before, ours(*args)["coarse_height"])


def test_local_discriminator_input_crop_or_zero_padded_image():
    """``local_input='padded'`` (the authors'): the whole image, zero outside the band rows and
    the central ``local_cols`` columns; ``'crop'`` (ours): exactly those pixels as a crop."""
    b = make_batch(2, 64, 24, seed=4)
    out = {}
    for mode in ("crop", "padded"):
        torch.manual_seed(0)
        m = HealthiVertModel(ModelConfig(**SMALL, local_cols=30, local_input=mode))
        m.set_input(b)
        m.forward()
        out[mode] = m.out
        m.optimize_parameters()  # the local D takes either shape
    crop, pad = out["crop"]["real_local"], out["padded"]["real_local"]
    assert crop.shape == (2, 1, 24, 30) and pad.shape == (2, 1, 64, 64)
    for i in range(2):
        a = int(b["band_top"][i])
        assert torch.equal(pad[i, :, a:a + 24, 17:47], crop[i])
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[a:a + 24, 17:47] = True
        assert float(pad[i, 0][~inside].abs().max()) == 0.0
    assert torch.equal(out["crop"]["fine_local"], out["padded"]["fine_local"][..., 17:47].gather(
        2, (b["band_top"].view(2, 1, 1, 1) + torch.arange(24).view(1, 1, 24, 1)).expand(2, 1, 24, 30)))


def test_amp_dtype_defaults_to_bfloat16_and_rejects_others():
    assert ModelConfig().amp_dtype == "bfloat16"
    with pytest.raises(ValueError, match="amp_dtype"):
        ModelConfig(amp_dtype="float8")
    m = HealthiVertModel(ModelConfig(**SMALL, amp=True))  # CPU: AMP off, no scaler
    assert not m.use_amp and not m.scaler.is_enabled() and m.amp_dtype == torch.bfloat16


def test_channels_last_and_compile_train_and_save_plain_weights(monkeypatch):
    """--channels_last puts every network's weights in channels-last layout; --compile runs the
    step through torch.compile'd modules (here with the eager backend, to keep the test fast)
    while networks() and the checkpoint keep the plain modules and their key names."""
    calls = []
    real = torch.compile

    def compile_eager(mod, **kw):
        calls.append(type(mod).__name__)
        return real(mod, backend="eager", **kw)
    monkeypatch.setattr(torch, "compile", compile_eager)
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(**SMALL, channels_last=True, compile=True))
    conv = next(p for p in m.netG.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert len(calls) == 4 and all(type(r).__name__ == "OptimizedModule" for r in m._run.values())
    losses = _steps(m, make_batch(2, 64, 24, seed=8), 1)
    assert all(bool(torch.isfinite(v)) for v in losses.values())
    plain = HealthiVertModel(ModelConfig(**SMALL))
    assert set(m.state_dict()["netG"]) == set(plain.state_dict()["netG"])
    assert not any("_orig_mod" in k for k in m.state_dict()["netD_global"])
