"""Vertebral-body landmarks in 3D from a label map: 6 points per body (radiograph.geometry's
``sa sm sp ia im ip``) and S1's superior endplate corners, in world mm.

Each body is found as straightening finds it (:func:`straighten.orient.body_centroids`: the
sub-region map when given, else the part of the label anterior of the canal), in the vertebra's
own frame (cranio-caudal axis: the body's direction of least extent averaged with its
neighbours', else the spine's tangent; anterior from the affine), in its mid-sagittal slab
(``slab_mm`` either side of its median left-right position):

* the four corners are the outline's extreme points along the four diagonals (anterior-superior
  = most anterior + superior, ...), as a reader marks them on a film, whatever the body's tilt
  or shear;
* the mid-endplate points are the top and bottom of the column along the body's axis through
  the middle of the superior corners.

Every point is then refined to the sub-voxel surface: where the body's occupancy, interpolated
trilinearly and averaged over parallel lines, crosses 0.5 (heights of healthy phantom bodies
within 0.35 mm at 1 mm voxels and within a slice at 2.5-3 mm slices: tests/test_radiograph.py).

Completeness comes from :func:`straighten.completeness.case_completeness` (a body cut by the
field of view is flagged ``visible = False`` and never graded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from data.centroids import centroids_from_mask
from data.volume import Volume
from radiograph.geometry import BODY_POINTS, S1, S1_POINTS
from spine.anatomy import VERTEBRA_LABELS, neighbour_list

@dataclass(frozen=True)
class LandmarkRule:
    slab_mm: float = 3.0        # half-width of the mid-sagittal slab
    band_mm: float = 1.5        # half-width of each column (at least 0.6 voxel)
    s1_top_mm: float = 20.0     # S1: the sacrum's part within this distance of its top
    subvoxel: bool = True       # endplates where the interpolated body occupancy crosses 0.5


def _column(a, s, centre, half):
    sel = np.abs(a - centre) <= half
    if not sel.any():
        sel = np.abs(a - centre) <= np.abs(a - centre).min() + 1e-6
    return s[sel].max(), s[sel].min()


def _points_in_frame(pts, c, t, ant, right, rule, half_vox):
    d = pts - c
    x, a, s = d @ right, d @ ant, -(d @ t)          # right, anterior, cranial
    xm = np.median(x)
    keep = np.abs(x - xm) <= max(rule.slab_mm, half_vox[0])
    return a[keep], s[keep], xm


def body_sampler(mask: Volume, pts: np.ndarray):
    """A function world mm (N, 3) -> the body's occupancy in [0, 1] by trilinear interpolation
    of its voxels (``pts``: their centres), over their bounding box only."""
    from scipy.ndimage import map_coordinates
    idx = np.rint(mask.world_to_voxel(pts)).astype(int)
    lo = idx.min(0) - 2
    sub = np.zeros(tuple(idx.max(0) - lo + 3), np.float32)
    sub[tuple((idx - lo).T)] = 1.0

    def sample(world):
        v = mask.world_to_voxel(np.asarray(world, float).reshape(-1, 3)) - lo
        return map_coordinates(sub, v.T, order=1, mode="constant", cval=0.0)
    return sample


def _refine(sample, p0, t, ant, right, top, bot, band, slab, step=0.2):
    """Top and bottom of the column through ``p0`` along the cranial axis −t: where the mean
    occupancy of 5 × 3 parallel lines (±``band`` AP, ±``slab`` LR) crosses 0.5, linearly
    interpolated between samples ``step`` mm apart."""
    s = np.arange(bot - 6.0, top + 6.0 + step, step)
    offs = [(da, dx) for da in np.linspace(-band, band, 5) for dx in np.linspace(-slab, slab, 3)]
    lines = np.stack([p0 + da * ant + dx * right - s[:, None] * t for da, dx in offs])
    prof = sample(lines.reshape(-1, 3)).reshape(len(offs), len(s)).mean(0)
    inside = np.flatnonzero(prof >= 0.5)
    if not len(inside):
        return top, bot
    i, j = inside.max(), inside.min()

    def cross(a, b):                       # s where prof crosses 0.5 between samples a and b
        if not (0 <= b < len(s)):
            return s[a]
        pa, pb = prof[a], prof[b]
        return s[a] + (s[b] - s[a]) * (pa - 0.5) / max(pa - pb, 1e-9)
    return cross(i, i + 1), cross(j, j - 1)


def body_points(pts: np.ndarray, c: np.ndarray, t: np.ndarray, ant: np.ndarray,
                spacing: np.ndarray, axes: np.ndarray, rule: LandmarkRule = LandmarkRule(),
                names=BODY_POINTS, sample=None) -> Dict[str, np.ndarray]:
    """Landmarks (world mm) of one body from its voxel centres ``pts`` (N, 3), its centre ``c``,
    caudal tangent ``t`` and anterior ``ant`` (unit, orthogonal to t); ``axes`` the 3 × 3 voxel
    axis directions (world), ``spacing`` the voxel size. With ``sample`` (:func:`body_sampler`)
    the endplate points are refined to the sub-voxel surface."""
    right = np.cross(ant, -t)                       # R = A × S
    ext = np.abs(axes.T * spacing[:, None])         # per voxel axis, world extent vector
    half = 0.5 * np.array([np.abs(ext @ right).sum(), np.abs(ext @ ant).sum(),
                           np.abs(ext @ t).sum()])
    a, s, xm = _points_in_frame(pts, c, t, ant, right, rule, half)
    if len(a) == 0:
        return {}
    band = max(rule.band_mm, 0.6 * 2 * half[1])
    slab = min(rule.slab_mm, 1.5)
    base = c + xm * right
    up = -t
    out = {}
    # corners: the outline's extreme points along the four diagonals (as read on a film)
    for name, da, ds in (("sa", 1, 1), ("sp", -1, 1), ("ia", 1, -1), ("ip", -1, -1)):
        k = int(np.argmax(da * a + ds * s))
        p = base + a[k] * ant + s[k] * up
        if sample is not None:
            d = (da * ant + ds * up) / np.sqrt(2.0)
            p = _refine_along(sample, p, d, right, slab)
        out[name] = p
    # mid-endplate points: the column (along the body's axis) through the middle of sa-sp
    mid = 0.5 * ((out["sa"] - base) @ ant + (out["sp"] - base) @ ant)
    top, bot = _column(a, s, mid, band)
    if sample is not None:
        top, bot = _refine(sample, base + mid * ant, t, ant, right, top, bot, band, slab)
    out["sm"], out["im"] = base + mid * ant + top * up, base + mid * ant + bot * up
    return {k: v for k, v in out.items() if k in names}


def _refine_along(sample, p, d, right, slab, reach=6.0, step=0.2):
    """Move corner ``p`` along ``d`` to where the mean occupancy of 5 parallel lines
    (±``slab`` along ``right`` only: lines off the diagonal would cut the corner) crosses 0.5,
    outermost."""
    lam = np.arange(-reach, reach + step, step)
    offs = np.linspace(-slab, slab, 5)
    lines = np.stack([p + dx * right + lam[:, None] * d for dx in offs])
    prof = sample(lines.reshape(-1, 3)).reshape(len(offs), len(lam)).mean(0)
    inside = np.flatnonzero(prof >= 0.5)
    if not len(inside):
        return p
    i = inside.max()
    if i + 1 >= len(lam):
        return p + lam[i] * d
    pa, pb = prof[i], prof[i + 1]
    return p + (lam[i] + step * (pa - 0.5) / max(pa - pb, 1e-9)) * d


def body_axis(pts: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    """The body's own cranio-caudal axis: its direction of least extent (a body is lower than it
    is deep or wide, and more so when fractured), signed like the spine's ``tangent``. Falls back
    to the tangent when the body is not clearly flat (under 15 % shorter along that axis)."""
    if len(pts) < 10:
        return tangent
    w, v = np.linalg.eigh(np.cov((pts - pts.mean(0)).T))
    ax = v[:, 0]
    if w[0] > 0.85 ** 2 * w[1] or abs(ax @ tangent) < 0.7:
        return tangent
    return ax if ax @ tangent > 0 else -ax


def spine_landmarks(mask: Volume, subreg: Optional[Volume] = None, ct: Optional[Volume] = None,
                    rule: LandmarkRule = LandmarkRule()):
    """({label: {point: world mm}}, {label: visible}, {label: reason}) of every vertebra of
    ``mask`` (VerSe ids) and of S1 when the sacrum (26) is labelled."""
    from straighten.completeness import assess
    from straighten.orient import body_centroids, local_frame, local_tangents
    arr = np.asarray(mask.array)
    all_c = centroids_from_mask(arr)
    cents = {l: v for l, v in all_c.items() if l in VERTEBRA_LABELS}
    whole = {l: mask.voxel_to_world(np.asarray(v, float)[None])[0] for l, v in cents.items()}
    if not whole:
        return {}, {}, {}
    with_s1 = dict(whole)
    if S1 in all_c:                 # the sacrum's body is split from its arch as a vertebra's
        with_s1[S1] = mask.voxel_to_world(np.asarray(all_c[S1], float)[None])[0]
    body_c, anterior, body_pts = body_centroids(mask, with_s1, subreg)
    tangents = local_tangents(with_s1)
    # completeness from the bodies split above (straighten.completeness.case_completeness would
    # split them again), with the vertebrae's own tangents as there
    comp = assess(mask, cents, {l: p for l, p in body_pts.items() if l != S1},
                  local_tangents(whole), ct)
    axes = mask.affine[:3, :3] / mask.spacing
    own_axis = {lab: body_axis(pts, tangents[lab]) for lab, pts in body_pts.items() if lab != S1}
    out, visible, reason = {}, {}, {}
    for lab, pts in body_pts.items():
        if lab == S1:
            continue
        # a wedge tilts its own axis: average it with the neighbours' (a slip only translates)
        ax = sum(own_axis[n] for n in [lab] + neighbour_list(lab, own_axis) if n in own_axis)
        t, post, _ = local_frame(ax / np.linalg.norm(ax), anterior)
        out[lab] = body_points(pts, body_c[lab], t, -post, mask.spacing, axes, rule,
                               sample=body_sampler(mask, pts) if rule.subvoxel else None)
        c = comp.get(lab)
        visible[lab] = bool(out[lab]) and (c is None or c.complete)
        reason[lab] = "" if visible[lab] else (getattr(c, "reason", "") or "no body")
    if S1 in body_pts and len(body_pts[S1]):
        pts = body_pts[S1]
        last = max(own_axis, key=lambda l: (l != 28, l)) if own_axis else None
        t = own_axis[last] if last is not None else tangents[S1]
        _, post, _ = local_frame(t, anterior)
        top = -(pts @ t)
        pts = pts[top >= top.max() - rule.s1_top_mm]
        out[S1] = body_points(pts, pts.mean(0), t, -post, mask.spacing, axes, rule, names=S1_POINTS,
                              sample=body_sampler(mask, body_pts[S1]) if rule.subvoxel else None)
        idx = np.rint(mask.world_to_voxel(pts)).astype(int)
        edge = (idx.min(0) <= 1).any() or (idx.max(0) >= np.array(arr.shape) - 2).any()
        visible[S1] = bool(out[S1]) and not edge
        reason[S1] = "" if visible[S1] else "sacrum top cut by the field of view"
    return out, visible, reason
