"""Vertebral body of the phantom, healthy or fractured, and the Genant rule.

A fracture is a smooth compression of the body in its local frame (x right, y anterior,
z cranial; mm). The height-loss fraction over the footprint is

    L(x, y) = c * (base + g(u, v)),   u = y / b (anterior +1), v = x / a,

with ``g`` the morphology's shape (wedge: rises anteriorly; biconcave: a central bump;
crush: nearly uniform) and ``c`` chosen so that the most affected third loses exactly the target
fraction. The *uniform* part ``c * base * H`` (``shift_mm``) lifts the inferior endplate and the
whole spine caudal to the vertebra moves cranially by the same amount, so no gap opens; the
varying part depresses the superior endplate (biconcave: both endplates, half each) and the disc
next to it fills the depression.

Thirds rule (shared with RHLV): split the AP depth [-b, b] into equal thirds; a third's height
is the mean SI extent over its AP range within the central 40 % of the LR width.

Realistic bodies (``anatomy='realistic'``, :mod:`phantom.shapes`) add five shape terms, all zero
for the original box body: concave endplates (``endplate`` mm deep at the centre), rounded rims
(``rim``, the edge between endplate and wall), a concave anterior wall (``wall`` mm at
mid-height), a lateral waist (``waist``) and a physiological wedge (``wedge``: the posterior wall
taller than the anterior, as in the thoracic spine; negative at L5). Their thirds heights are
column counts integrated numerically over the columns the project's height rule keeps
(``thirds_heights``), the quantity a measured mask gives.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np

from phantom.shapes import superellipse
from spine.anatomy import genant_grade

MORPHOLOGIES = ("wedge", "biconcave", "crush")
TARGET_LOSS = {1: (0.205, 0.245), 2: (0.27, 0.38), 3: (0.43, 0.55)}   # planted ranges
THIRDS = ("anterior", "middle", "posterior")
_BASE = {"wedge": 0.08, "biconcave": 0.04, "crush": 1.0}
_BOTTOM_SHARE = {"wedge": 0.0, "biconcave": 0.5, "crush": 0.0}


def _shape(morphology: str, u, v):
    if morphology == "wedge":
        return ((np.clip(u, -1, 1) + 1) / 2) ** 1.5
    if morphology == "biconcave":
        return (1.0 - np.clip(u * u + v * v, 0.0, 1.0)) ** 2
    if morphology == "crush":
        return 0.3 * (np.clip(u, -1, 1) + 1) / 2
    raise ValueError(f"unknown morphology {morphology!r}; expected one of {MORPHOLOGIES}")


@dataclass
class Body:
    """Superellipse-cylinder vertebral body (mm), optionally compressed."""

    a: float                    # LR half-width
    b: float                    # AP half-depth
    height: float               # healthy height H
    p: float                    # footprint exponent
    waist: float = 0.0          # LR narrowing at mid-height (fraction; 0 keeps thirds exact)
    morphology: str = "none"
    amp: float = 0.0            # c
    endplate: float = 0.0       # endplate concavity at the centre (mm, each endplate)
    rim: float = 0.0            # rim rounding radius (mm)
    wall: float = 0.0           # anterior wall concavity at mid-height (mm)
    wedge: float = 0.0          # physiological wedge: posterior minus anterior wall height (mm)

    @property
    def realistic(self) -> bool:
        return bool(self.endplate or self.rim or self.wall or self.waist or self.wedge)

    @property
    def fractured(self) -> bool:
        return self.morphology != "none" and self.amp > 0

    @property
    def shift_mm(self) -> float:
        """Uniform collapse: lift of the inferior endplate (and of everything caudal)."""
        return self.amp * _BASE[self.morphology] * self.height if self.fractured else 0.0

    def loss(self, x, y):
        """Height-loss fraction L at local (x, y)."""
        if not self.fractured:
            return np.zeros(np.broadcast(x, y).shape, np.float32)
        return self.amp * (_BASE[self.morphology] + _shape(self.morphology, y / self.b, x / self.a))

    def surfaces(self, x, y):
        """(z_top, z_bottom) of the body at local (x, y), mm."""
        h2 = self.height / 2
        cup = 0.0
        if self.endplate:
            f, _ = superellipse(x, y, self.a, self.b, self.p, with_depth=False)
            cup = self.endplate * (1.0 - np.clip(f, 0.0, 1.0) ** 2)
        if self.wedge:          # each endplate tilts by a quarter: anterior wall wedge mm shorter
            cup = cup + 0.25 * self.wedge * np.clip(y / self.b, -1.0, 1.0)
        if not self.fractured:
            shp = np.broadcast(x, y).shape
            return ((np.full(shp, h2) - cup).astype(np.float32),
                    (np.full(shp, -h2) + cup).astype(np.float32))
        var = self.amp * _shape(self.morphology, y / self.b, x / self.a) * self.height
        share = _BOTTOM_SHARE[self.morphology]
        return h2 - cup - var * (1 - share), -h2 + cup + self.shift_mm + var * share

    def compaction(self, x, y, z):
        """Impaction weight (loss fraction x proximity to a collapsed endplate, 0..~0.6): dense
        trabecular bone in a ~5 mm band under the depressed endplate(s), fainter elsewhere."""
        if not self.fractured:
            return np.zeros(np.broadcast(x, y, z).shape, np.float32)
        top, bot = self.surfaces(x, y)
        band = np.exp(-np.maximum(top - z, 0) / 5.0)
        if _BOTTOM_SHARE[self.morphology] > 0 or self.morphology == "crush":
            band = np.maximum(band, np.exp(-np.maximum(z - bot, 0) / 5.0))
        return self.loss(x, y) * (0.3 + 0.7 * band)

    def depth(self, x, y, z):
        """Signed depth (mm) and the healthy-frame z (for texture) at local points."""
        top, bot = self.surfaces(x, y)
        zh = -self.height / 2 + (z - bot) / np.maximum(top - bot, 1e-3) * self.height
        bulge = 1.0 - np.clip(2 * zh / self.height, -1, 1) ** 2      # 1 at mid-height, 0 at the ends
        a_z = self.a * (1.0 - self.waist * bulge)
        b_z = self.b if not self.wall else np.where(y > 0, self.b - self.wall * bulge, self.b)
        _, side = superellipse(x, y, a_z, b_z, self.p)
        end = np.minimum(top - z, z - bot)
        if not self.rim:
            return np.minimum(side, end), zh
        r = self.rim                 # rounded intersection of wall and endplate (radius r)
        u, v = np.maximum(r - side, 0.0), np.maximum(r - end, 0.0)
        return np.maximum(r, np.minimum(side, end)) - np.sqrt(u * u + v * v), zh

    def box(self) -> np.ndarray:
        h2 = self.height / 2 + 0.25 * abs(self.wedge)
        return np.array([[-self.a, -self.b, -h2], [self.a, self.b, h2]])

    def thirds_heights(self, n: int = 60, healthy: "Optional[Body]" = None) -> Dict[str, float]:
        """Anterior/middle/posterior heights (mm) by the thirds rule: analytic for the box body;
        for a realistic one, column counts integrated over z, averaged over the columns that the
        project's height rule keeps (``evaluation.heights``: in the healthy body -- ``healthy``,
        or this body unfractured -- a column at least 0.7 x the centre column of its LR slice),
        so the rounded rims and the concave anterior wall count as a measured mask's would."""
        if self.realistic:
            return self._thirds_integrated(healthy or replace(self, morphology="none", amp=0.0))
        out = {}
        xs = (np.arange(n) + 0.5) / n * 0.4 * self.a * 2 - 0.4 * self.a   # central 40 % width
        for name, (y0, y1) in self._third_edges().items():
            ys = y0 + (np.arange(n) + 0.5) / n * (y1 - y0)
            X, Y = np.meshgrid(xs, ys, indexing="ij")
            f, _ = superellipse(X, Y, self.a, self.b, self.p, with_depth=False)
            top, bot = self.surfaces(X, Y)
            out[name] = float(np.mean((top - bot)[f <= 1.0]))
        return out

    def _third_edges(self) -> Dict[str, Tuple[float, float]]:
        """AP range (local y, mm) of each third of the healthy depth [-b, b]."""
        return {"anterior": (self.b / 3, self.b), "middle": (-self.b / 3, self.b / 3),
                "posterior": (-self.b, -self.b / 3)}

    def _columns(self, xs, ys, dz: float = 0.4) -> np.ndarray:
        """(len(xs), len(ys)) column heights (mm): the length of each column inside the body,
        sampled every ``dz`` with the boundary crossings placed by linear interpolation of the
        signed depth (within 0.04 mm of a 0.05 mm count, at an eighth of the samples)."""
        h2 = self.height / 2 + self.endplate + abs(self.wedge) + 1.0
        zs = np.arange(-h2, h2 + dz, dz, dtype=np.float32)
        X, Y = np.meshgrid(np.asarray(xs, np.float32), np.asarray(ys, np.float32), indexing="ij")
        d, _ = self.depth(X[..., None], Y[..., None], zs[None, None, :])
        d0, d1 = d[..., :-1], d[..., 1:]
        inside = np.where((d0 > 0) & (d1 > 0), 1.0,
                          np.where((d0 > 0) != (d1 > 0),
                                   np.maximum(d0, d1) / np.maximum(np.abs(d0 - d1), 1e-9), 0.0))
        return inside.sum(-1) * dz

    def _thirds_integrated(self, ref: "Body", n: int = 24, ratio: float = 0.7) -> Dict[str, float]:
        xs = (np.arange(n) + 0.5) / n * 0.4 * self.a * 2 - 0.4 * self.a   # central 40 % width
        ys = ((np.arange(3 * n) + 0.5) / (3 * n) * 2 - 1) * self.b
        h_ref, h = ref._columns(xs, ys), self._columns(xs, ys)
        centre = ref._columns(xs, [0.0])                                   # (n, 1)
        keep = (h_ref > 0) & (h_ref >= ratio * centre)
        out = {}
        for name, (y0, y1) in self._third_edges().items():
            k = keep & ((ys >= y0) & (ys < y1))[None, :]
            out[name] = float(h[k].mean()) if k.any() else 0.0
        return out


