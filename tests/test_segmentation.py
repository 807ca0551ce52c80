"""The CT -> vertebra masks pipeline (segmentation/): heatmaps, learnable widths, labelling,
grids, metrics, CLIs and their errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from data.volume import Volume
from phantom.case import render_case
from segmentation.grid import canonical_grid, to_grid, to_scan
from segmentation.heatmaps import CHANNELS, LearnableSigma, find_peaks, gaussian_heatmaps, heatmap_loss
from segmentation.labelling import PairStats, candidates_from_peaks, label_sequence, successors
from segmentation.networks import PRESETS, SCN, UNet3D, build
from spine.anatomy import LEVEL_IDS, L6, T13

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ heatmaps
def test_heatmap_peak_is_at_the_target():
    """A Gaussian at a sub-voxel centre is found there (sub-voxel mean of the 3^3 neighbourhood)."""
    centre = torch.tensor([[[7.3, 11.6, 5.2]]])
    h = gaussian_heatmaps((16, 20, 12), centre, torch.ones(1, 1, dtype=torch.bool), torch.tensor([2.0]))
    assert np.unravel_index(int(h.argmax()), h.shape[2:]) == (7, 12, 5)
    peaks = find_peaks(h[0].numpy(), threshold=0.5)
    assert len(peaks) == 1
    ch, pos, val = peaks[0]
    assert ch == 0 and val > 0.9
    assert np.abs(pos - centre[0, 0].numpy()).max() < 0.25
    absent = gaussian_heatmaps((8, 8, 8), centre, torch.zeros(1, 1, dtype=torch.bool), torch.tensor([2.0]))
    assert float(absent.abs().max()) == 0.0


def test_learnable_sigma_gets_a_gradient_and_shrinks_under_a_strong_regulariser():
    sig = LearnableSigma(3, init=4.0)
    centre = torch.tensor([[[8.0, 8.0, 8.0]] * 3])
    pres = torch.ones(1, 3, dtype=torch.bool)
    pred = torch.zeros(1, 3, 16, 16, 16)                       # a network that predicts nothing
    loss = heatmap_loss(pred, gaussian_heatmaps((16,) * 3, centre, pres, sig()), pres, sig(), alpha=0.0)
    loss.backward()
    assert sig.raw.grad is not None and float(sig.raw.grad.abs().min()) > 0
    # a fixed prediction of width 3: without the regulariser sigma moves from 5 to it; with a
    # strong one it ends well below it (towards the floor, never under it)
    fixed = gaussian_heatmaps((16,) * 3, centre, pres, torch.full((3,), 3.0))

    def fit(alpha):
        s = LearnableSigma(3, init=5.0)
        opt = torch.optim.Adam(s.parameters(), lr=0.05)
        for _ in range(150):
            opt.zero_grad()
            sg = s()
            heatmap_loss(fixed, gaussian_heatmaps((16,) * 3, centre, pres, sg), pres, sg, alpha=alpha).backward()
            opt.step()
        return s().detach()
    free, reg = fit(0.0), fit(50.0)
    assert torch.allclose(free, torch.full((3,), 3.0), atol=0.2), free
    assert torch.all(reg < free - 0.5), (free, reg)
    assert torch.all(reg >= 1.0)


# ------------------------------------------------------------------ labelling
def _spine(first="T8", last="L4", spacing=30.0, lordosis=0.0):
    labs = [l for l in CHANNELS if LEVEL_IDS[first] <= l <= LEVEL_IDS[last] and l not in (T13, L6)]
    return {l: np.array([0.0, lordosis * np.sin(i / 3.0), -spacing * i]) for i, l in enumerate(labs)}


def _stats(truths):
    return PairStats.learn(truths)


def test_successors_allow_only_the_variants_to_be_skipped():
    assert successors(LEVEL_IDS["T12"]) == [T13, LEVEL_IDS["L1"]]
    assert successors(T13) == [LEVEL_IDS["L1"]]
    assert successors(LEVEL_IDS["L5"]) == [L6]
    assert successors(LEVEL_IDS["T5"]) == [LEVEL_IDS["T6"]]


def test_labelling_recovers_the_sequence_with_false_maxima_swaps_and_missing_ends():
    rng = np.random.default_rng(0)
    train = [_spine(spacing=30 + rng.normal(0, 1.5), lordosis=5) for _ in range(10)]
    stats = _stats(train)
    truth = _spine(spacing=31, lordosis=5)
    labs = sorted(truth, key=lambda l: truth[l][2], reverse=True)
    peaks = [(l, truth[l] + rng.normal(0, 1.0, 3), 0.8) for l in labs[1:-1]]    # T8 and L4 missing (ends)
    # false maxima: far from the spine, and a weaker second peak of L1 on L2's body
    peaks += [(LEVEL_IDS["T11"], np.array([60.0, 40.0, -50.0]), 0.6),
              (LEVEL_IDS["L1"], truth[LEVEL_IDS["L2"]] + 1.0, 0.5),
              (LEVEL_IDS["T10"], truth[LEVEL_IDS["T10"]] + np.array([0, 0, 14.0]), 0.45)]
    # swapped duplicates: T12's body also answers in L1's channel, stronger than L1's own
    peaks += [(LEVEL_IDS["L1"], truth[LEVEL_IDS["T12"]] + 0.5, 0.9)]
    seq = label_sequence(candidates_from_peaks(peaks), stats)
    want = labs[1:-1]
    assert sorted(seq) == sorted(want)
    for l in want:
        assert np.linalg.norm(seq[l].pos - truth[l]) < 5.0, l
    assert len({c.source for c in seq.values()}) == len(seq)        # no peak used twice


def test_labelling_takes_a_peak_in_the_wrong_channel_through_its_copy():
    """The whole spine answers one channel too high: the chain cannot use a label twice, so a
    run of copies (value x 0.1) or the shifted labels must be chosen consistently, never a
    sequence with a hole."""
    stats = _stats([_spine() for _ in range(5)])
    truth = _spine()
    peaks = [(l, p, 0.8) for l, p in truth.items()]
    peaks.append((LEVEL_IDS["T10"], truth[LEVEL_IDS["T9"]], 0.85))     # duplicate channel for T9's body
    seq = label_sequence(candidates_from_peaks(peaks), stats)
    labs = sorted(seq, key=lambda l: CHANNELS.index(l))
    assert all(b in successors(a) for a, b in zip(labs, labs[1:]))    # no gap inside (T13 may be skipped)
    assert len(seq) >= len(truth) - 1


def test_labelling_allows_t13():
    truth = _spine("T10", "L3")
    t13 = {**{l: p for l, p in truth.items() if CHANNELS.index(l) <= CHANNELS.index(LEVEL_IDS["T12"])},
           T13: truth[LEVEL_IDS["T12"]] + np.array([0, 0, -30.0])}
    for l in (LEVEL_IDS["L1"], LEVEL_IDS["L2"], LEVEL_IDS["L3"]):
        t13[l] = truth[l] + np.array([0, 0, -30.0])
    stats = _stats([t13, truth])
    seq = label_sequence(candidates_from_peaks([(l, p, 0.8) for l, p in t13.items()]), stats)
    assert sorted(seq) == sorted(t13)


def test_a_weak_variant_peak_pays_its_cost_and_a_strong_one_is_kept():
    """Pipeline settings (threshold 0.2, pair weight 2, merge 12 mm, variant cost 0.5): a weak T13
    answer between T12 and L1 joins the run for free, and no longer with the cost; a real T13
    (its own strong peak, the spacing of a vertebra) stays."""
    from segmentation.pipeline import (DEFAULT_MERGE_MM, DEFAULT_PAIR_WEIGHT, DEFAULT_THRESHOLD,
                                       DEFAULT_VARIANT_COST)
    kw = dict(threshold=DEFAULT_THRESHOLD, pair_weight=DEFAULT_PAIR_WEIGHT)
    truth = _spine("T10", "L3")
    stats = _stats([truth] * 5)
    t12 = truth[LEVEL_IDS["T12"]]
    peaks = [(l, p, 0.8) for l, p in truth.items()] + [(T13, t12 + np.array([0, 0, -15.0]), 0.5)]
    cands = candidates_from_peaks(peaks, same_mm=DEFAULT_MERGE_MM)
    assert T13 in label_sequence(cands, stats, **kw)
    seq = label_sequence(cands, stats, variant_cost=DEFAULT_VARIANT_COST, **kw)
    assert sorted(seq) == sorted(truth)
    real = {**{l: p for l, p in truth.items() if l <= LEVEL_IDS["T12"]}, T13: t12 + np.array([0, 0, -30.0]),
            **{l: p + np.array([0, 0, -30.0]) for l, p in truth.items() if LEVEL_IDS["L1"] <= l <= LEVEL_IDS["L3"]}}
    seq = label_sequence(candidates_from_peaks([(l, p, 0.8) for l, p in real.items()], same_mm=DEFAULT_MERGE_MM),
                         _stats([real, truth]), variant_cost=DEFAULT_VARIANT_COST, **kw)
    assert sorted(seq) == sorted(real)


# ------------------------------------------------------------------ grids
@pytest.mark.parametrize("orient", ["RAS", "LPS", "PIR"])
def test_grid_round_trip_returns_the_input_grid(orient):
    case = render_case(3, levels=["L1", "L2"], orientation=orient, spacing=(1.0, 1.0, 1.0))
    grid = canonical_grid(case.mask, 1.0)
    on = to_grid(case.mask, grid, order=0)
    back = to_scan(on, grid, case.mask, order=0)
    assert back.shape == case.mask.shape
    assert np.array_equal(back, case.mask.array)


class _Oracle(torch.nn.Module):
    """A segmentation 'network' that marks bone (image > 0.06, about 120 HU) near the heatmap."""

    def forward(self, x):
        return 20.0 * ((x[:, :1] > 0.06) & (x[:, 1:] > 0.02)).float() - 10.0


@pytest.mark.parametrize("orient", ["LPS", "PIR"])
def test_segmentation_merge_writes_the_ct_grid_in_any_orientation(orient):
    from segmentation.pipeline import Stage, segment_vertebrae
    cfg = PRESETS["cpu"]["segmentation"]
    ref = render_case(4, levels=["L1", "L2", "L3"], orientation="RAS")
    case = render_case(4, levels=["L1", "L2", "L3"], orientation=orient)
    outs = {}
    for name, c in (("RAS", ref), (orient, case)):
        centres = {l: c.mask.voxel_to_world(np.asarray(v, float)[None])[0] for l, v in c.centroids.items()}
        m = segment_vertebrae(c.ct, centres, Stage(cfg, _Oracle()))
        assert m.shape == c.ct.shape
        outs[name] = Volume(m, c.ct.affine).reorient("RAS").array
        truth = c.mask.array
        for lab in c.centroids:                                 # mostly the right vertebra
            sel = m == lab
            assert sel.sum() > 1000
            assert (truth[sel] == lab).mean() > 0.8, lab
    agree = (outs["RAS"] == outs[orient]).mean()
    assert agree > 0.995


# ------------------------------------------------------------------ metrics
def test_identification_follows_the_verse_rule():
    from segmentation.evaluate import identification
    gt = {20: np.array([0, 0, 0.0]), 21: np.array([0, 0, -30.0]), 22: np.array([0, 0, -60.0])}
    pred = {20: np.array([0, 0, 5.0]),       # 5 mm: identified
            21: np.array([0, 0, -52.0]),     # 22 mm from its own and closer to L3: not identified
            22: np.array([0, 0, -60.0])}     # exact
    ident = identification(gt, pred)
    assert ident[20] == (True, 5.0)
    assert ident[21][0] is False and abs(ident[21][1] - 22.0) < 1e-9
    assert ident[22][0] is True
    ident = identification(gt, {20: np.array([0, 0, -17.0])})          # 17 mm but closer to L2
    assert ident[20][0] is False and not ident[21][0]


def test_dice_and_hausdorff_of_a_shifted_box():
    from segmentation.evaluate import evaluate_case
    a = np.zeros((30, 30, 30), np.uint8)
    a[5:15, 5:15, 5:15] = 20
    b = np.zeros_like(a)
    b[7:17, 5:15, 5:15] = 20                                          # shifted by 2 voxels of 2 mm
    aff = np.diag([2.0, 1.0, 1.0, 1.0])
    rows = evaluate_case(Volume(b, aff), Volume(a, aff))
    r = rows[0]
    assert r["dice"] == pytest.approx(0.8)
    assert r["hd_mm"] == pytest.approx(4.0)
    assert r["identified"] == 1 and r["loc_error_mm"] == pytest.approx(4.0)


# ------------------------------------------------------------------ networks
def test_networks_keep_the_patch_size_and_the_presets_build():
    x = torch.zeros(1, 1, 16, 16, 24)
    assert UNet3D(1, 3, 4, 3)(x).shape == (1, 3, 16, 16, 24)
    y = SCN(1, 26, 4, 3, factor=4, spatial_filters=4, kernel=3)(x)
    assert y.shape == (1, 26, 16, 16, 24) and float(y.detach().abs().max()) <= 1.0
    for preset in PRESETS.values():
        for cfg in preset.values():
            net = build(cfg)
            assert sum(p.numel() for p in net.parameters()) > 1000
    assert hasattr(build(PRESETS["paper"]["vertebrae"]), "sigma")     # paper: learnt widths


# ------------------------------------------------------------------ CLIs
def _cli(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "segmentation" / script), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("segcohort")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_phantom.py"), "--output", str(out),
                        "--n_cases", "5", "--seed", "21", "--levels", "T12", "L3", "--no_progress",
                        "--overwrite"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def tiny_weights(tiny_cohort, tmp_path_factory):
    w = tmp_path_factory.mktemp("segweights")
    for st in ("spine", "vertebrae", "segmentation"):
        extra = ["--learn_sigma", "on"] if st == "vertebrae" else []
        r = _cli("train.py", "--stage", st, "--data", tiny_cohort, "--output", w / st, "--steps", "2",
                 "--eval_every", "2", "--val_patches", "4", *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (w / st / "ckpt" / "best.pth").is_file()
    return w


def test_init_starts_from_the_given_network_and_refuses_another_stage(tiny_weights, tiny_cohort, tmp_path):
    src = tiny_weights / "segmentation" / "ckpt" / "best.pth"
    args = ["--stage", "segmentation", "--data", tiny_cohort, "--eval_every", "1", "--val_patches", "4",
            "--steps", "1", "--lr", "0", "--output", tmp_path / "ft"]
    r = _cli("train.py", *args, "--init", src)
    assert r.returncode == 0, r.stderr[-1500:]
    w0 = torch.load(src, weights_only=False)["model"]
    w1 = torch.load(tmp_path / "ft" / "ckpt" / "latest.pth", weights_only=False)["model"]
    for k in w0:                                       # lr 0: the step leaves the loaded weights
        torch.testing.assert_close(w0[k], w1[k])
    r = _cli("train.py", *args[:-1], tmp_path / "bad", "--init", tiny_weights / "spine" / "ckpt" / "best.pth")
    assert r.returncode != 0 and "--init holds another stage" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    r = _cli("train.py", *args, "--init", src, "--resume")      # was silently ignored
    assert r.returncode != 0 and "--init and --resume exclude each other" in r.stderr


def test_training_resumes_exactly(tiny_cohort, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["--stage", "segmentation", "--data", tiny_cohort, "--eval_every", "2", "--val_patches", "4", "--p_synth", "0.5"]
    assert _cli("train.py", *args, "--output", a, "--steps", "4").returncode == 0
    assert _cli("train.py", *args, "--output", b, "--steps", "2").returncode == 0
    r = _cli("train.py", *args, "--output", b, "--steps", "4", "--resume")
    assert r.returncode == 0, r.stderr[-1500:]
    wa = torch.load(a / "ckpt" / "latest.pth", weights_only=False)["model"]
    wb = torch.load(b / "ckpt" / "latest.pth", weights_only=False)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_predict_errors_are_one_line_and_leave_nothing(tiny_weights, tiny_cohort, tmp_path):
    # a 2D image
    import nibabel as nib
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20), np.int16), np.eye(4)), str(flat))
    r = _cli("predict.py", flat, "--weights", tiny_weights, "--output", tmp_path / "o1")
    assert r.returncode == 2 and "flat.nii.gz" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # no spine: an empty (air) volume
    air = tmp_path / "air.nii.gz"
    nib.save(nib.Nifti1Image(np.full((40, 40, 40), -1000, np.int16), np.eye(4)), str(air))
    r = _cli("predict.py", air, "--weights", tiny_weights, "--output", tmp_path / "o2")
    assert r.returncode == 2 and "no spine found" in r.stderr, r.stderr
    assert not any((tmp_path / "o2").glob("air*")) and not any((tmp_path / "o2").glob(".air*"))
    # wrong weights: the radiograph model where a stage belongs
    bad = tmp_path / "bad"
    bad.mkdir()
    for st in ("spine", "vertebrae", "segmentation"):
        (bad / f"{st}.pth").write_bytes((ROOT / "radiograph" / "weights" / "landmarks_cpu.pth").read_bytes())
    ct = tiny_cohort / "raw" / "phantom_000" / "phantom_000.nii.gz"
    r = _cli("predict.py", ct, "--weights", bad, "--output", tmp_path / "o3")
    assert r.returncode == 2 and "not a segmentation stage checkpoint" in r.stderr
    # a stage file in the wrong slot
    swap = tmp_path / "swap"
    swap.mkdir()
    for st, src in (("spine", "vertebrae"), ("vertebrae", "vertebrae"), ("segmentation", "segmentation")):
        (swap / f"{st}.pth").write_bytes((tiny_weights / src / "ckpt" / "best.pth").read_bytes())
    r = _cli("predict.py", ct, "--weights", swap, "--output", tmp_path / "o4")
    assert r.returncode == 2 and "expected 'spine'" in r.stderr
    # missing weights folder
    r = _cli("predict.py", ct, "--weights", tmp_path / "nowhere", "--output", tmp_path / "o5")
    assert r.returncode == 2 and "weights folder not found" in r.stderr


def test_evaluate_cli_scores_a_reference_against_a_shifted_copy(tiny_cohort, tmp_path):
    """A 'prediction' that is the reference moved by 3 voxels: Dice < 1, every vertebra identified
    at 3 mm (the copy is not the reference, so the metric must see the shift)."""
    from data.io import load_label, save_nifti
    from data.centroids import centroids_from_mask, write_centroids
    case = "phantom_000"
    m = load_label(tiny_cohort / "raw" / case / f"{case}_msk.nii.gz")
    moved = np.roll(m.array, 3, axis=2)
    pd = tmp_path / "pred" / case
    pd.mkdir(parents=True)
    save_nifti(m.with_array(moved), pd / f"{case}_msk.nii.gz")
    write_centroids(pd / f"{case}.json", centroids_from_mask(moved))
    r = _cli("evaluate.py", "--pred", tmp_path / "pred", "--gt", tiny_cohort, "--output", tmp_path / "ev",
             "--cases", case)
    assert r.returncode == 0, r.stderr
    met = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert met["all"]["identification_rate"] == 1.0
    assert met["all"]["localisation_error_mm"] == pytest.approx(3.0, abs=0.05)
    assert 0.5 < met["all"]["dice"] < 0.95


def test_predict_writes_the_located_centroids_not_the_mask_centroid(tmp_path):
    """The JSON holds the stage 2 positions: a predicted mask that misses the arch (here: only
    the front half of a box) must not move the written centroid towards the body."""
    from data.centroids import read_centroids
    from segmentation.pipeline import Result
    from segmentation.predict import write_case
    arr = np.zeros((40, 40, 40), np.int16)
    ct = Volume(arr, np.diag([1.0, 1.0, 1.0, 1.0]))
    mask = np.zeros((40, 40, 40), np.uint8)
    mask[10:30, 20:30, 10:30] = 20                     # the located centre is (20, 20, 20)
    res = Result(Volume(mask, ct.affine.copy()), {20: np.array([20.0, 20.0, 20.0]),
                                                  21: np.array([20.0, 20.0, 35.0])},
                 {20: 0.9, 21: 0.5}, {})
    out = write_case(tmp_path / "case.nii.gz", ct, res, tmp_path / "out", heatmaps=False)
    cents = read_centroids(out / "case.json")
    assert np.allclose(cents[20], [20.0, 20.0, 20.0]), cents[20]   # the mask's centroid is y = 24.5
    assert np.allclose(cents[21], [20.0, 20.0, 35.0])                # a level whose mask is empty
