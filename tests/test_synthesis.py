"""Unit tests of the 3D synthesis stage: slicing views, the step batch (same as training), the
label update (same row map as the SHRM composite), the iterative scheduler and the fusion rule.

The scheduler tests use a small deterministic stand-in with the model's ``infer`` contract (built
on the real ``models.shrm`` composite); the end-to-end tests with a real generator are in
``test_synthesis_cli.py``.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from data import band as bd
from data.sample import one_sample
from models.shrm import composite_index, shrm_composite
from synthesis.fusion import fuse
from synthesis.iterative import (ModelStep, Scheduler, SliceTask, VertebraInput, ViewResult,
                                 neighbours, synthesize_view)
from synthesis.steps import build_batch, update_labels
from synthesis.views import SliceGrid


class GrowModel:
    """Test double with ``infer``'s contract: the band is filled with +0.5, the rebuilt vertebra is
    a box of ``h + grow`` rows centred in the band, pasted with the real SHRM composite."""

    def __init__(self, grow: int = 4):
        self.grow, self.calls = grow, []

    def infer(self, batch):
        self.calls.append(list(zip(batch["key"], batch["slice_index"])))
        a_img, band_rows = batch["A"], int(batch["band_rows"][0])
        x1, x2, a = batch["x1"], batch["x2"], batch["band_top"]
        big_h = (x2 - x1) + self.grow
        n, _, rows, cols = a_img.shape
        r = torch.arange(rows).view(1, 1, rows, 1)
        c = torch.arange(cols).view(1, 1, 1, cols)
        centre = (a + band_rows // 2).view(-1, 1, 1, 1)
        first = centre - (big_h // 2).view(-1, 1, 1, 1)  # the rows SHRM pastes: [c - H//2, +H)
        box = (r >= first) & (r < first + big_h.view(-1, 1, 1, 1)) & (c >= cols // 4) & (c < 3 * cols // 4)
        idx = composite_index(x1, x2, a, band_rows, big_h, rows)
        gen = torch.where(batch["mask"] > 0, torch.full_like(a_img, 0.5), a_img)
        return {"fake_B": shrm_composite(gen, batch["B"], idx), "fake_B_raw": gen,
                "seg": shrm_composite(box.float(), None, idx), "seg_raw": box.float(),
                "height_pred": big_h.float()}


class ArtefactModel(GrowModel):
    """The artefacts of issue #12 on purpose: the band is dark (-1) away from the box, the target's
    mask has an island far posterior in the pasted rows, and a rebuilt neighbour comes out in two
    fragments (its middle rows missing). Run with batch 1: calls go upper, lower, target per slice."""

    def infer(self, batch):
        out = GrowModel.infer(self, batch)
        a_img, band_rows = batch["A"], int(batch["band_rows"][0])
        n, _, rows, cols = a_img.shape
        seg_raw = out["seg_raw"].clone()
        gen = torch.where((batch["mask"] > 0) & (seg_raw < 0.5), torch.full_like(a_img, -1.0), out["fake_B_raw"])
        centre = int(batch["band_top"][0]) + band_rows // 2
        seg_raw[:, :, centre - 2:centre + 2, cols - 8:cols - 4] = 1.0       # island, far posterior
        if len(self.calls) % 3 != 0:                                        # a neighbour step
            seg_raw[:, :, centre - 1:centre + 1, :] = 0.0                   # two fragments
        x1, x2, a = batch["x1"], batch["x2"], batch["band_top"]
        idx = composite_index(x1, x2, a, band_rows, out["height_pred"].long(), rows)
        out.update(fake_B=shrm_composite(gen, batch["B"], idx), fake_B_raw=gen,
                   seg=shrm_composite(seg_raw, None, idx), seg_raw=seg_raw)
        return out


def spine_block(shape=(64, 64, 12), seed=0, shift=0):
    """Three boxes (labels 19, 20, 21) stacked along axis 0, CT in [-1, 1]."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    lab[6 + shift:18 + shift, 12:36, 2:10] = 19
    lab[24:36, 12:36, 1:11] = 20
    lab[42:54, 12:36, 3:9] = 21
    img = np.where(lab > 0, 0.4, -0.6) + rng.normal(0, 0.05, shape)
    return img.astype(np.float32), lab


# ---------------------------------------------------------------- views
@pytest.mark.parametrize("view", ["sagittal", "coronal"])
def test_view_take_put_roundtrip(view):
    img, lab = spine_block()
    size = 64
    g = SliceGrid(view, size, img.shape, (1.0, 1.0, 1.0))
    idx = g.slices_with(lab == 20)
    stack = g.take(img, idx, "image")
    assert stack.shape == (idx.size, size, size)
    out = np.zeros_like(img)
    g.put(out, idx, stack, "image")
    np.testing.assert_array_equal(out[:, :, idx] if view == "sagittal" else out[:, idx, :],
                                  img[:, :, idx] if view == "sagittal" else img[:, idx, :])
    if view == "coronal":  # 12-wide slice centred in a 64-wide canvas padded with -1
        assert np.all(stack[:, :, :g.c0] == -1.0) and g.new_w == 12


