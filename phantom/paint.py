"""Paint synthetic HU into a real label map on its own grid (real anatomy, phantom intensities).

* bone = every labelled voxel; a cortical shell where the depth below the label's surface (or
  below the boundary with a touching label), found by erosion and counted in mm, is < ~1 mm;
  textured trabecular bone inside;
* discs: background voxels between consecutive vertebra labels (ids < 40) along the array axis
  closest to the pair's SI direction, with a gap <= 24 mm, in connected pieces lying anterior
  (world +y) of the pair's mid-centroid: the space between the bodies;
* soft tissue (~40 HU) with noise elsewhere.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from phantom.render import HU, texture_tile
from data.volume import Volume

_MAX_GAP_MM = 24.0


def _label_boundary(mask: np.ndarray) -> np.ndarray:
    """True on voxels whose 6-neighbourhood holds another value (label or background)."""
    edge = np.zeros(mask.shape, bool)
    for ax in range(3):
        d = np.diff(mask, axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= d
        edge[tuple(hi)] |= d
    return edge


def _shell_depth(arr: np.ndarray, sp: np.ndarray, max_mm: float) -> np.ndarray:
    """Depth (mm) of every bone voxel below its label's surface by repeated 6-connected
    erosion (one voxel = the mean spacing), capped at ``max_mm``; float32 over ``arr > 0``."""
    step = float(np.mean(sp))
    inner = (arr > 0) & ~_label_boundary(arr)
    depth = np.zeros(arr.shape, np.float32)
    k = 1
    while inner.any() and (k - 1) * step < max_mm:
        depth[inner] = k * step
        inner = ndimage.binary_erosion(inner)
        k += 1
    depth[inner] = k * step
    return depth


def _bone(mask: Volume, rng: np.random.Generator) -> tuple:
    arr = mask.array
    sp = mask.spacing
    bone = arr > 0
    depth = _shell_depth(arr, sp, 2.0 * HU["shell_mm"])[bone]
    idx = np.argwhere(bone)
    world = mask.voxel_to_world(idx).astype(np.float32)
    tile = texture_tile(rng)
    tex = ndimage.map_coordinates(tile, world.T, order=1, mode="grid-wrap")
    # voxels much larger than the 1 mm shell: the shell voxel is a partial-volume mix
    pv = float(min(1.0, HU["shell_mm"] * 1.5 / float(np.mean(sp))))
    w = np.clip(1.5 - depth / HU["shell_mm"], 0.0, 1.0) * pv
    trab = HU["trabecular"] + HU["texture"] * tex
    return bone, (trab * (1 - w) + HU["cortical"] * w).astype(np.float32)


def _gap_along(sub: np.ndarray, l: int, ax: int, sp_ax: float, forward: bool) -> np.ndarray:
    """Distance (mm) along array axis ``ax`` back to the last voxel of label ``l`` (looking
    towards lower indices if ``forward`` else higher); inf where there is none."""
    a = np.moveaxis(sub == l, ax, 0)
    n = a.shape[0]
    i = np.arange(n, dtype=np.float32).reshape((n,) + (1,) * (a.ndim - 1))
    if forward:
        last = np.maximum.accumulate(np.where(a, i, -np.inf), axis=0)
        d = (i - last) * sp_ax
    else:
        nxt = np.minimum.accumulate(np.where(a, i, np.inf)[::-1], axis=0)[::-1]
        d = (nxt - i) * sp_ax
    return np.moveaxis(d, 0, ax)


def _discs(mask: Volume, ct: np.ndarray) -> None:
    arr = mask.array
    labs = [int(l) for l in np.unique(arr) if 0 < l < 40]
    sp = mask.spacing
    objs = ndimage.find_objects(arr)
    for l in labs:
        if l + 1 not in labs:
            continue
        boxes = [objs[l - 1], objs[l]]
        sl = tuple(slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes))
                   for i in range(3))
        sub = arr[sl]
        offset = np.array([s.start for s in sl])
        c1, c2 = (np.asarray(ndimage.center_of_mass(sub == k)) for k in (l, l + 1))
        ax = int(np.argmax(np.abs(c2 - c1) * sp))
        fwd = c2[ax] > c1[ax]                 # label l lies at lower indices along ax
        d1 = _gap_along(sub, l, ax, sp[ax], forward=fwd)
        d2 = _gap_along(sub, l + 1, ax, sp[ax], forward=not fwd)
        cand = (sub == 0) & (d1 + d2 <= _MAX_GAP_MM)
        if not cand.any():
            continue
        w1, w2 = (mask.voxel_to_world(c + offset)[0] for c in (c1, c2))
        si = (w2 - w1) / max(np.linalg.norm(w2 - w1), 1e-6)
        ant = np.array([0.0, 1.0, 0.0]) - si[1] * si
        ant /= max(np.linalg.norm(ant), 1e-6)
        # the gap between the bodies is the connected piece anterior of the pair's centroids;
        # gaps between the arches (facets, laminae) lie behind the canal
        comp, n = ndimage.label(cand)
        idx = np.argwhere(cand)
        proj = (mask.voxel_to_world(idx + offset) - (w1 + w2) / 2) @ ant
        ids = comp[tuple(idx.T)]
        mean = np.bincount(ids, proj, n + 1) / np.maximum(np.bincount(ids, None, n + 1), 1)
        keep = idx[(mean[ids] > 0) & (proj > -8.0)]
        view = ct[sl]
        view[tuple(keep.T)] = HU["disc_annulus"] - 10.0


def paint_from_mask(mask: Volume, seed: int = 0, noise_hu: float = HU["noise"]) -> Volume:
    """CT Volume (float32 HU, integer-valued) on ``mask``'s grid; ``mask`` is not modified."""
    rng = np.random.default_rng([int(seed), 5])
    arr = np.asarray(mask.array)
    if arr.ndim != 3:
        raise ValueError(f"mask must be 3D, got shape {arr.shape}")
    m = Volume(arr.astype(np.int32), mask.affine, mask.path)
    ct = np.full(arr.shape, HU["soft"], np.float32)
    _discs(m, ct)
    bone, hu = _bone(m, rng)
    ct[bone] = hu
    ct += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(noise_hu)
    ct = np.clip(np.round(ct), -1024, 3071).astype(np.float32)
    return Volume(ct, mask.affine.copy(), None)
