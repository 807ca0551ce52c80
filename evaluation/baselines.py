"""Neighbour baselines for pseudo-healthy synthesis (docs/EVALUATION.md §2, baselines (a) and (b)).

Both work per sagittal slice of a straightened block (rows SI, columns AP) and paste a strip
with the SHRM composite rule of the GAN (docs/METHOD.md §3): the target rows ``[x1, x2)`` (height h) are
replaced by ``H = max(h, H_pred)`` rows and the context above / below is pushed apart by
``Δ = H − h`` (``Δtop = Δ // 2`` up, the rest down).

* ``copy`` (a): the strip of the *nearer healthy neighbour* in the same slice (its rows, full
  width), rescaled (linear for CT, nearest for the mask) to ``H`` = that neighbour's height.
* ``interp`` (b): linear interpolation of the two neighbours: both strips rescaled to ``H`` =
  their mean height and averaged (CT mean; mask = mean >= 0.5). With one neighbour it is (a).

The neighbours are the levels directly above and below the target in the patient's spine
(``spine.anatomy.neighbours``: T13 sits between T12 and L1, L6 after L5, when the block holds
them). "Healthy" neighbours are those graded 0 in the split file (unknown grades count as healthy);
when no neighbour is healthy, the nearer one is used. The output is a (CT in HU, label) block
pair on the same grid, so every metric treats baselines exactly like the GAN's output.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage

from data.splits import make_key
from spine.anatomy import neighbour_list

METHODS = ("copy", "interp")


def _rows(mask2d: np.ndarray) -> Optional[Tuple[int, int]]:
    r = np.flatnonzero(mask2d.any(axis=1))
    return (int(r[0]), int(r[-1]) + 1) if r.size else None


def _resize_rows(strip: np.ndarray, n_rows: int, order: int) -> np.ndarray:
    """Resample a (h, W) strip to (n_rows, W) along rows."""
    h = strip.shape[0]
    if h == n_rows:
        return strip.astype(np.float64)
    r = (np.arange(n_rows) + 0.5) * h / n_rows - 0.5
    rr, cc = np.meshgrid(r, np.arange(strip.shape[1]), indexing="ij")
    return ndimage.map_coordinates(strip.astype(np.float64), [rr, cc], order=order, mode="nearest")


def composite_rows(image: np.ndarray, x1: int, x2: int, gen: np.ndarray) -> np.ndarray:
    """SHRM composite of one slice with the GAN's own row map (``models.shrm.composite_index``):
    generated rows ``gen`` (H, W) replace ``[x1, x2)`` and the context moves apart by
    ``Δ = H − h`` (``Δ // 2`` up, the rest down; the outermost rows leave the image)."""
    import torch
    from models.shrm import composite_index
    n, H = image.shape[0], gen.shape[0]
    t = lambda v: torch.tensor([int(v)])  # noqa: E731
    idx = composite_index(t(x1), t(x2), t(0), 0, t(H), n)
    top = int(idx["top"][0])
    from_gen = idx["from_gen"][0].numpy()
    out = np.asarray(image, dtype=np.float64)[idx["src_real"][0].numpy()]
    out[from_gen] = gen[np.flatnonzero(from_gen) - top]
    return out


def _strips(ct2d, lab2d, labels, target):
    """{label: (ct strip, mask strip, (r0, r1))} of the neighbours present in the slice."""
    out = {}
    for lab in labels:
        if lab == target:
            continue
        ext = _rows(lab2d == lab)
        if ext is not None:
            out[lab] = (ct2d[ext[0]:ext[1]], (lab2d[ext[0]:ext[1]] == lab), ext)
    return out


def neighbour_health(case: str, label: int, grades: Mapping[str, int],
                     present: Iterable[int]) -> Dict[int, bool]:
    """{neighbour label: graded 0 (or not graded)} for the levels directly above and below."""
    return {nb: grades.get(make_key(case, nb), 0) == 0 for nb in neighbour_list(label, present)}


def baseline_slice(ct2d, lab2d, target: int, method: str, healthy: Dict[int, bool],
                   present: Optional[Iterable[int]] = None):
    """(ct2d, lab2d) of one sagittal slice with the target replaced by the baseline; the input
    slice unchanged when the target or both neighbours are absent. ``present``: the labels of
    the patient's spine that decide the neighbours (default: those in the slice)."""
    t_ext = _rows(lab2d == target)
    if present is None:
        present = np.unique(lab2d).tolist()
    neigh = _strips(ct2d, lab2d, neighbour_list(target, present), target)
    if t_ext is None or not neigh:
        return ct2d, lab2d
    x1, x2 = t_ext
    centre = (x1 + x2) / 2
    order = sorted(neigh, key=lambda l: (not healthy.get(l, True), abs(np.mean(neigh[l][2]) - centre)))
    use = order[:1] if method == "copy" or len(order) == 1 else order[:2]
    H = max(x2 - x1, int(round(np.mean([neigh[l][2][1] - neigh[l][2][0] for l in use]))))
    ct_gen = np.mean([_resize_rows(neigh[l][0], H, 1) for l in use], axis=0)
    m_gen = np.mean([_resize_rows(neigh[l][1], H, 0) for l in use], axis=0) >= 0.5
    ct_out = composite_rows(ct2d, x1, x2, ct_gen)
    lab_ctx = np.where(lab2d == target, 0, lab2d)
    lab_out = composite_rows(lab_ctx, x1, x2, np.where(m_gen, target, 0)).round().astype(lab2d.dtype)
    return ct_out.astype(np.float32), lab_out


def baseline_block(ct: np.ndarray, label: np.ndarray, target: int, method: str,
                   healthy: Optional[Dict[int, bool]] = None):
    """(CT HU float32, label) blocks (SI, AP, LR) with the target rebuilt by ``method`` in every
    sagittal slice (``block[:, :, z]``)."""
    if method not in METHODS:
        raise ValueError(f"baseline method must be one of {METHODS}")
    healthy = healthy or {}
    present = np.unique(label).tolist()
    ct_out = np.array(ct, dtype=np.float32, copy=True)
    lab_out = np.array(label, copy=True)
    for z in np.flatnonzero((label == target).any(axis=(0, 1))):
        c, l = baseline_slice(ct[:, :, z], label[:, :, z], target, method, healthy, present=present)
        ct_out[:, :, z], lab_out[:, :, z] = c, l
    return ct_out, lab_out