def test_view_resampled_labels_roundtrip():
    _, lab = spine_block(shape=(128, 96, 12))
    g = SliceGrid("sagittal", 64, lab.shape, (1.0, 1.0, 1.0), fit="resize")
    assert g.resampled and g.pixel_mm == (2.0, 1.5)
    idx = g.slices_with(lab == 20)
    small = g.take(lab, idx, "label")
    back = np.zeros_like(lab)
    g.put(back, idx, small, "label")
    agree = (back[:, :, idx] == lab[:, :, idx]).mean()
    assert agree > 0.97


# ---------------------------------------------------------------- one step
def test_build_batch_matches_training_sample():
    """The stacked inference batch equals the dataset's per-sample batch dict, slice by slice."""
    img, lab = spine_block()
    cam = np.random.default_rng(1).uniform(0, 1, img.shape).astype(np.float32)
    g = SliceGrid("sagittal", 64, img.shape, (1.0, 1.0, 1.0))
    idx = g.slices_with(lab == 20)
    images, labels, cams = g.take(img, idx, "image"), g.take(lab, idx, "label"), g.take(cam, idx, "cam")
    ratios = bd.slice_ratio(idx, int(idx[0]), int(idx[-1]) + 1)
    batch = build_batch(images, labels, cams, np.full(idx.size, 20), ratios, 24, 50,
                        ["k"] * idx.size, idx, "cpu")
    for i, z in enumerate(idx):
        ref = one_sample(images[i], labels[i], cams[i], 20, 24, 50, float(ratios[i]), "k", int(z))
        for name in ("A", "B", "mask", "A_mask", "normal_vert", "CAM"):
            torch.testing.assert_close(batch[name][i], ref[name], msg=name)
        for name in ("x1", "x2", "band_top", "height", "slice_ratio"):
            assert float(batch[name][i]) == pytest.approx(float(ref[name])), name


def test_update_labels_moves_neighbours_like_the_composite():
    """h = 10 rows, H = 16: rows above move up by 3, rows below move down by 3."""
    lab = np.zeros((1, 64, 8), np.int32)
    lab[0, 5:15] = 19
    lab[0, 20:30] = 20
    lab[0, 35:45] = 21
    seg = np.zeros((1, 64, 8), np.float32)
    seg[0, 17:33, 2:6] = 0.9
    a = bd.band_top(20, 30, 24, 64)
    out = update_labels(lab, [20], [20], [30], [a], 24, [16.0], seg)[0]
    assert np.flatnonzero((out == 19).any(1)).tolist() == list(range(2, 12))
    assert np.flatnonzero((out == 21).any(1)).tolist() == list(range(38, 48))
    assert (out == 20).sum() == 16 * 4 and np.all(out[17:33, 2:6] == 20)
    assert np.all(out[17:33, :2] == 0)  # pasted rows are cleared outside the new mask


def test_neighbours_by_centroid_row():
    _, lab = spine_block()
    assert neighbours(lab, 20) == (19, 21)
    assert neighbours(lab, 19) == (None, 20)
    assert neighbours(lab, 21) == (20, None)


# ---------------------------------------------------------------- iterative schedule
def _tasks(n, steps=(19, 21, 20)):
    img, lab = spine_block()
    g = SliceGrid("sagittal", 64, img.shape, (1.0, 1.0, 1.0))
    idx = g.slices_with(lab == 20)[2:2 + n]  # slices holding all three vertebrae
    ims, labs = g.take(img, idx, "image"), g.take(lab, idx, "label")
    return [SliceTask(0, "c_20", int(z), ims[i], labs[i], np.zeros_like(ims[i]), 0.0, 24, 50, 0.0,
                      deque(steps), 20) for i, z in enumerate(idx)]


def test_batch_one_is_the_slice_by_slice_loop():
    model = GrowModel()
    done = [t for ts in Scheduler(ModelStep(model, "cpu"), 1).run(_tasks(3)) for t in ts]
    assert len(done) == 3 and all(t.prob is not None for t in done)
    order = [c[0][1] for c in model.calls]
    assert order == [order[0]] * 3 + [order[3]] * 3 + [order[6]] * 3  # upper, lower, target per slice
    assert len(set(order)) == 3


