"""Batched class-activation maps with pytorch-grad-cam, mapped back onto the straightened block.

* :data:`METHODS` - the ``--method`` choices (pytorch-grad-cam classes).
* :func:`raw_cam` - one forward/backward for a whole batch through the library's hooks and the
  method's own ``get_cam_image`` (weights), returning the ReLU'd map at feature-map resolution.
  The library's ``__call__`` would min-max normalise *before* resizing, per image; we resize
  first (bilinear / trilinear, ``align_corners=False``) and then normalise, so the maximum is
  exactly 1 and a per-volume normalisation is possible.
* :func:`cam_for_block` - CAM volume (SI, AP, LR) in [0, 1] for one block: 2D networks get every
  sagittal slice that contains the target (batched), 3D networks the whole block; slices without
  the target (2D) and voxels outside the ``crop`` window are 0.
* :func:`band_mask` - the paper-figure input: a ``band_rows`` band centred on the target zeroed.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from data import band as bd
from Attention.dataset import Preproc, block_to_unit, crop_box, resize_for_net, target_slices
from utils.errors import UserError

METHODS = {"gradcam++": GradCAMPlusPlus, "gradcam": GradCAM, "xgradcam": XGradCAM,
           "eigencam": EigenCAM, "scorecam": ScoreCAM}
NORMS = ("slice", "volume")
FRACTURED = 1


def make_cam(net: torch.nn.Module, layer: torch.nn.Module, method: str = "gradcam++"):
    """A pytorch-grad-cam object hooked on ``layer`` (the net is put in eval mode)."""
    if method not in METHODS:
        raise UserError(f"unknown CAM method {method!r} (choose from {', '.join(METHODS)})")
    return METHODS[method](model=net, target_layers=[layer])


def raw_cam(cam, x: torch.Tensor, target_class: int = FRACTURED) -> np.ndarray:
    """(B, 1, *spatial) input -> (B, *feature_spatial) float32 >= 0, unnormalised.
    Same steps as ``BaseCAM.forward`` up to the per-image scaling."""
    if isinstance(cam, ScoreCAM) and x.ndim != 4:
        raise UserError("scorecam supports 2D classifiers only (use gradcam++ for --dims 3)")
    x = x.to(cam.device)
    targets = [ClassifierOutputTarget(target_class)] * x.shape[0]
    outputs = cam.activations_and_grads(x)
    if cam.uses_gradients:
        cam.model.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs)).backward()
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = (cam.activations_and_grads.gradients[0].numpy()
             if cam.activations_and_grads.gradients else None)
    out = cam.get_cam_image(x, cam.target_layers[0], targets, acts, grads, eigen_smooth=False)
    cam.outputs = outputs.detach()
    return np.maximum(np.asarray(out, dtype=np.float32), 0.0)


def upsample(raw: np.ndarray, size) -> np.ndarray:
    """(B, *feat) -> (B, *size) with (bi/tri)linear interpolation, ``align_corners=False``."""
    t = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[:, None]
    mode = "bilinear" if t.ndim == 4 else "trilinear"
    return F.interpolate(t, size=tuple(int(s) for s in size), mode=mode, align_corners=False)[:, 0].numpy()


def minmax(a: np.ndarray, axes=None, eps: float = 1e-7) -> np.ndarray:
    """Min-max scale to [0, 1] over ``axes`` (all when None); a constant map becomes 0."""
    lo = a.min(axis=axes, keepdims=True)
    rng = a.max(axis=axes, keepdims=True) - lo
    return np.where(rng > eps, (a - lo) / np.maximum(rng, eps), 0.0).astype(np.float32)


def band_mask(unit: np.ndarray, target: np.ndarray, band_rows: int, fill: float = 0.0) -> np.ndarray:
    """Copy of a (SI, AP, LR) [-1, 1] block with, in every slice containing the target, rows
    [a, a + band) set to ``fill`` - the GAN band rule of :mod:`data.band` (target rows [x1, x2),
    a = clamp((x1 + x2) // 2 - band // 2, 0, H - band)) without shifting the context, so the CAM
    stays in the block frame (the GAN dataset shifts it like its input)."""
    out = unit.copy()
    h = unit.shape[0]
    band = int(min(max(band_rows, 1), h))
    for k in target_slices(target):
        x1, x2 = bd.target_rows(target[:, :, k])
        a = bd.band_top(x1, x2, band, h)
        out[a:a + band, :, k] = fill
    return out


def _cam_2d(cam, small: np.ndarray, slices: np.ndarray, out_hw, batch_size: int, norm: str):
    """Upsampled CAMs (len(slices), h, w) for the given LR slices of (LR, S, S) net input."""
    maps, probs = [], []
    for i in range(0, len(slices), batch_size):
        ks = slices[i:i + batch_size]
        x = torch.from_numpy(np.ascontiguousarray(small[ks]))[:, None]
        maps.append(upsample(raw_cam(cam, x), out_hw))
        probs.append(torch.softmax(cam.outputs.float(), 1)[:, FRACTURED].cpu().numpy())
    maps = np.concatenate(maps)
    maps = minmax(maps, axes=(1, 2)) if norm == "slice" else minmax(maps)
    return maps, np.concatenate(probs)


def cam_for_block(cam, ct_hu: np.ndarray, target: np.ndarray, spacing_mm, pre: Preproc,
                  batch_size: int = 32, norm: str = "slice", band_rows: Optional[int] = None):
    """CAM volume (SI, AP, LR) float32 in [0, 1] on the block grid and the fracture probability
    (mean over the target's slices for 2D). ``norm``: ``slice`` = min-max per sagittal slice
    (the original's), ``volume`` = one min-max over all computed slices (3D is always per volume).
    ``band_rows``: compute on the band-masked input (:func:`band_mask`)."""
    if norm not in NORMS:
        raise UserError(f"unknown CAM normalisation {norm!r} (use {' or '.join(NORMS)})")
    unit = block_to_unit(ct_hu, target, spacing_mm, pre.margin_mm)
    if band_rows:
        unit = band_mask(unit, target, band_rows)
    small = resize_for_net(unit, pre)
    r0, r1, c0, c1 = crop_box(ct_hu.shape, pre.crop)
    out = np.zeros(ct_hu.shape, dtype=np.float32)
    if pre.dims == 2:
        ks = target_slices(target)
        maps, probs = _cam_2d(cam, small, ks, (r1 - r0, c1 - c0), batch_size, norm)
        out[r0:r1, c0:c1, ks] = np.transpose(maps, (1, 2, 0))
        return out, float(probs.mean())
    x = torch.from_numpy(np.ascontiguousarray(small))[None, None]
    raw = raw_cam(cam, x)
    out[r0:r1, c0:c1] = minmax(upsample(raw, (r1 - r0, c1 - c0, ct_hu.shape[2]))[0])
    return out, float(torch.softmax(cam.outputs.float(), 1)[0, FRACTURED])


def mid_slice(target: np.ndarray) -> int:
    """LR index of the target's centroid (the mid-sagittal slice through the target)."""
    return int(round(np.argwhere(target)[:, 2].mean()))


def pointing_hit(cam_vol: np.ndarray, target: np.ndarray, where: str = "mid") -> bool:
    """True when the CAM maximum lies inside the target body: on the mid-sagittal slice
    (``mid``) or over the whole volume (``volume``; meaningful for per-volume normalisation)."""
    if where == "mid":
        k = mid_slice(target)
        r, c = np.unravel_index(int(np.argmax(cam_vol[:, :, k])), cam_vol.shape[:2])
        return bool(target[r, c, k])
    idx = np.unravel_index(int(np.argmax(cam_vol)), cam_vol.shape)
    return bool(target[idx])
