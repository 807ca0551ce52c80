"""Complete training checkpoints: one dict with everything needed to resume exactly.

Layout in a run folder: ``ckpt/latest.pth`` (overwritten atomically) and ``ckpt/epoch_NNNN.pth``.
Contents: ``version``, ``model`` (the model wrapper's ``state_dict()``: nets and optimizers),
``schedulers`` (list of state dicts), ``scaler`` (AMP GradScaler state or None), ``epoch`` (epochs
completed), ``step`` (optimisation steps done), ``epoch_step`` (steps done inside the current,
unfinished epoch; 0 at an epoch boundary), ``rng`` (python, numpy, torch, cuda), ``options``
(the run's options dict), ``extra``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from utils.errors import UserError
from utils.fileio import atomic_path

CHECKPOINT_VERSION = 1


def capture_rng() -> Dict[str, Any]:
    """Current RNG states of python, numpy, torch (CPU) and CUDA (if present)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(states: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only restored when CUDA is present)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu() if hasattr(states["torch"], "cpu") else states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def make_checkpoint(model_state: Dict[str, Any], schedulers: Sequence, scaler, epoch: int,
                    step: int, epoch_step: int, options: Dict[str, Any],
                    extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "model": model_state,
        "schedulers": [s.state_dict() for s in schedulers],
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch), "step": int(step), "epoch_step": int(epoch_step),
        "rng": capture_rng(),
        "options": dict(options),
        "extra": dict(extra or {}),
    }


def save_checkpoint(ckpt: Dict[str, Any], path) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a broken latest.pth."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    """Read a checkpoint; missing, unreadable or foreign files are a one-line UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError("checkpoint not found", p)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"cannot read checkpoint ({type(exc).__name__}: {exc})", p) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "version" not in ckpt:
        raise UserError("not a HealthiVert-GAN checkpoint (no 'model'/'version' entries)", p)
    if ckpt["version"] > CHECKPOINT_VERSION:
        raise UserError(f"checkpoint version {ckpt['version']} is newer than this code "
                        f"({CHECKPOINT_VERSION})", p)
    return ckpt


def verify_manifest(path) -> None:
    """A shipped weight file listed in the ``MANIFEST.json`` beside it (``{"files": {name:
    {"sha256": ...}}}``, or one file: ``{"file": name, "sha256": ...}``) must have the listed
    sha256: a changed or partial copy is a UserError."""
    import hashlib
    from utils.fileio import read_json
    p = Path(path)
    manifest = p.parent / "MANIFEST.json"
    if not (p.is_file() and manifest.is_file()):
        return
    entries = read_json(manifest)
    if "file" in entries:
        entries = {"files": {entries["file"]: entries}}
    want = entries.get("files", {}).get(p.name, {}).get("sha256")
    if want and hashlib.sha256(p.read_bytes()).hexdigest() != want:
        raise UserError(f"sha256 differs from {manifest.name} (a changed or partial copy; restore it with "
                        "git checkout)", p)


def refuse_init_with_resume(init, resume: bool, output) -> None:
    """A training CLI's ``--init FILE`` (start from other weights) and ``--resume`` (continue the
    run's own) exclude each other: a one-line error naming the run folder."""
    if init and resume:
        raise UserError("--init and --resume exclude each other (resume continues the run's own "
                        "weights)", output)


def load_model_state(model, ckpt: Dict[str, Any], path) -> None:
    """``model.load_state_dict(ckpt['model'])`` with shape/key mismatches as a UserError."""
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, ValueError) as exc:
        msg = str(exc).splitlines()[0][:300]
        raise UserError(f"checkpoint does not fit the model ({msg})", path) from None


def restore_training(ckpt: Dict[str, Any], schedulers: List, scaler) -> None:
    """Restore schedulers, AMP scaler and RNG states from ``ckpt`` (model handled separately)."""
    for s, st in zip(schedulers, ckpt.get("schedulers", [])):
        s.load_state_dict(st)
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"])
