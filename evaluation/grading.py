"""Genant grading from RHLV features: the original and the sound evaluation protocols.

* :func:`protocol_original` (docs/METHOD.md §6): 5 stratified folds over train + test; each fold's
  model (StandardScaler + linear SVM, balanced class weights, C = 1) is scored on the fixed val
  split; the metrics of the five models are averaged (the held-out folds are never used).
* :func:`protocol_sound` (docs/EVALUATION.md §3, default): patient-grouped stratified K-fold CV on
  train + test, C chosen inside each outer training part by an inner grouped CV
  (``StratifiedGroupKFold`` + ``GridSearchCV``, macro-F1); then C is chosen once more on all of
  train + test, one model is fitted there and scored on the held-out val split. The val rows are
  never passed to anything before that final ``predict``.

Macro metrics average over the classes present in truth or prediction (scikit-learn's
default); per-class recall and the confusion matrix always cover grades 0–3.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from data.splits import DEFAULT_GROUP_REGEX, patient_ids  # noqa: F401 (re-exported)

GRADES = (0, 1, 2, 3)
SVM_KINDS = ("svc_linear", "linear_svc")
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
SAG_FEATURES = ("RHLV_a", "RHLV_m", "RHLV_p")
COR_FEATURES = ("RHLV_a_cor", "RHLV_m_cor", "RHLV_p_cor")


# morphometric ratios of evaluation/morphometry.py: own wedge / biconcave losses and the losses
# of the three thirds against the expected healthy heights (robust reference)
MORPH_FEATURES = ("wedge", "biconcave", "a_vs_exp", "m_vs_exp", "crush")
FEATURE_SETS = ("rhlv", "morph", "both")


def feature_names(fusion: bool = False, kind: str = "rhlv") -> List[str]:
    """``rhlv``: the 3 sagittal RHLVs, plus the 3 coronal ones with ``fusion`` (the paper);
    ``morph``: the morphometric ratios; ``both``: the two together."""
    rhlv = list(SAG_FEATURES) + (list(COR_FEATURES) if fusion else [])
    if kind not in FEATURE_SETS:
        raise ValueError(f"feature set must be one of {FEATURE_SETS}")
    return {"rhlv": rhlv, "morph": list(MORPH_FEATURES),
            "both": rhlv + list(MORPH_FEATURES)}[kind]


def make_svm(C: float = 1.0, kind: str = "svc_linear", seed: int = 0) -> Pipeline:
    """StandardScaler + linear SVM with balanced class weights."""
    if kind == "svc_linear":
        svm = SVC(kernel="linear", C=C, class_weight="balanced")
    elif kind == "linear_svc":
        svm = LinearSVC(C=C, class_weight="balanced", max_iter=20000, random_state=seed)
    else:
        raise ValueError(f"svm kind must be one of {SVM_KINDS}")
    return Pipeline([("scale", StandardScaler()), ("svm", svm)])


def classification_metrics(y_true, y_pred) -> dict:
    """Macro P/R/F1, accuracy, per-class recall (grades 0–3, NaN if absent), confusion matrix."""
    y_true = np.asarray(y_true, int)
    y_pred = np.asarray(y_pred, int)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=list(GRADES))
    support = cm.sum(axis=1)
    recall = [float(cm[i, i] / support[i]) if support[i] else float("nan") for i in range(len(GRADES))]
    return {"macro_precision": float(p), "macro_recall": float(r), "macro_f1": float(f),
            "accuracy": float(accuracy_score(y_true, y_pred)), "per_class_recall": recall,
            "confusion_matrix": cm.tolist(), "n": int(len(y_true))}


SCALARS = ("macro_precision", "macro_recall", "macro_f1", "accuracy")


def bootstrap_ci(y_true, preds: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> Dict[str, List[float]]:
    """Percentile CI of the scalar metrics over bootstrap resamples of the scored rows; with
    several prediction vectors (one per model) each resample's metric is their mean."""
    y_true = np.asarray(y_true, int)
    preds = [np.asarray(p, int) for p in preds]
    rng = np.random.default_rng(seed)
    vals = {k: [] for k in SCALARS}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        ms = [classification_metrics(y_true[idx], p[idx]) for p in preds]
        for k in SCALARS:
            vals[k].append(np.mean([m[k] for m in ms]))
    a = (1 - level) / 2
    return {k: [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))] for k, v in vals.items()}


def _mean_metrics(ms: List[dict]) -> dict:
    out = {k: float(np.mean([m[k] for m in ms])) for k in SCALARS}
    out.update({f"{k}_sd": float(np.std([m[k] for m in ms], ddof=1)) if len(ms) > 1 else 0.0
                for k in SCALARS})
    out["per_class_recall"] = np.nanmean(np.array([m["per_class_recall"] for m in ms], float),
                                         axis=0).tolist()
    out["confusion_matrix"] = np.sum([m["confusion_matrix"] for m in ms], axis=0).tolist()
    return out


