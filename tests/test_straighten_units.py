"""Centre line, frames, de-pedicle, partial-vertebra rule, geometry I/O and the inverse map."""
from __future__ import annotations

import numpy as np

from layout.blocks import BlockGeometry
from spine.anatomy import order_labels
from straighten.centerline import Centerline, rotation_minimizing_frames
from straighten.depedicle import depedicle
from straighten.inverse import block_to_world, world_to_block
from straighten.location_json import kept_labels


def test_order_labels_places_t13_and_l6():
    assert order_labels([20, 28, 19, 25, 24]) == [19, 28, 20, 24, 25]


def test_centerline_interpolates_and_is_arc_length():
    rng = np.random.default_rng(0)
    pts = np.cumsum(np.column_stack([rng.normal(0, 3, 6), rng.normal(0, 3, 6),
                                     -np.full(6, 30.0)]), axis=0)
    c = Centerline(pts)
    p, t = c.evaluate(c.knots_s)
    assert np.allclose(p, pts, atol=1e-6)
    s = np.linspace(-20, c.length_mm + 20, 400)
    p, t = c.evaluate(s)
    step = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert np.allclose(step, s[1] - s[0], rtol=2e-3)
    assert np.allclose(np.linalg.norm(t, axis=1), 1)


def test_rmf_on_helix_is_smooth_and_orthogonal():
    u = np.linspace(0, 4 * np.pi, 800)
    pts = np.column_stack([40 * np.cos(u), 40 * np.sin(u), -10 * u])
    tan = np.gradient(pts, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    n = rotation_minimizing_frames(pts, tan, 400, np.array([0.0, 1.0, 0.0]))
    assert np.allclose((n * tan).sum(1), 0, atol=1e-6)
    assert np.allclose(np.linalg.norm(n, axis=1), 1)
    assert np.min((n[1:] * n[:-1]).sum(1)) > 0.99      # no flips or jumps


def test_depedicle_keeps_body_removes_arch():
    lab = np.zeros((20, 40, 21), np.uint8)
    lab[5:15, 10:22, 5:16] = 7      # body around the curve (AP 16)
    lab[5:15, 26:34, 8:13] = 7      # arch behind a canal gap at AP 22..25
    out = depedicle(lab, centre_ap=16, centre_lr=10)
    assert (out[:, :22] == 7).sum() == (lab[:, :22] == 7).sum()
    assert not (out[:, 22:] == 7).any()


def test_partial_vertebra_rule():
    vols = {17: 500.0, 18: 30000.0, 19: 36000.0, 20: 40000.0, 21: 15000.0}
    assert kept_labels(vols) == [18, 19, 20]           # 17 below 1000 mm3, 21 < 50 % of 20
    assert kept_labels({20: 40000.0, 21: 41000.0}) == [20, 21]


def _geometry(h=16):
    r = np.arange(h)
    ang = 0.02 * r
    pts = np.column_stack([5 * np.sin(ang), np.zeros(h), -r * 1.0])
    return BlockGeometry(points_mm=pts, step_si_mm=np.tile([0, 0, -1.0], (h, 1)),
                         step_ap_mm=np.column_stack([np.cos(ang), np.zeros(h), np.sin(ang)]) * -1,
                         step_lr_mm=np.tile([0, 1.0, 0], (h, 1)) * 0.8, centre_ap=8,
                         centre_lr=4, block_shape=(h, 16, 8), patient_affine=np.eye(4),
                         patient_shape=(50, 50, 50), target_label=20, target_row=8.0)


def test_geometry_save_load_and_inverse(tmp_path):
    g = _geometry()
    p = g.save(tmp_path / "g.npz")
    g2 = BlockGeometry.load(p)
    assert np.allclose(g2.points_mm, g.points_mm) and g2.block_shape == g.block_shape
    rng = np.random.default_rng(1)
    idx = rng.uniform([1, 1, 1], [14, 14, 6], size=(200, 3))
    w = block_to_world(g2, idx)
    back, ok = world_to_block(g2, w)
    assert ok.all() and np.allclose(back, idx, atol=1e-6)


def test_depedicle_keeps_posterior_body_when_most_centre_rows_end_early():
    """Severe biconcave body: most rows through the depressed centre end before the posterior
    wall; the cut must still be at the canal, not inside the body."""
    from straighten.depedicle import depedicle
    lab = np.zeros((20, 60, 5), np.uint8)
    lab[:12, 0:11, :] = 22          # short rows (depressed centre), more than half of them
    lab[12:, 0:31, :] = 22          # full-depth rows reach the posterior wall at AP 30
    lab[:, 36:46, :] = 22           # arch behind the canal (AP 31..35 empty)
    out = depedicle(lab, centre_ap=5, centre_lr=2)
    assert (out[12:, 11:31] == 22).all(), "posterior part of the body was cut"
    assert not (out[:, 36:] == 22).any(), "arch was kept"
