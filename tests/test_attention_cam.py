"""CAM maths: our batched pytorch-grad-cam call against a direct Grad-CAM++ implementation,
normalisation, band masking and block mapping (tiny CNNs and synthetic blocks, CPU, seconds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from Attention.cam import (METHODS, band_mask, cam_for_block, make_cam, minmax, pointing_hit,
                           raw_cam, upsample)
from Attention.classifier import build_classifier, cam_target_layer
from Attention.dataset import Preproc
from Attention.synthetic import synthetic_block
from data import band as bd


class TinyCNN(nn.Module):
    """conv-relu-conv-relu (hooked: ``self.feat``) - global average pool - linear(2)."""

    def __init__(self, dims: int):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.feat = nn.Sequential(conv(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                  conv(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        a = self.feat(x)
        return self.head(a.flatten(2).mean(-1))


def direct_gradcam_pp(net: TinyCNN, x: torch.Tensor, cls: int = 1) -> np.ndarray:
    """Grad-CAM++ written out (float64): A = activations, g = dy_c/dA (the exp(S) form reduces to
    these powers), alpha = g^2 / (2 g^2 + sum_ij(A) g^3) (0 where g = 0),
    w_k = sum_ij alpha relu(g), cam = relu(sum_k w_k A_k)."""
    net.eval()
    a = net.feat(x)
    y = net.head(a.flatten(2).mean(-1))
    (g,) = torch.autograd.grad(y[:, cls].sum(), a)
    a, g = a.detach().double().numpy(), g.double().numpy()
    axes = tuple(range(2, a.ndim))
    s = a.sum(axis=axes, keepdims=True)
    alpha = g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6)
    alpha = np.where(g != 0, alpha, 0.0)
    w = (alpha * np.maximum(g, 0)).sum(axis=axes, keepdims=True)
    return np.maximum((w * a).sum(axis=1), 0.0)


@pytest.mark.parametrize("dims,shape", [(2, (5, 1, 32, 24)), (3, (3, 1, 16, 16, 12))])
def test_gradcam_pp_matches_direct_formula(dims, shape):
    torch.manual_seed(dims)
    net = TinyCNN(dims).eval()
    x = torch.randn(*shape)
    cam = make_cam(net, net.feat[-1], "gradcam++")
    ours = raw_cam(cam, x)
    ref = direct_gradcam_pp(net, x)
    assert ours.shape == ref.shape == (shape[0],) + tuple(s // 4 for s in shape[2:])
    assert ref.max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.max())
    # after upsampling + per-image min-max as the pipeline does
    size = shape[2:]
    np.testing.assert_allclose(minmax(upsample(ours, size), axes=tuple(range(1, dims + 1))),
                               minmax(upsample(ref.astype(np.float32), size),
                                      axes=tuple(range(1, dims + 1))), atol=1e-5)


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    net = TinyCNN(2).eval()
    x = torch.randn(4, 1, 32, 32)
    cam = make_cam(net, net.feat[-1])
    batched = raw_cam(cam, x)
    single = np.concatenate([raw_cam(cam, x[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_a_map(method):
    torch.manual_seed(1)
    net = TinyCNN(2).eval()
    out = raw_cam(make_cam(net, net.feat[-1], method), torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 4, 4) and np.all(out >= 0) and np.isfinite(out).all()


def test_minmax_and_constant_maps():
    a = np.stack([np.arange(6.0).reshape(2, 3), np.full((2, 3), 3.0)])
    m = minmax(a, axes=(1, 2))
    assert m[0].min() == 0 and m[0].max() == 1 and np.all(m[1] == 0)
    v = minmax(a)
    assert v.max() == 1 and np.isclose(v[1, 0, 0], 0.6)


def test_band_mask_follows_band_rule():
    rng = np.random.default_rng(0)
    ct, lab = synthetic_block(rng, 0, 20, (64, 64, 24))
    target = lab == 20
    unit = np.ones(ct.shape, np.float32) * 0.5
    out = band_mask(unit, target, 20)
    k = int(np.flatnonzero(target.any((0, 1)))[3])
    x1, x2 = bd.target_rows(target[:, :, k])
    a = bd.band_top(x1, x2, 20, 64)
    assert np.all(out[a:a + 20, :, k] == 0) and np.all(out[:a, :, k] == 0.5)
    assert np.all(out[a + 20:, :, k] == 0.5)
    assert np.all(out[:, :, 0] == 0.5)  # slice without target untouched
    assert np.all(unit == 0.5)  # input not modified


@pytest.mark.parametrize("dims,norm", [(2, "slice"), (2, "volume"), (3, "volume")])
def test_cam_for_block_covers_every_target_slice(dims, norm):
    rng = np.random.default_rng(3)
    ct, lab = synthetic_block(rng, 3, 20, (64, 64, 24))
    target = lab == 20
    torch.manual_seed(0)
    net = build_classifier("resnet_tiny", dims).eval()
    cam = make_cam(net, cam_target_layer(net))
    pre = Preproc(dims=dims, image_size=48, crop=None)
    vol, prob = cam_for_block(cam, ct, target, (1.0, 1.0, 1.0), pre, batch_size=7, norm=norm)
    assert vol.shape == ct.shape and vol.dtype == np.float32
    assert vol.min() >= 0 and vol.max() <= 1 and np.isclose(vol.max(), 1.0)
    ks = np.flatnonzero(target.any((0, 1)))
    assert 0 <= prob <= 1
    if dims == 2:
        assert all(vol[:, :, k].max() > 0 for k in ks)
        outside = np.setdiff1d(np.arange(ct.shape[2]), ks)
        assert np.all(vol[:, :, outside] == 0)
        if norm == "slice":
            assert all(np.isclose(vol[:, :, k].max(), 1.0) for k in ks)


def test_crop_window_is_zero_outside():
    rng = np.random.default_rng(4)
    ct, lab = synthetic_block(rng, 0, 20, (64, 64, 24))
    net = build_classifier("resnet_tiny", 2).eval()
    cam = make_cam(net, cam_target_layer(net))
    vol, _ = cam_for_block(cam, ct, lab == 20, (1, 1, 1), Preproc(2, 32, crop=32))
    assert np.all(vol[:16] == 0) and np.all(vol[48:] == 0) and np.all(vol[:, :16] == 0)
    assert vol[16:48, 16:48].max() == 1.0


def test_pointing_hit():
    target = np.zeros((10, 10, 5), bool)
    target[4:6, 4:6, 1:4] = True
    cam = np.zeros(target.shape, np.float32)
    cam[5, 5, 2] = 1.0
    assert pointing_hit(cam, target, "mid") and pointing_hit(cam, target, "volume")
    cam[0, 0, 2] = 2.0
    assert not pointing_hit(cam, target, "mid")
