"""Outputs of 3D synthesis under ``--results_dir`` (written by ``synthesis/writer.py``):

* ``CT_fake/<key>.nii.gz``: pseudo-healthy CT in HU on the block's exact grid;
* ``label_fake/<key>.nii.gz``: VerSe labels on the same grid;
* ``patient_space/<case>_<label>_healthy.nii.gz`` (+ ``_healthy_msk``) with ``--paint_back``;
* ``summary.csv``: one row per vertebra.
"""
from __future__ import annotations

from pathlib import Path

from data.splits import parse_key

FAKE_CT_DIR, FAKE_LABEL_DIR, PATIENT_DIR, SUMMARY = "CT_fake", "label_fake", "patient_space", "summary.csv"


class OutputLayout:
    """Where each output of a vertebra key goes."""

    def __init__(self, results_dir):
        self.root = Path(results_dir)

    @property
    def ct_dir(self) -> Path:
        return self.root / FAKE_CT_DIR

    @property
    def label_dir(self) -> Path:
        return self.root / FAKE_LABEL_DIR

    def ct(self, key: str) -> Path:
        return self.ct_dir / f"{key}.nii.gz"

    def label(self, key: str) -> Path:
        return self.label_dir / f"{key}.nii.gz"

    def patient(self, key: str, mask: bool = False) -> Path:
        case, label = parse_key(key)
        return self.root / PATIENT_DIR / f"{case}_{label}_healthy{'_msk' if mask else ''}.nii.gz"

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    def complete(self, key: str, paint_back: bool) -> bool:
        """True when every output of ``key`` that this run would write already exists."""
        paths = [self.ct(key), self.label(key)]
        if paint_back:
            paths += [self.patient(key), self.patient(key, mask=True)]
        return all(p.is_file() for p in paths)
