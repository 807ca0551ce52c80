"""Metrics, heights, RHLV, morphometry and height maps on hand-made blocks of known heights."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.io import save_nifti
from data.volume import Volume
from evaluation import metrics as M
from evaluation.heights import HeightRule, measure_own, measure_pair
from evaluation.shapes import body_block, planted_loss_thirds

CASES = [(m, l) for m in ("wedge", "biconcave", "crush") for l in (0.22, 0.32, 0.5)]


def test_psnr_ssim_masked():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (64, 64))
    b = a.copy()
    b[40:50] += rng.normal(0, 0.3, (10, 64))
    band = np.zeros_like(a, bool)
    band[40:50] = True
    assert M.psnr(a, a) == np.inf and M.ssim(a, a) == pytest.approx(1.0)
    assert M.psnr(a, b, band) < M.psnr(a, b)          # error concentrated in the band
    assert M.ssim(a, b, ~band) > 0.97 > 0.9 > M.ssim(a, b, band)
    mse = np.mean((a[band] - b[band]) ** 2)
    assert M.psnr(a, b, band) == pytest.approx(10 * np.log10(4 / mse))
    assert np.isnan(M.psnr(a, b, np.zeros_like(band)))


def test_mask_metrics():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[:5] = True
    b[:4] = True
    assert M.dice(a, b) == pytest.approx(2 * 400 / 900)
    assert M.iou(a, b) == pytest.approx(0.8)
    assert M.rvd(b, a) == pytest.approx(-0.2)
    assert M.height_error_pct(22.0, 25.0) == pytest.approx(12.0)


@pytest.mark.parametrize("morph,loss", CASES)
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 1.2)])
def test_rhlv_recovers_planted_loss(morph, loss, spacing):
    # geometry in mm -> voxels of the given spacing
    kw = dict(height=26 / spacing[0], depth=34 / spacing[1], width=44 / spacing[2])
    shape = (int(60 / spacing[0]), int(60 / spacing[1]), int(60 / spacing[2]))
    healthy = body_block(shape, **kw) > 0
    frac = body_block(shape, morphology=morph, loss=loss, **kw) > 0
    truth = planted_loss_thirds(morphology=morph, loss=loss)
    for filt in ("syn", "none"):
        r = measure_pair(healthy, frac, spacing, HeightRule(column_filter=filt))
        assert np.all(np.abs(r["RHLV"] - truth) < 0.035), (filt, r["RHLV"], truth)
        assert np.allclose(r["H_syn"], 26.0, atol=spacing[0])


def test_healthy_heights_mm_and_each_filter_bias():
    h = measure_own(body_block((80, 80, 64), height=20, depth=30, width=40) > 0, (1.5, 1, 1))
    assert np.allclose(h, 30.0, atol=1.5)
    healthy = body_block() > 0
    wedge = body_block(morphology="wedge", loss=0.5) > 0
    syn = measure_pair(healthy, wedge, (1, 1, 1), HeightRule(column_filter="syn"))["RHLV"]
    each = measure_pair(healthy, wedge, (1, 1, 1), HeightRule(column_filter="each"))["RHLV"]
    assert each[0] < syn[0] - 0.02  # filtering the fractured body drops its crushed columns


def test_rescale_original_makes_rhlv_nonnegative():
    short = body_block(height=22) > 0
    real = body_block(height=26) > 0
    assert np.all(measure_pair(short, real, (1, 1, 1))["RHLV"] < 0)
    r = measure_pair(short, real, (1, 1, 1), HeightRule(rescale="original"))
    assert np.all(r["RHLV"] >= -1e-9) and r["scale"] > 1.1


def _write_blocks(root, spacing=(1.0, 1.0, 1.0)):
    """label/ (fractured) and fake/ (healthy) blocks for one case with 3 levels."""
    aff = np.diag(list(spacing) + [1.0])
    specs = {19: ("none", 0.0), 20: ("wedge", 0.45), 21: ("none", 0.0)}
    for lab, (morph, loss) in specs.items():
        for sub, (m, l) in (("label", (morph, loss)), ("fake", ("none", 0.0))):
            arr = body_block((70, 60, 64), morphology=m, loss=l, label=lab)  # one body per block
            save_nifti(Volume(arr, aff), root / sub / f"case1_{lab}.nii.gz")
    (root / "vd.json").write_text('{"train": {"case1_19": 0, "case1_21": 0}, "val": {"case1_20": 3}}')
    return specs


def test_rhlv_cli_and_morphometry_cli(tmp_path):
    from evaluation import RHLV_quantification, morphometry
    _write_blocks(tmp_path)
    out = tmp_path / "res" / "rhlv.csv"
    assert RHLV_quantification.main(["--label_dir", str(tmp_path / "label"), "--fake_dir",
                                     str(tmp_path / "fake"), "--vertebra_json", str(tmp_path / "vd.json"),
                                     "--output", str(out), "--coronal", "--no_progress"]) == 0
    df = pd.read_csv(out).set_index("key")
    assert {"H_syn_a_mm", "RHLV_p", "RHLV_a_cor", "level", "split", "plausible"} <= set(df.columns)
    assert (df["plausible"] == 1).all()                       # whole bodies of the right size
    assert df.loc["case1_20", "split"] == "val" and df.loc["case1_20", "level"] == "L1"
    truth = planted_loss_thirds(morphology="wedge", loss=0.45)
    assert abs(df.loc["case1_20", "RHLV_a"] - truth[0]) < 0.03
    assert abs(df.loc["case1_19", "RHLV_m"]) < 1e-6
    mo = tmp_path / "res" / "morph.csv"
    assert morphometry.main(["--label_dir", str(tmp_path / "label"), "--output", str(mo),
                             "--no_progress"]) == 0
    m = pd.read_csv(mo).set_index("key")
    # the grade of the planted shape under the measured definition (A/M/P are third means: the
    # 45 % anterior-wall wedge loses 37 % of the anterior third and 8 % of the posterior one,
    # a wedge ratio loss of 1 - 0.63 / 0.92 = 0.32), not a pinned number
    from spine.anatomy import genant_grade
    expected = genant_grade(1 - (1 - truth[0]) / (1 - truth[2]))
    assert m.loc["case1_20", "morph_type"] == "wedge" and m.loc["case1_20", "morph_grade"] == expected
    assert m.loc["case1_20", "n_references"] == 2 and m.loc["case1_19", "morph_grade"] == 0


def test_rhlv_cli_user_errors(tmp_path, capsys):
    from evaluation import RHLV_quantification
    from utils.errors import UserError
    _write_blocks(tmp_path)
    (tmp_path / "fake" / "case1_21.nii.gz").unlink()
    args = ["--label_dir", str(tmp_path / "label"), "--fake_dir", str(tmp_path / "fake"),
            "--output", str(tmp_path / "o.csv"), "--no_progress"]
    with pytest.raises(UserError, match="case1_21"):
        RHLV_quantification.main(args)
    assert not (tmp_path / "o.csv").exists()
    assert RHLV_quantification.main(args + ["--skip_missing"]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 2


def test_height_map_patterns(tmp_path):
    from evaluation.height_map import height_loss_map, main
    healthy = body_block() > 0
    maps = {m: height_loss_map(healthy, body_block(morphology=m, loss=0.4) > 0, 1.0)[1]
            for m in ("wedge", "biconcave", "crush")}
    ap = lambda f, sl: np.nanmean(f[sl, 32])  # noqa: E731  (mid-LR column, AP ranges)
    w, b, c = maps["wedge"], maps["biconcave"], maps["crush"]
    assert ap(w, slice(31, 36)) > 0.3 > 0.1 > ap(w, slice(60, 65))     # anterior loss
    assert ap(b, slice(45, 51)) > 0.3 > 0.1 > ap(b, slice(31, 34))     # central loss
    assert np.nanstd(c) < 0.03 and abs(np.nanmean(c) - 0.4) < 0.03    # uniform
    _write_blocks(tmp_path)
    assert main(["--label_dir", str(tmp_path / "label"), "--fake_dir", str(tmp_path / "fake"),
                 "--output_dir", str(tmp_path / "maps"), "--keys", "case1_20", "--no_progress"]) == 0
    arr = np.load(tmp_path / "maps" / "case1_20_hlmap.npy")
    assert arr.shape == (2, 60, 64) and np.nanmax(arr[1]) > 0.3
    assert (tmp_path / "maps" / "case1_20_hlmap.png").stat().st_size > 2000


def test_rhlv_empty_pseudo_healthy_body_is_a_warning_with_nan_row(tmp_path):
    """A synthesis whose target mask stayed empty: that vertebra gets NaN RHLVs, the others are
    measured; all empty is an error."""
    from evaluation import RHLV_quantification
    from utils.errors import UserError
    _write_blocks(tmp_path)
    empty = Volume(np.zeros((70, 60, 64), np.uint8), np.eye(4))
    save_nifti(empty, tmp_path / "fake" / "case1_21.nii.gz")
    args = ["--label_dir", str(tmp_path / "label"), "--fake_dir", str(tmp_path / "fake"),
            "--output", str(tmp_path / "o.csv"), "--no_progress"]
    assert RHLV_quantification.main(args) == 0
    df = pd.read_csv(tmp_path / "o.csv").set_index("key")
    assert np.isnan(df.loc["case1_21", "RHLV_a"]) and np.isfinite(df.loc["case1_20", "RHLV_a"])
    for key in ("case1_19", "case1_20"):
        save_nifti(empty, tmp_path / "fake" / f"{key}.nii.gz")
    with pytest.raises(UserError, match="every pseudo-healthy body is empty"):
        RHLV_quantification.main(args + ["--output", str(tmp_path / "o2.csv")])
