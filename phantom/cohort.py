"""Write a phantom cohort: ``<root>/raw/<case>/...`` per case, ``<root>/vertebra_data.json``
(patient-disjoint splits, grades from the truth files), ``<root>/summary.json`` and a README.

Fractures are assigned at cohort level, stratified by split: each split gets
``round(grade_mix[g] * n_vertebrae)`` vertebrae of grade g, and at least one of every grade in
train and val when the split has enough vertebrae, so small cohorts still contain each grade.
"""
from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from phantom.case import (DEFAULT_GRADE_MIX, DEFAULT_LEVELS, _labels, check_orientation,
                          render_case, write_case)
from phantom.fracture import MORPHOLOGIES
from phantom.shapes import DEFAULT_ANATOMY
from data.splits import SPLITS, make_key, write_vertebra_json
from spine.anatomy import LEVEL_NAMES
from utils.errors import UserError
from utils.fileio import ensure_dir, write_json, write_text

log = logging.getLogger(__name__)


def case_name(i: int) -> str:
    return f"phantom_{i:03d}"


def split_cases(n_cases: int, seed: int, fractions=(0.6, 0.2, 0.2)) -> Dict[str, List[int]]:
    """Patient-disjoint split of case indices; every split non-empty when n_cases >= 3."""
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or np.any(fr < 0) or fr.sum() <= 0:
        raise UserError(f"split fractions need 3 non-negative numbers, got {list(fractions)}")
    fr = fr / fr.sum()
    n_val = int(round(fr[1] * n_cases))
    n_test = int(round(fr[2] * n_cases))
    if n_cases >= 3:
        n_val, n_test = max(n_val, 1 if fr[1] > 0 else 0), max(n_test, 1 if fr[2] > 0 else 0)
    n_val = min(n_val, n_cases)
    n_test = min(n_test, n_cases - n_val)
    order = np.random.default_rng([seed, 7]).permutation(n_cases)
    n_train = n_cases - n_val - n_test
    return {"train": sorted(order[:n_train].tolist()),
            "val": sorted(order[n_train:n_train + n_val].tolist()),
            "test": sorted(order[n_train + n_val:].tolist())}


def assign_fractures(splits: Dict[str, List[int]], labels: List[int], seed: int,
                     grade_mix: Sequence[float]) -> Dict[int, Dict[int, Tuple[int, str]]]:
    """{case index: {label: (grade, morphology)}} with grades stratified per split."""
    mix = np.asarray(grade_mix, dtype=float)
    if mix.shape != (4,) or np.any(mix < 0) or mix.sum() <= 0:
        raise UserError(f"--grade_mix needs 4 non-negative weights, got {list(grade_mix)}")
    mix = mix / mix.sum()
    rng = np.random.default_rng([seed, 8])
    out: Dict[int, Dict[int, Tuple[int, str]]] = {}
    for split in SPLITS:
        slots = [(c, l) for c in splits[split] for l in labels]
        n = len(slots)
        counts = [int(round(mix[g] * n)) for g in (1, 2, 3)]
        if split in ("train", "val"):
            counts = [max(k, 1) if mix[g] > 0 and n >= 6 else k
                      for g, k in zip((1, 2, 3), counts)]
        while sum(counts) > n:
            counts[int(np.argmax(counts))] -= 1
        chosen = rng.permutation(n)
        pos = 0
        for g, k in zip((1, 2, 3), counts):
            for idx in chosen[pos:pos + k]:
                c, l = slots[idx]
                morph = str(rng.choice(MORPHOLOGIES, p=[0.5, 0.3, 0.2]))
                out.setdefault(c, {})[l] = (g, morph)
            pos += k
    return out


def _render_one(job) -> dict:
    root, name, seed, levels, spacing, orientation, fractures, anatomy, sacrum = job
    case = render_case(seed, levels=levels, spacing=spacing, orientation=orientation,
                       fractures=fractures, case_id=name, anatomy=anatomy, sacrum=sacrum)
    write_case(case, root, name)
    return case.truth


