"""Plant a compression fracture into a real CT and its label map; the untouched scan is the twin.

For one vertebra of a real scan (any orientation, any spacing), a smooth displacement along the
vertebral body's own cranio-caudal axis ``e`` compresses the body by a requested anterior /
middle / posterior loss, moves its endplates and cortex with it, and closes the gap by moving
everything above it (the spine, the discs with their heights, the tissue around) down along
``e``; the CT (linear, HU) and the labels (nearest) are resampled consistently.

The body frame: ``e`` from the body centroids of the neighbours (caudal), anterior = from the
whole vertebra's centroid towards its body's centroid made orthogonal to ``e``, right = e ×
anterior. ``s`` is the coordinate along ``e`` (mm, caudal positive) and ``[t, b]`` the body's
extent. With the loss ``L(a)`` a smooth (quadratic) function of the normalised AP position
``a`` through the requested thirds (constant beyond the body) and a radial weight ``w`` (1 within
``radius_mm`` of the body axis, smoothly down to 0 over ``falloff_mm``), a point moves by

    D(s) = L·w·(b − t)   for s < t    (everything above: shifted down)
    D(s) = L·w·(b − s)   for t ≤ s ≤ b (the body: compressed towards its inferior endplate)
    D(s) = 0             for s > b    (everything below: untouched)

The displacement is along ``e`` only and ``L``, ``w`` do not change along ``e``, so the Jacobian
determinant is ``1 + ∂D/∂s = 1 − L·w`` in the body's slab and 1 elsewhere: with ``L ≤ 0.8`` the
map is a diffeomorphism (det ≥ 0.2), and it is inverted exactly, per column, for resampling.
Voxels where ``D = 0`` keep the source values bit for bit.

The planted losses are measured back on the *written* deformed label map (sub-voxel: the body
mask is sampled with linear interpolation on a 0.5 mm grid in the body frame, and A/M/P heights
are taken with :func:`evaluation.heights.measure_own`), and the request is corrected until the
measured losses are within ``tolerance`` of it (a few cheap iterations on the body region).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from data.centroids import centroids_from_mask
from data.volume import Volume
from evaluation.heights import HeightRule, measure_own, measure_pair
from spine.anatomy import genant_grade, neighbours
from straighten.orient import body_centroids
from utils.errors import UserError

MAX_LOSS = 0.8
MIN_FIELD = -0.15           # the field may stretch a third slightly to cancel its neighbours' pull
THIRD_EDGE = 1.0 / 3.0      # normalised AP position of the borders between the thirds
EDGE_WIDTH = 0.06           # width of the smooth steps between the thirds' losses


@dataclass(frozen=True)
class BodyFrame:
    centre: np.ndarray        # body centroid (world mm)
    e: np.ndarray             # caudal unit axis
    ant: np.ndarray           # anterior unit axis (orthogonal to e)
    right: np.ndarray         # e x ant
    top: float                # body extent along e, relative to centre (mm)
    bottom: float
    ap: Tuple[float, float]   # body extent along ant (posterior, anterior), relative to centre
    lr: Tuple[float, float]   # body extent along right
    ends: Optional[np.ndarray] = None   # (2, NA, NL) the body's top / bottom s per (a, l) column
    grid_lo: Tuple[float, float] = (0.0, 0.0)   # (a, l) of ends[:, 0, 0]
    grid_step: float = 1.0

    def column_ends(self, a: np.ndarray, l: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The body's top and bottom (s, mm) in the column at (a, l): measured inside the
        body's footprint, extended smoothly (nearest, then Gaussian) outside it, so each column
        is compressed between its own endplates and the discs keep their heights."""
        if self.ends is None:
            return np.full(np.shape(a), self.top), np.full(np.shape(a), self.bottom)
        ia = (np.asarray(a) - self.grid_lo[0]) / self.grid_step
        il = (np.asarray(l) - self.grid_lo[1]) / self.grid_step
        pts = np.stack([ia.ravel(), il.ravel()])
        top = ndimage.map_coordinates(self.ends[0], pts, order=1, mode="nearest")
        bot = ndimage.map_coordinates(self.ends[1], pts, order=1, mode="nearest")
        return top.reshape(np.shape(a)), bot.reshape(np.shape(a))

    @property
    def half_depth(self) -> float:
        return 0.5 * (self.ap[1] - self.ap[0])

    def a_norm(self, a_mm: np.ndarray) -> np.ndarray:
        """Normalised AP position: +1 at the anterior wall, −1 at the posterior wall."""
        return (a_mm - 0.5 * (self.ap[0] + self.ap[1])) / self.half_depth

    def box(self, vol: Volume, s_range, margin_mm: float) -> Tuple[slice, ...]:
        """Index box of ``vol`` around the body frame region s in ``s_range``, a and l within the
        body's extent ± ``margin_mm``."""
        pts = [self.centre + s * self.e + a * self.ant + l * self.right
               for s in s_range for a in (self.ap[0] - margin_mm, self.ap[1] + margin_mm)
               for l in (self.lr[0] - margin_mm, self.lr[1] + margin_mm)]
        idx = vol.world_to_voxel(np.array(pts))
        shape = np.array(vol.array.shape)
        lo = np.clip(np.floor(idx.min(0)) - 1, 0, shape - 1).astype(int)
        hi = np.clip(np.ceil(idx.max(0)) + 2, 1, shape).astype(int)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def coords(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) world -> (N, 3) (s, a_mm, l_mm) in the body frame."""
        rel = np.asarray(pts, float) - self.centre
        return np.stack([rel @ self.e, rel @ self.ant, rel @ self.right], axis=1)


def body_frame(labels: Volume, label: int) -> Tuple[BodyFrame, np.ndarray]:
    """The body frame of ``label`` and its body's world points (N, 3)."""
    cents = {l: labels.voxel_to_world(c[None])[0] for l, c in centroids_from_mask(labels.array).items()}
    if label not in cents:
        raise UserError(f"label {label} is not in the label map", labels.path)
    bodies, _, pts = body_centroids(labels, cents)
    body = pts.get(label)
    if body is None or len(body) < 50:
        raise UserError(f"label {label} has no vertebral body to compress", labels.path)
    above, below = neighbours(label, cents)
    if above not in bodies and below not in bodies:
        raise UserError(f"label {label} has no labelled neighbour to give the spine's axis",
                        labels.path)
    e = bodies.get(below, bodies[label]) - bodies.get(above, bodies[label])
    e /= np.linalg.norm(e)
    ant = bodies[label] - cents[label]
    ant = ant - (ant @ e) * e
    if np.linalg.norm(ant) < 1e-6:
        raise UserError(f"label {label}: cannot tell anterior (body at the vertebra's centroid)",
                        labels.path)
    ant /= np.linalg.norm(ant)
    right = np.cross(e, ant)
    centre = bodies[label]
    rel = body - centre
    s, a, l = rel @ e, rel @ ant, rel @ right
    half = 0.5 * float(np.max(labels.spacing))      # a voxel's half size: body points are centres
    ends, lo, step = _column_ends(s, a, l, half)
    frame = BodyFrame(centre, e, ant, right, float(s.min()) - half, float(s.max()) + half,
                      (float(a.min()) - half, float(a.max()) + half),
                      (float(l.min()) - half, float(l.max()) + half), ends, lo, step)
    return frame, body


