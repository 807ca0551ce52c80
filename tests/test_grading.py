"""Grading protocols on synthetic RHLV tables with known structure (evaluation/grading.py)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evaluation import grading as G
from evaluation.morphometry import grade_vertebra
from spine.anatomy import genant_grade

LOSS_BY_GRADE = {0: 0.05, 1: 0.225, 2: 0.32, 3: 0.50}


def synthetic_table(n_cases=40, per_case=6, noise=0.02, seed=0, shuffle_labels=False):
    """RHLV table whose features encode the grade: loss concentrated in one third (wedge,
    biconcave or crush) with Gaussian noise; patients split 50/25/25 train/val/test."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cases):
        split = ["train", "train", "val", "test"][c % 4]
        for j in range(per_case):
            g = int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15]))
            loss = LOSS_BY_GRADE[g]
            morph = rng.integers(3)
            amp = {0: [loss, loss / 2, 0.02], 1: [loss / 3, loss, loss / 3], 2: [loss] * 3}[morph]
            amp = np.array(amp) + rng.normal(0, noise, 3)
            rows.append({"key": f"c{c:03d}_{18 + j}", "case": f"c{c:03d}", "label": 18 + j,
                         "split": split, "grade": g, "RHLV_a": amp[0], "RHLV_m": amp[1],
                         "RHLV_p": amp[2]})
    df = pd.DataFrame(rows)
    if shuffle_labels:
        df["grade"] = rng.permutation(df["grade"].to_numpy())
    return df


def _run(df, protocol, n_boot=0):
    X_tt, y_tt, g_tt, X_val, y_val, _ = G.split_table(df, G.feature_names())
    if protocol == "original":
        return G.protocol_original(X_tt, y_tt, X_val, y_val, n_boot=n_boot)
    return G.protocol_sound(X_tt, y_tt, g_tt, X_val, y_val, C_grid=(0.1, 1, 10), n_boot=n_boot)


@pytest.mark.parametrize("protocol", ["original", "sound"])
def test_protocols_order_clean_noisy_random(protocol):
    f1 = {name: _run(df, protocol)["val"]["macro_f1"] for name, df in {
        "clean": synthetic_table(noise=0.01),
        "noisy": synthetic_table(noise=0.06),
        "random": synthetic_table(noise=0.01, shuffle_labels=True)}.items()}
    assert f1["clean"] > 0.8
    assert f1["clean"] > f1["noisy"] > f1["random"]
    assert f1["random"] < 0.45


def test_sound_protocol_never_sees_val():
    df = synthetic_table(noise=0.03, seed=1)
    base = _run(df, "sound")
    poisoned = df.copy()
    val = poisoned["split"] == "val"
    rng = np.random.default_rng(5)
    poisoned.loc[val, G.feature_names()] = rng.normal(0, 50, (int(val.sum()), 3))
    poisoned.loc[val, "grade"] = rng.integers(0, 4, int(val.sum()))
    pois = _run(poisoned, "sound")
    assert pois["cv"] == base["cv"]
    assert pois["cv_fold_C"] == base["cv_fold_C"] and pois["best_C"] == base["best_C"]
    assert pois["val"]["macro_f1"] != base["val"]["macro_f1"]  # the poison did reach the scoring


def test_sound_cv_folds_are_patient_disjoint(monkeypatch):
    df = synthetic_table(noise=0.03, seed=2)
    seen = []
    orig = G.StratifiedGroupKFold.split

    def spy(self, X, y=None, groups=None):
        for tr, te in orig(self, X, y, groups):
            seen.append((set(np.asarray(groups)[tr]), set(np.asarray(groups)[te])))
            yield tr, te
    monkeypatch.setattr(G.StratifiedGroupKFold, "split", spy)
    _run(df, "sound")
    assert seen and all(not (a & b) for a, b in seen)
    val_cases = set(df.loc[df["split"] == "val", "case"])
    assert all(not (val_cases & (a | b)) for a, b in seen)


