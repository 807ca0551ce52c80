#!/usr/bin/env python
"""Field-of-view crops through the end vertebrae: are cut vertebrae flagged and never graded?

For each orientation, writes a phantom cohort, then a copy of every case whose label map is cut
along the scan's long axis through the first and the last vertebra (``--cut`` of each end
vertebra's extent removed), straightens both (labels only) and grades both with
``evaluation/morphometry.py``. Prints, per orientation: vertebrae cut, cut ones flagged,
incomplete ones graded (must be 0), incomplete ones offered as a height reference (must be 0),
the grade agreement of the complete vertebrae between the cropped and the uncropped scan, how
many of them each grades right against the planted truth, and, for those whose grade changed,
the largest distance of their morphometric loss from the nearest Genant threshold (a change
caused by the cut references moving the expected height by a fraction of a millimetre shows as
a loss within a few points of a threshold). A third copy of each crop has the cut vertebrae
erased from its label map: the complete vertebrae must grade the same, with the same heights and
expected heights, in the crop and in that copy (the cut vertebrae are neither knots of the
straightening curve, nor references, nor measured); against the uncropped scan they lose the
two end vertebrae as references and as knots, so grades within a rounding of a threshold can
change.

    python scripts/completeness_study.py --output /tmp/completeness_study
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


from data.io import load_label, save_nifti
from data.volume import Volume
from phantom.shapes import ANATOMIES, DEFAULT_ANATOMY
from spine.anatomy import GENANT_LOSS
from utils.errors import run_cli
from utils.fileio import read_json
from layout.blocks import LABEL_DIR

ROOT = Path(__file__).resolve().parents[1]


def long_axis(vol: Volume) -> int:
    """Array axis closest to the world SI axis."""
    return int(np.argmax(np.abs(vol.affine[2, :3]) / vol.spacing))


def crop_ends(vol: Volume, cut: float) -> tuple:
    """(cropped Volume, (cranial label, caudal label)): the array is cut along its long axis so
    that ``cut`` of the extent of the first and of the last vertebra label is removed."""
    ax = long_axis(vol)
    arr = vol.array
    labs = sorted(int(x) for x in np.unique(arr) if x)
    ext = {}
    for lab in (labs[0], labs[-1]):
        idx = np.flatnonzero(np.moveaxis(arr == lab, ax, 0).any(axis=(1, 2)))
        ext[lab] = (idx[0], idx[-1])
    # which end of the axis is cranial: world z grows with the index when affine[2, ax] > 0
    up = vol.affine[2, ax] > 0
    top, bottom = (labs[0], labs[-1])          # VerSe ids grow caudally
    t0, t1 = ext[top]
    b0, b1 = ext[bottom]
    if up:   # cranial = high index
        hi = int(t1 - cut * (t1 - t0))
        lo = int(b0 + cut * (b1 - b0))
    else:
        lo = int(t0 + cut * (t1 - t0))
        hi = int(b1 - cut * (b1 - b0))
    sl = [slice(None)] * 3
    sl[ax] = slice(lo, hi + 1)
    shift = np.eye(4)
    shift[ax, 3] = lo
    return Volume(np.ascontiguousarray(arr[tuple(sl)]), vol.affine @ shift), (top, bottom)


def run(cmd) -> None:
    subprocess.run([sys.executable] + [str(c) for c in cmd], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def grade_tree(raw: Path, out: Path):
    import pandas as pd
    run(["straighten/straighten_mask_3d.py", "--dataroot", raw, "--output", out / "st", "--no_ct",
         "--no_progress"])
    run(["evaluation/morphometry.py", "--label_dir", out / "st" / LABEL_DIR, "--output",
         out / "morph.csv", "--no_progress"])
    return pd.read_csv(out / "morph.csv").set_index("key")


def study_orientation(out: Path, orientation: str, n_cases: int, seed: int, cut: float,
                      anatomy: str = DEFAULT_ANATOMY) -> dict:
    from phantom.case import level_range
    from phantom.cohort import write_cohort
    ph = out / "phantom"
    write_cohort(ph, n_cases, seed, levels=level_range("T11", "L4"), orientation=orientation,
                 grade_mix=(0.6, 0.1, 0.15, 0.15), progress=False, overwrite=True, anatomy=anatomy)
    cut_labels = {}
    for case_dir in sorted((ph / "raw").iterdir()):
        case = case_dir.name
        mask = load_label(case_dir / f"{case}_msk.nii.gz")
        cropped, cut_labels[case] = crop_ends(mask, cut)
        erased = cropped.array.copy()
        erased[np.isin(erased, cut_labels[case])] = 0
        for name, vol in (("full", mask), ("crop", cropped),
                          ("without_cut", Volume(erased, cropped.affine))):
            d = out / name / "raw" / case
            d.mkdir(parents=True, exist_ok=True)
            save_nifti(vol, d / f"{case}_msk.nii.gz")
    full = grade_tree(out / "full", out / "full")
    crop = grade_tree(out / "crop", out / "crop")
    without = grade_tree(out / "without_cut", out / "without_cut")
    cut_keys = {f"{c}_{l}" for c, ls in cut_labels.items() for l in ls}
    inc = crop[crop["complete"] == 0]
    graded_inc = int(inc["morph_grade"].notna().sum())
    inc_labels = {(c, int(l)) for c, l in zip(inc["case"], inc["label"])}
    used = 0
    for _, r in crop[crop["complete"] == 1].iterrows():
        refs = str(r.get("reference_labels", "") or "").split()
        used += sum((r["case"], int(x)) in inc_labels for x in refs if x.isdigit())
    comp = crop[crop["complete"] == 1]
    keys = [k for k in comp.index if k in full.index and not np.isnan(full.loc[k, "morph_grade"])]
    same = [int(full.loc[k, "morph_grade"]) == int(comp.loc[k, "morph_grade"]) for k in keys]
    truth = {}
    for k in keys:
        case, lab = comp.loc[k, "case"], int(comp.loc[k, "label"])
        t = read_json(ph / "raw" / case / f"{case}_truth.json")
        truth[k] = int(t["vertebrae"][str(lab)]["grade"])
    # the cropped scan against the same crop with the cut vertebrae erased from the label map:
    # what the cut vertebrae themselves do to the complete ones (nothing, if they are never
    # knots, references or measured)
    same_wo = [k in without.index and int(without.loc[k, "morph_grade"]) == int(comp.loc[k, "morph_grade"])
               for k in keys]
    d_wo = [abs(float(without.loc[k, hc]) - float(comp.loc[k, hc])) for k in keys if k in without.index
            for hc in ("H_a_mm", "H_m_mm", "H_p_mm", "H_exp_a_mm", "H_exp_m_mm", "H_exp_p_mm")]
    changed = [k for k, s in zip(keys, same) if not s]
    margin = [min(abs(float(df.loc[k, "morph_loss"]) - g) for g in GENANT_LOSS)
              for k in changed for df in (full, comp)]
    return {"orientation": orientation, "vertebrae_cut": len(cut_keys),
            "cut_flagged": int(sum(k in inc.index for k in cut_keys)),
            "flagged_not_cut": int(sum(k not in cut_keys for k in inc.index)),
            "incomplete_graded": graded_inc, "incomplete_used_as_reference": used,
            "complete_vertebrae": len(same), "same_grade_as_uncropped": int(sum(same)),
            "right_vs_truth_uncropped": int(sum(int(full.loc[k, "morph_grade"]) == truth[k] for k in keys)),
            "right_vs_truth_cropped": int(sum(int(comp.loc[k, "morph_grade"]) == truth[k] for k in keys)),
            "changed_max_loss_from_threshold": round(max(margin), 3) if margin else "",
            "same_grade_as_cut_erased": int(sum(same_wo)),
            "max_height_diff_vs_cut_erased_mm": round(max(d_wo), 3) if d_wo else "",
            "uncropped_flagged": int((full["complete"] == 0).sum())}


def markdown_table(rows) -> str:
    """Rows (dicts with the same keys) as a markdown table."""
    keys = list(rows[-1])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="work folder (its subfolders are overwritten)")
    p.add_argument("--orientations", nargs="+", default=["RAS", "LPS", "PIR", "IPL"])
    p.add_argument("--n_cases", type=int, default=4, help="cases per orientation")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--cut", type=float, default=0.4,
                   help="fraction of each end vertebra's extent removed by the crop")
    p.add_argument("--anatomy", choices=ANATOMIES, default=DEFAULT_ANATOMY,
                   help=f"phantom body shape (default {DEFAULT_ANATOMY}; 'box': the original phantom)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    rows = [study_orientation(out / o, o, args.n_cases, args.seed + i, args.cut, args.anatomy)
            for i, o in enumerate(args.orientations)]
    print(markdown_table(rows))
    (out / "completeness_study.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_cli(main)