def _column_ends(s, a, l, half: float, step: float = 1.0, margin_mm: float = 30.0,
                 sigma_mm: float = 2.0):
    """(2, NA, NL) top / bottom of the body per (a, l) column on a ``step`` grid (± margin),
    filled outside the footprint from the nearest column and smoothed."""
    lo = (float(a.min()) - margin_mm, float(l.min()) - margin_mm)
    na = int(np.ceil((a.max() - a.min() + 2 * margin_mm) / step)) + 1
    nl = int(np.ceil((l.max() - l.min() + 2 * margin_mm) / step)) + 1
    ia = np.clip(np.rint((a - lo[0]) / step).astype(int), 0, na - 1)
    il = np.clip(np.rint((l - lo[1]) / step).astype(int), 0, nl - 1)
    top = np.full((na, nl), np.inf)
    bot = np.full((na, nl), -np.inf)
    np.minimum.at(top, (ia, il), s - half)
    np.maximum.at(bot, (ia, il), s + half)
    have = np.isfinite(top)
    near = ndimage.distance_transform_edt(~have, return_distances=False, return_indices=True)
    top, bot = top[tuple(near)], bot[tuple(near)]
    # widen before smoothing, so every column's own ends stay inside its zone
    k = 2 * int(np.ceil(sigma_mm / step)) + 1
    top = ndimage.gaussian_filter(ndimage.grey_erosion(top, size=(k, k)), sigma_mm / step, mode="nearest")
    bot = ndimage.gaussian_filter(ndimage.grey_dilation(bot, size=(k, k)), sigma_mm / step, mode="nearest")
    return np.stack([top, bot]), lo, step


