"""Run folders: ``<checkpoints_dir>/<name>/`` holds ``options.json``, ``env.json``,
``loss_log.csv``, TensorBoard events and ``ckpt/``: ``latest.pth`` (overwritten atomically),
``epoch_NNNN.pth`` (GAN, every ``--save_epoch_freq`` epochs) and ``best.pth`` (classifier, the
epoch chosen by ``--select_on``). Every CLI that reads a checkpoint accepts a checkpoint file or a
run folder (then ``ckpt/latest.pth``)."""
from __future__ import annotations

from pathlib import Path

from utils.errors import UserError

CKPT_DIR = "ckpt"
NAMED = ("latest", "best")


def run_dir(checkpoints_dir, name: str) -> Path:
    return Path(checkpoints_dir) / name


def checkpoint_path(run, epoch="latest") -> Path:
    """``<run>/ckpt/latest.pth``, ``best.pth`` or ``epoch_NNNN.pth`` for a numeric ``epoch``."""
    d = Path(run) / CKPT_DIR
    if str(epoch) in NAMED:
        return d / f"{epoch}.pth"
    if not str(epoch).isdigit():
        raise UserError(f"--epoch must be 'latest', 'best' or an epoch number, got {epoch!r}")
    return d / f"epoch_{int(epoch):04d}.pth"


def resolve_checkpoint(path) -> Path:
    """A checkpoint file as given, or a run folder's ``ckpt/latest.pth``."""
    p = Path(path)
    if p.is_dir():
        cand = checkpoint_path(p, "latest")
        if not cand.is_file():
            raise UserError(f"folder holds no {CKPT_DIR}/latest.pth (give a checkpoint file or a "
                            "run folder)", p)
        return cand
    return p
