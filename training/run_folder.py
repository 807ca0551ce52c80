"""Run folders (``<checkpoints_dir>/<name>/``): creation rules, ``env.json`` and the loss log.

A run folder is never silently overwritten: an existing one is an error unless training
continues (``--continue_train``) or the user asks for ``--overwrite`` (then it is deleted first).
"""
from __future__ import annotations

import csv
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Dict, Optional

from utils.errors import UserError
from utils.fileio import ensure_dir

log = logging.getLogger(__name__)


def prepare_run_dir(run_dir, continue_train: bool, overwrite: bool) -> Path:
    """Create (or reuse, or wipe) the run folder according to the flags."""
    p = Path(run_dir)
    exists = p.exists() and any(p.iterdir())
    if continue_train:
        if not exists:
            raise UserError("--continue_train given but the run folder does not exist", p)
        return p
    if exists:
        if not overwrite:
            raise UserError("run folder already exists; use --continue_train to resume, "
                            "--overwrite to replace it, or another --name", p)
        log.warning("--overwrite: deleting %s", p)
        shutil.rmtree(p)
    return ensure_dir(p)


def environment() -> Dict[str, object]:
    """Versions and machine facts for ``env.json``."""
    import numpy
    import torch
    env = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "argv": sys.argv,
    }
    return env


class LossLog:
    """Appends rows to ``loss_log.csv`` and mirrors scalars to TensorBoard (rank 0 only)."""

    def __init__(self, run_dir, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "loss_log.csv"
        self.writer = None
        self._fields: Optional[list] = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            if self.path.is_file():
                with open(self.path, newline="", encoding="utf-8") as fh:
                    self._fields = next(csv.reader(fh), None)

    def scalars(self, step: int, values: Dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def row(self, row: Dict[str, object]) -> None:
        """One CSV row (header written once; later rows keep the first header's columns)."""
        if not self.enabled:
            return
        new = self._fields is None
        if new:
            self._fields = list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def images(self, step: int, grids: Dict[str, object]) -> None:
        if not self.enabled:
            return
        for k, g in grids.items():
            self.writer.add_image(k, g, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
