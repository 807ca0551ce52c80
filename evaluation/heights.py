"""Anterior / middle / posterior vertebral-body heights in mm on a straightened label block.

Pure functions on arrays plus spacing (docs/METHOD.md §6, docs/EVALUATION.md §2). Block axes follow the
straightened-block contract: axis0 = SI (cranial at row 0), axis1 = AP (anterior at 0),
axis2 = LR. ``spacing_mm`` is the block's voxel size per array axis.

The rule (kept from the original, each step documented):

1. **Column heights**: for every (AP, LR) column, the number of foreground voxels along SI times
   the SI spacing (``column_heights_mm``), for the pseudo-healthy ("syn") and real ("ori") body.
2. **Central 40 % of LR slices** of the *synthetic* body's LR extent (``lr_fraction``).
3. **Thirds from the synthetic extent**: the synthetic body's AP depth [first, last foreground
   AP index] split into three equal parts (anterior, middle, posterior); a column belongs to the
   third containing its centre. The real body is measured on the same columns, so RHLV compares
   like with like even when a fracture shortens the real body's AP depth.
4. **0.7 × centre-column filter** (``column_ratio``): columns shorter than 0.7 × the centre
   column are dropped (they are the rounded body edges). The centre column is, in the
   *sagittal* variant, the column at the middle of the AP extent in the same LR slice; in the
   *coronal* variant, the column at the middle of the central LR range in the same AP slice.
   ``column_filter`` says which heights the filter looks at: ``"syn"`` (default: the synthetic
   body's heights select the columns, then both bodies are averaged over the *same* columns; a
   real wedge fracture's short anterior columns are kept, not filtered out), ``"each"`` (each
   body filtered by its own centre column, as we read the original), ``"none"`` (all columns
   inside the synthetic body; matches the phantom truth definition exactly).
5. **Average** over the kept columns of the central slices, per third -> H (mm).
6. **Footprint alignment** (``align_shift_vox``, default 6): before measuring, the real body is
   shifted in AP/LR by the integer offset (up to ±6 voxels) that maximises the overlap of the two
   axial footprints. A GAN's pseudo-healthy body is generated in the real block's columns, so
   the offset found there is 0; for the phantom oracle (the healthy twin straightened on its own,
   whose body centroid differs from the fractured one's) it removes the 1–3 voxel AP offset that
   would otherwise count empty columns as lost height. 0 disables it. SI offsets do not matter
   (heights are counts).
7. **The body itself** (``body``): ``"largest"`` (default) measures each mask's largest 3D
   (26-connected) component only, so blobs a generator leaves beside the body (islands far
   posterior, a detached fragment) cannot stretch the AP extent that defines the thirds -- one
   posterior island made a whole posterior third 1-5 mm tall in the phantom study (issue #12).
   ``"all"`` (the original) measures every foreground voxel.
8. **Coronal plane** (``plane='coronal'``): ``coronal_thirds='lr'`` (default, the authors') splits
   the body into left / middle / right thirds over the central 40 % of its AP depth (the columns
   ``a, m, p`` then name the first, middle and last LR third); ``'ap'`` keeps A/M/P thirds over
   the central LR slab with a coronal centre column.
9. **RHLV** = (H_syn − H_ori) / H_syn per third. Rescaling (``rescale``): ``"none"`` (default,
   a shorter synthetic body gives a negative RHLV and shows the synthesis error) or
   ``"original"`` (the original's: if a synthetic third is shorter than the real one, scale all
   three synthetic heights up by the largest H_ori / H_syn ratio, so no RHLV is negative).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from data.masks import largest_component

THIRDS = ("a", "m", "p")
PLANES = ("sagittal", "coronal")
FILTERS = ("syn", "each", "none")
RESCALES = ("none", "original")
BODIES = ("largest", "all")


@dataclass(frozen=True)
class HeightRule:
    """Parameters of the height rule (see module docstring)."""
    lr_fraction: float = 0.4
    column_ratio: float = 0.7
    column_filter: str = "syn"
    plane: str = "sagittal"
    rescale: str = "none"
    align_shift_vox: int = 6
    body: str = "largest"
    method: str = "ours"   # 'original': the authors' rule (evaluation.heights_original), sagittal only
    coronal_thirds: str = "lr"  # coronal plane: 'lr' = left/middle/right thirds over the central AP
                                # slab (the authors'); 'ap' = A/M/P thirds over the central LR slab

    def __post_init__(self):
        if not 0 < self.lr_fraction <= 1:
            raise ValueError(f"lr_fraction must be in (0, 1], got {self.lr_fraction}")
        if self.column_filter not in FILTERS:
            raise ValueError(f"column_filter must be one of {FILTERS}")
        if self.plane not in PLANES:
            raise ValueError(f"plane must be one of {PLANES}")
        if self.rescale not in RESCALES:
            raise ValueError(f"rescale must be one of {RESCALES}")
        if self.body not in BODIES:
            raise ValueError(f"body must be one of {BODIES}")
        if self.coronal_thirds not in ("lr", "ap"):
            raise ValueError("coronal_thirds must be 'lr' or 'ap'")
        if self.method not in ("ours", "original"):
            raise ValueError("method must be 'ours' or 'original'")


def target_mask(label_array: np.ndarray, label: int) -> np.ndarray:
    """Boolean mask of ``label`` in a label block; a binary (0/1) block is taken as the target."""
    arr = np.asarray(label_array)
    m = arr == label
    if m.any():
        return m
    if arr.max(initial=0) == 1:
        return arr > 0
    return m


def column_heights_mm(mask_si_ap_lr: np.ndarray, spacing_si_mm: float) -> np.ndarray:
    """(AP, LR) map of SI foreground counts × SI spacing, in mm."""
    m = np.asarray(mask_si_ap_lr, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"expected a 3D (SI, AP, LR) mask, got shape {m.shape}")
    return m.sum(axis=0).astype(np.float64) * float(spacing_si_mm)


def _extent(profile: np.ndarray) -> Optional[tuple]:
    idx = np.flatnonzero(profile)
    return (int(idx[0]), int(idx[-1])) if idx.size else None


def central_lr_slices(mask_si_ap_lr: np.ndarray, fraction: float = 0.4) -> np.ndarray:
    """Boolean (LR,) selector of the central ``fraction`` of the body's LR extent (slice centres
    within ±fraction/2 of the extent's width around its middle; at least the middle slice)."""
    m = np.asarray(mask_si_ap_lr, dtype=bool)
    sel = np.zeros(m.shape[2], dtype=bool)
    ext = _extent(m.any(axis=(0, 1)))
    if ext is None:
        return sel
    lo, hi = ext
    width = hi + 1 - lo
    centre = (lo + hi + 1) / 2.0
    z = np.arange(m.shape[2]) + 0.5
    sel = np.abs(z - centre) <= fraction * width / 2.0 + 1e-9
    if not sel.any():
        sel[int(centre)] = True
    return sel


