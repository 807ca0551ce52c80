"""Loss functions: EEM gradient (soft vs the original's binary), L1 normalisations, Dice, height."""
from __future__ import annotations

import math

import pytest
import torch

from models import losses as L
from models.config import L1_BAND_SCALE, ModelConfig
from models.healthivert_model import HealthiVertModel
from tests.test_models_synthetic import make_batch


def _edge_grads(on_binary: bool):
    torch.manual_seed(0)
    m = HealthiVertModel(ModelConfig(image_size=64, band_rows=24, ndf=8, edge_on_binary=on_binary))
    m.set_input(make_batch(2, 64, 24))
    m.forward()
    seg = m.out["fine_seg_comp"]
    loss = L.edge_loss(seg, m.inp["A_mask"], on_binary) + 0.0 * seg.sum()  # keep a graph
    loss.backward()
    grads = [p.grad for p in m.netG.parameters() if p.grad is not None]
    return float(loss.detach()), sum(float(g.abs().sum()) for g in grads), len(grads)


def test_edge_loss_trains_the_generator_on_the_soft_mask():
    loss, grad, n = _edge_grads(False)
    assert loss > 0 and n > 0 and grad > 1e-6


def test_edge_loss_on_binary_has_exactly_zero_gradient():
    loss, grad, _ = _edge_grads(True)
    assert loss > 0 and grad == 0.0


def test_sobel_magnitude_finds_edges():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:, :] = 1
    e = L.sobel_magnitude(x)
    assert e[0, 0, 3:5].min() > 0.2 and e[0, 0, :2].max() < 0.01 and e[0, 0, 6:].max() < 0.01


def test_band_l1_normalisations():
    torch.manual_seed(0)
    fake, real = torch.rand(12, 1, 32, 32), torch.rand(12, 1, 32, 32)
    band = torch.zeros(12, 1, 32, 32)
    band[:, :, 8:16] = 1
    per_sample = L.band_l1(fake, real, band, "per_sample")
    mean_in_band = ((fake - real).abs() * band).sum() / band.sum()
    torch.testing.assert_close(per_sample, L1_BAND_SCALE * mean_in_band)
    # the original's factor equals ours at its batch size 12 ...
    torch.testing.assert_close(L.band_l1(fake, real, band, "original"), per_sample)
    # ... but scales with 1 / batch size; ours does not depend on the batch size
    half = slice(0, 6)
    f12, r12 = fake[half].repeat(2, 1, 1, 1), real[half].repeat(2, 1, 1, 1)  # same 6, twice
    torch.testing.assert_close(L.band_l1(f12, r12, band, "per_sample"),
                               L.band_l1(fake[half], real[half], band[half], "per_sample"))
    orig6 = L.band_l1(fake[half], real[half], band[half], "original")
    orig12 = L.band_l1(f12, r12, band, "original")
    torch.testing.assert_close(orig6, 2 * orig12)
    # errors outside the band do not count
    assert float(L.band_l1(fake * band + 5 * (1 - band), real * band, band, "per_sample")) == \
        pytest.approx(float(L.band_l1(fake * band, real * band, band, "per_sample")))


def test_dice_height_and_gan_values():
    m = torch.zeros(2, 1, 16, 16)
    m[..., 2:10, 2:10] = 1
    assert float(L.soft_dice(m, m)) == pytest.approx(1.0)
    assert float(L.soft_dice(torch.zeros_like(m), m)) < 0.05
    s = torch.tensor([0.5, 0.25])
    assert float(L.height_loss(s, torch.tensor([20.0, 20.0]), 40)) == pytest.approx(0.25)
    logits = torch.zeros(2, 1, 3, 3)
    assert float(L.gan_loss(logits, True)) == pytest.approx(math.log(2))
    assert float(L.gan_loss(torch.full_like(logits, 20.0), False)) == pytest.approx(20.0, rel=1e-4)


def test_total_generator_loss_terms_present_and_ablations_zero():
    torch.manual_seed(0)
    b = make_batch(2, 64, 24)
    cfg = ModelConfig(image_size=64, band_rows=24, ndf=8, use_edge=False, use_height=False)
    m = HealthiVertModel(cfg)
    m.set_input(b)
    m.optimize_parameters()
    losses = m.get_current_losses()
    assert {"G_GAN", "G_L1", "G_dice", "G_dice_coarse", "G_edge", "G_height", "G",
            "D_global", "D_shape", "D_local", "D"} <= set(losses)
    assert all(v.dim() == 0 and not v.requires_grad for v in losses.values())
    assert float(losses["G_edge"]) == 0.0 and float(losses["G_height"]) == 0.0
    parts = sum(float(losses[k]) for k in ("G_GAN", "G_L1", "G_dice", "G_dice_coarse"))
    assert float(losses["G"]) == pytest.approx(parts, rel=1e-5)
    # without the height module, H = h: the composite is the real slice outside [x1, x2)
    o = m.infer(b)
    assert torch.equal(o["height_pred"], (b["x2"] - b["x1"]).float())
    for i in range(2):
        x1, x2 = int(b["x1"][i]), int(b["x2"][i])
        assert torch.equal(o["fake_B"][i, 0, :x1], b["B"][i, 0, :x1])
        assert torch.equal(o["fake_B"][i, 0, x2:], b["B"][i, 0, x2:])
