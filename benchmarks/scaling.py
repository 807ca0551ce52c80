"""Scaling benchmark: how straightening and 3D synthesis time grow with the number of vertebrae
(1, 5, 10, 20), so the cost growth is visible.

Straightening: one 1 mm RAS phantom case per count with every vertebra a target (levels L5;
L1-L5; T8-L5; C5-L5 = 20 levels), CT + labels, in memory, default mode (rigid frames) and
``--mode original``; medians of 3 repeats. Peak memory is the tracemalloc peak of one extra,
untimed call (numpy/scipy heap of that call alone, not process RSS), so it is per setting.

Synthesis: N synthetic 256 x 256 x 64 blocks (three bodies each, the middle one the target) through
:func:`synthesis.iterative.synthesize_view` (sagittal, upper -> lower -> target steps) with an
untrained paper-preset generator prepared for inference, batch 4 (the default on CPU; the scheduler fills batches across vertebrae). Quick
mode: 1 sagittal slice per vertebra (3 forward passes); full mode: 8 slices; 3 repeats. Peak memory
there is process RSS (monotonic, counts run in ascending order). Ratio = time / time for 1
vertebra (linear growth gives ratio = N). With 1 vertebra the three steps run one after the
other at batch 1; from 5 on the scheduler fills batches across vertebrae, so the per-vertebra
cost drops and then stays flat.
"""
from __future__ import annotations

import resource
import statistics
import tracemalloc

import torch

from phantom.case import level_range, render_case
from straighten.core import straighten_case
from straighten.original import straighten_original

COUNTS = {1: ("L5", "L5"), 5: ("L1", "L5"), 10: ("T8", "L5"), 20: ("C5", "L5")}


from benchmarks.timing import median_wall  # noqa: E402


def _traced_peak_mb(fn) -> float:
    """Peak traced heap (numpy arrays included) of one call of ``fn``, in MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def _straighten_rows(repeats: int) -> list:
    rows, base = [], {}
    for n, (first, last) in COUNTS.items():
        case = render_case(0, levels=level_range(first, last), orientation="RAS")
        c, m, targets = case.ct, case.mask, sorted(case.centroids)
        modes = (("default (rigid frames)", lambda: straighten_case(m, case.centroids, targets, c)),
                 ("--mode original", lambda: straighten_original(m, case.centroids, targets, c)))
        for mode, fn in modes:
            fn()  # warm-up
            sec = median_wall(fn, repeats)
            base.setdefault(mode, sec)
            rows.append({"benchmark": "scaling_straighten",
                         "setting": f"{mode}, {n} vertebra{'e' if n > 1 else ''} ({first}-{last}), grid {c.shape}",
                         "device": "cpu", "seconds_median": sec, "repeats": repeats,
                         "ratio": sec / base[mode], "peak_mem_mb": round(_traced_peak_mb(fn), 1),
                         "note": f"{sec / n:.3g} s per vertebra; ratio vs 1 vertebra, same mode; "
                                 "peak = tracemalloc heap peak of one call"})
    return rows


def _synthesis_rows(quick: bool) -> list:
    from benchmarks.synthesis import _block, _time
    from models.config import ModelConfig
    from models.healthivert_model import HealthiVertModel
    cfg, width, batch = ModelConfig.paper(), (1 if quick else 8), 4
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = HealthiVertModel(cfg, device).prepare_inference()
    args = (cfg.image_size, cfg.band_rows)
    _time(model, device, [_block(width, 99)], batch, *args)  # warm-up
    rows, base = [], None
    for n in COUNTS:
        blocks = [_block(width, s) for s in range(n)]
        repeats = 3
        sec = statistics.median(_time(model, device, blocks, batch, *args) * n for _ in range(repeats))
        base = sec if base is None else base
        rows.append({"benchmark": "scaling_synthesis",
                     "setting": f"paper G 256px, batch {batch}, {n} vertebra{'e' if n > 1 else ''} x {width} sagittal slice(s)",
                     "device": "cpu", "seconds_median": sec, "repeats": repeats, "ratio": sec / base,
                     "peak_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
                     "note": f"total s for all N{'' if repeats >= 3 else ' (1 run, quick mode)'}; "
                             f"{sec / n:.3g} s per vertebra; {3 * width} forward "
                             f"slices per vertebra; torch threads {torch.get_num_threads()}; "
                             "peak = process RSS (grows with N: all N input blocks are held)"})
    rows.append({"benchmark": "scaling_synthesis", "setting": "paper G 256px, batch 4, 1-20 vertebrae",
                 "device": "cuda", "seconds_median": None, "repeats": 0, "ratio": None,
                 "peak_mem_mb": None, "note": "not measured (no GPU on this machine)"}
                if not torch.cuda.is_available() else
                {"benchmark": "scaling_synthesis", "setting": "cuda", "device": "cuda",
                 "seconds_median": None, "repeats": 0, "note": "GPU present but CUDA scaling not implemented"})
    return rows


def run(quick: bool = True) -> list:
    return _straighten_rows(3) + _synthesis_rows(quick)


if __name__ == "__main__":  # python -m benchmarks.scaling
    for r in run(quick=True):
        print(r)
