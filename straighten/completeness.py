"""Is each vertebra whole in the scan? Decided once, at straightening, in patient space.

Most clinical scans cut their first and last vertebrae. A cut body is shorter than it is, so it
must never be graded as a fracture nor serve as another vertebra's height reference. Every
vertebra label of a case gets a :class:`Completeness` here; straightening stores it in each
block's geometry (``extra_complete``, ``extra_reason``, and the case-wide list of incomplete
labels ``extra_incomplete_labels``) and in ``summary.csv``; every later stage reads it from
there (:func:`layout.blocks.load_completeness`).

Rules, on the vertebral *body* (found as for the centroids, :mod:`straighten.orient`):

* ``truncated`` when the body reaches the scan's edge: a body voxel lies within
  ``edge_layers`` voxel layers (default 2) or ``edge_mm`` (default 2 mm) of a face of the volume,
  whichever is wider. With 2.5 mm slices this is the outer two slices beside the edge one.
* ``truncated`` when the vertebra is the first or last labelled one, its label reaches that
  margin (an arch or the body is cut), and its body's extent along the spine is below
  ``min_extent_ratio`` (0.75) of the next vertebra inwards (the rest of the body is missing).
* ``truncated`` when the label has no centroid (the size rule of
  :mod:`straighten.location_json` dropped it as a partial vertebra at the scan's end).
* ``incomplete`` when the label holds no vertebral body (under 5 % of its voxels, e.g. a label
  map cut to the arch), or, with a CT, when over ``metal_fraction`` (0.5 %) of the body's voxels
  are above ``metal_hu`` (2,500 HU): screws or cement change the measured shape.

A vertebra inside the spine that is merely short is never called truncated here: that is what a
fracture looks like, and grading decides it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
from scipy import ndimage

from data.volume import Volume
from spine.anatomy import (COMPLETE, INCOMPLETE, TRUNCATED, VERTEBRA_LABELS,  # noqa: F401
                           Completeness, order_labels)

@dataclass(frozen=True)
class CompletenessRule:
    edge_layers: int = 2
    edge_mm: float = 2.0
    min_extent_ratio: float = 0.75
    min_body_fraction: float = 0.05
    metal_hu: float = 2500.0
    metal_fraction: float = 0.005


def _face_name(vol: Volume, axis: int, last: bool) -> str:
    """'top' / 'bottom' / 'anterior' ... edge of the scan for an array axis."""
    code = vol.orientation[axis]
    names = {"S": "top", "I": "bottom", "A": "anterior", "P": "posterior", "L": "left", "R": "right"}
    opposite = {"S": "I", "I": "S", "A": "P", "P": "A", "L": "R", "R": "L"}
    if code in names:  # the axis' last index points towards ``code``
        return names[code] if last else names[opposite[code]]
    return f"{'last' if last else 'first'} axis-{axis}"


def _margin_vox(vol: Volume, rule: CompletenessRule) -> np.ndarray:
    """(3,) margin per array axis, in voxels."""
    sp = np.asarray(vol.spacing, float)
    return np.maximum(float(rule.edge_layers), rule.edge_mm / sp)


def edge_contact(vol: Volume, index_lo: np.ndarray, index_hi: np.ndarray,
                 rule: CompletenessRule) -> Optional[str]:
    """Name of the scan edge that the index box [lo, hi] comes within the margin of, or None."""
    shape = np.asarray(vol.shape, float)
    margin = _margin_vox(vol, rule)
    gaps = []
    for ax in range(3):
        gaps.append((index_lo[ax] / margin[ax], ax, False))
        gaps.append(((shape[ax] - 1 - index_hi[ax]) / margin[ax], ax, True))
    g, ax, last = min(gaps)
    if g > 1.0 + 1e-9:
        return None
    gap_mm = (index_hi[ax] if last else index_lo[ax])
    gap_mm = (shape[ax] - 1 - gap_mm if last else gap_mm) * float(vol.spacing[ax])
    where = _face_name(vol, ax, last)
    return f"body cut by the scan's {where} edge" if gap_mm < 0.5 * float(vol.spacing[ax]) else \
        f"body {gap_mm:.1f} mm from the scan's {where} edge"


def assess(label_vol: Volume, centroids_vox: Dict[int, np.ndarray],
           body_pts_mm: Dict[int, np.ndarray], tangents: Dict[int, np.ndarray],
           ct_vol: Optional[Volume] = None,
           rule: CompletenessRule = CompletenessRule()) -> Dict[int, Completeness]:
    """:class:`Completeness` of every vertebra label present in ``label_vol``.

    ``centroids_vox``: the labels that got a centroid; ``body_pts_mm``: body voxels (world mm)
    per label; ``tangents``: unit caudal spine direction per label."""
    arr = label_vol.array
    boxes = ndimage.find_objects(arr)
    present = [l for l in range(1, len(boxes) + 1) if boxes[l - 1] is not None]
    present = [l for l in present if l in VERTEBRA_LABELS]
    order = order_labels(present)
    out: Dict[int, Completeness] = {}
    extent = {}
    for lab in order:
        if lab not in centroids_vox:
            out[lab] = Completeness(TRUNCATED, "partial vertebra at the end of the scan "
                                    "(too small to get a centroid)")
            continue
        pts = body_pts_mm.get(lab)
        n_label = int((arr[boxes[lab - 1]] == lab).sum())
        if pts is None or len(pts) < max(1, rule.min_body_fraction * n_label):
            out[lab] = Completeness(INCOMPLETE, "no vertebral body in the label")
            continue
        idx = label_vol.world_to_voxel(np.asarray(pts, float))
        edge = edge_contact(label_vol, idx.min(0), idx.max(0), rule)
        if edge is not None:
            out[lab] = Completeness(TRUNCATED, edge)
            continue
        if ct_vol is not None:
            vox = np.rint(idx).astype(int)
            hu = ct_vol.array[tuple(vox.T)]
            frac = float(np.mean(hu > rule.metal_hu))
            if frac > rule.metal_fraction:
                out[lab] = Completeness(INCOMPLETE, f"metal in the body ({100 * frac:.1f} % of its "
                                        f"voxels above {rule.metal_hu:.0f} HU)")
                continue
        t = np.asarray(tangents.get(lab, (0.0, 0.0, 1.0)), float)
        proj = np.asarray(pts, float) @ t
        extent[lab] = float(proj.max() - proj.min())
        out[lab] = Completeness()
    _end_size_rule(label_vol, order, boxes, extent, out, rule)
    return out


def _end_size_rule(label_vol, order, boxes, extent, out, rule) -> None:
    """Flag an end vertebra whose label is cut and whose body is short beside its neighbour."""
    for end, inner in ((order[:1], order[1:2]), (order[-1:], order[-2:-1])):
        if not end or not inner:
            continue
        lab, nb = end[0], inner[0]
        if not out[lab].complete or nb not in extent:
            continue
        sl = boxes[lab - 1]
        lo = np.array([s.start for s in sl], float)
        hi = np.array([s.stop - 1 for s in sl], float)
        label_edge = edge_contact(label_vol, lo, hi, rule)
        if label_edge is None or extent[lab] >= rule.min_extent_ratio * extent[nb]:
            continue
        out[lab] = Completeness(TRUNCATED, f"end vertebra cut by the scan: label reaches the edge "
                                f"and its body is {extent[lab]:.0f} mm long against "
                                f"{extent[nb]:.0f} mm for the next one")


def case_completeness(label_vol: Volume, centroids_vox: Dict[int, np.ndarray],
                      subreg: Optional[Volume] = None, ct_vol: Optional[Volume] = None,
                      rule: CompletenessRule = CompletenessRule()) -> Dict[int, Completeness]:
    """:func:`assess` with the bodies found as straightening finds them."""
    from straighten.orient import body_centroids, local_tangents
    whole_mm = {l: label_vol.voxel_to_world(np.asarray(c, float)[None])[0]
                for l, c in centroids_vox.items()}
    if not whole_mm:
        return assess(label_vol, {}, {}, {}, ct_vol, rule)
    _, _, body_pts = body_centroids(label_vol, whole_mm, subreg)
    return assess(label_vol, centroids_vox, body_pts, local_tangents(whole_mm), ct_vol, rule)
