"""The one timing helper every benchmark entry uses: medians of repeated calls."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: bool = True):
    """(median wall seconds, median CPU seconds of this process) over ``repeats`` calls of
    ``fn``; one untimed warm-up call first (imports, caches) unless ``warmup`` is False. With a
    CUDA device present each call ends with ``torch.cuda.synchronize()``, so queued kernels count."""
    import torch
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    if warmup:
        fn()
        sync()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def median_wall(fn, repeats: int) -> float:
    """Median wall seconds over ``repeats`` calls, no warm-up call."""
    return median_seconds(fn, repeats, warmup=False)[0]
