"""RHLV per vertebra from label files: the file-level layer over :mod:`evaluation.heights`.

A *real* block is ``<label_dir>/<key>.nii.gz`` (straightened, VerSe ids); its pseudo-healthy
counterpart is ``<fake_dir>/<key>.nii.gz`` on the same grid (the 3D synthesis' ``label_fake``
or, for the oracle, the healthy twin's straightened block). Spacing comes from the real block's
affine.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

from data.io import load_label
from data.splits import parse_key
from spine.anatomy import level_name
from evaluation.heights import THIRDS, HeightRule, measure_pair, target_mask
from evaluation.plausibility import PlausibilityRule, implausible_reasons
from layout.blocks import block_path, load_completeness
from utils.errors import UserError

log = logging.getLogger(__name__)


def load_target(path, label: int):
    """(bool mask (SI, AP, LR), spacing_mm, Volume) of vertebra ``label`` in a block file."""
    vol = load_label(path, allow_empty=True)
    mask = target_mask(vol.array, label)
    return mask, np.asarray(vol.spacing, dtype=float), vol


def _check_pair(real_vol, fake_vol, fake_path) -> None:
    if real_vol.shape != fake_vol.shape:
        raise UserError(f"grid {fake_vol.shape} differs from the real block's {real_vol.shape}",
                        fake_path)
    if not np.allclose(real_vol.spacing, fake_vol.spacing, atol=1e-3):
        raise UserError(f"spacing {np.round(fake_vol.spacing, 3).tolist()} differs from the real "
                        f"block's {np.round(real_vol.spacing, 3).tolist()}", fake_path)


def _columns(prefix_suffix: str, result: dict) -> Dict[str, float]:
    out = {}
    for i, t in enumerate(THIRDS):
        out[f"H_syn_{t}_mm{prefix_suffix}"] = float(result["H_syn"][i])
    for i, t in enumerate(THIRDS):
        out[f"H_ori_{t}_mm{prefix_suffix}"] = float(result["H_ori"][i])
    for i, t in enumerate(THIRDS):
        out[f"RHLV_{t}{prefix_suffix}"] = float(result["RHLV"][i])
    out[f"syn_scale{prefix_suffix}"] = float(result["scale"])
    out[f"shift_ap_lr_vox{prefix_suffix}"] = "{} {}".format(*result["shift_vox"])
    return out


class EmptyBody(UserError):
    """The pseudo-healthy (or real) block holds no voxel of the target label."""


def measure_files(real_path, fake_path, label: int, rule: HeightRule,
                  plausibility: Optional[PlausibilityRule] = None) -> dict:
    """:func:`measure_pair` on two block files (UserError naming the file on any problem); with
    ``plausibility`` the result also holds ``implausible`` (list of failed checks)."""
    ori, spacing, real_vol = load_target(real_path, label)
    syn, _, fake_vol = load_target(fake_path, label)
    _check_pair(real_vol, fake_vol, fake_path)
    if not syn.any():
        raise EmptyBody(f"no pseudo-healthy body for label {label}", fake_path)
    if not ori.any():
        raise EmptyBody(f"label {label} is absent from the real block", real_path)
    if rule.method == "original":
        from evaluation.heights_original import measure_original
        out = measure_original(syn, ori, spacing, rule.column_ratio)
    else:
        out = measure_pair(syn, ori, spacing, rule)
    if plausibility is not None:
        out["implausible"] = implausible_reasons(fake_vol.array, real_vol.array, label, spacing,
                                                 plausibility)
    return out


def rhlv_row(key: str, label_dir, fake_dir, rule: HeightRule, split: Optional[str] = None,
             grade: Optional[int] = None, coronal: bool = False, fake_dir_cor=None,
             rule_cor: Optional[HeightRule] = None,
             plausibility: Optional[PlausibilityRule] = PlausibilityRule()) -> dict:
    """One CSV row: identity columns, sagittal heights/RHLV and (``coronal``) the ``_cor`` ones;
    with ``plausibility``, ``plausible`` (0/1) and ``implausible`` (the failed checks)."""
    case, label = parse_key(key)
    real = block_path(label_dir, key)
    flag, _ = load_completeness(Path(label_dir).parent, key)
    row = {"key": key, "case": case, "label": label, "level": level_name(label),
           "split": split, "grade": grade, "complete": int(flag.complete), "reason": flag.reason}
    if not flag.complete:   # cut by the scan: measured, but never graded (SVM_grading drops it)
        log.warning("%s: %s; not graded", key, flag.reason)
    sag = measure_files(real, block_path(fake_dir, key), label, rule, plausibility)
    row.update(_columns("", sag))
    reasons = list(sag.get("implausible", []))
    if coronal:
        if rule.method == "original":
            raise UserError("--height_rule original reproduces the authors' sagittal rule only; "
                            "drop --coronal or use --height_rule ours")
        rc = rule_cor or replace(rule, plane="coronal")
        fake_c = block_path(fake_dir_cor or fake_dir, key)
        cor = measure_files(real, fake_c, label, rc, plausibility)
        row.update(_columns("_cor", cor))
        reasons += [f"coronal: {r}" for r in cor.get("implausible", []) if fake_dir_cor]
    if plausibility is not None:
        row["plausible"] = int(not reasons)
        row["implausible"] = "; ".join(reasons)
        if reasons:
            log.warning("%s: implausible synthesis (%s); its RHLV measures the artefact", key,
                        row["implausible"])
    return row


def rhlv_table(items: Iterable[tuple], label_dir, fake_dir, rule: HeightRule,
               coronal: bool = False, fake_dir_cor=None, skip_missing: bool = False,
               progress: bool = True, plausibility: Optional[PlausibilityRule] = PlausibilityRule()):
    """pandas DataFrame of :func:`rhlv_row` for ``items`` = (key, split, grade) tuples."""
    import pandas as pd
    from tqdm import tqdm
    items = list(items)
    rows = []
    for key, split, grade in tqdm(items, desc="RHLV", disable=not progress):
        needed = [block_path(label_dir, key), block_path(fake_dir, key)]
        if coronal and fake_dir_cor:
            needed.append(block_path(fake_dir_cor, key))
        missing = [p for p in needed if not p.exists()]
        if missing:
            if skip_missing:
                log.warning("skipping %s: %s not found", key, missing[0])
                continue
            raise UserError("file not found (use --skip_missing to skip such vertebrae)", missing[0])
        try:
            rows.append(rhlv_row(key, label_dir, fake_dir, rule, split, grade, coronal, fake_dir_cor,
                                 plausibility=plausibility))
        except EmptyBody as exc:  # e.g. a synthesis whose target mask stayed below 0.5
            log.warning("%s: %s; its heights and RHLVs are left empty (NaN)", key, exc)
            case, label = parse_key(key)
            rows.append({"key": key, "case": case, "label": label,
                         "level": level_name(label), "split": split, "grade": grade,
                         "plausible": 0, "implausible": "empty"})
    if not any("RHLV_a" in r for r in rows):
        raise UserError("no vertebra could be measured (every pseudo-healthy body is empty)", fake_dir)
    if not rows:
        raise UserError("no vertebra could be measured (no matching files)", label_dir)
    return pd.DataFrame(rows)
