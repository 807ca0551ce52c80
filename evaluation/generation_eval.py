"""Synthesis quality of pseudo-healthy blocks (docs/EVALUATION.md §2), with neighbour baselines.

For each vertebra key of ``--phase`` (default val) and ``--grades`` (default 0: the original's
evaluation on healthy vertebrae), compares the pseudo-healthy block of each *method* with a
reference block:

* methods: ``gan`` (``--results_dir``: ``CT_fake/``, ``label_fake/``), and with ``--baselines``
  ``copy`` (a: nearer healthy neighbour, rescaled) and ``interp`` (b: linear interpolation of the
  two neighbours), see :mod:`evaluation.baselines`;
* reference: the real block (``--dataroot``: ``CT/``, ``label/``), or with ``--truth_root`` the
  phantom's healthy twin on the same grid, which also makes *fractured* vertebrae scorable. Two
  twin references exist: ``evaluation/oracle.py --with_ct`` (twin sampled through the fractured
  block's geometry: exact for heights, but the spine caudal to a fracture sits lower in the
  twin, so whole-slice image metrics see that shift) and the twin straightened on its own
  (``straighten_mask_3d.py --ct_suffix _healthy --mask_suffix _healthy_msk``: target centred
  like the pseudo-healthy output). The metrics of the real fractured block itself against the
  reference (method ``real``, with ``--baselines``) give the floor any method must beat.

Metrics per vertebra (images mapped HU -> [-1, 1] by ``data.intensity.hu_to_unit``, data range
2), averaged over the sagittal slices ``block[:, :, z]`` holding the reference target:

* ``psnr_whole`` / ``ssim_whole``: the full slice (the original's, inflated by unchanged pixels);
* ``psnr_strip`` / ``ssim_strip``: the reference target's SI strip, rows [x1, x2) at full width,
  cropped (the original's strip metric);
* ``psnr_band`` / ``ssim_band`` (stricter, BraTS-inpainting style): only the rows generated in
  either image — the union of the reference and the predicted target's rows, full width —
  PSNR over those pixels, SSIM map of the whole slice averaged over them;
* ``dice`` / ``iou`` / ``rvd`` of the 3D target masks, and ``height_err_{a,m,p}_pct``
  (|H_pred − H_ref| / H_ref per third, heights by :mod:`evaluation.heights`).

Writes ``<output_dir>/generation_per_vertebra.csv`` and ``generation_summary.csv`` (mean, sd, n
per method) and prints the summary table.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


from data.intensity import hu_to_unit
from data.io import load_ct, load_label
from data.splits import add_phase_argument, parse_key, read_vertebra_json
from evaluation import metrics as M
from evaluation.baselines import METHODS as BASELINES, baseline_block, neighbour_health
from evaluation.heights import THIRDS, HeightRule, measure_pair
from layout.blocks import CT_DIR, LABEL_DIR, block_path
from layout.synthesis import FAKE_CT_DIR, FAKE_LABEL_DIR
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

log = logging.getLogger("generation_eval")
IMAGE_METRICS = ("psnr_whole", "ssim_whole", "psnr_strip", "ssim_strip", "psnr_band", "ssim_band")


def _rows(mask2d):
    r = np.flatnonzero(mask2d.any(axis=1))
    return (int(r[0]), int(r[-1]) + 1) if r.size else None


def slice_metrics(pred_u: np.ndarray, ref_u: np.ndarray, ref_t: np.ndarray, pred_t: np.ndarray) -> dict:
    """Whole / strip / band PSNR and SSIM of one sagittal slice (images in [-1, 1])."""
    x1, x2 = _rows(ref_t)
    pr = _rows(pred_t) or (x1, x2)
    band = np.zeros(ref_u.shape, bool)
    band[min(x1, pr[0]):max(x2, pr[1])] = True
    strip_p, strip_r = pred_u[x1:x2], ref_u[x1:x2]
    ok_strip = min(strip_p.shape) >= 3
    smap = M.ssim_map(pred_u, ref_u)  # one map for the whole-slice and the band SSIM
    return {"psnr_whole": M.psnr(pred_u, ref_u), "ssim_whole": M.masked_mean(smap),
            "psnr_strip": M.psnr(strip_p, strip_r),
            "ssim_strip": M.ssim(strip_p, strip_r) if ok_strip else np.nan,
            "psnr_band": M.psnr(pred_u, ref_u, band), "ssim_band": M.masked_mean(smap, band)}


def vertebra_metrics(pred_ct_hu, pred_lab, ref_ct_hu, ref_lab, label: int, spacing) -> dict:
    """All metrics of one predicted block against a reference block (same grid)."""
    ref_t, pred_t = ref_lab == label, pred_lab == label
    out = {"dice": M.dice(pred_t, ref_t), "iou": M.iou(pred_t, ref_t), "rvd": M.rvd(pred_t, ref_t)}
    pu, ru = hu_to_unit(np.asarray(pred_ct_hu, np.float64)), hu_to_unit(np.asarray(ref_ct_hu, np.float64))
    rows = []
    for z in np.flatnonzero(ref_t.any(axis=(0, 1))):
        rows.append(slice_metrics(pu[:, :, z], ru[:, :, z], ref_t[:, :, z], pred_t[:, :, z]))
    for k in IMAGE_METRICS:
        vals = np.array([r[k] for r in rows], float)
        vals = vals[np.isfinite(vals)]
        out[k] = float(vals.mean()) if vals.size else np.nan
    if pred_t.any() and ref_t.any():
        r = measure_pair(ref_t, pred_t, spacing, HeightRule())
        for i, t in enumerate(THIRDS):
            out[f"height_err_{t}_pct"] = float(M.height_error_pct(r["H_ori"][i], r["H_syn"][i]))
    return out


def _load_pair(root, key, ct_dir=CT_DIR, lab_dir=LABEL_DIR):
    ct_p, lab_p = block_path(Path(root) / ct_dir, key), block_path(Path(root) / lab_dir, key)
    for p in (ct_p, lab_p):
        if not p.exists():
            raise UserError("file not found", p)
    ct, lab = load_ct(ct_p), load_label(lab_p, allow_empty=True)
    if ct.shape != lab.shape:
        raise UserError(f"CT grid {ct.shape} differs from label grid {lab.shape}", ct_p)
    return np.asarray(ct.array), np.asarray(lab.array), lab.spacing


def evaluate_key(key, args, grades_all) -> list:
    case, label = parse_key(key)
    real_ct, real_lab, spacing = _load_pair(args.dataroot, key)
    if args.truth_root:
        ref_ct, ref_lab, _ = _load_pair(args.truth_root, key)
    else:
        ref_ct, ref_lab = real_ct, real_lab
    preds = {}
    if args.results_dir:
        pc, pl, _ = _load_pair(args.results_dir, key, FAKE_CT_DIR, FAKE_LABEL_DIR)
        preds["gan"] = (pc, pl)
    if args.baselines:
        if args.truth_root:
            preds["real"] = (real_ct, real_lab)
        healthy = neighbour_health(case, label, grades_all, np.unique(real_lab).tolist())
        for m in BASELINES:
            preds[m] = baseline_block(real_ct, real_lab, label, m, healthy)
    rows = []
    for method, (pc, pl) in preds.items():
        if pc.shape != ref_ct.shape:
            raise UserError(f"{method} block {pc.shape} is not on the reference grid {ref_ct.shape}", key)
        row = {"key": key, "method": method, "grade": grades_all.get(key)}
        row.update(vertebra_metrics(pc, pl, ref_ct, ref_lab, label, spacing))
        rows.append(row)
    return rows


def summarise(df):
    """mean / sd / n of every metric per method."""
    num = [c for c in df.columns if c not in ("key", "method", "grade")]
    g = df.groupby("method")[num]
    out = g.mean().add_suffix("_mean").join(g.std().add_suffix("_sd"))
    out["n"] = df.groupby("method").size()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Synthesis metrics of pseudo-healthy blocks (and "
                                "neighbour baselines) -> CSV tables",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataroot", required=True, help="straightened root of the real blocks (CT/, label/)")
    p.add_argument("--results_dir", default=None,
                   help="3D synthesis output (CT_fake/, label_fake/); omit to score baselines only")
    p.add_argument("--vertebra_json", required=True, help="split/grade file")
    add_phase_argument(p, default=("val",), what="to score")
    p.add_argument("--grades", type=int, nargs="+", default=[0],
                   help="grades to score (original: 0 only; with --truth_root use 0 1 2 3)")
    p.add_argument("--truth_root", default=None,
                   help="phantom healthy-twin blocks on the same grids (CT/, label/) as reference")
    p.add_argument("--baselines", action="store_true", help="also score the copy/interp neighbour baselines")
    p.add_argument("--output_dir", required=True, help="folder for the CSV tables")
    p.add_argument("--max_vertebrae", type=int, default=0, help="score at most this many keys (0: all)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    import pandas as pd
    from tqdm import tqdm
    args = build_parser().parse_args(argv)
    if not args.results_dir and not args.baselines:
        raise UserError("nothing to score: give --results_dir and/or --baselines")
    splits = read_vertebra_json(args.vertebra_json)
    grades_all = {k: g for s in splits.values() for k, g in s.items()}
    keys = [k for ph in args.phase for k, g in splits.get(ph, {}).items() if g in args.grades]
    if args.max_vertebrae:
        keys = keys[: args.max_vertebrae]
    if not keys:
        raise UserError(f"no vertebrae of grades {args.grades} in {args.phase}", args.vertebra_json)
    rows = []
    for key in tqdm(keys, desc="generation metrics", disable=args.no_progress):
        rows.extend(evaluate_key(key, args, grades_all))
    df = pd.DataFrame(rows)
    summ = summarise(df)
    out = Path(args.output_dir)
    with atomic_path(out / "generation_per_vertebra.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    with atomic_path(out / "generation_summary.csv") as tmp:
        summ.to_csv(tmp, float_format="%.5g")
    cols = ["psnr_whole", "ssim_whole", "psnr_strip", "ssim_strip", "psnr_band", "ssim_band",
            "dice", "iou", "rvd"] + [f"height_err_{t}_pct" for t in THIRDS]
    table = pd.DataFrame({c: [f"{summ.loc[m, c + '_mean']:.3f}±{summ.loc[m, c + '_sd']:.3f}"
                              for m in summ.index] for c in cols if c + "_mean" in summ}, index=summ.index)
    table["n"] = summ["n"]
    ref = "healthy twin" if args.truth_root else "real block"
    print(f"synthesis metrics vs {ref}, {args.phase} grades {args.grades}:")
    print(table.T.to_string())
    return 0


if __name__ == "__main__":
    run_cli(main)