def check_output_root(root: Path, overwrite: bool) -> Path:
    """Refuse a non-empty output folder unless ``overwrite``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError("output exists and is not a folder", root)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise UserError("output folder is not empty (use --overwrite to write into it)", root)
    return ensure_dir(root)


def write_cohort(root, n_cases: int, seed: int = 0, levels: Sequence = DEFAULT_LEVELS,
                 spacing=(1.0, 1.0, 1.0), orientation: str = "RAS",
                 grade_mix: Sequence[float] = DEFAULT_GRADE_MIX, workers: int = 1,
                 progress: bool = True, overwrite: bool = False,
                 split_fractions=(0.6, 0.2, 0.2), anatomy: str = DEFAULT_ANATOMY,
                 sacrum: bool = False) -> dict:
    """Render and write ``n_cases`` cases (``anatomy``, ``sacrum``: see
    :func:`phantom.case.render_case`); return the summary dict."""
    if int(n_cases) < 1:
        raise UserError(f"--n_cases must be >= 1, got {n_cases}")
    labels = _labels(levels)
    level_names = [LEVEL_NAMES[l] for l in labels]
    orientation = check_orientation(orientation)
    root = check_output_root(Path(root), overwrite)
    splits = split_cases(int(n_cases), seed, split_fractions)
    plan = assign_fractures(splits, labels, seed, grade_mix)
    jobs = [(str(root), case_name(i), int(np.random.default_rng([seed, 9, i]).integers(2 ** 31)),
             level_names, tuple(float(s) for s in spacing), orientation, plan.get(i, {}), anatomy,
             bool(sacrum))
            for i in range(int(n_cases))]
    truths = _run_jobs(jobs, workers, progress)
    return _write_index(root, splits, truths, dict(n_cases=int(n_cases), seed=int(seed),
                        levels=level_names, spacing_mm=[float(s) for s in spacing],
                        orientation=orientation, grade_mix=[float(g) for g in grade_mix],
                        anatomy=anatomy, sacrum=bool(sacrum)))


def _run_jobs(jobs, workers: int, progress: bool) -> List[dict]:
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc="phantom cases", unit="case", disable=not progress)
    truths = []
    if int(workers) <= 1:
        for job in jobs:
            truths.append(_render_one(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            for t in ex.map(_render_one, jobs):
                truths.append(t)
                bar.update()
    bar.close()
    return truths


def _write_index(root: Path, splits, truths: List[dict], params: dict) -> dict:
    grades = {s: {} for s in SPLITS}
    table = {s: [0, 0, 0, 0] for s in SPLITS}
    morph = {m: 0 for m in MORPHOLOGIES}
    for split, idxs in splits.items():
        for i in idxs:
            t = truths[i]
            for lab, v in t["vertebrae"].items():
                grades[split][make_key(t["case"], int(lab))] = int(v["grade"])
                table[split][int(v["grade"])] += 1
                if v["morphology"] in morph:
                    morph[v["morphology"]] += 1
    write_vertebra_json(root / "vertebra_data.json", grades)
    summary = {**params, "cases": {s: [truths[i]["case"] for i in idxs]
                                   for s, idxs in splits.items()},
               "grade_counts": table, "morphology_counts": morph}
    write_json(root / "summary.json", summary)
    write_text(root / "README.md", _readme(summary))
    log.info("wrote %d cases to %s", len(truths), root)
    return summary


def _readme(s: dict) -> str:
    rows = "\n".join(f"| {sp} | {len(s['cases'][sp])} | " + " | ".join(str(n) for n in
                     s["grade_counts"][sp]) + " |" for sp in SPLITS)
    return f"""# Phantom cohort

Written by `scripts/make_phantom.py` (phantom/case.py): {s['n_cases']} cases, seed {s['seed']},
levels {s['levels'][0]}-{s['levels'][-1]}, spacing {s['spacing_mm']} mm, orientation
{s['orientation']}, grade mix {s['grade_mix']}.

Each `raw/<case>/` holds the CT (`<case>.nii.gz`, HU int16), labels (`<case>_msk.nii.gz`,
VerSe ids), centroids (`<case>.json`), the healthy twin (`<case>_healthy.nii.gz`,
`<case>_healthy_msk.nii.gz`, centroids `<case>_healthy.json`) and the planted truth
(`<case>_truth.json`: A/M/P heights of twin and case, losses, Genant grade, morphology).
Fracture model: the uniform part of a collapse moves the spine caudal to the fractured body
cranially along the curve (no gap); endplate depressions are filled by the adjacent disc. Splits and Genant
grades (recomputed from the planted height losses) are in `vertebra_data.json`.

| split | cases | grade 0 | grade 1 | grade 2 | grade 3 |
|---|---|---|---|---|---|
{rows}

Morphologies planted: {s['morphology_counts']}.
"""
