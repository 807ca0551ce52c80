"""A random body around the spine of a training patch: what the phantom lacks and a real CT has.

The phantom CT is a box of soft tissue holding the spine, with air around it: a network trained on
it alone takes any soft tissue for the spine (on the real CTs the spine-line heatmap covered the
whole body and its centre lay 30-80 mm from the spine). :func:`add_body_context` paints, in HU
and on the patch's own grid, a body placed from the patch's vertebrae: an elliptic outline with
air outside and a layer of fat, and per region (read from the level of each slice) the lungs,
ribs and sternum, heart and aorta (plain or contrast-enhanced), trachea, liver and kidneys, gas,
fluid and contrast in the bowel, the iliac wings and a scanner table. Sizes, positions and HU are
drawn anew for every patch. Labelled voxels (and a margin around them that covers the discs and
the canal) are never changed, so the targets stay exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
from scipy import ndimage

from spine.anatomy import rank

AIR, FAT, SOFT, NOISE = -1000.0, -100.0, 40.0, 12.0
# cranio-caudal distance between consecutive levels (mm) when a patch holds one vertebra only
_LEVEL_STEP_MM = {"cervical": 16.0, "thoracic": 23.0, "lumbar": 35.0}


def _region_step(pos: float) -> float:
    return _LEVEL_STEP_MM["cervical" if pos < 8 else "thoracic" if pos < 20 else "lumbar"]


def slice_levels(centroids: Dict[int, np.ndarray], nz: int, spacing: float):
    """(level position, spine x, spine y) per slice of a patch (voxel units for x and y), from the
    patch's centroids: linear in z, extrapolated beyond the first and last vertebra."""
    labs = sorted(centroids, key=lambda l: centroids[l][2])
    c = np.array([centroids[l] for l in labs], float)
    pos = np.array([rank(l) for l in labs])          # C1 = 1 ... L5 = 24, T13 19.5, L6 24.5
    z = np.arange(nz, dtype=float)
    if len(labs) >= 2 and np.ptp(c[:, 2]) > 0:
        slope, icpt = np.polyfit(c[:, 2], pos, 1)
    else:                                            # one vertebra: a typical spacing of its region
        slope = -spacing / _region_step(pos[0])
        icpt = pos[0] - slope * c[0, 2]
    return icpt + slope * z, np.interp(z, c[:, 2], c[:, 0]), np.interp(z, c[:, 2], c[:, 1])


def _profile(level: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 outside [lo, hi], a half-sine bump inside (the size of an organ along the spine)."""
    t = np.clip((level - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.sin(np.pi * t) * ((level > lo) & (level < hi))


@dataclass
class _Body:
    """One patch's body: coordinates (mm from the spine: x to the patient's right, y anterior; the
    level position per slice), the outline's half-axes per slice, and what the organs share."""
    X: np.ndarray
    Y: np.ndarray
    L: np.ndarray
    level: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    s: float
    rng: np.random.Generator
    a: np.ndarray = None
    b: np.ndarray = None
    yb: np.ndarray = None
    back: np.ndarray = None
    fat: float = 0.0
    inside: np.ndarray = None
    inner: np.ndarray = None
    wall: tuple = ()
    contrast: bool = False
    blood: float = 40.0

    def u(self, lo, hi) -> float:
        return float(self.rng.uniform(lo, hi))


def _outline(B: _Body, ctx: np.ndarray) -> None:
    """Neck, thorax, abdomen, pelvis (half-axes mm by level), the skin of the back behind the spine;
    air outside, a layer of fat, at random a scanner table."""
    u, rng, X, Y = B.u, B.rng, B.X, B.Y
    k = u(0.8, 1.2)                                         # body size of this patient
    anchors = np.array([1, 7, 9, 14, 19, 22, 25, 27])
    B.a = np.interp(B.level, anchors, k * np.array([55, 70, 140, 155, 150, 150, 170, 175]) * rng.uniform(0.85, 1.15, 8))
    B.b = np.interp(B.level, anchors, k * np.array([55, 60, 100, 115, 110, 115, 120, 120]) * rng.uniform(0.85, 1.15, 8))
    B.back = np.interp(B.level, anchors, np.array([35, 40, 50, 55, 60, 70, 75, 80]) * u(0.75, 1.3))
    B.yb = B.b - B.back                                     # body centre, anterior of the spine
    xb = u(-10, 10)
    B.inside = ((X - xb) / B.a) ** 2 + ((Y - B.yb) / B.b) ** 2 <= 1
    B.fat = fat = u(4, 30)
    B.inner = ((X - xb) / np.maximum(B.a - fat, 1)) ** 2 + ((Y - B.yb) / np.maximum(B.b - fat, 1)) ** 2 <= 1
    ctx[~B.inside] = AIR
    ctx[B.inside & ~B.inner] = FAT + u(-20, 20)
    if rng.random() < 0.5:                                  # scanner table under the back
        y_t = -B.back - u(0, 25)
        table = (Y < y_t) & (Y > y_t - u(8, 20)) & (np.abs(X) < u(150, 250))
        ctx[table & ~B.inside] = u(-300, 300)
    B.contrast = rng.random() < 0.5
    B.blood = u(150, 400) if B.contrast else u(30, 60)
    B.wall = B.a - fat - u(10, 25), B.b - fat - u(10, 25)   # inside the muscles of the chest wall


