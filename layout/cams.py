"""The one reader of attention maps (CAMs): ``<cam_folder>/<key>.nii.gz`` on the block's grid,
values clipped to [0, 1]. Used by training (``training.dataset``), ``test.py`` and 3D synthesis.

A CAM folder that lacks a vertebra's map is an error naming the first missing file: the network
would otherwise see ``1 - CAM = 1`` for that vertebra, a different input from the one it was
trained with. ``allow_missing=True`` (``--allow_missing_cam``) turns it into one warning and zeros.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from utils.errors import UserError

log = logging.getLogger(__name__)


def cam_path(folder, key: str) -> Path:
    """Where the attention map of ``key`` lives in a CAM folder (written by
    ``Attention/grad_CAM_3d_sagittal.py``)."""
    return Path(folder) / f"{key}.nii.gz"


class CamReader:
    def __init__(self, folder: Optional[str], allow_missing: bool = False):
        self.folder = Path(folder) if folder else None
        self.allow_missing = bool(allow_missing)
        self._warned = False
        if self.folder is not None and not self.folder.is_dir():
            raise UserError("CAM folder not found (--cam_folder)", self.folder)

    def path(self, key: str) -> Path:
        return cam_path(self.folder, key)

    def check(self, keys: Iterable[str]) -> None:
        """Fail now (before any work) when a key has no CAM, unless missing CAMs are allowed."""
        if self.folder is None:
            return
        missing = [k for k in keys if not self.path(k).is_file()]
        if not missing:
            return
        if not self.allow_missing:
            raise UserError(f"no CAM for {len(missing)} vertebra(e) (first: {missing[0]}); compute them "
                            "or pass --allow_missing_cam to use zeros (the network then sees 1 - CAM = 1)",
                            self.path(missing[0]))
        log.warning("no CAM for %d vertebra(e) under %s (first: %s): zeros, the network sees 1 - CAM = 1",
                    len(missing), self.folder, missing[0])
        self._warned = True

    def load(self, key: str, shape) -> Optional[np.ndarray]:
        """float32 (X, Y, Z) in [0, 1], or None (no folder, or a missing map when allowed)."""
        if self.folder is None:
            return None
        p = self.path(key)
        if not p.is_file():
            if not self.allow_missing:
                raise UserError("CAM not found (pass --allow_missing_cam to use zeros)", p)
            if not self._warned:
                log.warning("no CAM %s (and possibly others): zeros (the network sees 1 - CAM = 1)", p)
                self._warned = True
            return None
        from data.io import load_volume
        cam = np.asarray(load_volume(p).array, np.float32)
        if cam.shape != tuple(shape):
            raise UserError(f"CAM shape {cam.shape} != block shape {tuple(shape)}", p)
        return np.clip(cam, 0.0, 1.0)
