"""``--mode original``: the authors' straightening on the voxel grid, reproduced for comparison.

Reverse-engineered from their reference blocks (``../shared/data/hv0007/straightened_label``;
all-voxel agreement 99.3-99.7 % per block, see ``tests/test_straighten_original.py``):

1. Centroids: their centroid file (or mean voxel index per label, dropping the largest id if
   < 8000 voxels and the smallest if < 6000), sorted by label.
2. Path: piecewise-linear in voxel index space through the centroids, extended 20 voxels past
   both ends along the end segments, the two end points clipped into the array. Each segment
   of length d gets round(d) samples one voxel apart starting at its first point; the end point
   is appended. The tangent is the segment direction (kinks at every centroid).
3. Cross-section per sample: 128 x 128, index (i, j) -> ``p + (i - 64) v_ap + (j - 64) v_lr``
   with ``v_lr = t x e1`` (``e1`` = array axis 1) and ``v_ap = v_lr x t``: AP follows raw array
   axis 1 whatever the scan orientation (their fault on RAS/LAS scans). Labels order 0, fill 0;
   CT order 1 (kept in HU here, fill -1024; they windowed to [0, 255] first).
4. De-pedicle per label: over the samples where the label is on the curve (i = j = 64), the
   first AP index >= 64 where it is absent along column j = 64; the label is deleted at and
   posterior to the *largest* such index, in every sample.
5. Crop for target centroid sample c (its segment's first sample): rows [max(0, c - 128),
   min(N, c + 128)) of the straightened stack, placed at ``(256 - L) // 2`` (centred on the
   clipped slab, not on the centroid); AP rows at 64..191; LR columns 32..95.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage

from data.volume import Volume
from layout.blocks import BlockGeometry
from straighten.core import CT_FILL_HU, Block

SECTION = 128
EXTEND_VOX = 20


def original_centroids(mask: np.ndarray) -> Dict[int, np.ndarray]:
    """Their centroid rule: mean voxel index per label; the largest id is dropped if it has
    < 8000 voxels and the smallest if < 6000."""
    labs = [int(l) for l in np.unique(mask) if l != 0]
    counts = {l: int((mask == l).sum()) for l in labs}
    if labs and counts[max(labs)] < 8000:
        labs.remove(max(labs))
    if labs and counts[min(labs)] < 6000:
        labs.remove(min(labs))
    com = ndimage.center_of_mass(np.ones(mask.shape), mask, labs)
    return {l: np.asarray(c) for l, c in zip(labs, com)}


def _unit(v):
    return v / np.linalg.norm(v)


def original_path(cents: Dict[int, np.ndarray], shape):
    """(points (N, 3), tangents (N, 3), {label: sample index}) in voxel index space."""
    labs = sorted(cents)
    pts = np.array([cents[l] for l in labs], dtype=np.float64)
    if len(pts) == 1:
        d0 = d1 = np.array([1.0, 0.0, 0.0])
    else:
        d0, d1 = _unit(pts[1] - pts[0]), _unit(pts[-1] - pts[-2])
    hi = np.array(shape, float) - 1
    start = np.clip(pts[0] - EXTEND_VOX * d0, 0, hi)
    end = np.clip(pts[-1] + EXTEND_VOX * d1, 0, hi)
    path = np.vstack([start, pts, end])
    p_out, t_out, rows = [], [], {}
    for k, (p, q) in enumerate(zip(path[:-1], path[1:])):
        if 1 <= k <= len(labs):
            rows[labs[k - 1]] = len(p_out)
        d = np.linalg.norm(q - p)
        t = _unit(q - p) if d > 1e-9 else (d0 if k == 0 else d1)
        for i in range(int(round(d))):
            p_out.append(p + i * t)
            t_out.append(t)
    p_out.append(end)
    t_out.append(t_out[-1] if t_out else d1)
    return np.array(p_out), np.array(t_out), rows


def section_axes(tangents: np.ndarray):
    """(v_ap, v_lr) per sample (N, 3), voxel index space."""
    e1 = np.array([0.0, 1.0, 0.0])
    v_lr = np.cross(tangents, e1)
    bad = np.linalg.norm(v_lr, axis=1) < 1e-9          # tangent along axis 1: fall back
    v_lr[bad] = np.cross(tangents[bad], [1.0, 0.0, 0.0])
    v_lr /= np.linalg.norm(v_lr, axis=1, keepdims=True)
    v_ap = np.cross(v_lr, tangents)
    return v_ap / np.linalg.norm(v_ap, axis=1, keepdims=True), v_lr


def _stack(arr: np.ndarray, pts, v_ap, v_lr, order: int, cval: float, dtype) -> np.ndarray:
    ax = np.arange(SECTION) - SECTION // 2
    out = np.empty((len(pts), SECTION, SECTION), dtype=dtype)
    src = arr if order == 0 else arr.astype(np.float32)
    for start in range(0, len(pts), 16):
        sl = slice(start, start + 16)
        co = (pts[sl, None, None, :] + ax[None, :, None, None] * v_ap[sl, None, None, :]
              + ax[None, None, :, None] * v_lr[sl, None, None, :])
        out[sl] = ndimage.map_coordinates(src, co.reshape(-1, 3).T, order=order, cval=cval,
                                          mode="constant").reshape(-1, SECTION, SECTION)
    return out


def depedicle_original(stack: np.ndarray) -> np.ndarray:
    """Their de-pedicle (see module doc, step 4) on a (N, 128, 128) label stack."""
    out = stack.copy()
    c = SECTION // 2
    for lab in [int(l) for l in np.unique(stack) if l != 0]:
        col = stack[:, c:, c] == lab
        rows = np.flatnonzero(col[:, 0])
        if not len(rows):
            continue
        first_gap = np.argmin(col[rows], axis=1)
        first_gap[col[rows].all(axis=1)] = col.shape[1]
        canal = c + int(first_gap.max())
        sub = out[:, canal:, :]
        sub[sub == lab] = 0
    return out


def _geometry(vol: Volume, pts, tan, v_ap, v_lr, lo, hi, pad, shape, target, row) -> BlockGeometry:
    """Exact block -> world map: rows outside the slab continue the end samples linearly."""
    h, w_ap, w_lr = shape
    r = np.arange(h) - pad + lo
    rc = np.clip(r, lo, hi - 1)
    p = pts[rc] + (r - rc)[:, None] * tan[rc]
    m = vol.affine[:3, :3]
    world = p @ m.T + vol.affine[:3, 3]
    return BlockGeometry(
        points_mm=world, step_si_mm=tan[rc] @ m.T, step_ap_mm=v_ap[rc] @ m.T,
        step_lr_mm=v_lr[rc] @ m.T, centre_ap=SECTION // 2 + (w_ap - SECTION) // 2,
        centre_lr=w_lr // 2, block_shape=(h, w_ap, w_lr), patient_affine=vol.affine,
        patient_shape=tuple(vol.shape), target_label=target, target_row=float(row),
        mode="original")


def _crop(stack, lo, hi, pad, shape, fill, dtype):
    h, w_ap, w_lr = shape
    blk = np.full(shape, fill, dtype=dtype)
    ap0 = (w_ap - SECTION) // 2
    lr0 = SECTION // 2 - w_lr // 2
    blk[pad:pad + hi - lo, ap0:ap0 + SECTION, :] = stack[lo:hi, :, lr0:lr0 + w_lr]
    return blk


def straighten_original(label_vol: Volume, centroids_vox: Dict[int, np.ndarray],
                        targets: Sequence[int], ct_vol: Optional[Volume] = None,
                        block_size=(256, 256, 64), keep_arches: bool = False) -> List[Block]:
    """Blocks by the authors' algorithm (voxel grid) for ``targets``."""
    shape = tuple(int(x) for x in block_size)
    if shape[1] < SECTION or shape[2] > SECTION:
        raise ValueError(f"original mode needs AP >= {SECTION} and LR <= {SECTION}, got {shape}")
    pts, tan, rows = original_path(centroids_vox, label_vol.shape)
    v_ap, v_lr = section_axes(tan)
    lab = _stack(label_vol.array, pts, v_ap, v_lr, 0, 0, label_vol.array.dtype)
    if not keep_arches:
        lab = depedicle_original(lab)
    ct = None if ct_vol is None else _stack(ct_vol.array, pts, v_ap, v_lr, 1, CT_FILL_HU,
                                            np.float32)
    n, half, blocks = len(pts), shape[0] // 2, []
    for t in sorted(t for t in targets if t in rows):
        c = rows[t]
        lo, hi = max(0, c - half), min(n, c + half)
        pad = (shape[0] - (hi - lo)) // 2
        geo = _geometry(label_vol, pts, tan, v_ap, v_lr, lo, hi, pad, shape, t, pad + c - lo)
        blocks.append(Block(t, geo, _crop(lab, lo, hi, pad, shape, 0, lab.dtype),
                            None if ct is None else _crop(ct, lo, hi, pad, shape, CT_FILL_HU,
                                                          np.float32)))
    return blocks