def _chest(B: _Body, ctx: np.ndarray) -> None:
    """Lungs and trachea; heart and aorta over them."""
    u, X, Y, L, wall, inner = B.u, B.X, B.Y, B.L, B.wall, B.inner
    lung = _profile(L, u(6.5, 8.0), u(19.5, 21.0))
    for side in (1, -1):
        lx, ly = wall[0] * u(0.38, 0.5), wall[1] * u(0.55, 0.8)
        cx, cy = side * (wall[0] - lx + u(-5, 5)), B.yb - u(0, 0.2) * B.b
        m = ((X - cx) / np.maximum(lx * np.sqrt(lung), 1)) ** 2 + ((Y - cy) / np.maximum(ly * np.sqrt(lung), 1)) ** 2
        ctx[(m <= 1) & (lung > 0.05) & inner] = u(-900, -780)
    trachea = (L < u(9.5, 11)) & (X ** 2 + (Y - u(35, 50)) ** 2 <= u(7, 11) ** 2) & inner
    ctx[trachea] = AIR
    heart = _profile(L, u(11.5, 13), u(16.5, 18))
    hx, hy = -u(10, 35), B.yb + u(0.1, 0.35) * B.b
    hr = u(45, 65) * np.sqrt(heart)
    ctx[(((X - hx) ** 2 + (Y - hy) ** 2) <= hr ** 2) & (heart > 0.05) & inner] = B.blood + B.rng.normal(0, 15)
    ar, ax_, ay = u(9, 15), -u(12, 30), u(25, 40)
    aorta = (L > u(9.5, 11)) & (L < u(22.5, 23.5)) & ((X - ax_) ** 2 + (Y - ay) ** 2 <= ar ** 2)
    ctx[aorta & inner] = B.blood


def _abdomen(B: _Body, ctx: np.ndarray) -> None:
    """Liver (right), kidneys, bowel with gas, fluid or contrast."""
    u, X, Y, L, wall, inner, nz, s = B.u, B.X, B.Y, B.L, B.wall, B.inner, B.X.shape[2], B.s
    liver = _profile(L, u(15, 16.5), u(20.5, 22))
    lx_, ly_ = wall[0] * u(0.45, 0.6), wall[1] * u(0.5, 0.75)
    m = ((X - (wall[0] - lx_)) / np.maximum(lx_ * np.sqrt(liver), 1)) ** 2 + \
        ((Y - B.yb - u(0, 0.2) * B.b) / np.maximum(ly_ * np.sqrt(liver), 1)) ** 2
    ctx[(m <= 1) & (liver > 0.05) & inner] = u(50, 70) if not B.contrast else u(90, 140)
    kid = _profile(L, u(18.5, 19.5), u(21.5, 22.5))
    for side in (1, -1):
        kx, ky = side * u(45, 70), u(0, 20)
        m = ((X - kx) / max(u(20, 30), 1)) ** 2 + ((Y - ky) / max(u(25, 35), 1)) ** 2
        ctx[(m <= kid) & (kid > 0.05) & inner] = u(30, 45) if not B.contrast else u(120, 250)
    belly = (L > 19.5) & inner & (Y > u(30, 50))
    for _ in range(int(B.rng.integers(4, 16))):
        bx, by, bz = u(-0.8, 0.8) * wall[0].mean(), u(40, max(1.1 * wall[1].mean() + 40, 41)), u(0, nz * s)
        rad = u(8, 25)
        blob = (X - bx) ** 2 + (Y - by) ** 2 + (np.arange(nz)[None, None, :] * s - bz) ** 2 <= rad ** 2
        val = B.rng.choice([AIR + u(0, 150), u(0, 40), u(200, 600)], p=[0.45, 0.45, 0.1])
        ctx[blob & belly] = val



