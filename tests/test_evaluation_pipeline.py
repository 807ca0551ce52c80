"""Baselines, generation metrics, figures and the reproduction script (evaluation/, scripts/)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.io import save_nifti
from data.volume import Volume
from evaluation.baselines import baseline_block, composite_rows
from evaluation.shapes import body_block

ROOT = Path(__file__).resolve().parents[1]


def _spine_blocks(target_loss=0.0, shape=(128, 96, 64)):
    """(CT HU, labels) of three stacked bodies 19/20/21 (20 optionally wedge-fractured)."""
    lab = np.zeros(shape, np.uint8)
    for l, c, morph, loss in ((19, 34, "none", 0), (20, 64, "wedge", target_loss), (21, 94, "none", 0)):
        b = body_block(shape, centre=(c, 48, 32), height=24, morphology=morph if loss else "none",
                       loss=loss, label=l)
        lab[b > 0] = l
    rng = np.random.default_rng(0)
    ct = np.where(lab > 0, 250.0, 0.0) + rng.normal(0, 10, shape)
    ct[:, :20] = -900.0  # air anterior
    return ct.astype(np.float32), lab


def test_composite_identity_and_push_apart():
    img = np.arange(20, dtype=float)[:, None] * np.ones((1, 3))
    same = composite_rows(img, 8, 12, img[8:12])
    assert np.array_equal(same, img)
    taller = composite_rows(img, 8, 12, np.full((6, 3), 99.0))
    assert np.all(taller[7:13] == 99) and taller[6, 0] == 7 and taller[13, 0] == 12
    assert taller[0, 0] == 1 and taller[19, 0] == 18        # the context moved apart, edge rows out


def test_copy_baseline_restores_healthy_height():
    """A 40 % wedge-fractured target is rebuilt from its healthy neighbours: the restored body
    matches the healthy twin (not the fractured one) and regains the lost anterior height."""
    from evaluation.heights import HeightRule, measure_own
    from evaluation.metrics import dice
    _, healthy = _spine_blocks(target_loss=0.0)
    ct, lab = _spine_blocks(target_loss=0.4)
    rule = HeightRule(column_filter="none")
    h_frac = measure_own(lab == 20, (1, 1, 1), rule)
    h_true = measure_own(healthy == 20, (1, 1, 1), rule)
    assert h_frac[0] < 0.75 * h_true[0]                      # the fracture is there to restore
    for method in ("copy", "interp"):
        c, l = baseline_block(ct, lab, 20, method, {19: True, 21: True})
        h = measure_own(l == 20, (1, 1, 1), rule)
        np.testing.assert_allclose(h, h_true, rtol=0.05)
        assert dice(l == 20, healthy == 20) > 0.9 > dice(lab == 20, healthy == 20)
        assert c.dtype == np.float32 and c.shape == ct.shape


def _write_root(root, ct, lab, key="c1_20", ct_dir="CT", lab_dir="label"):
    save_nifti(Volume(ct, np.eye(4)), root / ct_dir / f"{key}.nii.gz")
    save_nifti(Volume(lab, np.eye(4)), root / lab_dir / f"{key}.nii.gz")


def test_generation_eval_cli(tmp_path, capsys):
    from evaluation import generation_eval
    ct, lab = _spine_blocks()
    _write_root(tmp_path / "straight", ct, lab)
    fake_ct = ct.copy()
    fake_ct[60:68] += 50.0                    # error inside the target rows only
    _write_root(tmp_path / "res", fake_ct, lab, ct_dir="CT_fake", lab_dir="label_fake")
    (tmp_path / "vd.json").write_text(json.dumps({"val": {"c1_20": 0}}))
    assert generation_eval.main(["--dataroot", str(tmp_path / "straight"), "--results_dir",
                                 str(tmp_path / "res"), "--vertebra_json", str(tmp_path / "vd.json"),
                                 "--baselines", "--output_dir", str(tmp_path / "gen"),
                                 "--no_progress"]) == 0
    df = pd.read_csv(tmp_path / "gen" / "generation_per_vertebra.csv").set_index("method")
    assert set(df.index) == {"gan", "copy", "interp"}
    g = df.loc["gan"]
    assert g["dice"] == 1.0 and g["height_err_a_pct"] == 0.0
    assert g["psnr_band"] < g["psnr_whole"]          # in-band metric is the stricter one
    assert g["ssim_band"] < g["ssim_whole"]
    assert "healthy twin" not in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _scripts_importable(monkeypatch):
    """scripts/ is not a package: expose make_figures as ``scripts_make_figures``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("scripts_make_figures", ROOT / "scripts" / "make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(sys.modules, "scripts_make_figures", mod)


def test_make_figures_outputs(tmp_path):
    from tests.test_grading import synthetic_table
    from evaluation import SVM_grading
    import scripts_make_figures as mf
    df = synthetic_table(noise=0.03, seed=4)
    df.to_csv(tmp_path / "rhlv.csv", index=False)
    for t in "amp":
        df[f"H_ori_{t}_mm"] = 25 * (1 - df[f"RHLV_{t}"])
    df.to_csv(tmp_path / "rhlv_h.csv", index=False)
    SVM_grading.main(["--rhlv_csv", str(tmp_path / "rhlv_h.csv"), "--output_dir", str(tmp_path / "svm"),
                      "--bootstrap", "0", "--C_grid", "1"])
    pd.DataFrame({"epoch": [1, 1, 2], "step": [1, 2, 3], "G": [3.0, 2.0, 1.5], "G_L1": [1, .8, .7],
                  "D": [1.0, .9, .8]}).to_csv(tmp_path / "loss_log.csv", index=False)
    assert mf.main(["--output_dir", str(tmp_path / "figs"), "--rhlv_csv", str(tmp_path / "rhlv.csv"),
                    "--svm_json", str(tmp_path / "svm" / "svm_sound.json"),
                    "--loss_log", str(tmp_path / "loss_log.csv")]) == 0
    for name in ("rhlv_by_grade", "confusion", "loss_curves"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 5000


def test_reproduce_script_syntax_and_usage():
    sh = ROOT / "scripts" / "reproduce_paper.sh"
    assert subprocess.run(["bash", "-n", str(sh)]).returncode == 0
    r = subprocess.run(["bash", str(sh)], capture_output=True, text=True)
    assert r.returncode == 2 and "DATAROOT" in r.stdout


@pytest.mark.slow
def test_reproduce_script_flags_exist():
    """Every --flag the script passes to a Python CLI appears in that CLI's --help."""
    text = (ROOT / "scripts" / "reproduce_paper.sh").read_text().replace("\\\n", " ")
    calls = {}
    for m in re.finditer(r"\$PY ([\w/]+\.py)([^\n]*)", text):
        calls.setdefault(m.group(1), set()).update(re.findall(r"(--\w+)", m.group(2)))
    assert len(calls) >= 9
    for script, flags in calls.items():
        out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True,
                             text=True, cwd=ROOT).stdout
        missing = [f for f in flags if f not in out]
        assert not missing, (script, missing)
