"""The corrected straightening of one case (default mode), as pure functions on Volumes.

1. Body centroids in world mm (:mod:`straighten.orient`).
2. A smooth arc-length spline through them (:class:`~straighten.centerline.Centerline`),
   extended straight past both ends, with rotation-minimising frames started from the
   anatomical anterior direction at the middle of the spine; rows every ``spacing[0]`` mm with
   ``rigid`` (default: each body resampled rigidly, bending in the discs) or ``smooth`` (normal
   planes of the spline) frames, see :mod:`straighten.frames`.
3. One straightened volume (rows, AP, LR) covering every target's window is sampled directly from
   the patient grid (labels nearest, CT linear with -1024 HU outside); labels are de-pedicled in
   this frame; each target's block is a window of it with the target's body centroid at the block
   centre (exact in AP/LR; within half a row along the curve, the exact row is stored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from data.volume import Volume
from layout.blocks import BlockGeometry
from spine.anatomy import order_labels, rank
from straighten.centerline import Centerline
from straighten.frames import build_rows
from straighten.depedicle import depedicle
from straighten.orient import body_centroids
from straighten.resample import rows_touching_volume, sample_labels_smooth, sample_rows_multi

CT_FILL_HU = -1024.0


def _smooth_labels(mode: str, in_spacing, out_spacing) -> bool:
    if mode == "auto":
        return float(np.max(in_spacing)) > 1.5 * float(np.min(out_spacing))
    return mode == "linear"


@dataclass
class Block:
    label: int
    geometry: BlockGeometry
    label_array: np.ndarray          # (H, W_ap, W_lr) uint
    ct_array: Optional[np.ndarray]   # (H, W_ap, W_lr) float32 HU or None


@dataclass
class StraightenedSpine:
    """The straightened grid of a case: rows along the curve."""

    s_mm: np.ndarray        # (R,) arc length of each row
    points_mm: np.ndarray   # (R, 3)
    tangents: np.ndarray    # (R, 3) caudal
    posterior: np.ndarray   # (R, 3)
    right: np.ndarray       # (R, 3)
    target_s: Dict[int, float]
    bodies_mm: Dict[int, np.ndarray]


def cut_ends(labels: Sequence[int], cut: Sequence[int], min_knots: int = 2) -> List[int]:
    """The labels of ``cut`` (not complete: cut by the field of view, no body in the label,
    metal) at either end of the spine's order, as long as ``min_knots`` others remain."""
    labs = order_labels(list(labels))
    lo, hi = 0, len(labs)
    while lo < hi and labs[lo] in cut:
        lo += 1
    while hi > lo and labs[hi - 1] in cut:
        hi -= 1
    if hi - lo < min_knots:
        return []
    return labs[:lo] + labs[hi:]