def plant(body: Body, morphology: str, target_loss: float) -> Body:
    """Return ``body`` compressed so that its most affected third loses ``target_loss``."""
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"unknown morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    healthy = body.thirds_heights()

    def worst(amp: float) -> float:
        h = replace(body, morphology=morphology, amp=amp).thirds_heights(healthy=body)
        return max((healthy[t] - h[t]) / healthy[t] for t in THIRDS)
    l0 = worst(1.0)
    amp = target_loss / l0
    if body.realistic:      # the shape terms make the loss slightly non-linear in amp: two secant steps
        a0 = 1.0
        for _ in range(2):
            l1 = worst(amp)
            if abs(l1 - target_loss) < 1e-3 or abs(l1 - l0) < 1e-9:
                break
            a0, l0, amp = amp, l1, amp + (target_loss - l1) * (amp - a0) / (l1 - l0)
    return replace(body, morphology=morphology, amp=amp)


def draw_fracture(rng: np.random.Generator, grade: int) -> Tuple[float, str]:
    """Random target loss for ``grade`` (1-3) and a morphology (wedge most common)."""
    lo, hi = TARGET_LOSS[int(grade)]
    return float(rng.uniform(lo, hi)), str(rng.choice(MORPHOLOGIES, p=[0.5, 0.3, 0.2]))


def fracture_truth(healthy: Body, actual: Body) -> dict:
    """Heights, losses and the recomputed grade of ``actual`` against ``healthy``."""
    hh, ha = healthy.thirds_heights(), actual.thirds_heights(healthy=healthy)
    loss = {t: (hh[t] - ha[t]) / hh[t] for t in THIRDS}
    grade = genant_grade(max(loss.values()))
    return {"grade": grade, "morphology": actual.morphology if actual.fractured else "none",
            "healthy_heights_mm": {t: round(hh[t], 3) for t in THIRDS},
            "heights_mm": {t: round(ha[t], 3) for t in THIRDS},
            "height_loss": {t: round(max(loss[t], 0.0), 4) for t in THIRDS}}
