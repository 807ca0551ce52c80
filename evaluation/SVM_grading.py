"""Genant grading (0–3) from RHLV features with a linear SVM; original or sound protocol.

Reads the RHLV CSV (evaluation/RHLV_quantification.py), uses RHLV_{a,m,p} (plus the coronal
``_cor`` ones with ``--fusion``; ``--features rhlv``, the paper), the morphometric ratios of
``--morphometry_csv`` (``--features morph``: own wedge / biconcave losses and the losses against
the robust expected heights) or both (``--features both``); several sets given together are
scored on the same rows and the same folds. Vertebrae flagged incomplete (cut by the field of
view, see straighten/completeness.py) are never graded. It evaluates with ``--protocol sound`` (default: patient-grouped
stratified CV on train + test with an inner C search, then one fit scored on the held-out val
split) or ``--protocol original`` (5 stratified folds over train + test, each fold's model
scored on val, averaged; C = 1). Prints a table with the morphometry baseline on the same val
rows and writes ``<output_dir>/svm_<protocol>.json`` and ``confusion_<protocol>.png``.
See :mod:`evaluation.grading` for the definitions.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


from evaluation import grading as G
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, ensure_dir, write_json

log = logging.getLogger("SVM_grading")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rhlv_csv", required=True, help="RHLV table from RHLV_quantification.py")
    p.add_argument("--output_dir", required=True, help="folder for the JSON and confusion PNG")
    p.add_argument("--protocol", choices=("sound", "original"), default="sound",
                   help="evaluation protocol (docs/EVALUATION.md §3)")
    p.add_argument("--features", nargs="+", choices=G.FEATURE_SETS, default=["rhlv"],
                   help="feature sets, each scored on the same rows and folds: rhlv (the paper), "
                        "morph (morphometric ratios from --morphometry_csv), both; results go to "
                        "svm_<protocol>.json (rhlv) and svm_<protocol>_<set>.json")
    p.add_argument("--fusion", action="store_true",
                   help="6 features: sagittal + coronal RHLVs (needs the _cor columns)")
    p.add_argument("--svm", choices=G.SVM_KINDS, default="svc_linear",
                   help="SVC(kernel='linear') or LinearSVC, both class_weight='balanced'")
    p.add_argument("--C", type=float, default=1.0, help="SVM C for --protocol original")
    p.add_argument("--C_grid", type=float, nargs="+", default=list(G.DEFAULT_C_GRID),
                   help="C values searched by the inner CV of --protocol sound")
    p.add_argument("--n_splits", type=int, default=5, help="(outer) folds over train+test")
    p.add_argument("--inner_splits", type=int, default=3, help="inner folds for C (sound)")
    p.add_argument("--val_split", default="val", help="split scored as held-out")
    p.add_argument("--train_splits", nargs="+", default=["train", "test"],
                   help="splits used for fitting / CV")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--morphometry_csv", default=None,
                   help="morphometry.py CSV (key, morph_grade) for the baseline; default: "
                        "computed from the RHLV table's real heights")
    p.add_argument("--group_regex", default=G.DEFAULT_GROUP_REGEX,
                   help="regular expression whose first group is the patient id of a case id "
                        "(CV folds group by patient; default strips a trailing _seriesN)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling / bootstrap seed")
    return p


def _load(path):
    import pandas as pd
    p = Path(path)
    if not p.is_file():
        raise UserError("file not found", p)
    try:
        return pd.read_csv(p)
    except Exception as exc:  # pandas raises several parser errors
        raise UserError(f"not a readable CSV ({str(exc).splitlines()[0][:100]})", p) from None


def _morph_pred(df, val_rows, path):
    if path:
        m = _load(path)
        if not {"key", "morph_grade"} <= set(m.columns):
            raise UserError("needs columns key and morph_grade", path)
        m = m[m["morph_grade"].notna()]          # incomplete vertebrae have no grade
        mg = dict(zip(m["key"].astype(str), m["morph_grade"].astype(int)))
        missing = [k for k in val_rows["key"] if k not in mg]
        if missing:
            raise UserError(f"no morphometry grade for {missing[0]} (and {len(missing) - 1} more)", path)
        return np.array([mg[k] for k in val_rows["key"]], int)
    grades = G.morphometry_from_rhlv(df)
    return grades[df.index.get_indexer(val_rows.index)]


def _row(name, m, ci=None):
    ci = ci or m.get("ci95", {})
    def fmt(k):
        s = f"{m[k]:.3f}"
        if k in ci:
            s += f" [{ci[k][0]:.2f},{ci[k][1]:.2f}]"
        return s
    return f"{name:<26}" + "".join(f"{fmt(k):>22}" for k in G.SCALARS)


def _confusion_png(cm, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    im = ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(4)), ax.set_yticks(range(4))
    ax.set_xlabel("predicted grade"), ax.set_ylabel("true grade"), ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _with_morphometry(df, path):
    """``df`` with the morphometric-ratio columns of the morphometry CSV joined on ``key``."""
    if not path:
        raise UserError("--features morph/both needs --morphometry_csv")
    m = _load(path)
    cols = [c for c in G.MORPH_FEATURES if c in m.columns]
    if "key" not in m.columns or len(cols) < len(G.MORPH_FEATURES):
        raise UserError(f"needs columns key and {list(G.MORPH_FEATURES)} (morphometry.py output)", path)
    extra = m[["key"] + cols + (["complete"] if "complete" in m.columns else [])]
    extra = extra.rename(columns={"complete": "morph_complete"})
    return df.drop(columns=[c for c in cols if c in df.columns]).merge(extra, on="key", how="left")


def _drop_incomplete(df, path):
    """Rows of vertebrae flagged incomplete in either table are never graded."""
    bad = np.zeros(len(df), bool)
    for col in ("complete", "morph_complete"):
        if col in df.columns:
            bad |= (df[col] == 0).to_numpy()
    if bad.any():
        log.warning("%s: %d vertebrae flagged incomplete (cut by the scan or similar) are not "
                    "graded: %s", path, int(bad.sum()), ", ".join(df.loc[bad, "key"].astype(str)[:5]))
    return df[~bad].reset_index(drop=True)


def _score(df, feats, args):
    X_tt, y_tt, g_tt, X_val, y_val, val_rows = G.split_table(df, feats, args.val_split, args.train_splits,
                                                             group_regex=args.group_regex)
    if len(y_val) == 0 or len(np.unique(y_tt)) < 2:
        raise UserError(f"need val rows and >= 2 grades in {args.train_splits} "
                        f"(have {len(y_val)} val, grades {sorted(set(y_tt))})", args.rhlv_csv)
    try:
        if args.protocol == "original":
            res = G.protocol_original(X_tt, y_tt, X_val, y_val, args.C, args.n_splits, args.svm,
                                      args.seed, args.bootstrap)
        else:
            res = G.protocol_sound(X_tt, y_tt, g_tt, X_val, y_val, args.C_grid, args.n_splits,
                                   args.inner_splits, args.svm, args.seed, args.bootstrap)
    except ValueError as exc:  # a training fold with a single grade: too few patients per grade
        counts = {int(g): int(len(set(g_tt[y_tt == g]))) for g in np.unique(y_tt)}
        raise UserError(f"cannot cross-validate: a training fold holds a single grade (patients per "
                        f"grade {counts}; use fewer --n_splits/--inner_splits or more cases) "
                        f"[{str(exc).strip().splitlines()[-1][:100]}]", args.rhlv_csv) from None
    res["morphometry_val"] = G.baseline_metrics(y_val, _morph_pred(df, val_rows, args.morphometry_csv),
                                                args.bootstrap, args.seed)
    res.update({"features": feats, "rhlv_csv": str(args.rhlv_csv), "n_train_test": int(len(y_tt)),
                "n_val": int(len(y_val)), "val_keys": val_rows["key"].astype(str).tolist()})
    return res


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    df = _load(args.rhlv_csv)
    sets = list(dict.fromkeys(args.features))
    if any(s != "rhlv" for s in sets):
        df = _with_morphometry(df, args.morphometry_csv)
    feats_of = {s: G.feature_names(args.fusion, s) for s in sets}
    needed = sorted({c for f in feats_of.values() for c in f})
    missing = [c for c in needed + ["grade", "split", "case", "key"] if c not in df.columns]
    if missing:
        raise UserError(f"missing columns {missing}" + (" (run RHLV_quantification.py with "
                        "--coronal for --fusion)" if args.fusion else ""), args.rhlv_csv)
    bad = df["grade"].dropna()
    bad = bad[~bad.isin([0, 1, 2, 3])]
    if len(bad):
        raise UserError(f"grade {bad.iloc[0]!r} of {df.loc[bad.index[0], 'key']} is not a Genant "
                        "grade 0-3", args.rhlv_csv)
    df = _drop_incomplete(df, args.rhlv_csv)
    ok = df[needed].notna().all(axis=1)
    if (~ok & df["grade"].notna()).any():
        log.warning("%s: %d vertebrae lack a feature (e.g. an empty pseudo-healthy body) and are "
                    "not scored", args.rhlv_csv, int((~ok & df["grade"].notna()).sum()))
    df = df[ok].reset_index(drop=True)   # one row set for every feature set: same folds
    out = ensure_dir(args.output_dir)
    print(f"{'':<26}" + "".join(f"{k:>22}" for k in G.SCALARS))
    for s in sets:
        res = _score(df, feats_of[s], args)
        tag = "" if s == "rhlv" else f"_{s}"
        write_json(out / f"svm_{args.protocol}{tag}.json", res)
        _confusion_png(res["val"]["confusion_matrix"], f"SVM ({args.protocol}, {s}) on "
                       f"{args.val_split}", out / f"confusion_{args.protocol}{tag}.png")
        if "cv" in res:
            print(_row(f"[{s}] CV mean (sd)", res["cv"], {}) +
                  f"  sd F1 {res['cv']['macro_f1_sd']:.3f}; fold C {res['cv_fold_C']}")
        print(_row(f"[{s}] {args.protocol} on {args.val_split}", res["val"]))
        print(f"per-class recall ({s}, grades 0-3): {np.round(res['val']['per_class_recall'], 3).tolist()}; "
              f"confusion (rows true 0-3): {res['val']['confusion_matrix']}")
    print(_row("morphometry on same rows", res["morphometry_val"]))
    return 0


if __name__ == "__main__":
    run_cli(main)
