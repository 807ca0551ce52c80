"""Generator / discriminator outputs, parameter counts, and contextual attention per sample."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.config import ModelConfig
from models.contextual_attention import ContextualAttention
from models.discriminator import NLayerDiscriminator
from models.healthivert_model import HealthiVertModel
from models.registry import DISCRIMINATORS, GENERATORS, build_generator
from tests.test_models_synthetic import make_batch


def _gen_inputs(b):
    return b["A"], b["mask"], b["slice_ratio"], 1 - b["CAM"]


def test_generator_output_shapes_and_ranges():
    torch.manual_seed(0)
    g = build_generator(ModelConfig(image_size=64, band_rows=24))
    out = g(*_gen_inputs(make_batch(3, 64, 24)))
    for k in ("coarse_img", "fine_img", "coarse_seg", "fine_seg"):
        assert out[k].shape == (3, 1, 64, 64), k
        assert torch.isfinite(out[k]).all()
    for k in ("coarse_img", "fine_img"):
        assert out[k].min() >= -1 and out[k].max() <= 1
    for k in ("coarse_seg", "fine_seg"):
        assert out[k].min() >= 0 and out[k].max() <= 1
    for k in ("coarse_height", "fine_height"):
        assert out[k].shape == (3,) and ((out[k] > 0) & (out[k] < 1)).all()


def test_discriminator_output_shapes():
    d = NLayerDiscriminator(1, 8, 3)
    assert d(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    assert d(torch.zeros(2, 1, 24, 64)).shape == (2, 1, 1, 6)  # the local band crop


def test_model_forward_outputs():
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, band_rows=24, ndf=8)
    m = HealthiVertModel(cfg)
    b = make_batch(2, 64, 24)
    o = m.infer(b)
    for k in ("fake_B", "fake_B_raw", "fake_B_coarse"):
        assert o[k].shape == (2, 1, 64, 64) and o[k].abs().max() <= 1
    for k in ("seg", "seg_raw", "seg_coarse"):
        assert o[k].shape == (2, 1, 64, 64) and o[k].min() >= 0 and o[k].max() <= 1
    h = b["x2"] - b["x1"]
    assert (o["height_pred"] >= h).all() and (o["height_pred"] <= torch.clamp(h, min=24)).all()
    assert (o["height_cont"] > 0).all() and (o["height_cont"] < 24).all()
    # outside the pasted rows the composite is the (pushed-apart) real slice
    for i in range(2):
        top, H = int(o["composite_top"][i]), int(o["height_pred"][i])
        d_top = (H - int(h[i])) // 2
        assert torch.equal(o["fake_B"][i, 0, :top], b["B"][i, 0, d_top:top + d_top])
        assert float(o["seg"][i, 0, :top].abs().sum()) == 0.0
    vis = m.get_current_visuals()
    assert set(vis) == {"real_A", "fake_B", "real_B", "CAM", "fake_B_mask_raw", "fake_B_coarse",
                        "coarse_seg_binary", "normal_vert", "mask", "real_edges", "fake_B_local"}
    assert vis["fake_B_local"].shape == (2, 1, 64, 64)  # the zero-padded image (the authors')
    assert m.netG.training  # infer restored train mode


def test_paper_parameter_counts():
    counts = HealthiVertModel(ModelConfig.paper()).parameter_counts()
    print("parameter counts:", counts)
    assert abs(counts["netG"] - 0.99e6) / 0.99e6 < 0.05
    assert abs(counts["netG.coarse"] - 0.41e6) / 0.41e6 < 0.05
    assert abs(counts["netG.fine"] - 0.58e6) / 0.58e6 < 0.05
    for d in ("netD_global", "netD_shape", "netD_local"):
        assert abs(counts[d] - 2.76e6) / 2.76e6 < 0.05


def test_registry_keys_and_config_validation():
    assert "healthivert" in GENERATORS and {"patchgan", "patchgan_instance"} <= set(DISCRIMINATORS)
    with pytest.raises(ValueError, match="generator"):
        ModelConfig(generator="nope")
    with pytest.raises(ValueError, match="band_rows"):
        ModelConfig(image_size=64, band_rows=16)
    with pytest.raises(ValueError, match="l1_norm"):
        ModelConfig(l1_norm="batch")
    assert ModelConfig.paper() == ModelConfig() and ModelConfig.paper(ngf=8).ngf == 8
    assert ModelConfig.from_dict({**ModelConfig().to_dict(), "other": 1}) == ModelConfig()


# ---------------------------------------------------------------- contextual attention
def _reference_ca(ca, f, b, mask):
    """Per-sample loop with conv2d / conv_transpose2d as in DeepFill's implementation."""
    outs = []
    for i in range(f.shape[0]):
        fi, bi = f[i:i + 1], b[i:i + 1]
        c = fi.shape[1]
        raw = F.unfold(bi, 4, stride=2, padding=1)  # (1, C*16, L)
        raw_w = raw[0].t().reshape(-1, c, 4, 4)
        fd, bd = fi[:, :, ::2, ::2], bi[:, :, ::2, ::2]
        h, w = fd.shape[-2:]
        wp = F.unfold(bd, 3, padding=1)[0].t().reshape(-1, c, 3, 3)
        wp = wp / wp.flatten(1).norm(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        known = ca.known_patches(mask[i:i + 1], (h, w)).view(1, -1, 1, 1)
        y = F.conv2d(fd, wp, padding=1) * known  # (1, L, h, w)
        eye = torch.eye(3).view(1, 1, 3, 3)  # DeepFill's fuse, written out
        y = F.conv2d(y.view(1, 1, h * w, h * w), eye, padding=1)
        y = y.view(1, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(1, 1, h * w, h * w)
        y = F.conv2d(y, eye, padding=1)
        y = y.view(1, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(1, h * w, h, w)
        y = torch.softmax((y * 10).masked_fill(~known, -1e9), dim=1) * known
        outs.append(F.conv_transpose2d(y, raw_w, stride=2, padding=1) / 4)
    return torch.cat(outs)


def _band_masks(n, size, tops, band):
    m = torch.zeros(n, 1, size, size)
    for i, t in enumerate(tops):
        m[i, :, t:t + band] = 1
    return m


def test_contextual_attention_matches_per_sample_reference():
    torch.manual_seed(0)
    ca = ContextualAttention()
    f, b = torch.randn(3, 4, 16, 16), torch.randn(3, 4, 16, 16)
    mask = _band_masks(3, 64, [8, 20, 33], 24)
    torch.testing.assert_close(ca(f, b, mask), _reference_ca(ca, f, b, mask), rtol=1e-4, atol=1e-5)


def test_contextual_attention_uses_each_samples_own_mask():
    torch.manual_seed(1)
    ca = ContextualAttention()
    f = torch.randn(2, 4, 16, 16)
    mask = _band_masks(2, 64, [10, 30], 24)
    out = ca(f, f, mask)
    f2, mask2 = f.clone(), mask.clone()
    f2[1] = torch.randn(4, 16, 16)  # sample 1's content (hole and context) changes
    mask2[1] = 0
    mask2[1, :, 0:24] = 1  # and its mask moves
    out2 = ca(f2, f2, mask2)
    assert torch.equal(out[0], out2[0])
    assert not torch.allclose(out[1], out2[1])
    # sample 0 alone gives the same result as inside the batch
    torch.testing.assert_close(ca(f[:1], f[:1], mask[:1])[0], out[0])


def test_contextual_attention_reads_known_patches_only():
    torch.manual_seed(2)
    ca = ContextualAttention()
    f, b = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    tops = [13, 30]  # not aligned with the 8-pixel matching grid
    mask = _band_masks(2, 64, tops, 24)
    out = ca(f, b, mask)
    b2 = b.clone()
    feat_hole = F.adaptive_max_pool2d(mask, (16, 16)) > 0  # hole at feature resolution
    b2[feat_hole.expand_as(b2)] = 1e3  # garbage in every hole feature of the background
    assert torch.equal(ca(f, b2, mask), out)
    known = ca.known_patches(mask, (8, 8))
    assert known.any(1).all() and (~known).any(1).all()


def test_generator_batch_independence():
    torch.manual_seed(3)
    g = build_generator(ModelConfig(image_size=64, band_rows=24)).eval()
    b = make_batch(2, 64, 24, seed=4)
    out = g(*_gen_inputs(b))
    b2 = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in b.items()}
    b2["mask"][1] = b["mask"][1].roll(8, dims=1)  # sample 1's band moves ...
    b2["A"][1] = torch.rand(1, 64, 64) * 2 - 1  # ... and its content changes
    b2["CAM"][1] = torch.rand(1, 64, 64)
    out2 = g(*_gen_inputs(b2))
    assert not torch.allclose(out["fine_img"][1], out2["fine_img"][1])
    for k, v in out.items():
        torch.testing.assert_close(v[0], out2[k][0], rtol=0, atol=1e-6, msg=k)
