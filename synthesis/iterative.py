"""The iterative per-slice pipeline (docs/METHOD.md §5), batched over slices and vertebrae.

For every slice of a view (sagittal or coronal) in which the target vertebra appears -- *all* of
them, not only the central 80 % -- a :class:`SliceTask` runs up to three steps on a running image
and label map: the upper neighbour (if it has more than 200 mm² in the slice, i.e. 200 px at 1 mm,
scaled by the pixel area), then the lower neighbour on that result (same rule), then the target on
that result. Neighbours are the nearest labels above / below the target's centroid in the block.

:class:`Scheduler` keeps up to ``batch_size`` tasks in flight and sends each one's *next* step
through one forward pass: tasks of different slices, steps and vertebrae share a batch, and a task
that finishes is replaced by the next one at once, so batches stay full across vertebrae. With
``batch_size=1`` it is exactly the one-slice-at-a-time loop (upper, lower, target for slice 1, then
slice 2, ...). The generator treats samples independently, so both give the same result up to float
rounding (tested).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from data import band as bd
from synthesis.compose import OutputRule, compose_target
from data.sample import target_rows_batch
from synthesis.steps import build_batch, update_labels
from synthesis.views import SliceGrid

NEIGHBOUR_MIN_MM2 = 200.0  # original: > 200 px at 1 mm


@dataclass
class VertebraInput:
    """One straightened block: ``image`` (X, Y, Z) float32 in [-1, 1], ``labels`` (X, Y, Z) int,
    ``cam`` (X, Y, Z) float32 in [0, 1] or None, ``spacing_mm`` (3,)."""
    key: str
    label: int
    image: np.ndarray
    labels: np.ndarray
    cam: Optional[np.ndarray]
    spacing_mm: Sequence[float]


@dataclass
class ViewResult:
    """Synthesis of one block in one view, on the block's grid. ``image`` [-1, 1] float32 (real
    slices where the target is absent), ``labels`` int (the running label maps), ``prob`` float32
    target soft mask (0 in slices without the target), ``slices`` the synthesised slice indices,
    ``touched`` the voxels that came from a synthesised slice (the rest is the real block),
    ``heights_rows`` SHRM heights of the target step (model rows), ``height_mm`` their median in mm."""
    key: str
    label: int
    view: str
    image: np.ndarray
    labels: np.ndarray
    prob: np.ndarray
    slices: np.ndarray
    heights_rows: np.ndarray
    height_mm: float
    seconds: float
    touched: np.ndarray  # (X, Y, Z) bool: voxels written from a synthesised slice


@dataclass
class SliceTask:
    """The running state of one slice: image ``(S, S)`` [-1, 1], labels ``(S, S)``, cam ``(S, S)``."""
    owner: int
    key: str
    index: int
    image: np.ndarray
    labels: np.ndarray
    cam: np.ndarray
    ratio: float
    band_rows: int
    min_px: int
    neighbour_min_px: float
    steps: Deque[int]               # labels still to synthesise; the target is last
    target: int
    col_mm: float = 1.0             # pixel size across the slice (the output rule's margin)
    band_cols: Optional[Tuple[int, int]] = None  # band mask columns on the canvas (None: all)
    real_image: Optional[np.ndarray] = None   # the slice before any step (output rule 'real')
    real_labels: Optional[np.ndarray] = None
    prob: Optional[np.ndarray] = None
    height_rows: float = float("nan")
    seconds: float = 0.0

    def __post_init__(self):
        if self.real_image is None:
            self.real_image, self.real_labels = self.image, self.labels

    def next_label(self) -> Optional[int]:
        """The label of the next step, skipping neighbours too small in the running label map."""
        while self.steps:
            lab = self.steps[0]
            if lab == self.target or np.count_nonzero(self.labels == lab) > self.neighbour_min_px:
                return lab
            self.steps.popleft()
        return None


def neighbours(labels3d: np.ndarray, target: int):
    """``(upper, lower)``: the labels whose centroid row (axis 0) is nearest above / below the
    target's (None when there is none)."""
    present = [int(v) for v in np.unique(labels3d) if v > 0]
    rows = {v: float(np.nonzero(labels3d == v)[0].mean()) for v in present}
    if target not in rows:
        return None, None
    above = [v for v in present if v != target and rows[v] < rows[target]]
    below = [v for v in present if v != target and rows[v] > rows[target]]
    upper = max(above, key=lambda v: rows[v]) if above else None
    lower = min(below, key=lambda v: rows[v]) if below else None
    return upper, lower


