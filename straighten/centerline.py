"""Smooth spine centre line and rotation-minimising frames, in world millimetres (RAS+).

* :class:`Centerline` is a cubic spline through points (chord-length parameter, natural end
  conditions) re-parametrised by arc length ``s`` (mm, increasing caudally, ``s = 0`` at the first
  point) and extended past both ends along the end tangents.
* :func:`rotation_minimizing_frames` propagates a normal along sampled points with the double
  reflection method (Wang, Juettler, Zheng, Liu 2008, ACM TOG 27(1)), so frames neither flip nor
  twist more than the curve forces them to.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class Centerline:
    """Arc-length parametrised smooth curve through ``points_mm`` (N, 3), ordered cranial ->
    caudal. ``knots_s`` holds the arc length (mm) at each input point."""

    def __init__(self, points_mm: np.ndarray, default_tangent=(0.0, 0.0, -1.0),
                 fine_step_mm: float = 0.05):
        pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        self.points_mm = pts
        if len(pts) == 1:
            self._spline = None
            self._t0 = self._t1 = _unit(np.asarray(default_tangent, float))
            self.knots_s = np.zeros(1)
            self.length_mm = 0.0
            return
        chord = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        if np.any(chord < 1e-6):
            raise ValueError("two centre-line points coincide")
        u = np.concatenate([[0.0], np.cumsum(chord)])
        self._spline = CubicSpline(u, pts, bc_type="not-a-knot")
        n_fine = max(int(np.ceil(u[-1] / fine_step_mm)), 16) + 1
        self._u_fine = np.linspace(0.0, u[-1], n_fine)
        seg = np.linalg.norm(np.diff(self._spline(self._u_fine), axis=0), axis=1)
        self._s_fine = np.concatenate([[0.0], np.cumsum(seg)])
        self.length_mm = float(self._s_fine[-1])
        self.knots_s = np.interp(u, self._u_fine, self._s_fine)
        self._t0 = _unit(self._spline(0.0, 1))
        self._t1 = _unit(self._spline(u[-1], 1))

    def evaluate(self, s_mm: np.ndarray):
        """Points (M, 3) and unit tangents (M, 3, pointing caudally) at arc lengths ``s_mm``
        (any real values; outside [0, length] the curve continues straight)."""
        s = np.atleast_1d(np.asarray(s_mm, dtype=np.float64))
        pts = np.empty((len(s), 3))
        tan = np.empty((len(s), 3))
        lo, hi = s < 0, s > self.length_mm
        mid = ~(lo | hi)
        p0 = self.points_mm[0]
        p1 = self.points_mm[-1] if self._spline is None else self._spline(self._u_fine[-1])
        pts[lo] = p0 + s[lo, None] * self._t0
        tan[lo] = self._t0
        pts[hi] = p1 + (s[hi, None] - self.length_mm) * self._t1
        tan[hi] = self._t1
        if mid.any():
            if self._spline is None:
                pts[mid], tan[mid] = p0, self._t0
            else:
                u = np.interp(s[mid], self._s_fine, self._u_fine)
                pts[mid] = self._spline(u)
                tan[mid] = _unit(self._spline(u, 1))
        return pts, tan


def rotation_minimizing_frames(points: np.ndarray, tangents: np.ndarray, start_index: int,
                               start_normal: np.ndarray) -> np.ndarray:
    """Unit normals (M, 3) along ``points`` (M, 3) with unit ``tangents``, propagated from
    ``start_normal`` at ``start_index`` in both directions by double reflection."""
    m = len(points)
    normals = np.zeros((m, 3))
    t = tangents[start_index]
    r = np.asarray(start_normal, float) - np.dot(start_normal, t) * t
    if np.linalg.norm(r) < 1e-6:
        raise ValueError("start normal is parallel to the tangent")
    normals[start_index] = r / np.linalg.norm(r)
    for step in (1, -1):
        i = start_index
        while 0 <= i + step < m:
            normals[i + step] = _reflect_step(points[i], points[i + step], tangents[i],
                                              tangents[i + step], normals[i])
            i += step
    return normals


def _reflect_step(x0, x1, t0, t1, r0) -> np.ndarray:
    """One double-reflection step: the normal at x1 from the normal r0 at x0."""
    v1 = x1 - x0
    c1 = float(v1 @ v1)
    if c1 < 1e-18:
        rl, tl = r0, t0
    else:
        rl = r0 - (2.0 / c1) * float(v1 @ r0) * v1
        tl = t0 - (2.0 / c1) * float(v1 @ t0) * v1
    v2 = t1 - tl
    c2 = float(v2 @ v2)
    r1 = rl if c2 < 1e-18 else rl - (2.0 / c2) * float(v2 @ rl) * v2
    r1 = r1 - float(r1 @ t1) * t1  # remove round-off drift
    return r1 / np.linalg.norm(r1)
