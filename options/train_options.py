"""Options of ``train.py``: data, run folder, optimisation schedule and logging, plus the model
flags of :mod:`options.model_options`. Parsed once into frozen dataclasses; ``--preset paper``
(options/presets/paper.json) sets defaults that explicit flags override."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from synthesis.views import CORONAL_BANDS
from training.dataset import DATASET_MODES, FIT_MODES
from options.base import add_dataclass_args, build, opt, parse_with_preset
from options.model_options import add_model_args, model_values

LR_POLICIES = ("linear", "constant", "cosine")


@dataclass(frozen=True)
class DataOptions:
    dataroot: Optional[str] = opt(None, "root of the straightened blocks (CT/, label/)")
    vertebra_json: Optional[str] = opt(None, "split/grade JSON {train|val|test: {key: grade}}")
    phase: str = opt("train", "split to train on", choices=("train", "val", "test"))
    dataset_mode: str = opt("aligned_sagittal", "slice orientation", choices=DATASET_MODES)
    cam_folder: Optional[str] = opt(None, "folder of <key>.nii.gz CAMs in [0,1] (none: zeros)")
    allow_missing_cam: bool = opt(False, "a vertebra without a CAM in --cam_folder gets zeros and a "
                                         "warning (default: error)")
    band_mm: float = opt(40.0, "band (hole) height in mm; rows = round(band_mm / SI spacing)")
    vert_class: str = opt("normal", "train on healthy (normal) or fractured (abnormal) vertebrae",
                          choices=("normal", "abnormal", "all"))
    healthy_max_grade: int = opt(1, "largest Genant grade counted as healthy (original 1)",
                                 choices=(0, 1, 2, 3))
    coarse_target: str = opt("healthy", "coarse stage's segmentation target: the patient's other "
                                        "vertebrae graded <= healthy_max_grade (healthy, the "
                                        "paper's) or all of them", choices=("healthy", "all"))
    image_size: int = opt(256, "slice size in pixels")
    slice_fit: str = opt("crop", "blocks larger than --image_size: centre-crop (keeps mm per "
                                 "pixel) or resize (keeps the field of view)", choices=FIT_MODES)
    coronal_band: str = opt("slice", "coronal slices narrower than the canvas: the band (hole) "
                                     "mask covers the slice's own columns (slice, the authors') "
                                     "or the whole canvas (canvas, which dilutes the band L1)",
                            choices=CORONAL_BANDS)
    cache_blocks: int = opt(64, "decoded blocks kept in memory per worker (LRU; -1 all, 0 none)")
    aug_intensity: float = opt(0.0, "intensity jitter amplitude in [-1,1] units (0 = off)")
    aug_shift_px: int = opt(0, "random in-plane shift in pixels (0 = off)")
    num_threads: int = opt(0, "DataLoader worker processes (0 = load in the main process)")


@dataclass(frozen=True)
class RunOptions:
    name: str = opt("healthivert", "run name: results go to <checkpoints_dir>/<name>/")
    checkpoints_dir: str = opt("checkpoints", "parent folder of run folders")
    continue_train: bool = opt(False, "resume from <run>/ckpt/<epoch>.pth (exact resume)")
    epoch: str = opt("latest", "checkpoint to resume from: latest or an epoch number")
    overwrite: bool = opt(False, "delete an existing run folder of the same name first")
    init_generator: str = opt("", "start the generator (not the discriminators) from these weights: a "
                                  "shipped file (synthesis/weights/, sha256-checked) or a run's "
                                  "checkpoint (its moving average when it has one); same architecture "
                                  "and view required. Default: random initial weights (the paper)")
    device: str = opt("auto", "auto, cpu or cuda")
    amp: bool = opt(False, "mixed precision (CUDA only; ignored with a warning on CPU): autocast to "
                           "--amp_dtype (bfloat16 by default)")
    seed: int = opt(0, "global seed (weights, slice draws)")
    no_progress: bool = opt(False, "hide tqdm progress bars")
    preset: Optional[str] = opt(None, "JSON preset (options/presets/<name>.json or a path); "
                                      "explicit flags win")


@dataclass(frozen=True)
class ScheduleOptions:
    batch_size: int = opt(12, "slices per batch (per process under torchrun)")
    n_epochs: int = opt(200, "epochs at the initial learning rate")
    n_epochs_decay: int = opt(800, "epochs of linear decay to zero after n_epochs")
    lr_policy: str = opt("linear", "learning-rate schedule", choices=LR_POLICIES)
    max_steps: int = opt(0, "stop after this many optimisation steps (0 = no limit; smoke runs)")
    max_minutes: float = opt(0.0, "stop (with a checkpoint) after this much training wall time, "
                                  "checked every --print_freq steps (0 = no limit)")
    print_freq: int = opt(50, "steps between loss syncs (loss_log.csv, TensorBoard)")
    display_freq: int = opt(500, "steps between TensorBoard image grids")
    eval_freq: int = opt(15, "epochs between evaluations on the eval split (0 = never)")
    eval_phase: str = opt("val", "split for periodic evaluation", choices=("train", "val", "test"))
    eval_max_grade: int = opt(0, "evaluate on eval-split vertebrae with grade <= this "
                                 "(original: grade 0)", choices=(0, 1, 2, 3))
    save_epoch_freq: int = opt(5, "epochs between ckpt/epoch_NNNN.pth copies")


@dataclass(frozen=True)
class TrainOptions:
    data: DataOptions
    run: RunOptions
    schedule: ScheduleOptions
    model: Tuple[Tuple[str, object], ...]   # ModelConfig fields given on the command line

    def model_dict(self):
        return dict(self.model)

    def to_dict(self):
        from options.base import to_dict
        return {**to_dict(self.data, self.run, self.schedule), **self.model_dict()}


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py", description="Train HealthiVert-GAN on straightened vertebra blocks.",
    )
    add_dataclass_args(p, DataOptions, "data")
    add_dataclass_args(p, RunOptions, "run")
    add_dataclass_args(p, ScheduleOptions, "schedule")
    add_model_args(p)
    return p


def parse_train_options(argv: Optional[Sequence[str]] = None) -> TrainOptions:
    """Parse once (preset defaults, then flags) into a frozen :class:`TrainOptions`."""
    ns = parse_with_preset(train_parser(), argv)
    return TrainOptions(build(DataOptions, ns), build(RunOptions, ns), build(ScheduleOptions, ns),
                        tuple(sorted(model_values(ns).items())))


def options_from_dict(d: dict) -> TrainOptions:
    """Rebuild TrainOptions from an options.json / checkpoint dict (unknown keys ignored)."""
    ns = argparse.Namespace(**d)
    return TrainOptions(build(DataOptions, ns), build(RunOptions, ns), build(ScheduleOptions, ns),
                        tuple(sorted(model_values(ns).items())))
