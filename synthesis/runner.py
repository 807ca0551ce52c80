"""The synthesis stage as a typed function (the CLI in ``eval_3d_sagittal_twostage.py`` is a thin
argparse layer over :func:`run_synthesis`).

Order of work: load the checkpoints (fail before touching any data), select the keys, skip the
complete ones (``skip_existing``), then stream the blocks through the models -- one view: all
vertebrae share the batches; two views: groups of :data:`FUSION_GROUP` vertebrae run through the
sagittal model, then the coronal model, and are fused (:mod:`synthesis.fusion`) -- writing each
vertebra as soon as it is done.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch

from data import band as bd
from layout.cams import CamReader
from data.intensity import hu_to_unit
from data.splits import parse_key
from synthesis.compose import OutputRule
from synthesis.fusion import Synthesis, from_view, fuse
from synthesis.iterative import ModelStep, VertebraInput, synthesize_view
from synthesis.model_io import LoadedModel, load_generator
from synthesis.views import SliceGrid
from layout.synthesis import OutputLayout
from synthesis.writer import Summary, read_summary, summary_row, write_block_outputs
from utils.errors import UserError
from utils.fileio import ensure_dir

log = logging.getLogger(__name__)
FUSION_GROUP = 8  # vertebrae per sagittal+coronal group (bounds memory: ~4 volumes per vertebra)


@dataclass(frozen=True)
class SynthesisOptions:
    """Everything :func:`run_synthesis` needs (the CLI flags, parsed)."""
    dataroot: str
    results_dir: str
    checkpoint: Optional[str] = None
    coronal_checkpoint: Optional[str] = None
    cam_folder: Optional[str] = None
    allow_missing_cam: bool = False
    vertebra_json: Optional[str] = None
    phase: Sequence[str] = ("test",)
    device: str = "auto"
    batch: Optional[int] = None  # None: default_batch(device)
    skip_existing: bool = False
    paint_back: bool = False
    raw_root: Optional[str] = None
    paint_margin_mm: float = 3.0
    output_rule: OutputRule = OutputRule()
    progress: bool = True


def select_keys(dataroot: Path, vertebra_json: Optional[str], phases: Sequence[str]) -> List[str]:
    """Keys of ``phases`` in the JSON that have a block (label and CT), or every block."""
    from layout.blocks import select_blocks
    return list(select_blocks(dataroot, vertebra_json, phases, need_ct=True))


class BlockReader:
    """Loads blocks (and CAMs) as :class:`VertebraInput`; remembers each block's label Volume and
    HU array for writing, and records unusable keys in the summary."""

    def __init__(self, dataroot: Path, cam_folder: Optional[str], summary: Summary,
                 allow_missing_cam: bool = False):
        self.root, self.summary = dataroot, summary
        self.cams = CamReader(cam_folder, allow_missing_cam)
        self.refs: Dict[str, object] = {}

    def _cam(self, key: str, shape) -> Optional[np.ndarray]:
        return self.cams.load(key, shape)

    def read(self, keys: Iterable[str]) -> Iterator[VertebraInput]:
        from layout.blocks import load_block
        for key in keys:
            try:
                ct, lab = load_block(self.root, key)
            except UserError as exc:  # one unreadable block must not stop the others
                log.warning("%s: unreadable block (skipped): %s", key, exc)
                self.summary.add({"key": key, "status": "unreadable"})
                continue
            label = parse_key(key)[1]
            if ct is None or not np.any(lab.array == label):
                why = "no_ct" if ct is None else "target_absent"
                log.warning("%s: %s in its block (skipped)", key, why.replace("_", " "))
                self.summary.add({"key": key, "status": why})
                continue
            self.refs[key] = (lab, ct.array)
            yield VertebraInput(key, label, hu_to_unit(np.asarray(ct.array, np.float32)).astype(np.float32),
                                np.asarray(lab.array).astype(np.int32), self._cam(key, lab.shape),
                                tuple(float(s) for s in lab.spacing))


def resolve_fit(v: VertebraInput, lm: LoadedModel) -> None:
    """Checkpoints written before the ``slice_fit`` option existed do not say how blocks were
    fitted to the image: pick the fit under which this block's pixel size reproduces the trained
    band rows (``crop`` when both do)."""
    if lm.fit is not None:
        return
    for fit in ("crop", "resize"):
        grid = SliceGrid(lm.view, lm.image_size, tuple(v.image.shape), tuple(v.spacing_mm), fit)
        if lm.band_mm is None or bd.band_rows_from_mm(lm.band_mm, grid.pixel_mm[0]) == lm.band_rows:
            break
    lm.fit = fit
    log.info("%s: checkpoint does not record slice_fit; using %r (matches its %d-row band)",
             lm.path, fit, lm.band_rows)


def check_geometry(v: VertebraInput, lm: LoadedModel, warned: set) -> None:
    """Refuse blocks that do not fit the model; warn once when the band in mm would differ from
    the band the model was trained with (other spacing than the training blocks)."""
    resolve_fit(v, lm)
    try:
        grid = SliceGrid(lm.view, lm.image_size, tuple(v.image.shape), tuple(v.spacing_mm), lm.fit)
    except ValueError as exc:
        raise UserError(f"{v.key}: {exc}", lm.path) from None
    if lm.band_mm and lm.view not in warned:
        rows = bd.band_rows_from_mm(lm.band_mm, grid.pixel_mm[0])
        if rows != lm.band_rows:
            log.warning("%s: the trained band is %d rows (%.1f mm at training) but %.1f mm here "
                        "(pixel %.2f mm); using the trained %d rows", v.key, lm.band_rows, lm.band_mm,
                        lm.band_rows * grid.pixel_mm[0], grid.pixel_mm[0], lm.band_rows)
            warned.add(lm.view)


def synthesize_all(inputs: Iterable[VertebraInput], models: Dict[str, LoadedModel], device,
                   batch: int, rule: OutputRule = OutputRule()) -> Iterator[Synthesis]:
    """Run one or both views over ``inputs`` and yield the (fused) result of each vertebra,
    written by the output rule ``rule`` (:mod:`synthesis.compose`)."""
    warned: set = set()

    def checked(vs):
        for v in vs:
            for lm in models.values():
                check_geometry(v, lm, warned)
            yield v

    def run(view, vs):
        lm = models[view]
        return synthesize_view(vs, ModelStep(lm.model, device, rule), view, lm.image_size, lm.band_rows, batch,
                               lm.fit, lm.coronal_band)

    it = checked(inputs)
    first = next(it, None)  # checks the first block (and resolves an unknown fit) before running
    if first is None:
        return
    it = itertools.chain([first], it)
    if len(models) == 1:
        (view,) = models
        for r in run(view, it):
            yield from_view(r, rule.one_body)
        return
    while True:
        group = list(itertools.islice(it, FUSION_GROUP))
        if not group:
            return
        sag = {r.key: r for r in run("sagittal", group)}
        cor = {r.key: r for r in run("coronal", group)}
        for v in group:
            yield fuse(sag.pop(v.key), cor.pop(v.key), rule.one_body)


def load_models(opts: SynthesisOptions, device) -> Dict[str, LoadedModel]:
    """The sagittal and/or coronal generator (checks the flags; never random weights)."""
    if not opts.checkpoint and not opts.coronal_checkpoint:
        raise UserError("give --checkpoint (sagittal model) and/or --coronal_checkpoint")
    models: Dict[str, LoadedModel] = {}
    if opts.checkpoint:
        models["sagittal"] = load_generator(opts.checkpoint, device, "sagittal")
    if opts.coronal_checkpoint:
        models["coronal"] = load_generator(opts.coronal_checkpoint, device, "coronal")
    if not opts.cam_folder and any(lm.trained_with_cam for lm in models.values()):
        log.warning("the model was trained with CAMs but no --cam_folder is given: 1 - CAM = 1")
    return models


def plan(keys: Sequence[str], layout: OutputLayout, opts: SynthesisOptions, summary: Summary) -> List[str]:
    """Keys still to do; with ``skip_existing`` the complete ones keep their previous summary row
    (status ``skipped``)."""
    previous = read_summary(layout.summary) if opts.skip_existing else {}
    todo = []
    for k in keys:
        if opts.skip_existing and layout.complete(k, opts.paint_back):
            summary.add({**previous.get(k, {}), "key": k, "status": "skipped"})
        else:
            todo.append(k)
    return todo


def default_batch(device) -> int:
    """Slices per forward pass when ``--batch`` is not given: 4 on CPU, where the 256-px paper
    generator is compute-bound and larger batches run slower per slice (cache misses; measured in
    docs/BENCHMARKS.md), 16 on CUDA."""
    return 16 if torch.device(device).type == "cuda" else 4


def run_synthesis(opts: SynthesisOptions) -> List[dict]:
    """The whole stage; returns the summary rows."""
    from tqdm import tqdm
    from utils.device import resolve_device
    if opts.batch is not None and opts.batch < 1:
        raise UserError(f"--batch must be >= 1, got {opts.batch}")
    if opts.paint_back and not opts.raw_root:
        raise UserError("--paint_back needs --raw_root (the original case folders)")
    device = resolve_device(opts.device)
    batch = opts.batch or default_batch(device)
    models = load_models(opts, device)
    root = Path(opts.dataroot)
    if not root.is_dir():
        raise UserError("--dataroot is not a folder", root)
    keys = select_keys(root, opts.vertebra_json, opts.phase)
    layout = OutputLayout(ensure_dir(opts.results_dir))
    summary = Summary(layout.summary)
    todo = plan(keys, layout, opts, summary)
    log.info("%d vertebrae to synthesise (%d skipped), views: %s, batch %d, device %s", len(todo),
             len(keys) - len(todo), "+".join(models), batch, device)
    painter = None
    if opts.paint_back:
        from synthesis.paint import PatientPainter
        painter = PatientPainter(root, Path(opts.raw_root), opts.paint_margin_mm)
    reader = BlockReader(root, opts.cam_folder, summary, opts.allow_missing_cam)
    reader.cams.check(todo)
    bar = tqdm(total=len(todo), unit="vertebra", disable=not opts.progress)
    for syn in synthesize_all(reader.read(todo), models, device, batch, opts.output_rule):
        ref, real_hu = reader.refs.pop(syn.key)
        write_block_outputs(syn, ref, layout, real_hu)
        if painter is not None:
            painter.paint(syn, ref, layout)
        summary.add(summary_row(syn))
        bar.update(1)
    bar.close()
    n_written = sum(r["status"] == "written" for r in summary.rows)
    log.info("wrote %d pseudo-healthy blocks to %s (summary: %s)", n_written, layout.root, layout.summary)
    return summary.rows