class _Accumulator:
    """Collects the finished slices of one vertebra into block-sized volumes."""

    def __init__(self, owner: int, v: VertebraInput, grid: SliceGrid, band_rows: int,
                 coronal_band: str = "canvas"):
        t0 = time.perf_counter()
        self.v, self.grid = v, grid
        self.image = v.image.astype(np.float32, copy=True)
        self.labels = v.labels.copy()
        self.prob = np.zeros(v.image.shape, np.float32)
        self.touched = np.zeros(v.image.shape, bool)
        target = v.labels == v.label
        self.slices = grid.slices_with(target)
        self.heights: Dict[int, float] = {}
        self.band_cols = grid.band_cols(coronal_band)
        self.tasks = self._make_tasks(owner, band_rows, target)
        self.remaining = len(self.tasks)
        self.seconds = time.perf_counter() - t0

    def _make_tasks(self, owner: int, band_rows: int, target: np.ndarray) -> List[SliceTask]:
        g, v = self.grid, self.v
        idx = self.slices
        if idx.size == 0:
            return []
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        labels = g.take(v.labels, idx, "label").astype(np.int32)
        keep = (labels == v.label).any(axis=(1, 2))  # a sliver may vanish when resampled / cropped
        idx, labels = idx[keep], labels[keep]
        self.slices = idx
        images = g.take(v.image, idx, "image")
        cams = np.zeros_like(images) if v.cam is None else g.take(v.cam, idx, "cam")
        upper, lower = neighbours(v.labels, v.label)
        steps = [s for s in (upper, lower) if s is not None] + [v.label]
        min_px = bd.min_target_pixels(g.pixel_area_mm2)
        nb_px = NEIGHBOUR_MIN_MM2 / g.pixel_area_mm2
        return [SliceTask(owner, v.key, int(z), images[i], labels[i], cams[i], bd.slice_ratio(int(z), lo, hi),
                          band_rows, min_px, nb_px, deque(steps), v.label, g.pixel_mm[1],
                          self.band_cols, images[i], labels[i])
                for i, z in enumerate(idx)]

    def finish(self, task: SliceTask) -> bool:
        """Store a finished task; True when the vertebra is complete."""
        g = self.grid
        g.put(self.image, [task.index], task.image[None], "image")
        g.put(self.labels, [task.index], task.labels[None], "label")
        g.put(self.prob, [task.index], task.prob[None], "prob")
        g.put(self.touched, [task.index], np.ones((1,) + task.image.shape, bool), "label")
        self.heights[task.index] = task.height_rows
        self.seconds += task.seconds
        self.remaining -= 1
        return self.remaining == 0

    def result(self) -> ViewResult:
        h = np.array([self.heights[int(i)] for i in self.slices], np.float64)
        mm = float(np.median(h) * self.grid.pixel_mm[0]) if h.size else float("nan")
        return ViewResult(self.v.key, self.v.label, self.grid.view, self.image, self.labels, self.prob,
                          self.slices, h, mm, self.seconds, self.touched)