def test_batched_schedule_fills_batches_and_matches_batch_one():
    model = GrowModel()
    batched = {t.index: t for ts in Scheduler(ModelStep(model, "cpu"), 4).run(_tasks(6)) for t in ts}
    assert [len(c) for c in model.calls][:3] == [4, 4, 4]
    single = {t.index: t for ts in Scheduler(ModelStep(GrowModel(), "cpu"), 1).run(_tasks(6)) for t in ts}
    for z, t in single.items():
        np.testing.assert_allclose(batched[z].image, t.image, atol=1e-6)
        np.testing.assert_array_equal(batched[z].labels, t.labels)


def test_small_neighbour_is_skipped():
    """A neighbour with <= 200 mm^2 in the slice is not rebuilt (only the target step runs)."""
    img, lab = spine_block()
    lab[lab == 19] = 0
    lab[10:14, 20:24, :] = 19  # 16 px per slice
    v = VertebraInput("c_20", 20, img, lab, None, (1.0, 1.0, 1.0))
    model = GrowModel()
    (res,) = synthesize_view([v], ModelStep(model, "cpu"), "sagittal", 64, 24, 64)
    n_lower = int(np.isin(res.slices, np.flatnonzero((lab == 21).any(axis=(0, 1)))).sum())
    assert n_lower == 6
    assert sum(len(c) for c in model.calls) == res.slices.size + n_lower  # no upper step
    assert res.height_mm == pytest.approx(16.0)  # h 12 rows + 4, 1 mm rows


def test_synthesize_view_covers_every_target_slice_and_keeps_the_rest():
    img, lab = spine_block()
    v = VertebraInput("c_20", 20, img, lab, None, (1.0, 1.0, 1.0))
    (res,) = synthesize_view([v], ModelStep(GrowModel(), "cpu"), "sagittal", 64, 24, 5)
    assert res.slices.tolist() == list(range(1, 11))  # all LR slices with the target
    untouched = [0, 11]
    np.testing.assert_array_equal(res.image[:, :, untouched], img[:, :, untouched])
    assert np.all(res.labels[:, :, 1:11].max(axis=(0, 1)) > 0)
    rows = np.flatnonzero((res.labels[:, :, 5] == 20).any(1))
    assert rows.size == 16  # the target grew by 4 rows in every slice


# ---------------------------------------------------------------- fusion
def _view(view, image, prob, labels):
    touched = np.zeros(image.shape, bool)
    touched[:, :, 1] = view == "sagittal"
    touched[:, 2, :] |= view == "coronal"
    return ViewResult("c_20", 20, view, image, labels, prob, np.arange(3), np.ones(3), 20.0, 1.0, touched)


def test_fusion_rule_draws_each_neighbour_once():
    """Each view moves the lower neighbour by its own SHRM height (here the coronal one a row
    further down): the fused block keeps the sagittal placement of neighbours in image and labels
    (the mean of both drew the neighbour twice, a ghost at half intensity), never lets the target
    overwrite a sagittal neighbour, and mixes the target's image by the views' probabilities."""
    shape = (6, 4, 4)
    lab_s, lab_c = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
    img_s, img_c = np.full(shape, -1.0, np.float32), np.full(shape, -1.0, np.float32)
    p_s, p_c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    lab_s[2:4], p_s[2:4], img_s[2:4] = 20, 0.9, 0.2        # sagittal target rows 2-3
    lab_s[4:6], img_s[4:6] = 21, 0.8                       # its lower neighbour from row 4
    lab_c[2:5], p_c[2:4], p_c[4], img_c[2:5] = 20, 0.6, 1.0, 0.6   # coronal target rows 2-4
    lab_c[5], img_c[5] = 21, 0.8                           # its lower neighbour from row 5
    lab_c[0], img_c[0] = 22, 0.8                           # a coronal-only neighbour
    f = fuse(_view("sagittal", img_s, p_s, lab_s), _view("coronal", img_c, p_c, lab_c))
    assert np.all(f.labels[2:4] == 20) and np.all(f.labels[4:6] == 21)
    assert np.all(f.labels[:2] == 0)                        # no coronal-only label
    np.testing.assert_allclose(f.image[4:6], 0.8)           # the neighbour once, where its label is
    np.testing.assert_allclose(f.image[:2], -1.0)
    np.testing.assert_allclose(f.image[2:4], (0.9 * 0.2 + 0.6 * 0.6) / 1.5, rtol=1e-6)
    assert np.all(f.prob[4] == 0) and np.all((f.prob >= 0.5) == (f.labels == 20))
    assert f.slices == {"sagittal": 3, "coronal": 3}
    single = fuse(_view("sagittal", img_s, p_s, lab_s), None)
    np.testing.assert_array_equal(single.labels, lab_s)


