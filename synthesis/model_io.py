"""Load a trained generator for synthesis: the checkpoint written by ``train.py``
(``utils.checkpoint``), never random weights.

The slice geometry comes from the checkpoint, so inference sees what training saw: the view from the
run's ``dataset_mode`` option, the block fitting from ``slice_fit``, ``image_size`` and
``band_rows`` from the stored
:class:`models.config.ModelConfig` (the same band rows as training -- the original's 41-row mask at
inference is not repeated). A missing file, a file that is not a checkpoint, a checkpoint without
generator weights, weights that do not fit the stored architecture, or a checkpoint of the other
view are each a one-line :class:`~utils.errors.UserError`. A run trained with ``--ema_decay``
is synthesised with its moving-average generator (``netG_ema``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from utils.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A generator prepared for inference (``prepare_inference``) with the geometry it was trained on."""
    model: Any               # models.healthivert_model.HealthiVertModel (has ``infer``)
    view: str                # 'sagittal' | 'coronal'
    image_size: int
    band_rows: int
    band_mm: Optional[float]
    fit: Optional[str]       # how blocks were fitted to the image: 'crop' | 'resize' | None (unknown)
    trained_with_cam: bool
    path: Path
    options: Dict[str, Any]


def resolve_checkpoint_path(path) -> Path:
    """A checkpoint file, or a run folder (``<run>/ckpt/latest.pth``)."""
    p = Path(path)
    if p.is_dir():
        cand = p / "ckpt" / "latest.pth"
        if not cand.is_file():
            raise UserError("folder holds no ckpt/latest.pth (give a checkpoint file or a run folder)", p)
        return cand
    return p


def load_generator(path, device, expect_view: str) -> LoadedModel:
    """Load ``path`` for ``expect_view`` slices onto ``device`` (eval mode)."""
    from models.config import ModelConfig
    from models.healthivert_model import HealthiVertModel
    from utils.checkpoint import load_checkpoint

    p = resolve_checkpoint_path(path)
    ckpt = load_checkpoint(p, map_location="cpu")
    state = ckpt.get("model")
    if not isinstance(state, dict) or "config" not in state or "netG" not in state:
        raise UserError("checkpoint has no generator weights or model config", p)
    try:
        cfg = ModelConfig.from_dict({**state["config"], "amp": False})
    except (TypeError, ValueError) as exc:
        raise UserError(f"checkpoint model config is invalid ({exc})", p) from None
    options = dict(ckpt.get("options") or {})
    view = str(options.get("dataset_mode", "aligned_sagittal")).replace("aligned_", "")
    if view != expect_view:
        other = "--coronal_checkpoint" if view == "coronal" else "--checkpoint"
        raise UserError(f"checkpoint was trained on {view} slices, not {expect_view} (pass it as {other})", p)
    import dataclasses
    model = HealthiVertModel(dataclasses.replace(cfg, ema_decay=0.0), device)  # inference: one G
    weights = "netG_ema" if "netG_ema" in state else "netG"  # the EMA weights when trained with them
    try:
        model.netG.load_state_dict(state[weights], strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"checkpoint does not fit the model ({str(exc).splitlines()[0][:200]})", p) from None
    model.prepare_inference()  # eval + folded spectral norms (+ channels-last on CPU)
    band_mm = options.get("band_mm")
    log.info("%s model %s: epoch %s, image %d px, band %d rows%s%s", view, p, ckpt.get("epoch", "?"),
             cfg.image_size, cfg.band_rows, f" ({band_mm} mm)" if band_mm else "",
             ", EMA weights" if weights == "netG_ema" else "")
    return LoadedModel(model, view, int(cfg.image_size), int(cfg.band_rows),
                       float(band_mm) if band_mm is not None else None,
                       options.get("slice_fit"), bool(cfg.use_cam and options.get("cam_folder")), p, options)
