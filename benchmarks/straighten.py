"""Straightening benchmark: seconds per case for a 10-vertebra 1 mm phantom (T8-L5, CT + labels,
all 10 vertebrae as targets, in memory, no file I/O), corrected default mode (rigid frames) vs
``--mode original``, both in the same process so the ratio is meaningful; plus the smooth-frame
variant and one label paint-back.

``run(quick=True)``: 3 repeats; full run 5 repeats and a 3 mm-slice grid.
"""
from __future__ import annotations

import resource

import numpy as np

from phantom.case import render_case
from straighten.core import straighten_case
from straighten.inverse import paint_back
from straighten.original import straighten_original

LEVELS = ("T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")


from benchmarks.timing import median_wall  # noqa: E402


def _row(setting, sec, repeats, ratio=None, note=""):
    return {"benchmark": "straighten_case", "setting": setting, "device": "cpu",
            "seconds_median": sec, "repeats": repeats, "ratio": ratio,
            "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": note}


def _settings(case, targets):
    c, m = case.ct, case.mask
    return [
        ("original mode (voxel grid)", lambda: straighten_original(m, case.centroids, targets, c)),
        ("corrected, rigid frames (default)", lambda: straighten_case(m, case.centroids, targets, c)),
        ("corrected, smooth frames", lambda: straighten_case(m, case.centroids, targets, c,
                                                             frames="smooth")),
    ]


def run(quick: bool = True) -> list:
    repeats = 3 if quick else 5
    grids = [(1.0, 1.0, 1.0)] + ([] if quick else [(0.8, 0.8, 3.0)])
    rows = []
    for sp in grids:
        case = render_case(0, levels=LEVELS, spacing=sp, orientation="RAS")
        targets = sorted(case.centroids)
        base = None
        for name, fn in _settings(case, targets):
            sec = median_wall(fn, repeats)
            base = sec if base is None else base
            rows.append(_row(f"{name}, {len(targets)} vertebrae, grid {sp} mm", sec, repeats,
                             ratio=sec / base, note="ratio vs original mode; CT + labels, "
                             "de-pedicle, 256x256x64 blocks; shared 2-core machine under load"))
    case = render_case(0, levels=LEVELS, orientation="RAS")
    blk = straighten_case(case.mask, case.centroids, [21], case.ct)[0]
    arr = (blk.label_array == 21).astype(np.uint8)
    sec = median_wall(lambda: paint_back(arr, blk.geometry, case.mask), repeats)
    rows.append(_row("paint_back of one label block (order 0)", sec, repeats,
                     note="inverse sampling over the label's patient-space bounding box"))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
