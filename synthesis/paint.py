"""``--paint_back``: the pseudo-healthy vertebra on the patient's original CT grid.

Uses the straightening geometry (``geometry/<key>.npz``, :mod:`straighten.inverse`): every patient
voxel near the vertebra is mapped into the block and the synthetic block is sampled there.

* Region: block voxels within ``margin_mm`` of the real *or* the synthesised target (so the
  restored height and the removed fracture are both covered), painted back with order 0.
* ``<case>_<label>_healthy.nii.gz``: the patient CT (HU, float32) with the synthetic HU (trilinear)
  inside that region and the real CT everywhere else.
* ``<case>_<label>_healthy_msk.nii.gz``: the patient label map with the target replaced, inside the
  region, by the synthesised target (order 0); other labels are the patient's own.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from data.intensity import unit_to_hu
from data.io import check_same_grid, load_ct, load_label, save_nifti
from data.splits import parse_key
from data.volume import Volume
from synthesis.fusion import Synthesis
from layout.synthesis import OutputLayout
from synthesis.writer import label_dtype
from utils.errors import UserError

log = logging.getLogger(__name__)


def region_mask(real_target: np.ndarray, fake_target: np.ndarray, spacing_mm, margin_mm: float) -> np.ndarray:
    """Block voxels within ``margin_mm`` (Euclidean, in mm) of either target mask (bool, X Y Z)."""
    core = np.asarray(real_target, bool) | np.asarray(fake_target, bool)
    out = np.zeros(core.shape, bool)
    if not core.any():
        return out
    pad = [int(np.ceil(margin_mm / s)) + 1 for s in spacing_mm]
    nz = np.argwhere(core)
    lo = np.maximum(nz.min(0) - pad, 0)
    hi = np.minimum(nz.max(0) + 1 + np.array(pad), core.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dist = ndimage.distance_transform_edt(~core[box], sampling=tuple(float(s) for s in spacing_mm))
    out[box] = dist <= margin_mm
    return out


class PatientPainter:
    """Finds each case's original CT and mask under ``raw_root`` and writes the painted volumes."""

    def __init__(self, dataroot: Path, raw_root: Path, margin_mm: float = 3.0):
        from layout.raw import find_cases
        if not Path(raw_root).is_dir():
            raise UserError("--raw_root is not a folder", raw_root)
        self.dataroot, self.margin_mm = Path(dataroot), float(margin_mm)
        self.cases = {c.case: c for c in find_cases(raw_root)}
        self.raw_root = Path(raw_root)
        self._cache: Dict[str, Tuple[Volume, Volume]] = {}

    def _patient(self, case: str) -> Tuple[Volume, Volume]:
        if case in self._cache:
            return self._cache[case]
        files = self.cases.get(case)
        if files is None or files.ct is None:
            raise UserError(f"no CT of case {case!r} (expected <case>/{case}.nii.gz)", self.raw_root)
        ct, mask = load_ct(files.ct), load_label(files.mask)
        check_same_grid(ct, mask)
        self._cache = {case: (ct, mask)}  # keep one case: keys arrive grouped by case
        return ct, mask

    def paint(self, syn: Synthesis, block: Volume, layout: OutputLayout) -> Optional[Path]:
        """Write the two patient-space volumes of ``syn`` (block: its label block Volume)."""
        from layout.blocks import block_paths, load_geometry
        from straighten.inverse import paint_back, world_to_block
        case, label = parse_key(syn.key)
        geo = load_geometry(self.dataroot, syn.key)
        if tuple(geo.block_shape) != tuple(syn.image.shape):
            raise UserError(f"geometry block shape {geo.block_shape} != block {syn.image.shape}",
                            block_paths(self.dataroot, syn.key)[2])
        ct, mask = self._patient(case)
        region_b = region_mask(block.array == label, syn.labels == label, block.spacing, self.margin_mm)
        region_p = paint_back(region_b.astype(np.uint8), geo, reference=mask, order=0) > 0
        vox = np.argwhere(region_p)
        idx, ok = world_to_block(geo, ct.voxel_to_world(vox))
        vox, idx = vox[ok], idx[ok]
        hu = unit_to_hu(syn.image.astype(np.float32))
        vals = ndimage.map_coordinates(hu, idx.T, order=1, mode="nearest")
        labs = ndimage.map_coordinates(syn.labels, idx.T, order=0, mode="nearest")
        out_ct = np.asarray(ct.array, np.float32).copy()
        out_ct[tuple(vox.T)] = vals
        out_mask = np.asarray(mask.array).copy()
        sel = tuple(vox.T)
        out_mask[sel] = np.where(out_mask[sel] == label, 0, out_mask[sel])
        hit = labs == label
        out_mask[tuple(vox[hit].T)] = label
        save_nifti(Volume(out_ct, ct.affine.copy()), layout.patient(syn.key), dtype=np.float32)
        save_nifti(Volume(out_mask, mask.affine.copy()), layout.patient(syn.key, mask=True),
                   dtype=label_dtype(out_mask))
        log.debug("%s: painted %d patient voxels", syn.key, len(vox))
        return layout.patient(syn.key)
