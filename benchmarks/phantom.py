"""Phantom benchmark: seconds to render one case (fractured + healthy twin, in memory, no file
I/O) with :func:`phantom.case.render_case`, and seconds to paint HU into a label map.

Settings: 10 vertebrae (T8-L5) at 1 mm with one grade-3 fracture (the issue's <= 3 s target, on
one core: set ``OMP_NUM_THREADS=1``), the default 8 levels at 1 mm, and 0.8 x 0.8 x 3 mm LPS.
Full mode adds writing one case to disk (gzip NIfTI x 4) and :func:`paint_from_mask` on a
rendered mask. Medians of >= 3 repeats after one warm-up.
"""
from __future__ import annotations

import os
import resource
import tempfile

from phantom.case import level_range, render_case, write_case
from phantom.paint import paint_from_mask


from benchmarks.timing import median_seconds  # noqa: E402


def _row(setting: str, seconds, repeats: int, note: str) -> dict:
    wall, cpu = seconds
    return {"benchmark": "phantom", "setting": setting, "device": "cpu",
            "seconds_median": wall, "repeats": repeats,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{note}; CPU time median {cpu:.3g} s (wall > CPU means other load on the "
                    f"machine); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
                    "peak = process RSS"}


def run(quick: bool = True) -> list:
    repeats = 3 if quick else 5
    ten = level_range("T8", "L5")
    box = dict(anatomy="box")      # the original phantom (the rows of earlier runs)
    settings = [
        ("render_case 10 vertebrae (T8-L5) 1 mm RAS, 1 fracture + twin",
         dict(levels=ten, fractures={"L1": (3, "wedge")}, **box)),
        ("render_case 8 vertebrae (T10-L5) 1 mm RAS, healthy", dict(box)),
        ("render_case 8 vertebrae 0.8x0.8x3 mm LPS, 1 fracture + twin",
         dict(spacing=(0.8, 0.8, 3.0), orientation="LPS", fractures={"L2": (2, "crush")}, **box)),
        ("render_case 10 vertebrae (T8-L5) 1 mm RAS, 1 fracture + twin, realistic anatomy (default)",
         dict(levels=ten, fractures={"L1": (3, "wedge")}, anatomy="realistic")),
    ]
    rows = []
    for name, kw in settings:
        case = render_case(0, **kw)
        sec = median_seconds(lambda kw=kw: render_case(0, **kw), repeats)
        rows.append(_row(name, sec, repeats, f"grid {case.ct.shape}, in memory"))
    if not quick:
        case = render_case(0, levels=ten, fractures={"L1": (3, "wedge")}, anatomy="box")
        with tempfile.TemporaryDirectory() as tmp:
            sec = median_seconds(lambda: write_case(case, tmp, "bench"), repeats)
        rows.append(_row("write_case (4 gzip NIfTI + 3 JSON), 10 vertebrae 1 mm", sec, repeats,
                         f"grid {case.ct.shape}"))
        sec = median_seconds(lambda: paint_from_mask(case.mask, seed=0), repeats)
        rows.append(_row("paint_from_mask on a 10-vertebra 1 mm mask", sec, repeats,
                         f"grid {case.mask.shape}"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
