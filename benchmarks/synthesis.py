"""Benchmark: 3D synthesis seconds per vertebra, batched vs one slice at a time (``--batch 1``),
measured in the same process on the same blocks (the ratio is what matters).

Paper geometry: 256 x 256 x 64 blocks, an untrained paper-preset generator (ngf 16, ~0.97 M
parameters; speed only) prepared as ``eval_3d_sagittal_twostage.py`` prepares it
(``HealthiVertModel.prepare_inference``: spectral norms folded, channels-last on CPU), the
iterative upper -> lower -> target pipeline of :func:`synthesis.iterative.synthesize_view` (file
I/O excluded). Blocks are synthetic: three bodies (25-row, 40 mm wide targets, so ~40 sagittal
slices x 3 steps per vertebra); quick mode uses narrower bodies (8 slices for the paper G, 16 for
the small one); the demo's geometry (paper G at 128 px) is swept over batch 1-16. One more row times the paper G at batch 1 *without* ``prepare_inference`` (the
eval-mode model, spectral norm recomputed every call) to show what the preparation buys.

On CPU the paper model is compute-bound (about 0.2 s per 256² forward on 2 threads, 2/3 of it in
convolutions): batches of 1-4 run at the same speed per slice and 16 runs slower (activations no
longer fit in cache), so batching pays on CUDA, not here. A small model (ngf 8, 96 px) is timed
too: there per-call overhead dominates and batching helps on CPU as well. On CPU, two extra rows
time one generator forward per sample at batch 1 and 16 and give torch.profiler's op shares.
"""
from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import List

import numpy as np
import torch

from synthesis.iterative import ModelStep, VertebraInput, synthesize_view


def _block(width: int, seed: int, size: int = 256) -> VertebraInput:
    """A (size, size, 64) block with three bodies (19, 20, 21) stacked along SI, ``width`` LR slices."""
    rng = np.random.default_rng(seed)
    shape = (size, size, 64)
    lab = np.zeros(shape, np.int32)
    z0 = (shape[2] - width) // 2
    f = size / 256.0
    for label, (r0, r1) in zip((19, 20, 21), ((66, 92), (115, 141), (164, 191))):
        lab[int(r0 * f):int(r1 * f), int(100 * f):int(150 * f), z0:z0 + width] = label
    img = np.where(lab > 0, 0.3, -0.5) + rng.normal(0, 0.05, shape)
    return VertebraInput(f"bench{seed}_20", 20, img.astype(np.float32), lab, None, (256.0 / size,) * 3)


def _time(model, device, blocks, batch: int, size: int, band_rows: int) -> float:
    t0 = time.perf_counter()
    for _ in synthesize_view(blocks, ModelStep(model, device), "sagittal", size, band_rows, batch):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / len(blocks)


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _settings(quick: bool):
    """(name, ModelConfig, LR slices per vertebra, vertebrae, batch sizes): the paper geometry and,
    for contrast, a small model (ngf 8, 96 px) where per-call overhead matters."""
    from models.config import ModelConfig
    paper = ("paper G 256px", ModelConfig.paper(), 8 if quick else 40, 1, (1, 4, 16) if quick else (1, 4, 16, 64))
    demo = ("paper G 128px (demo)", dataclasses.replace(ModelConfig.paper(), image_size=128), 16, 1,
            (1, 2, 4, 8, 16))
    small = ("small G 96px", ModelConfig(ngf=8, ndf=32, image_size=96, band_rows=30), 16 if quick else 40, 1,
             (1, 16) if quick else (1, 16, 64))
    return [paper, demo, small]