def test_metrics_and_bootstrap():
    y = np.array([0, 0, 1, 2, 3, 3])
    m = G.classification_metrics(y, y)
    assert m["macro_f1"] == 1.0 and m["accuracy"] == 1.0
    assert np.trace(np.array(m["confusion_matrix"])) == 6
    m2 = G.classification_metrics(y, np.zeros(6, int))
    assert m2["per_class_recall"] == [1.0, 0.0, 0.0, 0.0]
    ci = G.bootstrap_ci(y, [np.array([0, 1, 1, 2, 3, 0])], n_boot=200, seed=0)
    lo, hi = ci["macro_f1"]
    assert 0 <= lo <= hi <= 1 and hi > lo


def test_genant_rule():
    assert [genant_grade(x) for x in (0.1, 0.21, 0.3, 0.45)] == [0, 1, 2, 3]
    r = grade_vertebra([14.0, 22.0, 25.0], [25.0, 25.0, 25.0])
    assert r["morph_type"] == "wedge" and r["morph_grade"] == 3
    r = grade_vertebra([24.0, 18.0, 25.0], None)
    assert r["morph_type"] == "biconcave" and r["morph_grade"] == 2
    r = grade_vertebra([18.0, 18.0, 18.0], [25.0, 25.0, 25.0])
    assert r["morph_type"] == "crush" and r["morph_grade"] == 2
    assert grade_vertebra([25.0, 25.0, 25.0], [25.5, 25.0, 24.8])["morph_grade"] == 0


def test_svm_cli_writes_json_and_png(tmp_path, capsys):
    from evaluation import SVM_grading
    df = synthetic_table(noise=0.02, seed=3)
    for t in "amp":
        df[f"H_ori_{t}_mm"] = 25 * (1 - df[f"RHLV_{t}"])
    csv = tmp_path / "rhlv.csv"
    df.to_csv(csv, index=False)
    for proto in ("sound", "original"):
        assert SVM_grading.main(["--rhlv_csv", str(csv), "--output_dir", str(tmp_path / "out"),
                                 "--protocol", proto, "--bootstrap", "50", "--C_grid", "0.1", "1"]) == 0
        res = json.loads((tmp_path / "out" / f"svm_{proto}.json").read_text())
        assert res["val"]["macro_f1"] > 0.7
        assert "morphometry_val" in res
        assert (tmp_path / "out" / f"confusion_{proto}.png").stat().st_size > 1000
    assert "morphometry" in capsys.readouterr().out


def test_svm_cli_warns_about_rows_without_features(tmp_path, caplog):
    """A failed synthesis (NaN RHLV) is not scored, and the CLI says how many were left out."""
    from evaluation import SVM_grading
    df = synthetic_table(noise=0.02, seed=3)
    for t in "amp":
        df[f"H_ori_{t}_mm"] = 25 * (1 - df[f"RHLV_{t}"])
    df.loc[[0, 5], "RHLV_a"] = np.nan
    csv = tmp_path / "rhlv.csv"
    df.to_csv(csv, index=False)
    with caplog.at_level("WARNING"):
        assert SVM_grading.main(["--rhlv_csv", str(csv), "--output_dir", str(tmp_path / "out"),
                                 "--bootstrap", "0", "--C_grid", "1"]) == 0
    assert "2 vertebrae lack a feature" in caplog.text and "not scored" in caplog.text
    res = json.loads((tmp_path / "out" / "svm_sound.json").read_text())
    assert df.loc[0, "key"] not in res.get("val_keys", []) and df.loc[5, "key"] not in res.get("val_keys", [])


