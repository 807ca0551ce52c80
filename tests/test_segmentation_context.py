"""The random body painted around a training patch's spine (segmentation/context.py)."""
import numpy as np

from segmentation.context import add_body_context, slice_levels

SPACING = 4.0


def spine_patch(first_label: int, n: int, step_mm: float, spacing: float = SPACING):
    """A 32 x 32 x 48 patch (``spacing`` mm, RAS): soft tissue in a 120 mm box, air outside (as the phantom
    gives), ``n`` cylindrical vertebrae of labels first_label.. running down the z axis."""
    shape = (32, 32, 48)
    hu = np.full(shape, -1024.0, np.float32)
    hu[1:31, 1:31, :] = 40.0
    lab = np.zeros(shape, np.uint8)
    ii, jj = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    disc = (ii - 15.5) ** 2 + (jj - 15.5) ** 2 <= 4 ** 2
    cents = {}
    for k in range(n):
        zc = 40 - k * step_mm / spacing
        z0, z1 = int(round(zc - 2)), int(round(zc + 2))
        lab[:, :, z0:z1][disc] = first_label + k
        hu[:, :, z0:z1][disc] = 250.0
        cents[first_label + k] = np.array([15.5, 15.5, zc])
    return hu, lab, cents


def lung_voxels(out, cents, levels=(0, 30)):
    """Voxels of lung density (< -700 HU) beside the spine: 40-120 mm to either side, within
    30 mm of it front to back (where neither the outside air nor the bowel lies), in the slices
    whose level position lies in ``levels``."""
    lev, sx, sy = slice_levels(cents, out.shape[2], SPACING)
    out = out[:, :, (lev >= levels[0]) & (lev <= levels[1])]
    sx, sy = sx[(lev >= levels[0]) & (lev <= levels[1])], sy[(lev >= levels[0]) & (lev <= levels[1])]
    X = (np.arange(32)[:, None, None] - sx) * SPACING
    Y = (np.arange(32)[None, :, None] - sy) * SPACING
    return int(((out < -700) & (np.abs(X) > 40) & (np.abs(X) < 120) & (np.abs(Y) < 30)).sum())


def test_the_vertebrae_are_never_painted_over_and_the_outside_becomes_air():
    hu, lab, cents = spine_patch(8, 7, 23.0, spacing=8.0)      # 256 mm wide, as stage 1 sees
    for seed in range(5):
        out = add_body_context(hu, lab, cents, 8.0, np.random.default_rng(seed))
        assert out.shape == hu.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out[lab > 0], hu[lab > 0])
        assert (out != hu).mean() > 0.3                       # a body was painted
        assert np.median(out[:, 0, :]) < -900                  # 124 mm behind the spine: air
        assert np.median(out[14:18, 18:24, :]) > -300          # 20-68 mm in front of it: the body


def test_lungs_lie_beside_the_thoracic_spine_only():
    thorax = spine_patch(11, 7, 23.0)                          # T4-T10
    lumbar = spine_patch(20, 5, 35.0)                          # L1-L5 (T12 extrapolated above)
    n_t = [lung_voxels(add_body_context(*thorax, SPACING, np.random.default_rng(s)), thorax[2]) for s in range(6)]
    n_l = [lung_voxels(add_body_context(*lumbar, SPACING, np.random.default_rng(s)), lumbar[2], (21, 30)) for s in range(6)]
    assert min(n_t) > 200, n_t
    assert max(n_l) < 20, n_l


def test_a_patch_without_vertebrae_is_unchanged_and_the_body_follows_the_seed():
    hu, lab, cents = spine_patch(20, 5, 35.0)
    assert add_body_context(hu, np.zeros_like(lab), {}, SPACING, np.random.default_rng(0)) is hu
    a = add_body_context(hu, lab, cents, SPACING, np.random.default_rng(3))
    b = add_body_context(hu, lab, cents, SPACING, np.random.default_rng(3))
    c = add_body_context(hu, lab, cents, SPACING, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 10


def test_slice_levels_extrapolate_beyond_the_vertebrae():
    _, _, cents = spine_patch(20, 2, 35.0)                     # L1 at z 40, L2 at z 31.25
    level, sx, sy = slice_levels(cents, 48, SPACING)
    assert abs(level[40] - 20) < 1e-6 and abs(level[0] - (20 + 40 * SPACING / 35.0)) < 1e-6
    one = {20: np.array([10.0, 12.0, 24.0])}
    level, sx, sy = slice_levels(one, 48, SPACING)             # one vertebra: the lumbar step
    assert abs(level[24] - 20) < 1e-6 and abs(level[0] - level[1] - SPACING / 35.0) < 1e-6
    assert np.all(sx == 10.0) and np.all(sy == 12.0)


def test_a_cut_field_of_view_empties_one_or_both_ends_and_drops_their_targets():
    from segmentation.samples import AIR_HU, cut_field_of_view
    hu, lab, cents = spine_patch(15, 8, 22.0)
    hu0, lab0 = hu.copy(), lab.copy()
    rng = np.random.default_rng(0)
    sides = set()
    for _ in range(60):
        h, l, kept = cut_field_of_view(hu, lab, cents, rng)
        gone = np.all(h == AIR_HU, axis=(0, 1)) & np.all(l == 0, axis=(0, 1))
        assert gone.any() and not gone.all()
        z = np.nonzero(~gone)[0]
        assert not gone[z.min():z.max() + 1].any()          # one kept run of slices
        assert np.array_equal(h[:, :, ~gone], hu[:, :, ~gone]) and np.array_equal(l[:, :, ~gone], lab[:, :, ~gone])
        inside = {k for k, v in cents.items() if z.min() - 1 < v[2] < z.max() + 1}
        assert set(kept) == inside and set(kept) < set(cents)
        sides.add((bool(gone[-1]), bool(gone[0])))
    assert sides == {(True, False), (False, True), (True, True)}
    assert np.array_equal(hu, hu0) and np.array_equal(lab, lab0)


def test_the_vertebra_stage_batch_cuts_patches_only_when_asked():
    from segmentation.grid import Grid
    from segmentation.networks import PRESETS
    from segmentation.samples import StageCase
    from segmentation.train import stage_batch
    hu, lab, cents = spine_patch(15, 8, 22.0)
    aff = np.diag([SPACING, SPACING, SPACING, 1.0])
    case = StageCase("c", "train", Grid(hu.shape, aff), hu, lab, cents)
    cfg = PRESETS["cpu"]["vertebrae"]
    present = {}
    for p in (0.0, 1.0):
        _, _, _, pres = stage_batch(cfg, [case], np.random.default_rng(3), None, 8, 0.0, p)
        present[p] = int(pres.sum())
    assert present[1.0] < present[0.0]