class ModelStep:
    """Runs one step for a list of tasks: batch -> ``model.infer`` -> new running image/labels.
    After a target step the task holds the *output* slice of ``rule``
    (:mod:`synthesis.compose`); after a neighbour step, the running composite (context only)."""

    def __init__(self, model, device, rule: OutputRule = OutputRule()):
        self.model, self.device, self.rule = model, torch.device(device), rule

    def __call__(self, tasks: List[SliceTask]) -> None:
        labs = np.array([t.next_label() for t in tasks])
        images = np.stack([t.image for t in tasks])
        labels = np.stack([t.labels for t in tasks])
        # the CAM belongs to the target: neighbour steps get none (the network then sees 1 - 0 = 1)
        cams = np.stack([t.cam if lab == t.target else np.zeros_like(t.cam) for t, lab in zip(tasks, labs)])
        batch = build_batch(images, labels, cams, labs,
                            [t.ratio for t in tasks], tasks[0].band_rows,
                            np.array([t.min_px for t in tasks]), [t.key for t in tasks],
                            [t.index for t in tasks], self.device,
                            band_cols=None if all(t.band_cols is None for t in tasks) else
                            [t.band_cols or (0, images.shape[2]) for t in tasks])
        with torch.inference_mode():
            out = self.model.infer(batch)
        fake = out["fake_B"][:, 0].float().cpu().numpy()
        seg = out["seg"][:, 0].float().cpu().numpy()
        height = out["height_pred"].reshape(-1).float().cpu().numpy()
        x1, x2 = batch["x1"].cpu().numpy(), batch["x2"].cpu().numpy()
        band_top = batch["band_top"].cpu().numpy()
        new_labels = update_labels(labels, labs, x1, x2, band_top, tasks[0].band_rows, height, seg)
        final = [i for i, t in enumerate(tasks) if labs[i] == t.target]
        composed = None
        if final:
            composed = self._output([tasks[i] for i in final], images[final], labels[final],
                                    band_top[final], height[final], out, final)
        for i, t in enumerate(tasks):
            if labs[i] == t.target:
                j = final.index(i)
                t.image, t.labels, t.prob = composed[0][j], composed[1][j], composed[2][j]
                t.height_rows = float(max(height[i], x2[i] - x1[i]))
            else:
                t.image, t.labels = fake[i], new_labels[i]
            t.steps.popleft()

    def _output(self, tasks: List[SliceTask], images, labels, band_top, height, out, sel):
        """The output slices of the target steps ``sel`` of the batch (see :mod:`synthesis.compose`)."""
        rule = self.rule
        gen = out["fake_B_raw"][sel, 0].float().cpu().numpy()
        gen_seg = out["seg_raw"][sel, 0].float().cpu().numpy()
        targets = np.array([t.target for t in tasks])
        if rule.neighbours == "real":
            base_img = np.stack([t.real_image for t in tasks])
            base_lab = np.stack([t.real_labels for t in tasks])
        else:
            base_img, base_lab = images, labels
        masks, bx1, bx2 = target_rows_batch(base_lab, targets, np.array([t.min_px for t in tasks]))
        margin = np.array([int(np.ceil(rule.margin_mm / max(t.col_mm, 1e-6))) for t in tasks])
        return compose_target(base_img, base_lab, targets, masks, bx1, bx2, gen, gen_seg, height,
                              band_top, tasks[0].band_rows, rule, margin)


class Scheduler:
    """Streams tasks through ``step`` in batches of at most ``batch_size`` (see module doc)."""

    def __init__(self, step: Callable[[List[SliceTask]], None], batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.step, self.batch_size = step, int(batch_size)

    def run(self, tasks: Iterable[SliceTask]) -> Iterator[List[SliceTask]]:
        """Yield lists of finished tasks after each forward pass."""
        source = iter(tasks)
        active: List[SliceTask] = []
        exhausted = False
        while True:
            while not exhausted and len(active) < self.batch_size:
                t = next(source, None)
                if t is None:
                    exhausted = True
                else:
                    active.append(t)
            if not active:
                return
            t0 = time.perf_counter()
            self.step(active)  # every task shares synthesize_view's band rows
            share = (time.perf_counter() - t0) / len(active)
            nxt = [t.next_label() for t in active]
            for t in active:
                t.seconds += share
            done = [t for t, lab in zip(active, nxt) if lab is None]
            active = [t for t, lab in zip(active, nxt) if lab is not None]
            if done:
                yield done


def synthesize_view(vertebrae: Iterable[VertebraInput], step: Callable[[List[SliceTask]], None],
                    view: str, image_size: int, band_rows: int, batch_size: int,
                    fit: str = "crop", coronal_band: str = "canvas") -> Iterator[ViewResult]:
    """Run the iterative pipeline over ``vertebrae`` in one view with the model's image size and
    training band height (rows), block fitting (``fit``, see :mod:`synthesis.views`) and coronal
    band columns (``coronal_band``, the training option); yields each vertebra's
    :class:`ViewResult` as soon as its last slice is done (completion order)."""
    accs: Dict[int, _Accumulator] = {}
    ready: Deque[int] = deque()

    def tasks() -> Iterator[SliceTask]:
        for owner, v in enumerate(vertebrae):
            grid = SliceGrid(view, image_size, tuple(v.image.shape),
                             tuple(float(s) for s in v.spacing_mm), fit)
            acc = _Accumulator(owner, v, grid, band_rows, coronal_band)
            accs[owner] = acc
            if not acc.tasks:
                ready.append(owner)
            yield from acc.tasks
            acc.tasks = []

    for done in Scheduler(step, batch_size).run(tasks()):
        for t in done:
            if accs[t.owner].finish(t):
                ready.append(t.owner)
        while ready:
            yield accs.pop(ready.popleft()).result()
    while ready:
        yield accs.pop(ready.popleft()).result()
