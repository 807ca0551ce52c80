"""Row frames of the straightened grid: ``smooth`` or piecewise ``rigid``.

Both start from the smooth spline through the body centroids and its rotation-minimising frames
(anterior from the anatomy at the middle of the spine).

* ``smooth``: row planes are the curve's normal planes. Simple and never folds near the spine,
  but the planes fan out on a curved spine, so a rigid vertebral body at distance ``p`` from the
  curve is stretched by ``1 / (1 - p * curvature)``: on a lordotic lumbar spine the anterior
  third of every body looks ~2-4 mm shorter than the posterior third (a false wedge).
* ``rigid`` (default): vertebrae are rigid, the spine bends in the discs. Within each body's SI
  extent the rows are parallel planes of the body's own frame (spline tangent and RMF normal at
  its centroid), so every body is resampled rigidly and its heights are true in mm. Between bodies
  the curve is a cubic Hermite arc and the frame rotates (slerp) from one body's frame to the
  next. The price: the bending is concentrated in the discs, so far from the spine (beyond
  ~gap / angle, typically 40-80 mm) neighbouring row planes can cross and a little soft tissue is
  sampled twice; the inverse map stays exact near the spine.
Rows are ``step_mm`` apart along the row coordinate ``u`` (mm; arc length of the piecewise
curve, increasing caudally).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from straighten.centerline import Centerline, rotation_minimizing_frames


def smooth_frames(curve: Centerline, anterior: np.ndarray, u_mm: np.ndarray):
    """(points, tangents, anterior normals) at arc lengths ``u_mm`` of the smooth curve."""
    pts, tan = curve.evaluate(u_mm)
    start = int(np.argmin(np.abs(u_mm - 0.5 * curve.length_mm)))
    return pts, tan, rotation_minimizing_frames(pts, tan, start, anterior)


def knot_frames(curve: Centerline, anterior: np.ndarray, step_mm: float = 0.5) -> np.ndarray:
    """Rotation matrices (K, 3, 3), columns (tangent, anterior, tangent x anterior), at the
    curve's knots, from RMF on a fine grid."""
    u = np.union1d(np.arange(0.0, curve.length_mm, step_mm), curve.knots_s)
    pts, tan, ant = smooth_frames(curve, anterior, u)
    idx = np.searchsorted(u, curve.knots_s)
    t, a = tan[idx], ant[idx]
    return np.stack([t, a, np.cross(t, a)], axis=2)


def rigid_zones(curve: Centerline, labels: List[int], body_pts: Dict[int, np.ndarray],
                rots: np.ndarray, margin_mm: float = 0.5, min_gap_mm: float = 2.0) -> np.ndarray:
    """(K, 2) offsets (lo < 0 < hi, mm along each body's tangent) of the rigid zones: the
    bodies' SI extents (voxel centres) + ``margin_mm`` (half a voxel), shrunk so consecutive
    zones stay ``min_gap_mm`` apart."""
    zones = np.zeros((len(labels), 2))
    for i, lab in enumerate(labels):
        pts = body_pts.get(lab)
        if pts is None or len(pts) < 10:
            zones[i] = (-1.0, 1.0)
            continue
        proj = (pts - curve.points_mm[i]) @ rots[i][:, 0]
        zones[i] = (min(np.percentile(proj, 0.5) - margin_mm, -0.5),
                    max(np.percentile(proj, 99.5) + margin_mm, 0.5))
    for i in range(len(labels) - 1):
        e = curve.points_mm[i] + zones[i, 1] * rots[i][:, 0]
        b = curve.points_mm[i + 1] + zones[i + 1, 0] * rots[i + 1][:, 0]
        gap = (b - e) @ (rots[i][:, 0] + rots[i + 1][:, 0]) / 2
        if gap < min_gap_mm:
            cut = (min_gap_mm - gap) / 2
            zones[i, 1] = max(zones[i, 1] - cut, 0.25)
            zones[i + 1, 0] = min(zones[i + 1, 0] + cut, -0.25)
    return zones