def third_index_ap(mask_si_ap_lr: np.ndarray) -> np.ndarray:
    """(AP,) int array: 0/1/2 for anterior/middle/posterior thirds of the body's AP extent,
    -1 outside it."""
    m = np.asarray(mask_si_ap_lr, dtype=bool)
    out = np.full(m.shape[1], -1, dtype=int)
    ext = _extent(m.any(axis=(0, 2)))
    if ext is None:
        return out
    lo, hi = ext
    depth = hi + 1 - lo
    y = np.arange(lo, hi + 1)
    out[lo:hi + 1] = np.minimum(2, ((y + 0.5 - lo) * 3.0 / depth).astype(int))
    return out


def _centre_reference(h_ap_lr: np.ndarray, ap_ext: tuple, lr_sel: np.ndarray,
                      plane: str) -> np.ndarray:
    """(AP, LR) map of the centre-column height each column is compared with."""
    if plane == "sagittal":
        yc = (ap_ext[0] + ap_ext[1]) // 2
        return np.broadcast_to(h_ap_lr[yc:yc + 1, :], h_ap_lr.shape)
    cols = np.flatnonzero(lr_sel)
    zc = int(cols[len(cols) // 2])
    return np.broadcast_to(h_ap_lr[:, zc:zc + 1], h_ap_lr.shape)


def column_selection(h_syn: np.ndarray, h_ori: np.ndarray, syn_mask: np.ndarray,
                     rule: HeightRule) -> tuple:
    """Boolean (AP, LR) selections (for syn, for ori) of the columns averaged by the rule."""
    lr_sel = central_lr_slices(syn_mask, rule.lr_fraction)
    thirds = third_index_ap(syn_mask)
    region = (thirds[:, None] >= 0) & lr_sel[None, :] & (h_syn > 0)
    if rule.column_filter == "none" or not region.any():
        return region, region
    ap_ext = _extent(thirds >= 0)
    ref_syn = _centre_reference(h_syn, ap_ext, lr_sel, rule.plane)
    keep_syn = region & (h_syn > rule.column_ratio * ref_syn)
    if rule.column_filter == "syn":
        return keep_syn, keep_syn
    ref_ori = _centre_reference(h_ori, ap_ext, lr_sel, rule.plane)
    keep_ori = (thirds[:, None] >= 0) & lr_sel[None, :] & (h_ori > rule.column_ratio * ref_ori)
    return keep_syn, keep_ori


def align_footprint(syn: np.ndarray, ori: np.ndarray, max_shift: int = 6) -> tuple:
    """(ori shifted in AP/LR with zero fill, (dy, dz)) maximising the overlap of the axial
    footprints of ``syn`` and ``ori``; ties go to the smallest shift."""
    if max_shift <= 0:
        return ori, (0, 0)
    fs = syn.any(axis=0)
    fo = ori.any(axis=0)
    best, best_key = (0, 0), None
    for dy in range(-max_shift, max_shift + 1):
        for dz in range(-max_shift, max_shift + 1):
            ov = int((fs & _shift2d(fo, dy, dz)).sum())
            key = (ov, -(abs(dy) + abs(dz)))
            if best_key is None or key > best_key:
                best, best_key = (dy, dz), key
    if best == (0, 0):
        return ori, best
    return np.stack([_shift2d(sl, *best) for sl in ori]), best


def _shift2d(a: np.ndarray, dy: int, dz: int) -> np.ndarray:
    """Shift a 2D array by (dy, dz) with zero fill."""
    out = np.zeros_like(a)
    ys, yd = (slice(0, a.shape[0] - dy), slice(dy, None)) if dy >= 0 else (slice(-dy, None), slice(0, dy))
    zs, zd = (slice(0, a.shape[1] - dz), slice(dz, None)) if dz >= 0 else (slice(-dz, None), slice(0, dz))
    out[yd, zd] = a[ys, zs]
    return out


def _mean_per_third(h: np.ndarray, keep: np.ndarray, thirds: np.ndarray) -> np.ndarray:
    out = np.full(3, np.nan)
    for t in range(3):
        sel = keep & (thirds[:, None] == t)
        if sel.any():
            out[t] = float(h[sel].mean())
    return out


def measure_pair(syn_mask: np.ndarray, ori_mask: np.ndarray, spacing_mm: Sequence[float],
                 rule: HeightRule = HeightRule()) -> dict:
    """A/M/P heights (mm) of a pseudo-healthy and a real body on the same block grid, and RHLV.

    Returns ``{"H_syn": (3,), "H_ori": (3,), "RHLV": (3,), "n_columns": (3,), "scale": float,
    "shift_vox": (dy, dz)}``
    (order anterior, middle, posterior; NaN where a third has no columns).
    """
    syn = np.asarray(syn_mask, dtype=bool)
    ori = np.asarray(ori_mask, dtype=bool)
    if syn.shape != ori.shape:
        raise ValueError(f"synthetic mask {syn.shape} and real mask {ori.shape} differ in shape")
    if not syn.any():
        raise ValueError("synthetic (pseudo-healthy) mask is empty")
    if rule.body == "largest":
        syn, ori = largest_component(syn), largest_component(ori)
    if rule.plane == "coronal" and rule.coronal_thirds == "lr":
        # the authors' coronal RHLV: the same rule with LR and AP swapped (thirds across LR,
        # slab = the central AP fraction, centre column = the middle of the LR extent)
        r = measure_pair(np.swapaxes(syn, 1, 2), np.swapaxes(ori, 1, 2),
                         (spacing_mm[0], spacing_mm[2], spacing_mm[1]), replace(rule, plane="sagittal"))
        r["shift_vox"] = tuple(reversed(r["shift_vox"]))
        return r
    ori, shift = align_footprint(syn, ori, rule.align_shift_vox)
    h_syn = column_heights_mm(syn, spacing_mm[0])
    h_ori = column_heights_mm(ori, spacing_mm[0])
    keep_syn, keep_ori = column_selection(h_syn, h_ori, syn, rule)
    thirds = third_index_ap(syn)
    H_syn = _mean_per_third(h_syn, keep_syn, thirds)
    H_ori = _mean_per_third(h_ori, keep_ori, thirds)
    scale = 1.0
    if rule.rescale == "original":
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.nanmax(H_ori / H_syn) if np.isfinite(H_ori / H_syn).any() else 1.0
        scale = float(max(1.0, ratio))
        H_syn = H_syn * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        rhlv = (H_syn - H_ori) / H_syn
    n = np.array([int((keep_syn & (thirds[:, None] == t)).sum()) for t in range(3)])
    return {"H_syn": H_syn, "H_ori": H_ori, "RHLV": rhlv, "n_columns": n, "scale": scale,
            "shift_vox": shift}


def measure_own(mask: np.ndarray, spacing_mm: Sequence[float],
                rule: HeightRule = HeightRule()) -> np.ndarray:
    """A/M/P heights (mm) of one body measured on its own extent (no synthesis): (3,)."""
    return measure_pair(mask, mask, spacing_mm, rule)["H_ori"]
