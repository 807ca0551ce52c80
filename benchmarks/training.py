"""Training benchmark: paper-preset iterations/s (batch 12, 256 x 256, ngf 16, ndf 64, three
PatchGANs) and the share of each iteration spent waiting for data, on straightened phantom blocks
(1 mm, 256 x 256 x 64). CPU always, also with the authors' local-discriminator input (the
zero-padded image) and generator layout, as ratios against the default in the same run (the
settings' iterations interleaved); CUDA with and without AMP only when a GPU is present ("not
measured" rows otherwise); ``scripts/gpu_check.sh`` times the CUDA speed options (fp32, bf16 AMP,
channels-last, torch.compile) and ``scripts/benchmark.py --merge`` puts them here.

``run(quick=True)``: 1 warm-up + 3 timed iterations per setting (one paper-size CPU iteration
takes ~1 minute on a 2-core machine, so the quick run is ~12-15 minutes); full: 1 warm-up + 5.
"""
from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]


def _blocks(tmp: Path, n_cases: int = 3, mm: float = 1.0, straighten_args=(), workers: int = 1) -> Path:
    """``n_cases`` phantom cases x 4 levels at ``mm``, straightened (default 256 x 256 x 64 at
    1 mm); all keys in train."""
    from phantom.cohort import write_cohort
    from data.splits import keys_of, read_vertebra_json, write_vertebra_json
    write_cohort(tmp, n_cases, seed=0, levels=("T12", "L1", "L2", "L3"), spacing=(mm,) * 3,
                 progress=False, workers=workers)
    subprocess.run([sys.executable, str(ROOT / "straighten" / "straighten_mask_3d.py"),
                    "--dataroot", str(tmp), "--output", str(tmp / "straight"), *straighten_args],
                   check=True, capture_output=True, cwd=ROOT)
    allk = keys_of(read_vertebra_json(tmp / "vertebra_data.json"), ["train", "val", "test"])
    write_vertebra_json(tmp / "all.json", {"train": {k: 0 for k in allk}})
    return tmp


VARIANTS = (  # (setting suffix, model option overrides), each timed against the first in the run
    ("", {}),
    ("local D on the 40x70 band crop (--local_input crop)", {"local_input": "crop"}),
    ("the authors' generator layout (--netG healthivert_paper)", {"generator": "healthivert_paper"}),
)