def _forward_profile(model, device, batches=(1, 16), repeats: int = 3) -> List[dict]:
    """Where one 256-px generator forward spends its time (torch.profiler self CPU time per op
    group, batch 1) and the per-sample forward time at each batch size: shows whether batching
    can pay on this machine (it cannot when the per-sample time does not fall)."""
    from torch.profiler import ProfilerActivity, profile
    g, size = model.netG, model.cfg.image_size

    def inputs(b):
        band = torch.zeros(b, 1, size, size, device=device)
        band[:, :, size // 2 - 20:size // 2 + 20] = 1
        return (torch.randn(b, 1, size, size, device=device), band, torch.rand(b, device=device),
                torch.ones(b, 1, size, size, device=device))

    per_sample = {}
    with torch.inference_mode():
        for b in batches:
            x = inputs(b)
            g(*x)  # warm-up
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                g(*x)
                ts.append(time.perf_counter() - t0)
            per_sample[b] = statistics.median(ts) / b
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            g(*inputs(1))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    groups = {"convolution": ("conv",), "ELU": ("elu",), "attention bmm": ("bmm",)}
    shares = {name: 100.0 * sum(e.self_cpu_time_total for e in events if any(k in e.key for k in keys)) / total
              for name, keys in groups.items()}
    share_txt = ", ".join(f"{k} {v:.0f} %" for k, v in shares.items())
    return [{"benchmark": "synthesis_3d", "setting": f"paper G 256px forward only, batch {b}", "device": device.type,
             "seconds_median": per_sample[b], "repeats": repeats, "ratio": per_sample[batches[0]] / per_sample[b],
             "peak_mem_mb": round(_peak_mb(device), 1),
             "note": f"s per sample of one generator forward; ratio = batch-{batches[0]} per-sample time / this"
                     + (f"; batch-1 self CPU time: {share_txt}" if b == batches[0] else "")}
            for b in batches]


def time_batches(cfg, device, width: int, batches=(1, 4, 16, 64), repeats: int = 3,
                 emit=None) -> List[dict]:
    """Seconds per vertebra of the 3D synthesis with ``cfg``'s untrained generator (prepared for
    inference) at each batch size, then a row naming the fastest: the "batch 1 vs 16 vs the best"
    table of ``scripts/gpu_check.sh``. ``emit(row)`` gets each row as it is measured."""
    from models.healthivert_model import HealthiVertModel
    device = torch.device(device)
    torch.manual_seed(0)
    model = HealthiVertModel(cfg, device).prepare_inference()
    blocks = [_block(width, 0, cfg.image_size)]
    args = (cfg.image_size, cfg.band_rows)
    rows: List[dict] = []
    for b in batches:
        _time(model, device, blocks, b, *args)  # warm-up (cuDNN plans for this batch size)
        med = statistics.median(_time(model, device, blocks, b, *args) for _ in range(repeats))
        row = {"benchmark": "synthesis_3d", "setting": f"G {cfg.generator} {cfg.image_size}px, batch {b}",
               "device": device.type, "seconds_median": med, "repeats": repeats,
               "ratio": rows[0]["seconds_median"] / med if rows else 1.0,
               "peak_mem_mb": round(_peak_mb(device), 1),
               "note": f"s/vertebra, {width} sagittal slices x 3 steps, untrained G; ratio = batch-"
                       f"{batches[0]} time / this (same run)"}
        rows.append(row)
        if emit:
            emit(row)
    best = min(rows, key=lambda r: r["seconds_median"])
    row = {**best, "setting": best["setting"].replace(", batch", ", fastest: batch"),
           "note": best["note"] + f"; the fastest of batches {', '.join(map(str, batches))}"}
    rows.append(row)
    if emit:
        emit(row)
    return rows


def run(quick: bool = True) -> List[dict]:
    from models.healthivert_model import HealthiVertModel
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    repeats = 3
    rows: List[dict] = []
    for device in devices:
        for name, cfg, width, n_vert, batches in _settings(quick):
            torch.manual_seed(0)
            plain = HealthiVertModel(cfg, device).eval()
            model = HealthiVertModel(cfg, device)
            model.netG.load_state_dict(plain.netG.state_dict())
            model.prepare_inference()
            blocks = [_block(width, s, cfg.image_size) for s in range(n_vert)]
            args = (cfg.image_size, cfg.band_rows)
            runs = [(f"batch {b}", model, b) for b in batches]
            if name.startswith("paper"):
                runs.append(("batch 1, not prepared (spectral norm per call)", plain, 1))
            for _, m, b in runs:
                _time(m, device, blocks[:1], b, *args)  # warm-up
            times = {label: [] for label, _, _ in runs}
            for _ in range(repeats):  # interleaved, so load changes hit all settings alike
                for label, m, b in runs:
                    times[label].append(_time(m, device, blocks, b, *args))
            base = statistics.median(times["batch 1"])
            if name.startswith("paper G 256") and device.type == "cpu":
                rows += _forward_profile(model, device)
            for label, _, _ in runs:
                med = statistics.median(times[label])
                rows.append({"benchmark": "synthesis_3d", "setting": f"{name}, {label}",
                             "device": device.type, "seconds_median": med, "repeats": repeats,
                             "ratio": base / med, "peak_mem_mb": round(_peak_mb(device), 1),
                             "note": f"s/vertebra, {width} sagittal slices x 3 steps, untrained G, "
                                     f"torch threads {torch.get_num_threads()}; ratio = prepared batch-1 time / this"})
    if not torch.cuda.is_available():
        rows.append({"benchmark": "synthesis_3d", "setting": "paper G 256px, batch 1 vs batched",
                     "device": "cuda", "seconds_median": None, "repeats": 0, "ratio": None,
                     "peak_mem_mb": None, "note": "not measured (no GPU on this machine)"})
    return rows


if __name__ == "__main__":  # run as `python -m benchmarks.synthesis` (a plain path would shadow the package)
    for r in run(quick=True):
        print(r)