def _artefact_run(rule):
    img, lab = spine_block()
    v = VertebraInput("c_20", 20, img, lab, None, (1.0, 1.0, 1.0))
    (res,) = synthesize_view([v], ModelStep(ArtefactModel(), "cpu", rule), "sagittal", 64, 24, 1)
    return img, lab, res


def test_written_target_is_one_body_with_real_neighbours_and_no_dark_patch():
    """Issue #12: islands, broken neighbours and the dark band must not reach the output."""
    from scipy import ndimage
    from synthesis.compose import OutputRule
    img, lab, res = _artefact_run(OutputRule())
    for z in res.slices:
        n = ndimage.label(res.labels[:, :, z] == 20, structure=np.ones((3, 3)))[1]
        assert n == 1, f"slice {z}: {n} target components"
    assert not (res.labels[:, 56:60, :] == 20).any()          # the posterior island is dropped
    # real neighbours moved apart by SHRM (h 12 rows, H 16: up 2, down 2), never replaced
    z = 5
    np.testing.assert_array_equal(res.labels[4:16, :, z] == 19, lab[6:18, :, z] == 19)
    np.testing.assert_array_equal(res.labels[44:56, :, z] == 21, lab[42:54, :, z] == 21)
    # the pasted rows keep real tissue outside the body's columns (no dark patch)
    pasted = res.image[22:38, 54:, z]                         # body cols 16-47, +5 px margin
    assert pasted.min() > -0.9


def test_paper_output_rule_writes_the_composite():
    """--preset paper: the generator's composite as is (islands and fragments included)."""
    from synthesis.compose import PAPER_OUTPUT
    img, lab, res = _artefact_run(PAPER_OUTPUT)
    z = 5
    assert (res.labels[:, 56:60, z] == 20).any()              # the island is written
    assert res.image[22:38, 54:, z].min() == pytest.approx(-1.0)  # the dark band is pasted


def test_paper_output_equals_the_generator_composite():
    """PAPER_OUTPUT is exactly the SHRM composite and its label update (the authors' output)."""
    from synthesis.compose import PAPER_OUTPUT, compose_target
    from data.sample import target_rows_batch
    tasks = _tasks(4, steps=(20,))
    images = np.stack([t.image for t in tasks])
    labels = np.stack([t.labels for t in tasks])
    batch = build_batch(images, labels, np.zeros_like(images), [20] * 4, [0.0] * 4, 24, 50,
                        ["k"] * 4, list(range(4)), "cpu")
    out = ArtefactModel().infer(batch)
    height = out["height_pred"].numpy()
    x1, x2, a = batch["x1"].numpy(), batch["x2"].numpy(), batch["band_top"].numpy()
    ref_lab = update_labels(labels, [20] * 4, x1, x2, a, 24, height, out["seg"][:, 0].numpy())
    masks, bx1, bx2 = target_rows_batch(labels, np.full(4, 20), 50)
    img, lab, prob = compose_target(images, labels, np.full(4, 20), masks, bx1, bx2,
                                    out["fake_B_raw"][:, 0].numpy(), out["seg_raw"][:, 0].numpy(),
                                    height, a, 24, PAPER_OUTPUT, np.zeros(4, int))
    np.testing.assert_allclose(img, out["fake_B"][:, 0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(lab, ref_lab)
    np.testing.assert_allclose(prob, out["seg"][:, 0].numpy())


def test_coronal_synthesis_uses_the_trained_band_columns(tmp_path):
    """A coronal model trained with ``coronal_band='slice'`` gets the band mask only over the
    slice's 12 columns (26..38 of the 64 canvas); one whose checkpoint predates the option (or says
    ``canvas``) gets every column, as it was trained."""
    from synthesis.iterative import VertebraInput
    from synthesis.model_io import load_generator
    from tests.test_synthesis_cli import save_tiny_checkpoint
    img, lab = spine_block()
    v = VertebraInput("c_20", 20, img, lab.astype(np.int32), None, (1.0, 1.0, 1.0))
    widths = {}
    for rule in ("slice", "canvas"):
        model = GrowModel()
        masks = []
        real_infer = model.infer
        model.infer = lambda b: masks.append(b["mask"].clone()) or real_infer(b)
        list(synthesize_view([v], ModelStep(model, "cpu"), "coronal", 64, 24, 8, coronal_band=rule))
        m = torch.cat(masks)[:, 0]
        widths[rule] = sorted({int(c) for c in torch.nonzero(m.any(1).any(0)).flatten()})
    assert widths["slice"] == list(range(26, 38)) and widths["canvas"] == list(range(64))
    ck = save_tiny_checkpoint(tmp_path / "cor.pth", "coronal")
    assert load_generator(ck, "cpu").coronal_band == "canvas"  # no option stored: trained on the canvas