def _time(root: Path, device: str, amp: bool, repeats: int, workers: int, warmup: int,
          variants: tuple = VARIANTS[:1]) -> list:
    """One row per variant. The variants' iterations are interleaved (iteration i of each in
    turn), so a machine that warms up or gets busier during the run biases none of them."""
    from training.dataset import GanDataConfig, HealthiVertDataset
    from models.healthivert_model import build_model
    from options.model_options import make_model_config
    ds = HealthiVertDataset(GanDataConfig(str(root / "straight"), str(root / "all.json"),
                                          cache_blocks=0))
    models = []
    for _, over in variants:
        torch.manual_seed(0)
        models.append(build_model(make_model_config(dict(over), 256, ds.slice_geometry()[0], amp),
                                  device))
    loader = DataLoader(ds, batch_size=12, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    steps, waits, cpu = ([[] for _ in variants] for _ in range(3))
    for i in range(repeats + warmup):
        for k, model in enumerate(models):
            t0, c0 = time.perf_counter(), time.process_time()
            batch = next(iter(loader))  # 12 vertebrae = one batch: a fresh pass each iteration
            t1 = time.perf_counter()
            model.set_input(batch)
            model.optimize_parameters()
            if device == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if i >= warmup:
                steps[k].append(t2 - t0)
                waits[k].append(t1 - t0)
                cpu[k].append(time.process_time() - c0)
    rows = []
    for k, (label, _) in enumerate(variants):
        med = statistics.median(steps[k])
        cfg = models[k].cfg
        rows.append({
            "benchmark": "training_iteration",
            "setting": f"paper preset batch 12, 256x256, {'AMP' if amp else 'fp32'}, "
                       f"{workers} loader workers, blocks decoded every time (no cache)"
                       + (f"; {label}" if label else ""),
            "device": device, "seconds_median": med, "repeats": repeats,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{1.0 / med:.3g} it/s; data wait {100 * sum(waits[k]) / sum(steps[k]):.1f} % "
                    f"of iteration time; process CPU {statistics.median(cpu[k]):.3g} s per "
                    f"iteration (wall/CPU > 1 = other load on the machine); torch threads "
                    f"{torch.get_num_threads()}; generator {cfg.generator}, local D input "
                    f"{cfg.local_input}"})
        if k:
            rows[-1]["ratio"] = rows[0]["seconds_median"] / med
            rows[-1]["note"] += ("; ratio = the default setting's time / this (same run, "
                                 "iterations interleaved)")
    return rows


SPEED_VARIANTS = (  # (setting, model option overrides): the CUDA speed options, each on its own
    ("fp32", {}),
    ("AMP bf16 (--amp)", {"amp": True}),
    ("AMP bf16 + channels-last (--amp --channels_last)", {"amp": True, "channels_last": True}),
    ("AMP bf16 + channels-last + torch.compile (--amp --channels_last --compile)",
     {"amp": True, "channels_last": True, "compile": True}),
)


def time_speed_variants(root: Path, device: str, image_size: int = 256, batch: int = 12,
                        repeats: int = 5, warmup: int = 2, workers: int = 4, band_mm: float = 40.0,
                        emit=None) -> list:
    """One row per :data:`SPEED_VARIANTS` entry at the paper preset (``image_size``, ``batch``):
    median seconds per iteration, iterations/s, the share of the iteration spent waiting for data
    (blocks cached per worker, as ``train.py`` does by default) and the peak GPU memory of that
    variant. The variants run one after the other (each its own model; a compiled one's first
    ``warmup`` iterations include compiling and are not timed). ``emit(row)`` is called as each
    row is ready, so a run that is cut off keeps the finished rows."""
    from torch.utils.data import RandomSampler
    from training.dataset import GanDataConfig, HealthiVertDataset
    from models.healthivert_model import build_model
    from options.model_options import make_model_config
    ds = HealthiVertDataset(GanDataConfig(str(root / "straight"), str(root / "all.json"),
                                          image_size=image_size, fit="resize", band_mm=band_mm))
    n = batch * (repeats + warmup) * len(SPEED_VARIANTS)
    loader = DataLoader(ds, batch_size=batch, sampler=RandomSampler(ds, True, n), num_workers=workers,
                        drop_last=True, pin_memory=device == "cuda")
    batches = iter(loader)
    rows = []
    for label, over in SPEED_VARIANTS:
        torch.manual_seed(0)
        values = {k: v for k, v in over.items() if k != "amp"}
        model = build_model(make_model_config(values, image_size, ds.slice_geometry()[0],
                                              bool(over.get("amp"))), device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        steps, waits = [], []
        t_warm = time.perf_counter()
        for i in range(repeats + warmup):
            t0 = time.perf_counter()
            b = next(batches)
            t1 = time.perf_counter()
            model.set_input(b)
            model.optimize_parameters()
            if device == "cuda":
                torch.cuda.synchronize()  # timing only: the step itself does not sync
            t2 = time.perf_counter()
            if i == warmup - 1:
                t_warm = t2 - t_warm
            if i >= warmup:
                steps.append(t2 - t0)
                waits.append(t1 - t0)
        med = statistics.median(steps)
        peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        row = {"benchmark": "training_iteration",
               "setting": f"paper preset batch {batch}, {image_size}x{image_size}, {label}",
               "device": device, "seconds_median": med, "repeats": repeats,
               "peak_mem_mb": round(peak, 1),
               "note": f"{1.0 / med:.3g} it/s; data wait {100 * sum(waits) / sum(steps):.1f} % of "
                       f"iteration time ({workers} loader workers, blocks cached); first {warmup} "
                       f"iterations (untimed) took {t_warm:.1f} s; peak_mem_mb = "
                       + ("peak GPU memory allocated" if device == "cuda" else "process peak RSS")}
        if rows:
            row["ratio"] = rows[0]["seconds_median"] / med
            row["note"] += "; ratio = fp32 time / this (same run)"
        rows.append(row)
        if emit:
            emit(row)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def run(quick: bool = True) -> list:
    repeats = 3 if quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = _blocks(Path(tmp))
        rows += _time(root, "cpu", False, repeats, 0, 1, VARIANTS)
        if torch.cuda.is_available():
            rows += _time(root, "cuda", False, repeats, 2, 1)
            rows += _time(root, "cuda", True, repeats, 2, 1)
    if not torch.cuda.is_available():
        for amp in (False, True):
            rows.append({"benchmark": "training_iteration",
                         "setting": f"paper preset batch 12, 256x256, {'AMP' if amp else 'fp32'}",
                         "device": "cuda", "seconds_median": None, "repeats": 0,
                         "peak_mem_mb": None, "note": "not measured (no GPU on this machine)"})
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