def protocol_original(X_tt, y_tt, X_val, y_val, C: float = 1.0, n_splits: int = 5,
                      kind: str = "svc_linear", seed: int = 0, n_boot: int = 1000) -> dict:
    """The authors' protocol; metrics on val averaged over the five fold models."""
    X_tt, y_tt = np.asarray(X_tt, float), np.asarray(y_tt, int)
    k = max(2, min(n_splits, int(np.bincount(y_tt).max())))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    preds, folds = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for tr, _ in skf.split(X_tt, y_tt):
            model = make_svm(C, kind, seed).fit(X_tt[tr], y_tt[tr])
            preds.append(model.predict(np.asarray(X_val, float)))
            folds.append(classification_metrics(y_val, preds[-1]))
    out = {"protocol": "original", "C": C, "n_splits": k, "val": _mean_metrics(folds),
           "val_folds": folds}
    out["val"]["ci95"] = bootstrap_ci(y_val, preds, n_boot, seed) if n_boot else {}
    out["val_predictions"] = [p.tolist() for p in preds]
    return out


def _grouped_cv(n_splits: int, y, groups, seed: int):
    n_groups = len(np.unique(groups))
    k = max(2, min(n_splits, n_groups))
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)


def tune_and_fit(X, y, groups, C_grid=DEFAULT_C_GRID, inner_splits: int = 3,
                 kind: str = "svc_linear", seed: int = 0) -> GridSearchCV:
    """GridSearchCV over C with a grouped stratified inner CV (macro-F1), refit on all rows."""
    cv = _grouped_cv(inner_splits, y, groups, seed)
    gs = GridSearchCV(make_svm(1.0, kind, seed), {"svm__C": list(C_grid)}, scoring="f1_macro",
                      cv=cv, refit=True, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gs.fit(np.asarray(X, float), np.asarray(y, int), groups=np.asarray(groups))
    return gs


def protocol_sound(X_tt, y_tt, groups_tt, X_val, y_val, C_grid=DEFAULT_C_GRID,
                   n_splits: int = 5, inner_splits: int = 3, kind: str = "svc_linear",
                   seed: int = 0, n_boot: int = 1000) -> dict:
    """Patient-grouped nested CV on train+test, then one tuned fit scored on val."""
    X_tt, y_tt, g_tt = np.asarray(X_tt, float), np.asarray(y_tt, int), np.asarray(groups_tt)
    outer = _grouped_cv(n_splits, y_tt, g_tt, seed)
    folds, fold_C = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(outer.split(X_tt, y_tt, g_tt))
    for tr, te in splits:
        gs = tune_and_fit(X_tt[tr], y_tt[tr], g_tt[tr], C_grid, inner_splits, kind, seed)
        fold_C.append(float(gs.best_params_["svm__C"]))
        folds.append(classification_metrics(y_tt[te], gs.predict(X_tt[te])))
    final = tune_and_fit(X_tt, y_tt, g_tt, C_grid, inner_splits, kind, seed)
    pred = final.predict(np.asarray(X_val, float))  # the only use of the val rows
    val = classification_metrics(y_val, pred)
    val["ci95"] = bootstrap_ci(y_val, [pred], n_boot, seed) if n_boot else {}
    return {"protocol": "sound", "C_grid": list(C_grid), "n_splits": outer.n_splits,
            "cv": _mean_metrics(folds), "cv_folds": folds, "cv_fold_C": fold_C,
            "best_C": float(final.best_params_["svm__C"]), "val": val,
            "val_predictions": pred.tolist()}


def baseline_metrics(y_val, pred_val, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics + CI of a fixed prediction (e.g. morphometry grades) on the same rows."""
    m = classification_metrics(y_val, pred_val)
    m["ci95"] = bootstrap_ci(y_val, [np.asarray(pred_val)], n_boot, seed) if n_boot else {}
    return m


# a case id is one series of a patient: VerSe19 writes ``sub-verse401_series0`` and
# ``sub-verse401_series1`` for two scans of patient ``sub-verse401``; the suffix is removed
def split_table(df, features: Sequence[str], val_split: str = "val",
                train_splits: Sequence[str] = ("train", "test"), case_col: str = "case",
                group_regex: str = DEFAULT_GROUP_REGEX):
    """(X_tt, y_tt, groups_tt, X_val, y_val, val_rows) from an RHLV table; rows with missing
    features or grades are dropped. Groups are *patients* (:func:`patient_ids`), so the series
    of one patient never fall into two folds."""
    ok = df[list(features)].notna().all(axis=1) & df["grade"].notna()
    d = df[ok]
    tt = d[d["split"].isin(list(train_splits))]
    va = d[d["split"] == val_split]
    return (tt[list(features)].to_numpy(float), tt["grade"].to_numpy(int),
            patient_ids(tt[case_col].astype(str), group_regex), va[list(features)].to_numpy(float),
            va["grade"].to_numpy(int), va)


def morphometry_from_rhlv(df) -> "np.ndarray":
    """Morphometric grades from an RHLV table's real heights (H_ori_*), neighbours taken from
    the same table (same case, label ± 1). Returns one grade per row."""
    from evaluation.morphometry import expected_heights, grade_vertebra
    cols = ["H_ori_a_mm", "H_ori_m_mm", "H_ori_p_mm"]
    lookup = {(str(c), int(l)): r[cols].to_numpy(float) for c, l, (_, r) in
              zip(df["case"], df["label"], df.iterrows())}
    grades = []
    for c, l, (_, r) in zip(df["case"], df["label"], df.iterrows()):
        neigh = {nl: lookup[(str(c), nl)] for nl in (int(l) - 1, int(l) + 1) if (str(c), nl) in lookup}
        grades.append(grade_vertebra(r[cols].to_numpy(float), expected_heights(neigh))["morph_grade"])
    return np.asarray(grades, int)