def _bones(B: _Body, ctx: np.ndarray) -> None:
    """Ribs (one per thoracic level, sloping down as they run forward), sternum, iliac wings, and a
    few small dense spots (calcification, contrast, a clip)."""
    u, X, Y, L, level, s = B.u, B.X, B.Y, B.L, B.level, B.s
    nx, ny, nz = X.shape
    bone = np.zeros(X.shape, np.float32)
    slope = (level[-1] - level[0]) / max(nz - 1, 1)       # levels per slice (< 0: z runs up)
    drop, rib_hu = u(15, 40), u(250, 700)
    for lev in range(8, 20):
        if slope >= 0 or not (level.min() - 2 < lev < level.max() + 2):
            continue
        zl = (lev - level[0]) / slope                       # slice of that level (may lie outside)
        k0 = int(np.clip(round(zl), 0, nz - 1))
        ra, rb, cy = B.wall[0][k0] + u(0, 8), B.wall[1][k0] + u(0, 8), B.yb[k0]
        for side in (1, -1):
            th = np.linspace(0.25, 2.6, 60)
            px = side * ra * np.sin(th)
            py = cy - rb * np.cos(th)
            pz = zl * s - drop * (th - th[0]) / (th[-1] - th[0])
            i = np.round(px / s + B.sx[k0]).astype(int)
            j = np.round(py / s + B.sy[k0]).astype(int)
            kk = np.round(pz / s).astype(int)
            ok = (i >= 0) & (i < nx) & (j >= 0) & (j < ny) & (kk >= 0) & (kk < nz)
            bone[i[ok], j[ok], kk[ok]] = 1
    sternum = (level > u(9, 10)) & (level < u(15, 16.5))
    ys = B.yb + B.b - B.fat - u(8, 15)
    st = (np.abs(X) < u(10, 18)) & (np.abs(Y - ys) < 6) & sternum
    bone[st] = 1
    rib_mask = ndimage.gaussian_filter(bone, max(u(2.5, 4.0) / s, 0.5)) > 0.15 * min(1.0, 3.0 / s) ** 2
    ctx[rib_mask & B.inside] = rib_hu
    pelvis = _profile(L, u(22.5, 23.5), 28.0)
    for side in (1, -1):
        wx, wy = side * u(70, 100), u(-30, 0)
        m = ((X - wx) / u(15, 25)) ** 2 + ((Y - wy) / u(40, 60)) ** 2
        ctx[(m <= pelvis) & (pelvis > 0.05) & B.inside] = u(300, 700)
    for _ in range(int(B.rng.integers(0, 3))):               # calcification, contrast, a clip
        p = np.array([u(0, nx), u(0, ny), u(0, nz)])
        d2 = ((np.indices(X.shape).reshape(3, -1).T - p) ** 2).sum(1).reshape(X.shape) * s * s
        ctx[(d2 <= u(3, 10) ** 2) & B.inner] = u(400, 2000)



def add_body_context(hu: np.ndarray, labels: np.ndarray, centroids: Dict[int, np.ndarray], spacing: float,
                     rng: np.random.Generator) -> np.ndarray:
    """``hu`` (a patch on an RAS-ordered grid of ``spacing`` mm, labels and centroids in its voxels)
    with a random body painted around its spine. Returns a new array; without centroids the patch
    comes back unchanged."""
    if not centroids:
        return hu
    nx, ny, nz = hu.shape
    s = float(spacing)
    level, sx, sy = slice_levels(centroids, nz, s)
    X = (np.arange(nx)[:, None, None] - sx[None, None, :]) * s
    Y = (np.arange(ny)[None, :, None] - sy[None, None, :]) * s
    full = lambda a: np.broadcast_to(a, hu.shape)          # noqa: E731
    B = _Body(full(X), full(Y), full(level[None, None, :]), level, sx, sy, s, rng)
    ctx = np.full(hu.shape, np.nan, np.float32)             # NaN: keep the patch's own value
    for paint in (_outline, _chest, _abdomen, _bones):
        paint(B, ctx)
    return _compose(hu, labels, ctx, B)


def _compose(hu: np.ndarray, labels: np.ndarray, ctx: np.ndarray, B: _Body) -> np.ndarray:
    """The painted body over the patch, never over the vertebrae, their discs and canal, nor the
    phantom's own bone; soft tissue fills the body outside the phantom's box; noise, and edges
    softened by half a voxel."""
    s, inside = B.s, B.inside
    keep = ndimage.binary_dilation(labels > 0, iterations=max(1, int(round(6.0 / s))))
    keep = ndimage.binary_closing(keep, structure=np.ones((1, 1, max(3, int(round(20.0 / s))))))
    keep |= (hu > 200) & (labels == 0) & inside             # the phantom's own bone (ribs, sacrum)
    fill = np.isnan(ctx) & (hu <= AIR + 200)                # outside the phantom's box, inside the body
    ctx[fill] = SOFT
    ctx[keep] = np.nan
    painted = ~np.isnan(ctx)
    ctx = np.where(painted, ctx + B.rng.normal(0, NOISE, hu.shape).astype(np.float32), 0)
    w = ndimage.gaussian_filter(painted.astype(np.float32), 0.5)
    val = ndimage.gaussian_filter(ctx, 0.5) / np.maximum(w, 1e-3)
    out = hu * (1 - w) + val * w
    return np.where(keep, hu, out).astype(np.float32)
