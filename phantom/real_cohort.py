"""Cohorts with pre-fracture truth on real anatomy: many cases per real scan (``phantom/plant.py``).

Each case starts from one source scan (CT + VerSe label map), given a mild random elastic
deformation (a smooth displacement of a few mm, ``elastic_mm``) and a random intensity change
(HU scale and offset, noise), so that copies of one spine are not identical; that scan is the
case's *healthy twin*. Then 1–3 fractures are planted into it (adjacent levels in a run with
probability ``run_probability``), each with a Genant grade drawn from ``grade_mix`` among the
fractured ones and a morphology (wedge / biconcave / crush). Only vertebrae with a labelled
neighbour on both sides are fractured. The cohort is written in the phantom's layout
(``layout/raw.py``: ``raw/<case>/`` with the twin and ``_truth.json``; ``vertebra_data.json``), and
every case derived from one source scan is in the same split (patient-disjoint).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from data.io import load_ct, load_label, save_nifti
from data.splits import SPLITS, make_key, write_vertebra_json
from data.volume import Volume
from layout.raw import case_paths
from phantom.fracture import MORPHOLOGIES, TARGET_LOSS
from phantom.plant import plant_fracture
from spine.anatomy import level_name, neighbours, order_labels
from utils.errors import UserError
from utils.fileio import write_json

log = logging.getLogger(__name__)
SHAPES = {"wedge": (1.0, 0.5, 0.0), "biconcave": (0.15, 1.0, 0.15), "crush": (1.0, 1.0, 1.0)}


def fracture_losses(grade: int, morphology: str, rng: np.random.Generator) -> Tuple[float, float, float]:
    """A/M/P losses for a grade (its largest loss drawn from the phantom's planted range) and a
    morphology (wedge: anterior, biconcave: middle, crush: all)."""
    lo, hi = TARGET_LOSS[int(grade)]
    worst = float(rng.uniform(lo, hi))
    return tuple(round(worst * s, 4) for s in SHAPES[morphology])


def elastic(ct: Volume, labels: Volume, rng: np.random.Generator, amplitude_mm: float,
            scale_mm: float = 60.0) -> Tuple[Volume, Volume]:
    """Both volumes warped by one smooth random displacement (Gaussian-filtered noise, largest
    displacement about ``amplitude_mm``); labels nearest, CT linear."""
    if amplitude_mm <= 0:
        return ct, labels
    shape = np.array(ct.array.shape)
    sp = np.asarray(ct.spacing, float)
    coarse = np.maximum((shape * sp / scale_mm).astype(int) + 2, 2)
    disp = []
    for ax in range(3):
        c = rng.normal(size=tuple(coarse))
        c = c / max(np.abs(c).max(), 1e-6) * amplitude_mm / sp[ax]     # voxels along this axis
        zoom = shape / coarse
        disp.append(ndimage.zoom(c, zoom, order=3, mode="nearest")[:shape[0], :shape[1], :shape[2]])
    grid = np.indices(tuple(shape), dtype=np.float32)
    coords = [grid[i] + disp[i].astype(np.float32) for i in range(3)]
    ct_w = ndimage.map_coordinates(ct.array.astype(np.float32), coords, order=1, mode="nearest")
    lab_w = ndimage.map_coordinates(labels.array, coords, order=0, mode="nearest")
    return ct.with_array(ct_w.astype(ct.array.dtype)), labels.with_array(lab_w.astype(labels.array.dtype))


def complete_levels(labels: Volume) -> List[int]:
    """The vertebrae straightening will find complete (``straighten/completeness.py``): the
    ones graded in the split file."""
    from straighten.completeness import case_completeness
    from straighten.location_json import case_centroids
    flags = case_completeness(labels, case_centroids(labels))
    return order_labels(l for l, f in flags.items() if f.complete)


def candidates(labels: Volume) -> List[int]:
    """Vertebrae that can be fractured: complete, with both anatomical neighbours labelled."""
    present = set(int(x) for x in np.unique(labels.array)) - {0}
    return [l for l in complete_levels(labels)
            if all(n is not None and n in present for n in neighbours(l, present))]


def make_real_case(ct: Volume, labels: Volume, rng: np.random.Generator, grade_mix: Sequence[float],
                   run_probability: float = 0.3, elastic_mm: float = 2.0, intensity: bool = True):
    """(fractured CT, fractured labels, twin CT, twin labels, truth vertebrae dict)."""
    ct, labels = elastic(ct, labels, rng, elastic_mm)
    if intensity:
        arr = ct.array.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.uniform(-20, 20)
        arr = arr + rng.normal(0.0, rng.uniform(0.0, 8.0), size=arr.shape).astype(np.float32)
        ct = ct.with_array(np.rint(arr).astype(ct.array.dtype) if np.issubdtype(ct.array.dtype, np.integer)
                           else arr.astype(ct.array.dtype))
    twin_ct, twin_lab = ct, labels
    cands = candidates(labels)
    if not cands:
        raise UserError("no vertebra has labelled neighbours on both sides to fracture", labels.path)
    mix = np.asarray(grade_mix[1:], float)
    n = 1 + int(rng.random() < run_probability) * int(rng.integers(1, 3))
    start = int(rng.integers(0, max(len(cands) - n + 1, 1)))
    levels = cands[start:start + n]
    truth: Dict[str, dict] = {}
    for lab in levels:
        grade = int(rng.choice([1, 2, 3], p=mix / mix.sum()))
        morph = str(rng.choice(MORPHOLOGIES, p=[0.5, 0.3, 0.2]))
        r = plant_fracture(labels, lab, fracture_losses(grade, morph, rng), ct=ct, morphology=morph)
        ct, labels = r.ct, r.labels
        truth[str(lab)] = {**r.truth, "level": level_name(lab)}
    return ct, labels, twin_ct, twin_lab, truth


def write_real_cohort(sources: Sequence[Tuple[str, str]], root, n_cases: int, seed: int,
                      grade_mix: Sequence[float] = (0.0, 0.3, 0.4, 0.3), elastic_mm: float = 2.0,
                      split_fractions=(0.6, 0.2, 0.2), progress: bool = True) -> dict:
    """Write ``n_cases`` cases spread over the source scans; returns a summary."""
    from tqdm import tqdm
    root = Path(root)
    srcs = [(load_ct(c), load_label(m)) for c, m in sources]
    # splits by source scan (patient-disjoint): the first sources train, then val, then test
    fr = np.asarray(split_fractions, float) / np.sum(split_fractions)
    order = np.random.default_rng(seed).permutation(len(srcs))
    bounds = np.cumsum(np.rint(fr * len(srcs)).astype(int))
    split_of = {int(s): SPLITS[int(np.searchsorted(bounds, i, side="right"))] if i < bounds[-1] else "train"
                for i, s in enumerate(order)}
    if len(srcs) < 3:
        log.warning("%d source scan(s): every case goes to the train split (a patient-disjoint split "
                    "needs at least 3 source scans)", len(srcs))
        split_of = {i: "train" for i in range(len(srcs))}
    splits: Dict[str, Dict[str, int]] = {s: {} for s in SPLITS}
    for i in tqdm(range(n_cases), desc="real cohort", disable=not progress):
        rng = np.random.default_rng([seed, i])
        s = i % len(srcs)
        ct, lab, twin_ct, twin_lab, truth = make_real_case(*srcs[s], rng, grade_mix, elastic_mm=elastic_mm)
        case = f"real{s:02d}_{i:03d}"
        p = case_paths(root, case)
        save_nifti(ct, p["ct"], dtype=srcs[s][0].array.dtype)
        save_nifti(lab, p["mask"], dtype=np.uint8)
        save_nifti(twin_ct, p["healthy_ct"], dtype=srcs[s][0].array.dtype)
        save_nifti(twin_lab, p["healthy_mask"], dtype=np.uint8)
        write_json(p["truth"], {"case": case, "source_ct": str(sources[s][0]),
                                "source_mask": str(sources[s][1]), "vertebrae": truth})
        for l in complete_levels(twin_lab):
            splits[split_of[s]][make_key(case, l)] = int(truth.get(str(l), {}).get("grade", 0))
    write_vertebra_json(root / "vertebra_data.json", splits)
    counts = {sp: [sum(1 for g in splits[sp].values() if g == k) for k in range(4)] for sp in SPLITS}
    return {"n_cases": n_cases, "grade_counts": counts}
