"""Thesis figures from the pipeline's CSVs, logs and blocks (each figure only if its inputs are
given). Writes PNGs under ``--output_dir``:

* ``comparison_grid.png`` (``--keys``, or ``--vertebra_json`` + ``--pick N``, with ``--dataroot`` +
  ``--results_dir`` [+ ``--cam_folder``]): per vertebra, the mid-sagittal input (band hidden, context
  shifted), pseudo-healthy, real, CAM and the axial height-loss map;
* ``loss_curves.png`` (``--loss_log``: a run's ``loss_log.csv``): generator and discriminator
  losses against the step;
* ``rhlv_by_grade.png`` (``--rhlv_csv``): RHLV per third against the Genant grade;
* ``confusion.png`` (``--svm_json``: one or more SVM_grading.py JSONs): the SVM's and the
  morphometry baseline's val confusion matrices.

Example::

    python scripts/make_figures.py --output_dir results/figures --rhlv_csv results/rhlv.csv \
        --svm_json results/svm/svm_sound.json --loss_log checkpoints/paper/loss_log.csv \
        --dataroot straight --results_dir results/paper --keys case1_20 case2_21
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from data.band import band_rows_from_mm, shift_context
from data.intensity import hu_to_unit
from data.io import load_ct, load_label, load_volume
from data.splits import parse_key
from evaluation.height_map import draw_map, height_loss_map
from layout.blocks import CT_DIR, LABEL_DIR, block_path
from layout.synthesis import FAKE_CT_DIR, FAKE_LABEL_DIR
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, ensure_dir, read_json

log = logging.getLogger("make_figures")
GRADE_COLOURS = ["#4daf4a", "#ffb000", "#fe6100", "#dc267f"]


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", path)


def _read_csv(path):
    import pandas as pd
    if not Path(path).is_file():
        raise UserError("file not found", path)
    try:
        return pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser/decoding errors
        raise UserError(f"not a readable CSV ({str(exc).splitlines()[0][:100]})", path) from None


def loss_curves(loss_log, out):
    df = _read_csv(loss_log)
    if "step" not in df.columns:
        raise UserError("no 'step' column (not a loss_log.csv?)", loss_log)
    g = [c for c in df.columns if c.startswith("G")]
    d = [c for c in df.columns if c.startswith("D")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, cols, title in ((axes[0], g, "generator"), (axes[1], d, "discriminators")):
        for c in cols:
            ax.plot(df["step"], df[c], label=c, lw=1.2 if c in ("G", "D") else 0.8)
        ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title(title), ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    _save(fig, out / "loss_curves.png")


def rhlv_by_grade(rhlv_csv, out, seed=0):
    df = _read_csv(rhlv_csv)
    rng = np.random.default_rng(seed)
    df = df[df["grade"].notna()]
    n_cut = int((df["complete"] == 0).sum()) if "complete" in df.columns else 0
    if n_cut:   # cut by the scan: never graded, so not plotted against a grade
        df = df[df["complete"] != 0]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
    if n_cut:
        fig.suptitle(f"{n_cut} incomplete vertebrae (cut by the scan) left out", fontsize=8)
    for ax, (t, name) in zip(axes, (("a", "anterior"), ("m", "middle"), ("p", "posterior"))):
        for g in range(4):
            v = df.loc[df["grade"] == g, f"RHLV_{t}"].to_numpy(float)
            ax.scatter(g + rng.uniform(-0.18, 0.18, v.size), 100 * v, s=9, alpha=0.7,
                       color=GRADE_COLOURS[g], label=f"grade {g} (n={v.size})")
            if v.size:
                ax.hlines(100 * np.median(v), g - 0.3, g + 0.3, color="k", lw=1.5)
        for y in (20, 25, 40):
            ax.axhline(y, color="grey", ls=":", lw=0.8)
        ax.set_xticks(range(4)), ax.set_xlabel("Genant grade"), ax.set_title(f"RHLV {name}")
        ax.grid(alpha=0.2)
    axes[0].set_ylabel("RHLV (%)"), axes[0].legend(fontsize=7)
    _save(fig, out / "rhlv_by_grade.png")


def _cm_axis(ax, cm, title):
    cm = np.asarray(cm)
    ax.imshow(cm, cmap="Blues")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(4)), ax.set_yticks(range(4))
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title, fontsize=9)


def confusion(svm_jsons, out):
    res = [(Path(p), read_json(p)) for p in svm_jsons]
    fig, axes = plt.subplots(1, len(res) + 1, figsize=(3.6 * (len(res) + 1), 3.4), squeeze=False)
    for ax, (p, r) in zip(axes[0], res):
        note = " (sum of fold models)" if r.get("protocol") == "original" else ""
        # name the panel by what it grades: the RHLV table's name (rhlv_gan -> gan) and protocol
        source = Path(str(r.get("rhlv_csv", p.parent.name))).stem.replace("rhlv_", "").replace("rhlv", "RHLV")
        _cm_axis(ax, r["val"]["confusion_matrix"],
                 f"SVM on {source} ({r.get('protocol', p.stem)}){note}: F1 {r['val']['macro_f1']:.2f}")
    m = res[0][1]["morphometry_val"]
    _cm_axis(axes[0][-1], m["confusion_matrix"], f"morphometry: F1 {m['macro_f1']:.2f}")
    _save(fig, out / "confusion.png")


def _mid_slice(label_arr, lab):
    zs = np.flatnonzero((label_arr == lab).any(axis=(0, 1)))
    if zs.size == 0:
        raise UserError(f"label {lab} absent from its block")
    return int(round(zs.mean()))


def _panels(key, args):
    _, lab = parse_key(key)
    ct = load_ct(block_path(Path(args.dataroot) / CT_DIR, key))
    lab_v = load_label(block_path(Path(args.dataroot) / LABEL_DIR, key))
    fake = load_ct(block_path(Path(args.results_dir) / FAKE_CT_DIR, key)).array
    fake_lab = load_label(block_path(Path(args.results_dir) / FAKE_LABEL_DIR, key), allow_empty=True).array
    z = _mid_slice(lab_v.array, lab)
    real_u = hu_to_unit(ct.array[:, :, z].astype(np.float64))
    rows = np.flatnonzero((lab_v.array[:, :, z] == lab).any(axis=1))
    band = band_rows_from_mm(args.band_mm, float(lab_v.spacing[0]))
    shifted, _, _ = shift_context(real_u[None], np.array([rows[0]]), np.array([rows[-1] + 1]), band,
                                  fill=-1.0, band_value=-1.0)
    cam = None
    if args.cam_folder and block_path(args.cam_folder, key).exists():
        cam = np.asarray(load_volume(block_path(args.cam_folder, key)).array)[:, :, z]
    _, loss_frac = height_loss_map(fake_lab == lab, lab_v.array == lab, float(lab_v.spacing[0]))
    c = int(rows.mean())
    crop = (slice(max(0, c - 64), c + 64), slice(48, 208))
    return {"input": shifted[0][crop], "pseudo-healthy": hu_to_unit(fake[:, :, z].astype(np.float64))[crop],
            "real": real_u[crop], "CAM": None if cam is None else cam[crop], "map": loss_frac,
            "spacing": lab_v.spacing}


def comparison_grid(args, out):
    keys = list(args.keys)
    fig, axes = plt.subplots(len(keys), 5, figsize=(16, 3.2 * len(keys)), squeeze=False,
                             gridspec_kw={"wspace": 0.35})
    for row, key in zip(axes, keys):
        p = _panels(key, args)
        for ax, name in zip(row[:4], ("input", "pseudo-healthy", "real", "CAM")):
            if p[name] is None:
                ax.text(0.5, 0.5, "no CAM", ha="center", va="center"), ax.set_axis_off()
                continue
            ax.imshow(p[name], cmap="jet" if name == "CAM" else "gray",
                      vmin=0 if name == "CAM" else -1, vmax=1)
            ax.set_title(f"{key}: {name}" if name == "input" else name, fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
        im = draw_map(row[4], p["map"], (p["spacing"][1], p["spacing"][2]), title="height loss")
        fig.colorbar(im, ax=row[4], label="%")
    _save(fig, out / "comparison_grid.png")


def pick_keys(vertebra_json, results_dir, n: int, phases=("val", "test")) -> list:
    """Up to ``n`` keys of ``phases`` that have a pseudo-healthy block in ``results_dir``: the
    most severely graded first (then by key), so the grid shows fractures when there are any."""
    from data.splits import keys_of, read_vertebra_json
    graded = keys_of(read_vertebra_json(vertebra_json), phases)
    have = [k for k in graded if block_path(Path(results_dir) / FAKE_CT_DIR, k).exists()]
    return sorted(have, key=lambda k: (-graded[k], k))[:n]


def build_parser():
    p = argparse.ArgumentParser(description="Thesis figures from the pipeline outputs",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output_dir", required=True, help="folder for the PNGs")
    p.add_argument("--loss_log", help="training run's loss_log.csv")
    p.add_argument("--rhlv_csv", help="RHLV table (RHLV_quantification.py)")
    p.add_argument("--svm_json", nargs="+", help="SVM_grading.py JSON(s)")
    p.add_argument("--keys", nargs="+", help="vertebra keys for the comparison grid")
    p.add_argument("--vertebra_json", help="split/grade file: with --pick, choose the grid's keys")
    p.add_argument("--pick", type=int, default=0, help="without --keys: show this many val/test "
                   "vertebrae of --vertebra_json, most severe grade first")
    p.add_argument("--dataroot", help="straightened root (CT/, label/) for the comparison grid")
    p.add_argument("--results_dir", help="3D synthesis output (CT_fake/, label_fake/)")
    p.add_argument("--cam_folder", help="attention maps <key>.nii.gz (optional)")
    p.add_argument("--band_mm", type=float, default=40.0, help="band height used to draw the input")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = ensure_dir(args.output_dir)
    done = 0
    if args.loss_log:
        loss_curves(args.loss_log, out); done += 1
    if args.rhlv_csv:
        rhlv_by_grade(args.rhlv_csv, out); done += 1
    if args.svm_json:
        confusion(args.svm_json, out); done += 1
    if not args.keys and args.pick > 0 and args.vertebra_json and args.results_dir:
        args.keys = pick_keys(args.vertebra_json, args.results_dir, args.pick)
        if not args.keys:
            log.warning("no val/test vertebra of %s has a pseudo-healthy block in %s: no comparison grid",
                        args.vertebra_json, args.results_dir)
    if args.keys:
        if not (args.dataroot and args.results_dir):
            raise UserError("--keys needs --dataroot and --results_dir")
        comparison_grid(args, out); done += 1
    if not done:
        raise UserError("no figure requested (give --loss_log, --rhlv_csv, --svm_json or --keys)")
    return 0


if __name__ == "__main__":
    run_cli(main)