def loss_profile(a_norm: np.ndarray, loss_amp: Sequence[float]) -> np.ndarray:
    """Loss at normalised AP position (+1 anterior, −1 posterior): each third's loss, joined by
    smooth (logistic) steps at the thirds' borders (a partition of unity, so the profile is
    smooth and each third's mean is close to its value), clipped to [0, MAX_LOSS]."""
    la, lm, lp = (float(x) for x in loss_amp)
    x = np.asarray(a_norm, float)
    with np.errstate(over="ignore"):
        w_a = 1.0 / (1.0 + np.exp(-(x - THIRD_EDGE) / EDGE_WIDTH))
        w_p = 1.0 / (1.0 + np.exp(-(-THIRD_EDGE - x) / EDGE_WIDTH))
    return np.clip(la * w_a + lp * w_p + lm * (1.0 - w_a - w_p), MIN_FIELD, MAX_LOSS)


def _weight(a_mm: np.ndarray, l_mm: np.ndarray, radius_mm: float,
            falloff_mm: float) -> np.ndarray:
    r = np.hypot(a_mm, l_mm)
    if falloff_mm <= 0:
        return (r <= radius_mm).astype(float)
    t = np.clip((r - radius_mm) / falloff_mm, 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * t))                   # 1 -> 0, smooth