def build_spine(label_vol: Volume, centroids_vox: Dict[int, np.ndarray], targets: Sequence[int],
                block_rows: int, step_mm: float, subreg: Optional[Volume] = None,
                frames: str = "rigid", cut: Sequence[int] = ()) -> StraightenedSpine:
    """Centre line, rows and frames covering the blocks of ``targets``.

    ``cut``: labels that are not complete (``straighten/completeness.py``: cut by the field of
    view, no body left in the label, metal). Those at the ends of the spine are not knots of the
    centre line: the centroid of a cut body's visible part is not where the body is (nor is
    that of a label whose crop left only the arch), and as the end knot of the not-a-knot spline
    it would tilt the frame of the next, complete vertebra (up to 7.6 degrees on the phantom
    crops of ``scripts/completeness_study.py``) and change its heights. Their blocks lie on the
    straight extension of the curve past its end, at the projection of their body centroid, so
    the complete vertebrae are straightened exactly as if the cut ones were not in the scan."""
    whole_mm = {l: label_vol.voxel_to_world(np.asarray(c)[None])[0]
                for l, c in centroids_vox.items()}
    ends = cut_ends(whole_mm, cut)
    bodies, anterior, body_pts = body_centroids(
        label_vol, {l: c for l, c in whole_mm.items() if l not in ends}, subreg)
    labs = order_labels(bodies)
    curve = Centerline(np.array([bodies[l] for l in labs]))
    knot_u, rows = build_rows(curve, labs, anterior, frames, body_pts,
                              margin_mm=0.5 * float(label_vol.spacing.max()))
    where = dict(zip(labs, knot_u))
    if ends:
        near = {l: labs[0] if rank(l) < rank(labs[0]) else labs[-1] for l in ends}
        extra, _, _ = body_centroids(label_vol, {l: whole_mm[l] for l in
                                                 set(ends) | set(near.values())},
                                     subreg, anterior, check=False)
        for lab in ends:
            ref = near[lab]
            p_ref, t_ref = rows(np.array([where[ref]]))[:2]
            where[lab] = where[ref] + float((extra[lab] - p_ref[0]) @ t_ref[0])
            bodies[lab] = extra[lab]
    t_u = [where[t] for t in targets]
    # rows on the lattice u = k * step_mm of the curve's own arc length, so that a vertebra's
    # block samples the same points whichever other targets (or cut vertebrae) are straightened
    s0 = np.floor((min(t_u) - (block_rows // 2) * step_mm) / step_mm) * step_mm
    n_rows = int(round((max(t_u) - min(t_u)) / step_mm)) + block_rows + 1
    u = s0 + step_mm * np.arange(n_rows)
    pts, axis0, post, right = rows(u)
    return StraightenedSpine(u, pts, axis0, post, right, dict(zip(targets, t_u)), bodies)


def straighten_case(label_vol: Volume, centroids_vox: Dict[int, np.ndarray],
                    targets: Sequence[int], ct_vol: Optional[Volume] = None,
                    subreg: Optional[Volume] = None, block_size=(256, 256, 64),
                    spacing=(1.0, 1.0, 1.0), keep_arches: bool = False,
                    frames: str = "rigid", label_interp: str = "auto",
                    cut: Sequence[int] = ()) -> List[Block]:
    """Blocks (corrected mode) for the ``targets`` (VerSe ids with a centroid); ``cut``: the
    labels cut by the field of view, see :func:`build_spine`.
    ``label_interp``: 'nearest', 'linear' (per-label indicator interpolation, see
    :func:`~straighten.resample.sample_labels_smooth`) or 'auto' (linear when the scan's
    coarsest voxel side exceeds 1.5 x the finest output spacing)."""
    targets = [t for t in order_labels(targets) if t in centroids_vox]
    if not targets:
        return []
    h, w_ap, w_lr = (int(x) for x in block_size)
    dz, dy, dx = (float(x) for x in spacing)
    sp = build_spine(label_vol, centroids_vox, targets, h, dz, subreg, frames, cut)
    c_ap, c_lr = w_ap // 2, w_lr // 2
    radius = float(np.hypot(w_ap * dy, w_lr * dx))
    active = rows_touching_volume(label_vol, sp.points_mm, radius)
    e1, e2 = sp.posterior, sp.right
    args = (sp.points_mm, e1, e2, w_ap, w_lr, (dy, dx), c_ap, c_lr)
    sources = [(label_vol, 0, 0, label_vol.array.dtype)]
    if ct_vol is not None:
        sources.append((ct_vol, 1, CT_FILL_HU, np.float32))
    sampled = sample_rows_multi(sources, *args, active=active)
    lab, ct = sampled[0], (sampled[1] if ct_vol is not None else None)
    if _smooth_labels(label_interp, label_vol.spacing, spacing):
        halo = int(np.ceil(label_vol.spacing.max() / dz)) + 1
        lab = sample_labels_smooth(label_vol, lab, *args, halo_rows=halo, active=active)
    if not keep_arches:
        lab = depedicle(lab, c_ap, c_lr)
    blocks = []
    for t in targets:
        exact = (sp.target_s[t] - sp.s_mm[0]) / dz
        r0 = int(round(exact)) - h // 2
        rows = slice(r0, r0 + h)
        geo = BlockGeometry(
            points_mm=sp.points_mm[rows], step_si_mm=sp.tangents[rows] * dz,
            step_ap_mm=e1[rows] * dy, step_lr_mm=e2[rows] * dx, centre_ap=c_ap, centre_lr=c_lr,
            block_shape=(h, w_ap, w_lr), patient_affine=label_vol.affine,
            patient_shape=tuple(label_vol.shape), target_label=t, target_row=exact - r0,
            mode=f"corrected-{frames}", extra={"body_centroid_mm": sp.bodies_mm[t]})
        blocks.append(Block(t, geo, lab[rows], None if ct is None else ct[rows]))  # views
    return blocks
