"""Seeded synthetic straightened blocks for tests and benchmarks (not a phantom of anatomy).

Each block is a (SI, AP, LR) volume in the block layout: soft tissue (~40 HU, noise) with three
bright boxes (vertebral bodies, ~250 HU with a ~700 HU rim) stacked along SI; the target (label
``L``) is centred, its neighbours (``spine.anatomy.neighbours``) above and below. A fracture (grade 2/3)
is a shorter target box: whole-body (crush) or anterior-only (wedge) height loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from data.io import save_nifti
from data.splits import write_vertebra_json
from data.volume import Volume, affine_from_spacing
from layout.blocks import block_paths
from spine.anatomy import neighbours

BLOCK_ORIENTATION = "IPR"  # axis0 -> inferior (cranial at row 0), axis1 -> posterior, axis2 -> right


def _box(ct, lab, rows, cols, lrs, label, hu_body=250.0, hu_rim=700.0):
    r0, r1 = rows
    c0, c1 = cols
    ct[r0:r1, c0:c1, lrs[0]:lrs[1]] = hu_rim
    ct[r0 + 1:r1 - 1, c0 + 1:c1 - 1, lrs[0] + 1:lrs[1] - 1] = hu_body
    lab[r0:r1, c0:c1, lrs[0]:lrs[1]] = label


def synthetic_block(rng: np.random.Generator, grade: int, label: int = 20,
                    shape: Tuple[int, int, int] = (64, 64, 24)):
    """(ct HU float32, label uint8) arrays of one block; ``grade`` 0-3 sets the height loss."""
    h, w, d = shape
    ct = rng.normal(40.0, 15.0, size=shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    height = int(round(h * rng.uniform(0.20, 0.25)))
    gap = int(round(h * rng.uniform(0.07, 0.10)))
    depth = int(round(w * rng.uniform(0.30, 0.38)))
    half_lr = int(round(d * rng.uniform(0.30, 0.38)))
    cr, cc, cl = h // 2, w // 2, d // 2
    cols = (cc - depth // 2, cc - depth // 2 + depth)
    lrs = (cl - half_lr, cl + half_lr)
    for sign, lbl in zip((-1, 1), neighbours(label)):
        if lbl is None:
            continue
        centre = cr + sign * (height + gap)
        _box(ct, lab, (max(0, centre - height // 2), min(h, centre - height // 2 + height)), cols, lrs, lbl)
    loss = {0: 0.0, 1: 0.22, 2: 0.32, 3: 0.5}[int(grade)]
    kept = max(2, int(round(height * (1.0 - loss))))
    top = cr - kept // 2
    if grade >= 1 and rng.random() < 0.5:  # wedge: anterior half shorter, posterior full
        _box(ct, lab, (cr - height // 2, cr - height // 2 + height), (cc, cols[1]), lrs, label)
        _box(ct, lab, (top, top + kept), (cols[0], cc), lrs, label)
    else:
        _box(ct, lab, (top, top + kept), cols, lrs, label)
    return ct, lab


def write_synthetic_blocks(root, n_blocks: int = 24, seed: int = 0, fracture_rate: float = 0.5,
                           shape=(64, 64, 24), spacing=(1.0, 1.0, 1.0), val_fraction: float = 0.33
                           ) -> Dict[str, Dict[str, int]]:
    """Write ``CT/`` and ``label/`` blocks and ``vertebra_data.json`` under ``root``; returns the
    splits ``{split: {key: grade}}`` (fractures get grade 2 or 3)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    aff = affine_from_spacing(spacing, BLOCK_ORIENTATION)
    splits: Dict[str, Dict[str, int]] = {"train": {}, "val": {}, "test": {}}
    n_val = int(round(n_blocks * val_fraction))
    for i in range(n_blocks):
        fractured = int((i + 1) * fracture_rate) > int(i * fracture_rate)  # evenly interleaved
        grade = int(rng.choice([2, 3])) if fractured else 0
        label = int(rng.integers(15, 23))
        key = f"syn{i:03d}_{label}"
        ct, lab = synthetic_block(rng, grade, label, shape)
        ct_p, lab_p, _ = block_paths(root, key)
        save_nifti(Volume(ct, aff), ct_p, dtype=np.float32)
        save_nifti(Volume(lab, aff), lab_p, dtype=np.uint8)
        splits["val" if i < n_val else "train"][key] = grade
    write_vertebra_json(root / "vertebra_data.json", splits)
    return splits