@dataclass(frozen=True)
class Field:
    frame: BodyFrame
    loss_amp: Tuple[float, float, float]
    radius_mm: float
    falloff_mm: float
    dither: float = 0.0          # amplitude (loss units) of a ripple across LR, see ``lw``
    dither_period_mm: float = 7.0
    disc_mm: float = 8.0         # the disc above: where a column's shift blends into the spine's

    def spine_shift(self, a: np.ndarray, l: np.ndarray) -> np.ndarray:
        """How far the spine above moves (mm): a plane fitted to the columns' compression over
        the body's footprint (a wedge tilts the spine above, a biconcave depression is filled by
        the disc above rather than dragging the vertebra above into it), times the radial weight."""
        f = self.frame
        if f.ends is None:
            return self.lw(a, l) * (f.bottom - f.top)
        if not hasattr(self, "_plane"):
            na, nl = f.ends.shape[1:]
            ga = f.grid_lo[0] + np.arange(na) * f.grid_step
            gl = f.grid_lo[1] + np.arange(nl) * f.grid_step
            A, L = np.meshgrid(ga, gl, indexing="ij")
            inside = (A >= f.ap[0]) & (A <= f.ap[1]) & (L >= f.lr[0]) & (L <= f.lr[1])
            comp = loss_profile(f.a_norm(A), self.loss_amp) * (f.ends[1] - f.ends[0])
            X = np.stack([np.ones(inside.sum()), A[inside], L[inside]], axis=1)
            coef = np.linalg.lstsq(X, comp[inside], rcond=None)[0]
            object.__setattr__(self, "_plane", coef)
        c = self._plane
        plane = np.maximum(c[0] + c[1] * a + c[2] * l, 0.0)
        return plane * _weight(a, l, self.radius_mm, self.falloff_mm)

    def _pieces(self, a, l):
        """Per column: loss × weight, the body's ends, its top's shift, the spine's shift."""
        lw = self.lw(a, l)
        top, bot = self.frame.column_ends(a, l)
        d_top = lw * (bot - top)
        d_up = np.minimum(self.spine_shift(a, l), d_top + 0.8 * self.disc_mm)   # the disc never folds
        return lw, top, bot, d_top, d_up

    def lw(self, a: np.ndarray, l: np.ndarray) -> np.ndarray:
        """Loss × radial weight at body-frame (a, l). A small ripple across LR (``dither``, about
        half a slice of height) lets the columns land on different slices of a thick-slice grid,
        so the measured loss of the written label map follows the request smoothly."""
        f = self.frame
        loss = loss_profile(f.a_norm(a), self.loss_amp)
        if self.dither:
            loss = np.clip(loss + self.dither * np.sin(2 * np.pi * l / self.dither_period_mm),
                           MIN_FIELD, MAX_LOSS)
        return loss * _weight(a, l, self.radius_mm, self.falloff_mm)

    def shift(self, out_pts: np.ndarray) -> np.ndarray:
        """For output (deformed) points, how far to go back along ``e`` to the source point
        (mm, ≥ 0): the exact inverse of the module's map, per column."""
        f = self.frame
        s, a, l = f.coords(out_pts).T
        lw, top, bot, d_top, d_up = self._pieces(a, l)
        g = self.disc_mm
        # forward, per column (s caudal): below the body 0; in the body lw·(bot − s); in the
        # disc above from d_top (at the body's top) to d_up (g mm higher); above that d_up
        disc_lo = top - g + d_up                               # output s of the disc's top
        src = np.where(s >= bot, s,
              np.where(s >= top + d_top, (s - lw * bot) / np.maximum(1 - lw, 1e-6),
              np.where(s >= disc_lo, (top - g) + (s - disc_lo) * g / (g + d_top - d_up),
                       s - d_up)))
        return s - src

    def jacobian_det(self, out_pts: np.ndarray) -> np.ndarray:
        """det of the forward map's Jacobian at the source points of ``out_pts``."""
        f = self.frame
        s, a, l = f.coords(out_pts - self.shift(out_pts)[:, None] * f.e).T
        lw, top, bot, d_top, d_up = self._pieces(a, l)
        g = self.disc_mm
        return np.where((s >= top) & (s <= bot), 1.0 - lw,
                        np.where((s >= top - g) & (s < top), 1.0 + (d_top - d_up) / g, 1.0))

    def moved_box(self, vol: Volume) -> Tuple[slice, ...]:
        """Index box of ``vol`` that holds every voxel the field can move (the rest is untouched)."""
        f = self.frame
        reach = self.radius_mm + self.falloff_mm
        shape = np.array(vol.array.shape)
        corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                            for k in (0, shape[2] - 1)], float)
        w = vol.voxel_to_world(corners)
        s_lo = min(f.coords(w)[:, 0].min(), f.top) - 1.0
        s_hi = float(f.ends[1].max()) if f.ends is not None else f.bottom
        pts = []
        for s in (s_lo, s_hi + 1.0):
            for a in (-reach, reach):
                for l in (-reach, reach):
                    pts.append(f.centre + s * f.e + a * f.ant + l * f.right)
        idx = vol.world_to_voxel(np.array(pts))
        lo = np.clip(np.floor(idx.min(0)) - 1, 0, shape - 1).astype(int)
        hi = np.clip(np.ceil(idx.max(0)) + 2, 1, shape).astype(int)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _resample(vol: Volume, field: Field, order: int, box=None) -> np.ndarray:
    """The deformed array (source values outside the moved region, bit for bit)."""
    out = np.array(vol.array, copy=True)
    box = box or field.moved_box(vol)
    grid = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"), -1)
    idx = grid.reshape(-1, 3)
    world = vol.voxel_to_world(idx)
    d = field.shift(world)
    moved = d > 1e-9
    if moved.any():
        src = vol.world_to_voxel(world[moved] - d[moved, None] * field.frame.e)
        vals = ndimage.map_coordinates(vol.array, src.T, order=order, mode="nearest")
        flat = out[box].reshape(-1)
        flat[moved] = vals.astype(out.dtype) if order == 0 else \
            (np.rint(vals) if np.issubdtype(out.dtype, np.integer) else vals).astype(out.dtype)
        out[box] = flat.reshape(out[box].shape)
    return out


