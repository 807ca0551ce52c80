"""Per-vertebra blocks: geometry, affine, saving and loading.

A block is a window of the straightened volume, shape (SI, AP, LR) = (256, 256, 64) by default,
axis0 cranial -> caudal, axis1 anterior -> posterior, axis2 left -> right. Its exact geometry
(:class:`BlockGeometry`) is stored in ``geometry/<key>.npz``: per row the curve point (mm) and the
two in-plane step vectors (mm per index along AP and LR), so voxel ``(r, a, c)`` sits at
``points_mm[r] + (a - centre_ap) * step_ap_mm[r] + (c - centre_lr) * step_lr_mm[r]`` (RAS+;
fractional ``r`` interpolates linearly). The NIfTI affine written with the block is the local
linear approximation at the centre row, so blocks open sensibly in viewers.

Layout under an output root: ``CT/<key>.nii.gz`` (HU float32), ``label/<key>.nii.gz`` (uint8
VerSe ids), ``geometry/<key>.npz``.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from data.io import check_same_grid, load_ct, load_label, save_nifti
from data.volume import Volume
from spine.anatomy import Completeness
from utils.errors import UserError
from utils.fileio import atomic_path

CT_DIR, LABEL_DIR, GEOMETRY_DIR = "CT", "label", "geometry"
log = logging.getLogger(__name__)


@dataclass
class BlockGeometry:
    """Exact map block voxel -> world mm (RAS+) -> patient voxel. Arrays are (H, 3)."""

    points_mm: np.ndarray       # curve point of each row
    step_si_mm: np.ndarray      # world step per row along the curve (mm / row)
    step_ap_mm: np.ndarray      # world step per AP index (mm / index), posterior
    step_lr_mm: np.ndarray      # world step per LR index (mm / index), to the right
    centre_ap: float
    centre_lr: float
    block_shape: Tuple[int, int, int]
    patient_affine: np.ndarray  # 4 x 4 of the patient volume the block was sampled from
    patient_shape: Tuple[int, int, int]
    target_label: int = 0
    target_row: float = 0.0     # exact (fractional) row of the target body centroid
    mode: str = "corrected"
    extra: dict = field(default_factory=dict)

    @property
    def centre_row(self) -> int:
        return self.block_shape[0] // 2

    def affine(self) -> np.ndarray:
        """Local linear affine at the centre row (block index -> RAS+ mm)."""
        rc = self.centre_row
        m = np.stack([self.step_si_mm[rc], self.step_ap_mm[rc], self.step_lr_mm[rc]], axis=1)
        aff = np.eye(4)
        aff[:3, :3] = m
        aff[:3, 3] = self.points_mm[rc] - m @ np.array([rc, self.centre_ap, self.centre_lr])
        return aff

    def save(self, path) -> Path:
        p = Path(path)
        arrays = {k: np.asarray(getattr(self, k)) for k in
                  ("points_mm", "step_si_mm", "step_ap_mm", "step_lr_mm", "centre_ap",
                   "centre_lr", "block_shape", "patient_affine", "patient_shape",
                   "target_label", "target_row")}
        arrays["mode"] = np.array(self.mode)
        for k, v in self.extra.items():
            arrays[f"extra_{k}"] = np.asarray(v)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with atomic_path(p) as tmp:
            tmp.write_bytes(buf.getvalue())
        return p

    @classmethod
    def load(cls, path) -> "BlockGeometry":
        p = Path(path)
        if not p.is_file():
            raise UserError("geometry file not found", p)
        try:
            z = np.load(p, allow_pickle=False)
            kw = dict(points_mm=z["points_mm"], step_si_mm=z["step_si_mm"],
                      step_ap_mm=z["step_ap_mm"], step_lr_mm=z["step_lr_mm"],
                      centre_ap=float(z["centre_ap"]), centre_lr=float(z["centre_lr"]),
                      block_shape=tuple(int(x) for x in z["block_shape"]),
                      patient_affine=z["patient_affine"],
                      patient_shape=tuple(int(x) for x in z["patient_shape"]),
                      target_label=int(z["target_label"]), target_row=float(z["target_row"]),
                      mode=str(z["mode"]))
            extra = {k[6:]: z[k] for k in z.files if k.startswith("extra_")}
        except (KeyError, ValueError, OSError) as exc:
            raise UserError(f"not a block geometry file ({exc})", p) from None
        return cls(**kw, extra=extra)


def block_paths(root, key: str):
    r = Path(root)
    return (r / CT_DIR / f"{key}.nii.gz", r / LABEL_DIR / f"{key}.nii.gz",
            r / GEOMETRY_DIR / f"{key}.npz")


def save_block(root, key: str, geometry: BlockGeometry, label: np.ndarray,
               ct: Optional[np.ndarray] = None, affine: Optional[np.ndarray] = None) -> None:
    """Write ``label`` (and ``ct``) with the block affine plus the geometry, atomically.
    ``affine`` overrides the written affine (``--mode original`` copies the raw one)."""
    ct_p, lab_p, geo_p = block_paths(root, key)
    aff = geometry.affine() if affine is None else affine
    geometry.save(geo_p)
    ldt = np.uint8 if label.max(initial=0) <= 255 else np.uint16
    save_nifti(Volume(label.astype(ldt), aff), lab_p)
    if ct is not None:
        save_nifti(Volume(ct.astype(np.float32), aff), ct_p)


def load_block(root, key: str) -> Tuple[Optional[Volume], Volume]:
    """``(ct Volume or None, label Volume)`` of block ``key`` under ``root``."""
    ct_p, lab_p, _ = block_paths(root, key)
    if not lab_p.is_file():
        raise UserError(f"no label block for {key!r}", lab_p)
    label = load_label(lab_p, allow_empty=True)
    ct = load_ct(ct_p) if ct_p.is_file() else None
    if ct is not None:
        check_same_grid(label, ct)
    return ct, label


def load_geometry(root, key: str) -> BlockGeometry:
    return BlockGeometry.load(block_paths(root, key)[2])


def block_complete(root, key: str, with_ct: bool) -> bool:
    """True when all outputs of ``key`` exist (for ``--skip_existing``)."""
    ct_p, lab_p, geo_p = block_paths(root, key)
    return lab_p.is_file() and geo_p.is_file() and (ct_p.is_file() or not with_ct)


def load_completeness(root, key: str):
    """``(Completeness, {label: reason} of the case's incomplete vertebrae)`` stored with block
    ``key`` by straightening; a block without that record (older outputs) counts as complete."""
    geo_p = block_paths(root, key)[2]
    if not geo_p.is_file():
        return Completeness(), {}
    try:
        z = np.load(geo_p, allow_pickle=False)
        if "extra_status" not in z.files:
            return Completeness(), {}
        flag = Completeness(str(z["extra_status"]), str(z["extra_reason"]))
        labels = [int(x) for x in np.atleast_1d(z["extra_incomplete_labels"])]
        reasons = [str(x) for x in np.atleast_1d(z["extra_incomplete_reasons"])]
        labels = dict(zip(labels, reasons + [""] * (len(labels) - len(reasons))))
    except (KeyError, ValueError, OSError) as exc:
        raise UserError(f"not a block geometry file ({exc})", geo_p) from None
    return flag, labels


# ------------------------------------------------------------------ keys and files in a folder

def block_path(folder, key: str) -> Path:
    """``<folder>/<key>.nii.gz`` (``.nii`` accepted too) in any folder of per-vertebra volumes
    (``label/``, ``CT/``, ``label_fake/`` …)."""
    folder = Path(folder)
    p = folder / f"{key}.nii.gz"
    if not p.exists() and (folder / f"{key}.nii").exists():
        return folder / f"{key}.nii"
    return p


def list_keys(folder) -> List[str]:
    """Vertebra keys of the ``*.nii.gz`` / ``*.nii`` files in a folder, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("folder not found", folder)
    keys = []
    for p in sorted(folder.iterdir()):
        name = p.name
        for suf in (".nii.gz", ".nii"):
            if name.endswith(suf) and not name.startswith("."):
                keys.append(name[: -len(suf)])
                break
    return keys


def block_keys(root, need_ct: bool = False) -> List[str]:
    """Keys that have a block under ``root``: the label file decides (every block has one);
    with ``need_ct`` the CT file must exist as well."""
    root = Path(root)
    if not (root / LABEL_DIR).is_dir():
        raise UserError(f"no {LABEL_DIR}/ folder of straightened blocks (is this the "
                        "straightening output?)", root)
    keys = list_keys(root / LABEL_DIR)
    if need_ct:
        keys = [k for k in keys if block_path(root / CT_DIR, k).is_file()]
    return keys


def select_blocks(root, vertebra_json=None, phases: Sequence[str] = ("all",),
                  need_ct: bool = False) -> Dict[str, Optional[int]]:
    """``{key: grade}`` of the vertebrae of ``phases`` in the split file that have a block under
    ``root`` (``"all"``: every split), with one warning listing those without; without a split
    file every block, graded None. Empty is an error."""
    from data.splits import SPLITS, expand_phases, keys_of, read_vertebra_json
    root = Path(root)
    phases = expand_phases(phases)
    have = block_keys(root, need_ct)
    if vertebra_json is None:
        out: Dict[str, Optional[int]] = {k: None for k in have}
    else:
        splits = read_vertebra_json(vertebra_json)
        if set(phases) == set(SPLITS):          # every split: those the file has
            phases = [s for s in SPLITS if s in splits]
        wanted = keys_of(splits, phases)
        present = set(have)
        out = {k: g for k, g in sorted(wanted.items()) if k in present}
        missing = sorted(set(wanted) - present)
        if missing:
            log.warning(
                "%d of %d vertebrae of %s have no block under %s (skipped): %s", len(missing),
                len(wanted), "+".join(phases), root, ", ".join(missing[:5]))
    if not out:
        raise UserError(f"no straightened blocks to use (expected {LABEL_DIR}/<key>.nii.gz"
                        f"{' and ' + CT_DIR + '/<key>.nii.gz' if need_ct else ''})", root)
    return out
