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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

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
        if not self.fractured:
            shp = np.broadcast(x, y).shape
            return np.full(shp, h2, np.float32), np.full(shp, -h2, np.float32)
        var = self.amp * _shape(self.morphology, y / self.b, x / self.a) * self.height
        share = _BOTTOM_SHARE[self.morphology]
        return h2 - var * (1 - share), -h2 + self.shift_mm + var * share

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
        a_z = self.a * (1.0 - self.waist * (1.0 - np.clip(2 * zh / self.height, -1, 1) ** 2))
        _, side = superellipse(x, y, a_z, self.b, self.p)
        return np.minimum(side, np.minimum(top - z, z - bot)), zh

    def box(self) -> np.ndarray:
        h2 = self.height / 2
        return np.array([[-self.a, -self.b, -h2], [self.a, self.b, h2]])

    def thirds_heights(self, n: int = 60) -> Dict[str, float]:
        """Analytic anterior/middle/posterior heights (mm) by the thirds rule."""
        out = {}
        xs = (np.arange(n) + 0.5) / n * 0.4 * self.a * 2 - 0.4 * self.a   # central 40 % width
        edges = {"anterior": (self.b / 3, self.b), "middle": (-self.b / 3, self.b / 3),
                 "posterior": (-self.b, -self.b / 3)}
        for name, (y0, y1) in edges.items():
            ys = y0 + (np.arange(n) + 0.5) / n * (y1 - y0)
            X, Y = np.meshgrid(xs, ys, indexing="ij")
            f, _ = superellipse(X, Y, self.a, self.b, self.p, with_depth=False)
            top, bot = self.surfaces(X, Y)
            out[name] = float(np.mean((top - bot)[f <= 1.0]))
        return out


def plant(body: Body, morphology: str, target_loss: float) -> Body:
    """Return ``body`` compressed so that its most affected third loses ``target_loss``."""
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"unknown morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    unit = Body(body.a, body.b, body.height, body.p, body.waist, morphology, 1.0)
    healthy = body.thirds_heights()
    unit_h = unit.thirds_heights()
    worst = max((healthy[t] - unit_h[t]) / healthy[t] for t in THIRDS)
    return Body(body.a, body.b, body.height, body.p, body.waist, morphology, target_loss / worst)


def draw_fracture(rng: np.random.Generator, grade: int) -> Tuple[float, str]:
    """Random target loss for ``grade`` (1-3) and a morphology (wedge most common)."""
    lo, hi = TARGET_LOSS[int(grade)]
    return float(rng.uniform(lo, hi)), str(rng.choice(MORPHOLOGIES, p=[0.5, 0.3, 0.2]))


def fracture_truth(healthy: Body, actual: Body) -> dict:
    """Heights, losses and the recomputed grade of ``actual`` against ``healthy``."""
    hh, ha = healthy.thirds_heights(), actual.thirds_heights()
    loss = {t: (hh[t] - ha[t]) / hh[t] for t in THIRDS}
    grade = genant_grade(max(loss.values()))
    return {"grade": grade, "morphology": actual.morphology if actual.fractured else "none",
            "healthy_heights_mm": {t: round(hh[t], 3) for t in THIRDS},
            "heights_mm": {t: round(ha[t], 3) for t in THIRDS},
            "height_loss": {t: round(max(loss[t], 0.0), 4) for t in THIRDS}}
