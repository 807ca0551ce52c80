"""Options of ``test.py``. Data geometry (image size, band, dataset mode, CAM folder) defaults to
the values the checkpoint was trained with; flags given here override them."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional, Sequence

from training.dataset import DATASET_MODES, FIT_MODES
from options.base import add_dataclass_args, build, opt


@dataclass(frozen=True)
class TestOptions:
    __test__ = False  # not a pytest test class
    dataroot: Optional[str] = opt(None, "root of the straightened blocks (CT/, label/)")
    vertebra_json: Optional[str] = opt(None, "split/grade JSON {train|val|test: {key: grade}}")
    phase: str = opt("val", "split to run on", choices=("train", "val", "test"))
    name: str = opt("healthivert", "run name: the checkpoint is <checkpoints_dir>/<name>/ckpt/")
    checkpoints_dir: str = opt("checkpoints", "parent folder of run folders")
    epoch: str = opt("latest", "checkpoint to load: latest or an epoch number")
    checkpoint: Optional[str] = opt(None, "explicit checkpoint file (overrides --name/--epoch)")
    results_dir: str = opt("results", "output parent: <results_dir>/<name>/<phase>_<epoch>/")
    vert_class: str = opt("all", "vertebrae to run on: all, normal (grade <= healthy_max_grade) "
                                 "or abnormal", choices=("normal", "abnormal", "all"))
    healthy_max_grade: int = opt(0, "largest grade counted as healthy for the summary and "
                                    "--vert_class normal (original metrics: grade 0)",
                                 choices=(0, 1, 2, 3))
    dataset_mode: Optional[str] = opt(None, "slice orientation (default: from the checkpoint)",
                                      choices=DATASET_MODES)
    cam_folder: Optional[str] = opt(None, "CAM folder (default: from the checkpoint)")
    allow_missing_cam: bool = opt(False, "a vertebra without a CAM gets zeros and a warning "
                                         "(default: error)")
    band_mm: Optional[float] = opt(None, "band height in mm (default: from the checkpoint)")
    image_size: Optional[int] = opt(None, "slice size (default: from the checkpoint)")
    slice_fit: Optional[str] = opt(None, "crop or resize (default: from the checkpoint)",
                                   choices=FIT_MODES)
    batch_size: int = opt(8, "slices per forward pass")
    num_threads: int = opt(0, "DataLoader worker processes")
    max_items: int = opt(0, "process at most this many vertebrae (0 = all)")
    baselines: bool = opt(False, "also score the neighbour-copy and neighbour-interpolation "
                                 "baselines on the same slices (docs/EVALUATION.md section 2)")
    no_images: bool = opt(False, "write metrics only (no PNG panels / index.html)")
    device: str = opt("auto", "auto, cpu or cuda")
    no_progress: bool = opt(False, "hide tqdm progress bars")


def make_test_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test.py", description=(
        "Run a trained HealthiVert-GAN checkpoint on a split: PNG panels, index.html and "
        "metrics.csv per vertebra (central slice)."))
    add_dataclass_args(p, TestOptions, "test")
    return p


def parse_test_options(argv: Optional[Sequence[str]] = None) -> TestOptions:
    return build(TestOptions, make_test_parser().parse_args(argv))