def _frame_block(body_mask: np.ndarray, vol: Volume, frame: BodyFrame, step_mm: float) -> np.ndarray:
    """``body_mask`` (on ``vol``'s grid) sampled in the body frame, (SI, AP anterior first, LR),
    with linear interpolation (sub-voxel) on a ``step_mm`` grid."""
    m = 4.0
    s_ax = np.arange(frame.top - m, frame.bottom + m, step_mm)
    a_ax = np.arange(frame.ap[1] + m, frame.ap[0] - m, -step_mm)            # anterior first
    l_ax = np.arange(frame.lr[0] - m, frame.lr[1] + m, step_mm)
    g = (frame.centre + s_ax[:, None, None, None] * frame.e + a_ax[None, :, None, None] * frame.ant
         + l_ax[None, None, :, None] * frame.right)
    vox = vol.world_to_voxel(g.reshape(-1, 3))
    occ = ndimage.map_coordinates(body_mask.astype(np.float32), vox.T, order=1, mode="constant")
    return occ.reshape(len(s_ax), len(a_ax), len(l_ax)) >= 0.5


def body_heights(body_mask: np.ndarray, vol: Volume, frame: BodyFrame, step_mm: float = 0.5,
                 healthy_mask: Optional[np.ndarray] = None) -> np.ndarray:
    """A/M/P heights (mm) of a body mask (on ``vol``'s grid), sampled in the body frame and
    measured with the project's rule (:mod:`evaluation.heights`). With ``healthy_mask`` (the
    same body before the fracture, same grid), the body is measured as RHLV measures a real body
    against its pseudo-healthy one: thirds and kept columns from the healthy body
    (:func:`evaluation.heights.measure_pair`). Measured on its own, a wedge's short anterior
    columns fall under the rule's 0.7 x centre-column filter and the anterior loss reads low."""
    occ = _frame_block(body_mask, vol, frame, step_mm)
    sp = (step_mm, step_mm, step_mm)
    if healthy_mask is None:
        return np.asarray(measure_own(occ, sp, HeightRule()), float)
    ref = _frame_block(healthy_mask, vol, frame, step_mm)
    return np.asarray(measure_pair(ref, occ, sp, HeightRule(align_shift_vox=0))["H_ori"], float)


@dataclass
class Planted:
    ct: Optional[Volume]
    labels: Volume
    truth: dict
    field: Field


def keep_pieces(source: np.ndarray, out: np.ndarray) -> int:
    """Labels of ``out`` that came out in more 26-connected pieces than in ``source`` (a thin
    process cut by nearest-neighbour resampling on thick slices) keep their largest pieces, as
    many as the source had; the rest (a few voxels) become background. Returns the voxels
    removed."""
    removed = 0
    boxes = ndimage.find_objects(out.astype(np.int64))
    for lab, sl in enumerate(boxes, start=1):
        if sl is None:
            continue
        cc, n = ndimage.label(out[sl] == lab, np.ones((3, 3, 3), bool))
        if n <= 1:
            continue
        src_box = ndimage.find_objects((source == lab).astype(np.int8))
        n_src = ndimage.label(source == lab, np.ones((3, 3, 3), bool))[1] if src_box else 0
        if n <= max(n_src, 1):
            continue
        sizes = ndimage.sum(np.ones(cc.shape), cc, range(1, n + 1))
        drop = np.argsort(sizes)[::-1][max(n_src, 1):] + 1
        mask = np.isin(cc, drop)
        removed += int(mask.sum())
        view = out[sl]
        view[mask] = 0
    return removed


def body_mask(labels: Volume, label: int, body_pts: np.ndarray) -> np.ndarray:
    """Boolean mask of the body points (world, from :func:`body_frame`) on the label grid."""
    mask = np.zeros(labels.array.shape, bool)
    idx = np.rint(labels.world_to_voxel(body_pts)).astype(int)
    mask[tuple(idx.T)] = True
    return mask & (labels.array == label)


