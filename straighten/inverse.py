"""Inverse straightening: block voxels <-> world mm <-> patient voxels, and painting blocks back.

The forward map of a block (:class:`~layout.blocks.BlockGeometry`) is
``X(r, a, c) = P(r) + (a - ca) V1(r) + (c - cc) V2(r)`` with ``P``, ``V1``, ``V2`` linear
between rows. :func:`block_to_patient` evaluates it and applies the patient affine (exact).
:func:`world_to_block` inverts it by Newton's method on ``(r, a, c)`` started at the nearest row,
and only accepts points whose forward map lands back within ``tol_mm``. :func:`paint_back`
fills a patient-grid array by inverse sampling: every patient voxel within the block's reach is
mapped into the block and the block is sampled there (order 0 for labels, 1 for CT).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

from data.volume import Volume
from layout.blocks import BlockGeometry


def _rows(arr: np.ndarray, r: np.ndarray):
    """Linear interpolation of per-row vectors ``arr`` (H, 3) at fractional rows ``r`` (N,),
    and the derivative d/dr (N, 3)."""
    h = len(arr)
    r = np.clip(r, 0.0, h - 1.0)
    i0 = np.minimum(np.floor(r).astype(np.int64), max(h - 2, 0))
    i1 = np.minimum(i0 + 1, h - 1)
    f = (r - i0)[:, None]
    d = arr[i1] - arr[i0]
    return arr[i0] + f * d, d


def block_to_world(geo: BlockGeometry, idx: np.ndarray) -> np.ndarray:
    """Block indices (N, 3) (fractional allowed) -> world mm (N, 3), RAS+."""
    idx = np.asarray(idx, dtype=np.float64).reshape(-1, 3)
    p, _ = _rows(geo.points_mm, idx[:, 0])
    v1, _ = _rows(geo.step_ap_mm, idx[:, 0])
    v2, _ = _rows(geo.step_lr_mm, idx[:, 0])
    return p + (idx[:, 1:2] - geo.centre_ap) * v1 + (idx[:, 2:3] - geo.centre_lr) * v2


def block_to_patient(geo: BlockGeometry, idx: np.ndarray) -> np.ndarray:
    """Block indices (N, 3) -> continuous patient voxel indices (N, 3)."""
    w = block_to_world(geo, idx)
    inv = np.linalg.inv(geo.patient_affine)
    return w @ inv[:3, :3].T + inv[:3, 3]


def _initial_rows(geo: BlockGeometry, pts: np.ndarray) -> np.ndarray:
    """Starting rows for Newton: projection on the centre row's tangent, refined once by the
    projection on the tangent of the row found."""
    r = np.full(len(pts), float(geo.centre_row))
    for _ in range(2):
        ri = np.clip(np.rint(r).astype(np.int64), 0, len(geo.points_mm) - 1)
        s = geo.step_si_mm[ri]
        r = ri + np.einsum("ij,ij->i", pts - geo.points_mm[ri], s) / np.einsum("ij,ij->i", s, s)
    return r


def world_to_block(geo: BlockGeometry, pts_mm: np.ndarray, iters: int = 6,
                   tol_mm: float = 1e-2) -> Tuple[np.ndarray, np.ndarray]:
    """World mm (N, 3) -> block indices (N, 3) and a validity mask (N,): converged, inside the
    block's row range, and forward map within ``tol_mm`` of the point."""
    x = np.asarray(pts_mm, dtype=np.float64).reshape(-1, 3)
    r = _initial_rows(geo, x)
    ac = np.zeros((len(x), 2))
    for _ in range(iters):  # Newton on (r, a, c)
        p, dp = _rows(geo.points_mm, r)
        v1, dv1 = _rows(geo.step_ap_mm, r)
        v2, dv2 = _rows(geo.step_lr_mm, r)
        m = np.stack([dp + ac[:, :1] * dv1 + ac[:, 1:] * dv2, v1, v2], axis=2)  # Jacobian
        f = x - (p + ac[:, :1] * v1 + ac[:, 1:] * v2)
        try:
            step = np.linalg.solve(m, f[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(m.reshape(-1, 3), f.reshape(-1), rcond=None)[0]
        r = np.clip(r + step[:, 0], -1.0, len(geo.points_mm))
        ac = ac + step[:, 1:]
    idx = np.column_stack([r, ac[:, 0] + geo.centre_ap, ac[:, 1] + geo.centre_lr])
    err = np.linalg.norm(block_to_world(geo, idx) - x, axis=1)
    shape = np.array(geo.block_shape)
    inside = np.all((idx >= -0.5) & (idx <= shape - 0.5), axis=1)
    return idx, inside & (err < tol_mm)


def _roi(geo: BlockGeometry, block: np.ndarray, ref_inv: np.ndarray, ref_shape, nonzero: bool):
    """Bounding box (slices) in the reference grid of the block (or its non-zero voxels)."""
    if nonzero:
        idx = np.argwhere(block != 0)
        if len(idx) > 200000:
            idx = idx[:: len(idx) // 200000 + 1]
    else:
        h, wa, wl = geo.block_shape
        rr = np.arange(h)
        idx = np.concatenate([np.column_stack([rr, np.full(h, a), np.full(h, c)])
                              for a in (0, wa - 1) for c in (0, wl - 1)])
    if len(idx) == 0:
        return None
    vox = block_to_world(geo, idx) @ ref_inv[:3, :3].T + ref_inv[:3, 3]
    lo = np.maximum(np.floor(vox.min(0)).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(vox.max(0)).astype(int) + 3, ref_shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def paint_back(block_array: np.ndarray, geometry: BlockGeometry,
               reference: Optional[Volume] = None, order: int = 0, background: float = 0,
               keep_reference: bool = False, chunk: int = 400000) -> np.ndarray:
    """The block resampled onto the patient grid of ``reference`` (default: the grid the block
    was cut from). Voxels outside the block's reach get ``background`` (or the reference's own
    values with ``keep_reference``). ``order`` 0 for labels, 1 for intensities."""
    if reference is None:
        reference = Volume(np.zeros(geometry.patient_shape, block_array.dtype),
                           geometry.patient_affine)
    out = (np.array(reference.array, dtype=block_array.dtype) if keep_reference
           else np.full(reference.shape, background, dtype=block_array.dtype))
    inv = np.linalg.inv(reference.affine)
    sl = _roi(geometry, block_array, inv, np.array(reference.shape),
              nonzero=(order == 0 and not keep_reference and background == 0))
    if sl is None:
        return out
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    src = block_array if order == 0 else block_array.astype(np.float32)
    for start in range(0, len(grid), chunk):
        vox = grid[start:start + chunk]
        idx, ok = world_to_block(geometry, reference.voxel_to_world(vox))
        if not ok.any():
            continue
        vals = ndimage.map_coordinates(src, idx[ok].T, order=order, mode="nearest")
        v = vox[ok]
        out[v[:, 0], v[:, 1], v[:, 2]] = vals.astype(out.dtype, copy=False)
    return out
