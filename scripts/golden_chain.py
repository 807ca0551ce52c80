#!/usr/bin/env python
"""The phantom chain in miniature, reduced to its numbers: a regression guard for refactoring.

Runs the same CLIs as the demo on a tiny seeded cohort (phantom -> straighten -> healthy twins
-> 3 GAN steps -> 3D synthesis -> RHLV -> morphometry -> SVM grading -> heights vs the twin) and
collects every number the chain writes (per-vertebra heights, RHLV, grades, completeness, SVM
scores, synthesised voxel counts) into one JSON digest.

    python scripts/golden_chain.py --work /tmp/golden --output digest.json
    python scripts/golden_chain.py --work /tmp/golden --compare tests/golden/phantom_chain.json

``--compare`` exits 1 and lists every number that moved by more than the tolerance.
``tests/test_golden_chain.py`` runs it against the stored digest.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from layout.blocks import LABEL_DIR
from layout.synthesis import OutputLayout

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
IMG = ["--image_size", "64", "--band_mm", "48"]


def commands(work: Path) -> list:
    cohort, blocks, twin, ck, res = (work / n for n in ("phantom", "blocks", "twin", "ck", "res"))
    vj = str(cohort / "vertebra_data.json")
    syn = res / "syn"
    npf = ["--no_progress"]
    return [
        ["scripts/make_phantom.py", "--output", str(cohort), "--n_cases", "6", "--seed", "3",
         "--levels", "T11", "L3", "--grade_mix", "0.4", "0.2", "0.2", "0.2", "--anatomy", "box",
         "--overwrite"] + npf,
        ["straighten/straighten_mask_3d.py", "--dataroot", str(cohort), "--output", str(blocks)] + npf,
        ["evaluation/oracle.py", "--dataroot", str(cohort), "--straight_root", str(blocks),
         "--output_root", str(twin)] + npf,
        ["train.py", "--name", "g", "--dataset_mode", "aligned_sagittal", "--dataroot", str(blocks),
         "--vertebra_json", vj, "--checkpoints_dir", str(ck), *IMG, "--ngf", "8", "--ndf", "8",
         "--batch_size", "2", "--max_steps", "3", "--eval_freq", "0", "--num_threads", "0",
         "--save_epoch_freq", "0", "--seed", "0", "--overwrite"] + npf,
        ["eval_3d_sagittal_twostage.py", "--checkpoint", str(ck / "g" / "ckpt" / "latest.pth"),
         "--dataroot", str(blocks), "--vertebra_json", vj, "--phase", "all",
         "--results_dir", str(syn)] + npf,
        ["evaluation/RHLV_quantification.py", "--label_dir", str(blocks / LABEL_DIR),
         "--fake_dir", str(OutputLayout(syn).label_dir), "--vertebra_json", vj,
         "--output", str(res / "rhlv_gan.csv")] + npf,
        ["evaluation/RHLV_quantification.py", "--label_dir", str(blocks / LABEL_DIR),
         "--fake_dir", str(twin / LABEL_DIR), "--vertebra_json", vj,
         "--output", str(res / "rhlv_oracle.csv")] + npf,
        ["evaluation/morphometry.py", "--label_dir", str(blocks / LABEL_DIR), "--vertebra_json", vj,
         "--output", str(res / "morphometry.csv")] + npf,
        ["evaluation/SVM_grading.py", "--rhlv_csv", str(res / "rhlv_oracle.csv"),
         "--output_dir", str(res / "grading"), "--features", "rhlv", "morph", "both",
         "--bootstrap", "20", "--n_splits", "3", "--inner_splits", "2",
         "--morphometry_csv", str(res / "morphometry.csv")],
        ["synthesis/phantom_eval.py", "--results_dir", str(syn), "--dataroot", str(blocks),
         "--cohort", str(cohort), "--phase", "train", "val", "test",
         "--output", str(res / "phantom_heights.csv")],
    ]


def run_chain(work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for argv in commands(work):
        proc = subprocess.run([PY, *argv], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"golden chain: {argv[0]} failed with exit code {proc.returncode}")


def _value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


VOLATILE = ("seconds", "output", "path", "rhlv_csv", "morphometry_csv")   # timings and paths


def _table(path: Path, key_cols: tuple) -> dict:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for row in rows:
        key = "|".join(row[c] for c in key_cols if c in row)
        out[key] = {c: _value(v) for c, v in sorted(row.items()) if c not in key_cols + VOLATILE}
    return out


def _svm(path: Path) -> dict:
    """The scores of one grading JSON (nested numbers only; timings and paths left out)."""
    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in sorted(x.items()) if k not in VOLATILE}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(json.loads(path.read_text()))


def digest(work: Path) -> dict:
    import nibabel as nib
    import numpy as np
    res = work / "res"
    out = {
        "summary": _table(work / "blocks" / "summary.csv", ("key",)),
        "rhlv_gan": _table(res / "rhlv_gan.csv", ("key",)),
        "rhlv_oracle": _table(res / "rhlv_oracle.csv", ("key",)),
        "morphometry": _table(res / "morphometry.csv", ("key",)),
        "phantom_heights": _table(res / "phantom_heights.csv", ("key",)),
        "vertebra_data": json.loads((work / "phantom" / "vertebra_data.json").read_text()),
    }
    for f in sorted((res / "grading").glob("svm_*.json")):
        out[f"grading/{f.name}"] = _svm(f)
    voxels = {}
    for f in sorted((OutputLayout(res / "syn").label_dir).glob("*.nii.gz")):
        lab = np.asarray(nib.load(str(f)).dataobj)
        ct = np.asarray(nib.load(str(OutputLayout(res / "syn").ct_dir / f.name)).dataobj, dtype=np.float64)
        voxels[f.name[:-7]] = {"labelled": int((lab > 0).sum()), "ct_mean": float(ct.mean())}
    out["synthesis_volumes"] = voxels
    return out


def count(x) -> int:
    """Leaves of a digest (every number and label it holds)."""
    if isinstance(x, dict):
        return sum(count(v) for v in x.values())
    if isinstance(x, list):
        return sum(count(v) for v in x)
    return 1


def compare(new, old, path="", rtol=1e-4, atol=1e-3) -> list:
    """Every leaf that differs: 'path: old -> new'."""
    diffs = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if k not in new or k not in old:
                diffs.append(f"{path}/{k}: {'missing' if k not in new else 'new'}")
            else:
                diffs += compare(new[k], old[k], f"{path}/{k}", rtol, atol)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(new, old)):
            diffs += compare(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        if math.isnan(old) and math.isnan(new):
            return diffs
        if not math.isclose(new, old, rel_tol=rtol, abs_tol=atol):
            diffs.append(f"{path}: {old} -> {new}")
    elif new != old:
        diffs.append(f"{path}: {old!r} -> {new!r}")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="scratch folder (emptied first)")
    ap.add_argument("--output", help="write the digest here")
    ap.add_argument("--compare", help="stored digest to compare with; exit 1 on any difference")
    args = ap.parse_args(argv)
    work = Path(args.work)
    run_chain(work)
    d = digest(work)
    if args.output:
        Path(args.output).write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
        print(f"{count(d)} numbers: " + ", ".join(f"{k} {count(v)}" for k, v in sorted(d.items())))
    if args.compare:
        diffs = compare(d, json.loads(Path(args.compare).read_text()))
        for line in diffs[:200]:
            print(line)
        print(f"{len(diffs)} differences")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