def plant_fracture(labels: Volume, label: int, loss_amp: Sequence[float], ct: Optional[Volume] = None,
                   morphology: str = "", density_hu: float = 0.0, radius_mm: float = 45.0,
                   falloff_mm: float = 35.0, tolerance: float = 0.01, max_iter: int = 10) -> Planted:
    """Compress vertebra ``label`` by ``loss_amp`` = requested (anterior, middle, posterior) loss
    fractions; returns the deformed CT and labels and the truth (requested and measured losses,
    heights before and after, grade, morphology)."""
    want = np.asarray(loss_amp, float)
    if want.shape != (3,) or np.any(want < 0) or np.any(want > MAX_LOSS - 0.05):
        raise UserError(f"losses must be three fractions in [0, {MAX_LOSS - 0.05:.2f}], got {list(loss_amp)}")
    if ct is not None and ct.array.shape != labels.array.shape:
        raise UserError("CT and label map are not on the same grid", ct.path)
    frame, body_pts = body_frame(labels, label)
    body = body_mask(labels, label, body_pts)
    h0 = body_heights(body, labels, frame)
    near = frame.box(labels, (frame.top - 5.0, frame.bottom + 5.0), 8.0)   # the body's region
    body_u8 = labels.with_array(body.astype(np.uint8))
    # half a voxel along the body axis, in loss units (0 on fine grids)
    step_e = float(np.abs(np.linalg.inv(labels.affine[:3, :3]) @ frame.e).max() ** -1)
    dither = 0.5 * step_e / (frame.bottom - frame.top) if step_e > 1.25 else 0.0
    ask = want.copy()
    best = None
    for _ in range(max_iter):
        field = Field(frame, tuple(float(x) for x in ask), radius_mm, falloff_mm, dither)
        # the body after: the deformed label inside the deformed body region (arches excluded)
        body_out = (_resample(body_u8, field, 0, near).astype(bool)
                    & (_resample(labels, field, 0, near) == label))
        h1 = body_heights(body_out, labels, frame, healthy_mask=body)
        got = 1.0 - h1 / h0
        err = got - want
        if best is None or np.abs(err).max() < best[0]:
            best = (np.abs(err).max(), field, got, h1)
        if np.all(np.abs(err) <= tolerance):
            break
        ask = np.clip(ask - err, MIN_FIELD, MAX_LOSS - 0.02)
    _, field, got, h1 = best
    lab_out = _resample(labels, field, order=0)
    fragments = keep_pieces(labels.array, lab_out)
    ct_out = None
    if ct is not None:
        arr = _resample(ct, field, order=1)
        if density_hu:       # denser trabecular bone where the body was compressed
            idx = np.argwhere(body_out)
            a = frame.coords(ct.voxel_to_world(idx))[:, 1]
            lw = loss_profile(frame.a_norm(a), field.loss_amp)
            arr = arr.astype(np.float32)
            arr[tuple(idx.T)] += density_hu * lw / np.maximum(1 - lw, 0.2)
            arr = arr.astype(ct.array.dtype)
        ct_out = ct.with_array(arr)
    grade = genant_grade(float(np.max(got)))
    truth = {"label": int(label), "morphology": morphology, "requested_loss": dict(zip("amp", map(float, want))),
             "height_loss": {"anterior": float(got[0]), "middle": float(got[1]), "posterior": float(got[2])},
             "healthy_heights_mm": {"anterior": float(h0[0]), "middle": float(h0[1]), "posterior": float(h0[2])},
             "heights_mm": {"anterior": float(h1[0]), "middle": float(h1[1]), "posterior": float(h1[2])},
             "grade": int(grade), "field_loss": list(field.loss_amp), "radius_mm": radius_mm,
             "falloff_mm": falloff_mm, "fragment_voxels_removed": fragments,
             # lower bound of the Jacobian determinant: 1 - the largest loss × weight (+ ripple)
             "min_jacobian": float(1.0 - min(MAX_LOSS, loss_profile(np.linspace(-1, 1, 201), field.loss_amp).max()
                                                  + field.dither))}
    return Planted(ct_out, labels.with_array(lab_out), truth, field)