def _hermite(p0, p1, t0, t1, tau):
    h00 = 2 * tau ** 3 - 3 * tau ** 2 + 1
    h10 = tau ** 3 - 2 * tau ** 2 + tau
    h01 = -2 * tau ** 3 + 3 * tau ** 2
    h11 = tau ** 3 - tau ** 2
    return (h00[:, None] * p0 + h10[:, None] * t0 + h01[:, None] * p1 + h11[:, None] * t1)


class RigidPath:
    """Piecewise path: rigid segments through the bodies joined by Hermite arcs."""

    def __init__(self, centres: np.ndarray, rots: np.ndarray, zones: np.ndarray):
        self.centres, self.rots, self.zones = centres, rots, zones
        self.pieces: List[Tuple] = []   # (kind, u0, u1, data)
        u = 0.0
        self.knot_u = np.zeros(len(centres))
        for i in range(len(centres)):
            lo, hi = zones[i]
            self.knot_u[i] = u - lo
            self.pieces.append(("rigid", u, u + hi - lo, i))
            u += hi - lo
            if i + 1 < len(centres):
                arc = self._arc(i)
                self.pieces.append(("arc", u, u + arc[0], (i, arc)))
                u += arc[0]
        self.length = u

    def _arc(self, i):
        e = self.centres[i] + self.zones[i, 1] * self.rots[i][:, 0]
        b = self.centres[i + 1] + self.zones[i + 1, 0] * self.rots[i + 1][:, 0]
        chord = max(np.linalg.norm(b - e), 1e-3)
        t0, t1 = self.rots[i][:, 0] * chord, self.rots[i + 1][:, 0] * chord
        tau = np.linspace(0.0, 1.0, 201)
        p = _hermite(e, b, t0, t1, tau)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(self.rots[i:i + 2]))
        return s[-1], tau, s, (e, b, t0, t1), slerp

    def evaluate(self, u: np.ndarray):
        """Points (M, 3) and rotations (M, 3, 3) at row coordinates ``u`` (mm)."""
        u = np.asarray(u, dtype=np.float64)
        pts, rot = np.zeros((len(u), 3)), np.zeros((len(u), 3, 3))
        n = len(self.pieces)
        for j, (kind, u0, u1, data) in enumerate(self.pieces):
            sel = (u >= u0) & (u < u1)
            if kind == "rigid":  # the end bodies' frames continue straight past the ends
                if j == 0:
                    sel |= u < u0
                if j == n - 1:
                    sel |= u >= u1
                i = data
                off = u[sel] - u0 + self.zones[i, 0]
                pts[sel] = self.centres[i] + off[:, None] * self.rots[i][:, 0]
                rot[sel] = self.rots[i]
            else:
                i, (length, tau, s, herm, slerp) = data
                tt = np.interp(u[sel] - u0, s, tau)
                pts[sel] = _hermite(*herm, tt)
                rot[sel] = slerp(np.clip((u[sel] - u0) / max(length, 1e-9), 0, 1)).as_matrix()
        return pts, rot


def build_rows(curve: Centerline, labels: List[int], anterior: np.ndarray, frames: str,
               body_pts: Dict[int, np.ndarray], margin_mm: float = 0.5):
    """``(knot_u (K,), rows(u) -> (points, axis0 caudal, posterior, right), each (R, 3))``:
    the row coordinate of each body centroid and the row evaluator for ``frames``."""
    if frames == "smooth":
        def rows(u):
            pts, tan, ant = smooth_frames(curve, anterior, u)
            return pts, tan, -ant, np.cross(tan, ant)
        return curve.knots_s, rows
    rots = knot_frames(curve, anterior)
    path = RigidPath(curve.points_mm, rots, rigid_zones(curve, labels, body_pts, rots, margin_mm))

    def rows(u):
        pts, rot = path.evaluate(u)
        return pts, rot[:, :, 0], -rot[:, :, 1], rot[:, :, 2]
    return path.knot_u, rows
