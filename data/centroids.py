"""Centroid files: the original's list format and the VerSe ``*_ctd.json`` format.

Both are returned as ``{label: np.array([i, j, k])}`` in *voxel index* order of the mask array
the file belongs to.

* original: ``[{"label": 20, "X": i, "Y": j, "Z": k}, ...]`` with X/Y/Z the voxel indices of the
  mask array along axes 0/1/2.
* VerSe: ``[{"direction": ["P", "I", "R"]}, {"label": 20, "X": .., "Y": .., "Z": ..}, ...]``
  with X/Y/Z the voxel coordinates in the mask reoriented to ``direction`` (VerSe's
  ``reorient_centroids_to`` convention). Pass the mask's :class:`~data.volume.Volume` to convert.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from data.volume import Volume
from utils.errors import UserError
from utils.fileio import read_json, write_json

Centroids = Dict[int, np.ndarray]


def _entry(d, path) -> tuple:
    try:
        label = int(d["label"])
        xyz = np.array([float(d["X"]), float(d["Y"]), float(d["Z"])])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"centroid entry {d!r} needs integer 'label' and numeric 'X', 'Y', 'Z'", path) from None
    if not np.all(np.isfinite(xyz)):
        raise UserError(f"centroid of label {label} is not finite", path)
    return label, xyz


def _verse_to_index(xyz: np.ndarray, direction, ref: Volume) -> np.ndarray:
    """VerSe coordinates in the ``direction``-oriented frame -> voxel index of ``ref``'s array."""
    # voxel index in the reoriented array -> world -> index in ref
    reor = Volume(np.zeros(ref.shape, np.uint8), ref.affine).reorient("".join(direction))
    world = reor.voxel_to_world(xyz[None])[0]
    return ref.world_to_voxel(world[None])[0]


def read_centroids(path, reference: Optional[Volume] = None) -> Centroids:
    """Read either centroid format. VerSe files need ``reference`` (the mask) to convert axes."""
    data = read_json(path)
    if isinstance(data, dict) and "centroids" in data:
        data = data["centroids"]
    if not isinstance(data, list):
        raise UserError("centroid file must hold a JSON list", path)
    direction = None
    out: Centroids = {}
    for d in data:
        if not isinstance(d, dict):
            raise UserError(f"centroid entry {d!r} is not an object", path)
        if "direction" in d:
            direction = [str(c).upper() for c in d["direction"]]
            if len(direction) != 3:
                raise UserError(f"bad direction {d['direction']!r}", path)
            continue
        if any("nan" in str(v).lower() for v in d.values()):
            continue  # VerSe marks missing vertebrae with NaN
        label, xyz = _entry(d, path)
        out[label] = xyz
    if direction is not None:
        if reference is None:
            raise UserError("VerSe-format centroids (with 'direction') need the mask to convert", path)
        out = {k: _verse_to_index(v, direction, reference) for k, v in out.items()}
    if not out:
        raise UserError("no centroids in file", path)
    return out


def write_centroids(path, centroids: Centroids) -> None:
    """Write the original list format (voxel indices of the mask array), atomically."""
    rows = [{"label": int(k), "X": float(v[0]), "Y": float(v[1]), "Z": float(v[2])}
            for k, v in sorted(centroids.items())]
    write_json(path, rows)


def centroids_from_mask(mask: np.ndarray, labels=None) -> Centroids:
    """Mean voxel index of each label (all non-zero labels if ``labels`` is None); labels
    absent from the mask are left out. Each label is averaged inside its bounding box."""
    from scipy import ndimage
    mask = np.asarray(mask)
    labs = [int(x) for x in np.unique(mask) if x != 0] if labels is None else [int(x) for x in labels]
    boxes = ndimage.find_objects(mask) if mask.size else []
    out = {}
    for lab in labs:
        if lab <= 0 or lab > len(boxes) or boxes[lab - 1] is None:
            continue
        sl = boxes[lab - 1]
        idx = np.argwhere(mask[sl] == lab)
        out[lab] = idx.mean(axis=0) + np.array([s.start for s in sl], dtype=np.float64)
    return out