"""Writing the outputs of the 3D synthesis stage atomically under ``--results_dir``
(paths: :mod:`layout.synthesis`):

* ``CT_fake/<key>.nii.gz``: pseudo-healthy CT in HU (float32, ``data.intensity.unit_to_hu``) on the
  block's exact grid (same shape and affine as ``CT/<key>.nii.gz``);
* ``label_fake/<key>.nii.gz``: uint8 VerSe labels on the same grid (target where the composite soft
  mask is >= 0.5, neighbours as moved by the composite);
* ``patient_space/<case>_<label>_healthy.nii.gz`` (+ ``_healthy_msk``) with ``--paint_back``
  (:mod:`synthesis.paint`);
* ``summary.csv``: one row per vertebra (key, slices, predicted height in mm, seconds, status).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from data.intensity import unit_to_hu
from data.io import save_nifti
from data.volume import Volume
from layout.synthesis import OutputLayout
from synthesis.fusion import Synthesis
from utils.fileio import write_text

SUMMARY_FIELDS = ("key", "view", "slices", "pred_height_mm", "seconds", "status")


def label_dtype(labels: np.ndarray):
    return np.uint8 if int(labels.max(initial=0)) <= 255 else np.uint16


def write_block_outputs(syn: Synthesis, reference: Volume, layout: OutputLayout,
                        real_hu: Optional[np.ndarray] = None) -> None:
    """Write ``CT_fake`` (HU float32) and ``label_fake`` (uint8) with ``reference``'s grid. Voxels
    no slice synthesised take ``real_hu`` (the block's CT, unwindowed) when given."""
    if syn.image.shape != reference.shape:
        raise ValueError(f"{syn.key}: result shape {syn.image.shape} != block {reference.shape}")
    hu = unit_to_hu(syn.image.astype(np.float32)).astype(np.float32)
    if real_hu is not None and syn.touched is not None:
        hu = np.where(syn.touched, hu, np.asarray(real_hu, np.float32))
    save_nifti(Volume(hu, reference.affine.copy()), layout.ct(syn.key), dtype=np.float32)
    save_nifti(Volume(syn.labels, reference.affine.copy()), layout.label(syn.key),
               dtype=label_dtype(syn.labels))


def summary_row(syn: Synthesis) -> Dict[str, object]:
    """The summary CSV row of a written vertebra (heights: mean over the views that ran)."""
    heights = [h for h in syn.height_mm.values() if not math.isnan(h)]
    views = sorted(syn.slices, key=lambda v: v != "sagittal")  # sagittal first
    return {"key": syn.key, "view": "+".join(views),
            "slices": "+".join(str(syn.slices[v]) for v in views),
            "pred_height_mm": f"{np.mean(heights):.2f}" if heights else "",
            "seconds": f"{syn.seconds:.3f}", "status": "written"}


def read_summary(path) -> Dict[str, Dict[str, str]]:
    """Rows of an existing ``summary.csv`` by key ({} when absent or unreadable)."""
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            return {r["key"]: r for r in csv.DictReader(fh) if r.get("key")}
    except (OSError, csv.Error, KeyError):
        return {}


class Summary:
    """Rows of ``summary.csv``, rewritten atomically after each vertebra (so a crash keeps them)."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: List[Dict[str, object]] = []

    def add(self, row: Dict[str, object]) -> None:
        self.rows.append({k: row.get(k, "") for k in SUMMARY_FIELDS})
        self.flush()

    def flush(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        write_text(self.path, buf.getvalue())