def test_svm_cli_clear_error_when_fractures_sit_in_one_patient(tmp_path):
    """All fractured vertebrae of the fitting splits in one patient: grouped folds cannot train;
    the CLI says so in one line (exit 2) instead of a scikit-learn traceback."""
    import subprocess
    import sys
    from pathlib import Path
    df = synthetic_table(n_cases=12, seed=1)
    tt = df["split"] != "val"
    df.loc[tt, "grade"] = 0
    only = df.loc[tt, "case"].iloc[0]
    df.loc[tt & (df["case"] == only), "grade"] = [1, 2, 3, 1, 2, 3]
    for t in "amp":
        df[f"H_ori_{t}_mm"] = 25.0
    csv = tmp_path / "rhlv.csv"
    df.to_csv(csv, index=False)
    r = subprocess.run([sys.executable, "evaluation/SVM_grading.py", "--rhlv_csv", str(csv),
                        "--output_dir", str(tmp_path / "out"), "--bootstrap", "0"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "single grade" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "svm_sound.json").exists()


def test_feature_sets_scored_on_the_same_rows_and_incomplete_never_graded(tmp_path, capsys):
    """--features rhlv morph both: RHLV noise-only, morphometric ratios informative; each set on
    the same rows; a vertebra flagged incomplete is dropped before scoring."""
    from evaluation import SVM_grading
    df = synthetic_table(noise=0.01, seed=4)
    rng = np.random.default_rng(4)
    morph = df[["key"]].copy()
    for c in G.MORPH_FEATURES:
        morph[c] = df[["RHLV_a", "RHLV_m", "RHLV_p"]].max(axis=1) if c == "crush" else rng.normal(0, 0.02, len(df))
    morph["morph_grade"] = df["grade"]
    morph["complete"] = 1
    df[["RHLV_a", "RHLV_m", "RHLV_p"]] = rng.normal(0, 0.05, (len(df), 3))   # RHLV uninformative
    cut = df.index[df["split"] == "val"][0]
    morph.loc[cut, "complete"] = 0
    morph.loc[cut, "morph_grade"] = None
    df.to_csv(tmp_path / "rhlv.csv", index=False)
    morph.to_csv(tmp_path / "morph.csv", index=False)
    assert SVM_grading.main(["--rhlv_csv", str(tmp_path / "rhlv.csv"), "--output_dir",
                             str(tmp_path / "g"), "--features", "rhlv", "morph", "both",
                             "--morphometry_csv", str(tmp_path / "morph.csv"),
                             "--bootstrap", "0", "--C_grid", "0.1", "1", "10"]) == 0
    res = {s: json.loads((tmp_path / "g" / f"svm_sound{t}.json").read_text())
           for s, t in (("rhlv", ""), ("morph", "_morph"), ("both", "_both"))}
    assert {tuple(r["val_keys"]) for r in res.values()} == {tuple(res["rhlv"]["val_keys"])}
    assert df.loc[cut, "key"] not in res["rhlv"]["val_keys"]
    assert len(res["both"]["features"]) == 3 + len(G.MORPH_FEATURES)
    assert res["morph"]["val"]["macro_f1"] > 0.8 > 0.45 > res["rhlv"]["val"]["macro_f1"]
    assert "[both]" in capsys.readouterr().out


def test_patient_ids_group_series_of_the_real_grade_file(shared_data):
    """VerSe19's two-series patients: the sound protocol's folds never split a patient."""
    splits = json.loads((shared_data / "verse19_genant_grades.json").read_text())
    keys = [k for s in ("train", "test") for k in splits[s]]
    cases = sorted({k.rsplit("_", 1)[0] for k in keys})
    pid = dict(zip(cases, G.patient_ids(cases)))
    assert pid["sub-verse401_series0"] == pid["sub-verse401_series1"] == "sub-verse401"
    multi = {p for p in pid.values() if list(pid.values()).count(p) > 1}
    assert len(multi) == 12                        # 12 patients with two series in train + test
    rng = np.random.default_rng(0)
    rows = [{"key": f"{c}_{l}", "case": c, "split": "train", "grade": int(rng.choice(4, p=[.6, .15, .15, .1])),
             "RHLV_a": rng.normal(), "RHLV_m": rng.normal(), "RHLV_p": rng.normal()}
            for c in cases for l in range(18, 23)]
    _, y, groups, *_ = G.split_table(pd.DataFrame(rows), G.feature_names())
    cv = G._grouped_cv(5, y, groups, 0)
    for tr, te in cv.split(np.zeros(len(y)), y, groups):
        assert not set(groups[tr]) & set(groups[te])
        series = {c for c in np.asarray([r["case"] for r in rows])[te]}
        assert all(pid[c] not in set(groups[tr]) for c in series)
    assert G.patient_ids(["sub-verse004_series-2", "x_series3", "plain"]).tolist() == \
        ["sub-verse004", "x", "plain"]
