"""GAN training/eval samples from straightened blocks (docs/METHOD.md §2; the batch dict: data/sample.py).

One sample = one 2D slice of one vertebra's straightened block:

* ``aligned_sagittal`` (default): ``block[:, :, z]`` (rows SI, columns AP), z drawn from the
  central 80 % of the target's LR extent with triangular weights.
* ``aligned_coronal``: ``block[:, y, :]`` (rows SI, columns LR), y drawn from the central 80 % of
  the target's AP extent, pasted into the centre of an ``image_size``-wide canvas.

Blocks larger than ``image_size`` are centre-cropped (``fit='crop'``, default: the target stays
at the centre, mm per pixel and the band in rows are unchanged) or resampled in-plane by
``image_size / H`` (``fit='resize'``: images bilinear with antialiasing, labels nearest; the band
in rows and the 50 mm² rule follow the new pixel spacing, so the band stays proportional).
Blocks smaller than ``image_size`` are always resampled.

Training draws are seeded per ``(seed, epoch, index)`` (call :meth:`set_epoch`), so the same seed
gives the same samples whatever the worker count; eval/test (``random_slices=False``) uses the
valid slice nearest the target's centre.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from data import band as bd
from layout.cams import CamReader
from data.augment import apply_augment, draw_augment
from data.intensity import hu_to_unit
from data.sample import IMAGE_FILL, one_sample
from data.splits import keys_of, parse_key, read_vertebra_json
from layout.blocks import block_keys, block_paths, load_block
from synthesis.views import SliceGrid
from utils.errors import UserError

log = logging.getLogger(__name__)

DATASET_MODES = ("aligned_sagittal", "aligned_coronal")
COARSE_TARGETS = ("healthy", "all")
FIT_MODES = ("crop", "resize")


@dataclass(frozen=True)
class GanDataConfig:
    """The few values the dataset needs (built from the options by train.py / test.py)."""
    dataroot: str
    vertebra_json: str
    phase: str = "train"
    mode: str = "aligned_sagittal"
    cam_folder: Optional[str] = None
    band_mm: float = 40.0
    vert_class: str = "normal"        # normal: grade <= max_grade; abnormal: grade > max_grade; all
    max_grade: int = 1
    image_size: int = 256
    fit: str = "crop"                 # crop (keep mm per pixel) or resize blocks != image_size
    random_slices: bool = True        # False: deterministic (central valid slice)
    seed: int = 0
    cache_blocks: int = 64            # LRU size in blocks (-1 = all, 0 = none)
    slice_fraction: float = 0.8
    aug_intensity: float = 0.0
    aug_shift_px: int = 0
    allow_missing_cam: bool = False   # a vertebra without a CAM: zeros + warning instead of an error
    band_rows: Optional[int] = None   # fixed band height in rows (a checkpoint's); None: from band_mm
    coarse_target: str = "healthy"    # coarse-stage target: the patient's vertebrae graded <= max_grade
                                      # (healthy, the paper's) or every other vertebra (all)
    coronal_band: str = "slice"       # coronal band mask over the slice's own columns (slice, the
                                      # authors') or the whole canvas (canvas)


@dataclass
class _Block:
    ct: np.ndarray        # (H, W, D) float16 in [-1, 1]
    label: np.ndarray     # (H, W, D) uint8/int VerSe ids
    spacing: np.ndarray   # (3,) mm
    cam: Optional[np.ndarray]  # (H, W, D) float16 in [0, 1] or None


def select_keys(vertebra_json: str, phase: str, vert_class: str, max_grade: int) -> Dict[str, int]:
    """``{key: grade}`` of ``phase`` filtered by class (``normal``/``abnormal``/``all``)."""
    grades = keys_of(read_vertebra_json(vertebra_json), [phase])
    if vert_class == "normal":
        return {k: g for k, g in grades.items() if g <= max_grade}
    if vert_class == "abnormal":
        return {k: g for k, g in grades.items() if g > max_grade}
    return dict(grades)


class HealthiVertDataset(Dataset):
    """Map-style dataset: item ``i`` is one slice of vertebra ``keys[i]`` as the GAN batch dict."""

    def __init__(self, cfg: GanDataConfig, keys: Optional[List[str]] = None):
        if cfg.mode not in DATASET_MODES:
            raise UserError(f"unknown dataset mode {cfg.mode!r} (choose from {DATASET_MODES})")
        self.cfg = cfg
        self.root = Path(cfg.dataroot)
        if not self.root.is_dir():
            raise UserError("--dataroot is not a folder", self.root)
        if keys is None:
            grades = select_keys(cfg.vertebra_json, cfg.phase, cfg.vert_class, cfg.max_grade)
            keys = sorted(grades)
        have = set(block_keys(self.root, need_ct=True))
        present = [k for k in keys if k in have]
        if len(present) < len(keys):
            log.warning("%d of %d %s vertebrae have no straightened block under %s (skipped): %s",
                        len(keys) - len(present), len(keys), cfg.phase, self.root,
                        ", ".join(sorted(set(keys) - set(present))[:5]))
        if not present:
            raise UserError(f"no straightened blocks for the {cfg.phase!r} {cfg.vert_class} "
                            f"vertebrae of {cfg.vertebra_json} (expected CT/<key>.nii.gz)", self.root)
        self.keys = present
        self.epoch = 0
        self._cache: "OrderedDict[str, _Block]" = OrderedDict()
        self._valid: Dict[Tuple[str, int], tuple] = {}
        if cfg.coarse_target not in COARSE_TARGETS:
            raise UserError(f"unknown coarse target {cfg.coarse_target!r} (choose from {COARSE_TARGETS})")
        # grades of every split: a vertebra's neighbours may be graded in the JSON only
        self._fractured: Dict[str, List[int]] = {}
        if cfg.coarse_target == "healthy" and cfg.vertebra_json:
            splits = read_vertebra_json(cfg.vertebra_json)
            for k, g in keys_of(splits, list(splits)).items():
                if g > cfg.max_grade:
                    c, lab = parse_key(k)
                    self._fractured.setdefault(c, []).append(lab)
        self._unusable: set = set()
        self._cams = CamReader(cfg.cam_folder, cfg.allow_missing_cam)
        self._cams.check(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def set_epoch(self, epoch: int) -> None:
        """Select the per-epoch random stream (training draws depend on (seed, epoch, index))."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ blocks and slices
    def block(self, key: str) -> _Block:
        """Decoded block (LRU-cached; CT stored as float16 [-1, 1] whether cached or not)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ct, lab = load_block(self.root, key)
        if ct is None:
            raise UserError(f"straightened block {key} has no CT", block_paths(self.root, key)[0])
        blk = _Block(hu_to_unit(np.asarray(ct.array, np.float32)).astype(np.float16),
                     np.asarray(lab.array), np.asarray(lab.spacing, np.float64), self._cam(key, ct.shape))
        if self.cfg.cache_blocks != 0:
            self._cache[key] = blk
            while 0 < self.cfg.cache_blocks < len(self._cache):
                self._cache.popitem(last=False)
        return blk

    def _cam(self, key: str, shape) -> Optional[np.ndarray]:
        cam = self._cams.load(key, shape)
        return None if cam is None else cam.astype(np.float16)

    def _band_rows(self, row_mm: float) -> int:
        """Band height in rows: ``cfg.band_rows`` when given (a checkpoint's), else from mm."""
        return int(self.cfg.band_rows) if self.cfg.band_rows else bd.band_rows_from_mm(self.cfg.band_mm, row_mm)

    @property
    def _axis(self) -> int:
        return 2 if self.cfg.mode == "aligned_sagittal" else 1

    def _grid(self, blk: _Block) -> SliceGrid:
        """The block's slice <-> canvas mapping, the one synthesis uses (``SliceGrid``)."""
        view = "sagittal" if self._axis == 2 else "coronal"
        return SliceGrid(view, self.cfg.image_size, tuple(blk.ct.shape),
                         tuple(float(s) for s in blk.spacing), self.cfg.fit)

    def _slice(self, blk: _Block, idx: int):
        """The 2D slice ``idx`` on the image grid: (image, labels, cam|None, (row_mm, col_mm))."""
        take = (lambda v: v[:, :, idx]) if self._axis == 2 else (lambda v: v[:, idx, :])
        g = self._grid(blk)
        win = (slice(g.r0, g.r0 + g.h), slice(g.col0, g.col0 + g.w))
        img = take(blk.ct)[win].astype(np.float32)
        lab = take(blk.label)[win]
        cam = None if blk.cam is None else take(blk.cam)[win].astype(np.float32)
        size, h, w, new_w = g.size, g.h, g.w, g.new_w
        if g.resampled:
            img = _resize(img, size, new_w, "bilinear")
            cam = None if cam is None else _resize(cam, size, new_w, "bilinear")
            lab = lab[np.minimum(((np.arange(size) + 0.5) / (size / h)).astype(int), h - 1)][
                :, np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(int), w - 1)]
        if new_w < size:  # coronal: paste into the centre of the canvas
            img = _paste(img, size, g.c0, IMAGE_FILL)
            lab = _paste(lab, size, g.c0, 0)
            cam = None if cam is None else _paste(cam, size, g.c0, 0.0)
        return img, lab, cam, g.pixel_mm

    def band_cols(self, blk: _Block) -> Optional[Tuple[int, int]]:
        """Columns ``[c0, c1)`` of the band (hole) mask on the canvas: the slice's own columns for
        coronal slices narrower than the canvas with ``coronal_band='slice'`` (the authors'), None
        (every column) otherwise; the rule synthesis uses (``SliceGrid.band_cols``)."""
        return self._grid(blk).band_cols(self.cfg.coronal_band)

    def _candidates(self, key: str, label: int, blk: Optional[_Block] = None):
        """Candidate slice indices, triangular weights, validity, extent (lo, hi); computed once
        per vertebra (small arrays) and kept even when blocks are not cached."""
        if (key, label) in self._valid:
            return self._valid[(key, label)]
        blk = blk or self.block(key)
        other = (0, 1) if self._axis == 2 else (0, 2)
        present = np.flatnonzero((blk.label == label).any(axis=other))
        if present.size == 0:
            raise UserError(f"vertebra {key}: label {label} is absent from its straightened block",
                            block_paths(self.root, key)[1])
        lo, hi = int(present[0]), int(present[-1]) + 1
        z, w = bd.central_candidates(lo, hi, self.cfg.slice_fraction)
        valid = np.array([self._slice_valid(blk, int(i), label) for i in z])
        self._valid[(key, label)] = (z, w, valid, (lo, hi))
        return self._valid[(key, label)]

    def _slice_valid(self, blk: _Block, idx: int, label: int) -> bool:
        _, lab, _, (sy, sx) = self._slice(blk, idx)
        min_px = bd.min_target_pixels(sy * sx)
        return bd.slice_is_valid(bd.clean_mask(lab == label, min_px), min_px,
                                 self._band_rows(sy))

    # ------------------------------------------------------------------ samples
    def choose(self, index: int, blk: Optional[_Block] = None) -> int:
        """Slice index for item ``index`` (seeded draw when training, central valid slice else)."""
        key = self.keys[index]
        z, w, valid, (lo, hi) = self._candidates(key, parse_key(key)[1], blk)
        if self.cfg.random_slices:
            rng = np.random.default_rng([self.cfg.seed, self.epoch, index])
            i = bd.choose_slice(valid, w, rng)
        else:
            i = bd.deterministic_slice(valid, z, (lo + hi - 1) / 2.0)
        if i < 0:
            raise UserError(f"vertebra {key}: no slice in the central {self.cfg.slice_fraction:.0%} "
                            f"has >= 50 mm^2 of target and an SI extent < {self.cfg.band_mm} mm; "
                            "remove it from the vertebra JSON", block_paths(self.root, key)[1])
        return int(z[i])

    def slice_arrays(self, key: str, idx: int):
        """Slice ``idx`` of ``key`` on the image grid (no band, no augmentation):
        ``(image [-1, 1], labels, cam or None, (row_mm, col_mm))``."""
        return self._slice(self.block(key), int(idx))

    def slice_geometry(self, key: Optional[str] = None) -> Tuple[int, Tuple[float, float]]:
        """``(band_rows, (row_mm, col_mm))`` of the slices of ``key`` (default: the first key)."""
        key = key or self.keys[0]
        blk = self.block(key)
        _, _, _, (sy, sx) = self._slice(blk, blk.ct.shape[self._axis] // 2)
        return self._band_rows(sy), (float(sy), float(sx))

    def __getitem__(self, item) -> dict:
        """``item``: an index, or ``(epoch, index)`` (the epoch-aware sampler of train.py, so
        persistent DataLoader workers draw with the right epoch)."""
        if isinstance(item, (tuple, list)):
            self.set_epoch(item[0])
            item = item[1]
        index = int(item)
        for _ in range(len(self.keys)):
            key = self.keys[index]
            blk = self.block(key)
            try:
                idx = self.choose(index, blk)
                break
            except UserError as exc:  # one vertebra without a usable slice must not stop training
                if key not in self._unusable:
                    self._unusable.add(key)
                    log.warning("%s; its samples are drawn from the next vertebra", exc)
                index = (index + 1) % len(self.keys)
        else:
            raise UserError("no vertebra has a usable slice (see the warnings above)", self.root)
        label = parse_key(key)[1]
        lo, hi = self._candidates(key, label, blk)[3]
        img, lab, cam, (sy, sx) = self._slice(blk, idx)
        if self.cfg.random_slices and (self.cfg.aug_intensity > 0 or self.cfg.aug_shift_px > 0):
            rng = np.random.default_rng([self.cfg.seed, self.epoch, index, 1])
            p = draw_augment(rng, self.cfg.aug_intensity, self.cfg.aug_shift_px)
            img, lab, cam = apply_augment(p, img, lab, cam, IMAGE_FILL)
        return one_sample(img, lab, cam, label, self._band_rows(sy),
                           bd.min_target_pixels(sy * sx), bd.slice_ratio(idx, lo, hi), key, idx,
                           self._not_healthy(key), band_cols=self.band_cols(blk))

    def _not_healthy(self, key: str) -> List[int]:
        """Labels of ``key``'s patient graded above ``max_grade`` (not coarse-stage targets)."""
        return self._fractured.get(parse_key(key)[0], [])



def _resize(x: np.ndarray, h: int, w: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode=mode, align_corners=False,
                         antialias=True)[0, 0].numpy()


def _paste(x: np.ndarray, width: int, c0: int, fill) -> np.ndarray:
    out = np.full((x.shape[0], width), fill, dtype=x.dtype)
    out[:, c0:c0 + x.shape[1]] = x
    return out
