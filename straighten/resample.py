"""Sampling a patient volume along a straightened grid.

The straightened grid has rows along the centre line; row ``r`` is the plane through the curve
point ``P[r]`` spanned by the posterior unit vector ``E1[r]`` and the right unit vector
``E2[r]``. Voxel ``(r, a, c)`` of the straightened volume sits at the world point
``P[r] + (a - centre_ap) * dy * E1[r] + (c - centre_lr) * dx * E2[r]`` (mm, RAS+), which is
mapped to a continuous voxel index of the patient array through the inverse of its affine, so
any orientation and spacing of the input works. CT is sampled linearly (order 1), labels nearest
(order 0).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from data.volume import Volume


def rows_touching_volume(vol: Volume, p_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Boolean (R,) -- rows whose cross-section (within ``radius_mm`` of the curve point) can
    intersect the volume's bounding box."""
    shape = np.array(vol.shape)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (shape - 1)
    w = vol.voxel_to_world(corners)
    lo, hi = w.min(0) - radius_mm, w.max(0) + radius_mm
    return np.all((p_mm >= lo) & (p_mm <= hi), axis=1)


def _to_voxel(vol: Volume, p_mm, e1, e2, spacing_ap_lr):
    """Curve points and in-plane steps (per index) in the patient's voxel index space."""
    inv = np.linalg.inv(vol.affine)
    lin = inv[:3, :3]
    return (p_mm @ lin.T + inv[:3, 3], (e1 * spacing_ap_lr[0]) @ lin.T,
            (e2 * spacing_ap_lr[1]) @ lin.T)


def _window(p, s1, s2, shape, n_ap, n_lr, c_ap, c_lr, step: int = 8):
    """Index ranges (a0, a1, c0, c1) of the plane covering every in-volume point of the rows
    (checked on a coarse grid with a one-cell margin), or None."""
    a = np.arange(0, n_ap + step, step).clip(max=n_ap - 1) - c_ap
    c = np.arange(0, n_lr + step, step).clip(max=n_lr - 1) - c_lr
    g = (p[:, None, None, :] + a[None, :, None, None] * s1[:, None, None, :]
         + c[None, None, :, None] * s2[:, None, None, :])
    margin = step * max(np.abs(s1).max(), np.abs(s2).max()) + 1
    inside = np.all((g > -margin) & (g < np.array(shape) - 1 + margin), axis=-1).any(axis=0)
    if not inside.any():
        return None
    ia, ic = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return (max(a[ia[0]] + c_ap - step, 0), min(a[ia[-1]] + c_ap + step + 1, n_ap),
            max(c[ic[0]] + c_lr - step, 0), min(c[ic[-1]] + c_lr + step + 1, n_lr))


def sample_rows_multi(sources, p_mm, e1, e2, n_ap: int, n_lr: int, spacing_ap_lr, centre_ap,
                      centre_lr, chunk_rows: int = 16, active=None) -> list:
    """Straightened arrays (R, n_ap, n_lr), one per source ``(Volume, order, cval, dtype)``
    (all on the same grid), sampled at the rows' plane points. Only the part of each chunk of
    rows that can reach the volume is sampled; the rest keeps ``cval``."""
    vol0 = sources[0][0]
    outs = [np.full((len(p_mm), n_ap, n_lr), cval, dtype=dt) for _, _, cval, dt in sources]
    srcs = [np.ascontiguousarray(v.array) if o == 0 else v.array.astype(np.float32, copy=False)
            for v, o, _, _ in sources]
    pv, s1, s2 = _to_voxel(vol0, p_mm, e1, e2, spacing_ap_lr)
    idx = np.flatnonzero(np.ones(len(p_mm), bool) if active is None else active)
    for start in range(0, len(idx), chunk_rows):
        rows = idx[start:start + chunk_rows]
        win = _window(pv[rows], s1[rows], s2[rows], vol0.shape, n_ap, n_lr, centre_ap, centre_lr)
        if win is None:
            continue
        a0, a1, c0, c1 = win
        a = (np.arange(a0, a1) - centre_ap).astype(np.float32)
        c = (np.arange(c0, c1) - centre_lr).astype(np.float32)
        vox = (pv[rows, None, None, :] + a[None, :, None, None] * s1[rows, None, None, :]
               + c[None, None, :, None] * s2[rows, None, None, :]).astype(np.float32)
        vox = vox.reshape(-1, 3).T
        for out, src, (_, order, cval, dt) in zip(outs, srcs, sources):
            vals = ndimage.map_coordinates(src, vox, order=order, mode="constant", cval=cval,
                                           prefilter=False)
            out[rows, a0:a1, c0:c1] = vals.reshape(len(rows), a1 - a0, c1 - c0)
    return outs


def sample_rows(vol: Volume, p_mm, e1, e2, n_ap: int, n_lr: int, spacing_ap_lr, centre_ap,
                centre_lr, order: int, cval: float, dtype, chunk_rows: int = 16,
                active=None) -> np.ndarray:
    """Straightened array (R, n_ap, n_lr) sampled from ``vol`` at the rows' plane points."""
    return sample_rows_multi([(vol, order, cval, dtype)], p_mm, e1, e2, n_ap, n_lr,
                             spacing_ap_lr, centre_ap, centre_lr, chunk_rows, active)[0]


def sample_labels_smooth(vol: Volume, nearest: np.ndarray, p_mm, e1, e2, n_ap: int, n_lr: int,
                         spacing_ap_lr, centre_ap, centre_lr, halo_rows: int,
                         active=None) -> np.ndarray:
    """Labels resampled by linear interpolation of each label's indicator (threshold 0.5, the
    most likely label wins) instead of nearest neighbour: surfaces of thick-slice scans land
    between slices instead of on a staircase. ``nearest`` (R, n_ap, n_lr) is the order-0 result;
    each label is only re-sampled on the rows where it appears there, +- ``halo_rows``."""
    out = np.zeros_like(nearest)
    best = np.zeros(nearest.shape, np.float32)
    present = nearest.reshape(len(nearest), -1)
    for lab in [int(l) for l in np.unique(nearest) if l != 0]:
        rows = np.flatnonzero((present == lab).any(axis=1))
        lo, hi = max(rows[0] - halo_rows, 0), min(rows[-1] + halo_rows + 1, len(nearest))
        ind = Volume((vol.array == lab).astype(np.float32), vol.affine)
        act = None if active is None else active[lo:hi]
        p = sample_rows(ind, p_mm[lo:hi], e1[lo:hi], e2[lo:hi], n_ap, n_lr, spacing_ap_lr,
                        centre_ap, centre_lr, order=1, cval=0.0, dtype=np.float32, active=act)
        upd = (p > 0.5) & (p > best[lo:hi])
        out[lo:hi][upd] = lab
        best[lo:hi][upd] = p[upd]
    return out
