"""RHLV benchmark: seconds per vertebra for the RHLV measurement (sagittal, and sagittal +
coronal) and for the axial height-loss map, on a default-size straightened block pair
(256 x 256 x 64, 1 mm) holding a wedge-fractured body and its healthy counterpart
(:mod:`evaluation.shapes`). In-memory timings exclude file I/O; full mode adds the file-level
path (two gzip NIfTI reads + measurement), as ``RHLV_quantification.py`` does per vertebra.
Medians of >= 3 repeats after one warm-up; peak = process RSS.
"""
from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

import numpy as np

from data.io import save_nifti
from data.volume import Volume
from evaluation.height_map import height_loss_map
from evaluation.heights import HeightRule, measure_pair
from evaluation.rhlv import rhlv_row
from evaluation.shapes import body_block

SHAPE = (256, 256, 64)


from benchmarks.timing import median_seconds  # noqa: E402
from layout.blocks import LABEL_DIR


def _row(setting, sec, repeats, note):
    wall, cpu = sec
    return {"benchmark": "rhlv", "setting": setting, "device": "cpu", "seconds_median": wall,
            "repeats": repeats, "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "note": f"{note}; CPU time median {cpu:.3g} s (wall > CPU = other load); "
                    f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}


def run(quick: bool = True) -> list:
    repeats = 3 if quick else 7
    healthy = body_block(SHAPE, label=20) > 0
    wedge = body_block(SHAPE, morphology="wedge", loss=0.4, label=20) > 0
    sp = (1.0, 1.0, 1.0)
    cor = HeightRule(plane="coronal")
    rows = [
        _row("RHLV sagittal, one vertebra, block 256x256x64 in memory",
             median_seconds(lambda: measure_pair(healthy, wedge, sp), repeats), repeats, "measure_pair"),
        _row("RHLV sagittal + coronal, one vertebra, in memory",
             median_seconds(lambda: (measure_pair(healthy, wedge, sp), measure_pair(healthy, wedge, sp, cor)),
                     repeats), repeats, "two rules"),
        _row("height-loss map, one vertebra, in memory",
             median_seconds(lambda: height_loss_map(healthy, wedge, 1.0), repeats), repeats, "height_loss_map"),
    ]
    if not quick:
        with tempfile.TemporaryDirectory() as tmp:
            for sub, arr in (("label", wedge), ("fake", healthy)):
                save_nifti(Volume((arr * 20).astype(np.uint8), np.eye(4)), Path(tmp) / sub / "c_20.nii.gz")
            rows.append(_row("RHLV from files (2 NIfTI reads + sagittal + coronal)",
                             median_seconds(lambda: rhlv_row("c_20", Path(tmp) / LABEL_DIR, Path(tmp) / "fake",
                                                      HeightRule(), coronal=True), repeats),
                             repeats, "rhlv_row"))
    return rows
