"""Anatomical orientation and vertebral-body centroids, in world millimetres (RAS+).

Anterior comes from the affine (RAS+ world: anterior = +y), made orthogonal to the local spine
tangent. Each vertebra's *body* is found in its own local frame (tangent, posterior, right):
the label is rasterised at 1 mm around its whole-vertebra centroid and de-pedicled from the
anterior side (:mod:`straighten.depedicle`), or, when a VerSe sub-region map is given, the body
is the label's voxels with sub-region 49/50. The anterior direction is then checked against
anatomy: with a canal present, the body side of the canal holds most of the label's voxels near
the mid-sagittal plane; if most vertebrae disagree, a warning is logged and anterior is flipped.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import numpy as np
from scipy import ndimage

from data.volume import Volume
from spine.anatomy import order_labels
from straighten.depedicle import canal_row

log = logging.getLogger(__name__)
ANTERIOR_WORLD = np.array([0.0, 1.0, 0.0])
BODY_SUBREGIONS = (49, 50)


def local_tangents(centroids_mm: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    """Unit caudal tangent at each vertebra from its neighbours (world -z for a lone one)."""
    labs = order_labels(centroids_mm)
    pts = np.array([centroids_mm[l] for l in labs])
    out = {}
    for i, lab in enumerate(labs):
        if len(labs) == 1:
            t = np.array([0.0, 0.0, -1.0])
        else:
            t = pts[min(i + 1, len(labs) - 1)] - pts[max(i - 1, 0)]
        out[lab] = t / np.linalg.norm(t)
    return out


def local_frame(tangent: np.ndarray, anterior: np.ndarray = ANTERIOR_WORLD):
    """(tangent caudal, posterior, right) unit vectors; posterior = -(anterior made orthogonal)."""
    a = anterior - (anterior @ tangent) * tangent
    if np.linalg.norm(a) < 1e-6:  # spine along the AP axis: fall back to world z
        a = np.array([0.0, 0.0, 1.0]) - tangent[2] * tangent
    a /= np.linalg.norm(a)
    return tangent, -a, np.cross(tangent, a)


def _label_points(label_vol: Volume, lab: int, boxes) -> np.ndarray:
    """World coordinates (N, 3) of the voxels of label ``lab``."""
    if lab - 1 >= len(boxes) or boxes[lab - 1] is None:
        return np.zeros((0, 3))
    sl = boxes[lab - 1]
    idx = np.argwhere(label_vol.array[sl] == lab) + [s.start for s in sl]
    return label_vol.voxel_to_world(idx)


def split_body(label_vol: Volume, lab: int, pts: np.ndarray, centre: np.ndarray, frame,
               step_mm: float = 1.0):
    """Boolean (N,) body membership of the label's world points ``pts``, and the (anterior,
    posterior) voxel counts within 5 mm of the mid-sagittal plane (None when no canal was found).
    The label is resampled (nearest) on a ``step_mm`` grid in the local frame, so the rule does
    not depend on the scan's voxel size."""
    t, post, right = frame
    rel = pts - centre
    loc = np.stack([rel @ t, rel @ post, rel @ right], axis=1)
    lo = np.floor(loc.min(0) / step_mm) - 1
    n = (np.ceil(loc.max(0) / step_mm) + 2 - lo).astype(int)
    axes = [(lo[i] + np.arange(n[i])) * step_mm for i in range(3)]
    c_ap, c_lr = int(-lo[1]), int(-lo[2])
    lr = axes[2][max(c_lr - 1, 0):c_lr + 2]  # the mid-sagittal columns only
    g = (centre + axes[0][:, None, None, None] * t + axes[1][None, :, None, None] * post
         + lr[None, None, :, None] * right)
    vox = label_vol.world_to_voxel(g.reshape(-1, 3))
    vals = ndimage.map_coordinates(label_vol.array, vox.T, order=0, mode="constant", cval=0)
    col = (vals.reshape(n[0], n[1], len(lr)) == lab).any(axis=2)
    canal = canal_row(col, int(np.clip(c_ap, 0, n[1] - 1)), start="anterior")
    if canal is None or canal >= n[1]:
        return np.ones(len(pts), bool), None
    body = loc[:, 1] < axes[1][canal] - 0.5 * step_mm
    near_mid = np.abs(loc[:, 2]) < 5.0
    return body, (int((body & near_mid).sum()), int((~body & near_mid).sum()))


def body_centroids(label_vol: Volume, centroids_mm: Dict[int, np.ndarray],
                   subreg: Optional[Volume] = None, anterior: np.ndarray = ANTERIOR_WORLD,
                   check: bool = True):
    """``({label: body centroid mm}, anterior_used, {label: body points (N, 3) mm})``.
    ``centroids_mm`` are whole-vertebra centroids (world mm); labels absent from the map keep
    their given centroid (and have no points)."""
    tangents = local_tangents(centroids_mm)
    boxes = ndimage.find_objects(label_vol.array)
    out, votes, body_pts = {}, [], {}
    for lab, c in centroids_mm.items():
        pts = _label_points(label_vol, lab, boxes)
        if len(pts) == 0:
            out[lab] = np.asarray(c, float)
            continue
        if subreg is not None:
            idx = np.rint(label_vol.world_to_voxel(pts)).astype(int)
            body = np.isin(subreg.array[tuple(idx.T)], BODY_SUBREGIONS)
            if body.sum() > 0.05 * len(pts):
                out[lab], body_pts[lab] = pts[body].mean(0), pts[body]
                continue
        body, counts = split_body(label_vol, lab, pts, c, local_frame(tangents[lab], anterior))
        out[lab], body_pts[lab] = pts[body].mean(0), pts[body]
        if counts is not None:
            votes.append(counts[0] >= counts[1])
    if check and votes and sum(votes) < 0.5 * len(votes):
        log.warning("%s: bodies look posterior of the canal in %d of %d vertebrae; the affine's "
                    "anterior direction seems wrong, flipping it", label_vol.path,
                    len(votes) - sum(votes), len(votes))
        return body_centroids(label_vol, centroids_mm, subreg, -anterior, check=False)
    return out, anterior, body_pts
