"""``--device auto|cpu|cuda`` resolution, shared by every script that runs a network."""
from __future__ import annotations

from utils.errors import UserError


def resolve_device(name: str = "auto"):
    """Return a ``torch.device``: CUDA when ``auto`` and available, else CPU. Asking for CUDA on a
    machine without it is a user error."""
    import torch
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r} (use auto, cpu or cuda)") from None
