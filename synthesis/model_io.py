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

from synthesis.views import trained_coronal_band
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
    checkpoint: Dict[str, Any]   # the whole checkpoint dict (epoch, step, extra …)
    coronal_band: str = "canvas"  # coronal band columns it was trained with (older runs: canvas)


def load_generator(path, device, expect_view: Optional[str] = None,
                   image_size: Optional[int] = None, band_rows: Optional[int] = None,
                   checkpoint: Optional[Dict[str, Any]] = None) -> LoadedModel:
    """Load ``path`` (a checkpoint or a run folder) onto ``device``, prepared for inference.
    ``expect_view``: refuse a checkpoint of the other view; ``image_size`` / ``band_rows``
    override the stored geometry (``test.py`` on other blocks); ``checkpoint``: the dict when the
    caller has read ``path`` already. The one generator loader of ``test.py`` and synthesis."""
    from models.config import ModelConfig
    from models.healthivert_model import HealthiVertModel
    from layout.runs import resolve_checkpoint
    from utils.checkpoint import load_checkpoint

    p = resolve_checkpoint(path)
    if checkpoint is None:
        from utils.checkpoint import verify_manifest
        verify_manifest(p)
    ckpt = checkpoint if checkpoint is not None else load_checkpoint(p, map_location="cpu")
    state = ckpt.get("model")
    if not isinstance(state, dict) or "config" not in state or "netG" not in state:
        raise UserError("checkpoint has no generator weights or model config", p)
    over = {"amp": False, "compile": False}  # inference: eager, fp32
    if image_size:
        over["image_size"] = int(image_size)
    if band_rows:
        over["band_rows"] = int(band_rows)
    try:
        cfg = ModelConfig.from_dict({**state["config"], **over})
    except (TypeError, ValueError) as exc:
        raise UserError(f"checkpoint model config is not usable here ({exc})", p) from None
    options = dict(ckpt.get("options") or {})
    view = str(options.get("dataset_mode", "aligned_sagittal")).replace("aligned_", "")
    if expect_view is not None and view != expect_view:
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
                       options.get("slice_fit"), bool(cfg.use_cam and options.get("cam_folder")), p, options,
                       ckpt, trained_coronal_band(options))


def init_generator(model, path, dataset_mode: str) -> None:
    """Load a generator's weights (its moving average when it has one) into ``model.netG`` (and
    its EMA copy) before training; the discriminators and optimisers start fresh. The stored
    architecture and view must be this run's; anything else is a one-line UserError."""
    from layout.runs import resolve_checkpoint
    from utils.checkpoint import load_checkpoint, verify_manifest
    p = resolve_checkpoint(path)
    verify_manifest(p)
    ckpt = load_checkpoint(p, map_location="cpu")
    state = ckpt.get("model")
    if not isinstance(state, dict) or "config" not in state or "netG" not in state:
        raise UserError("holds no generator weights or model config", p)
    view = str((ckpt.get("options") or {}).get("dataset_mode", "aligned_sagittal"))
    if view != dataset_mode:
        raise UserError(f"generator was trained on {view} slices, this run is {dataset_mode}", p)
    from models.healthivert_model import ARCH_FIELDS
    stored = state["config"]
    diff = [f"{f}={stored.get(f)!r} (run {getattr(model.cfg, f)!r})" for f in ARCH_FIELDS + ("image_size",)
            if stored.get(f) != getattr(model.cfg, f)]
    if diff:
        raise UserError("generator architecture differs: " + ", ".join(diff), p)
    weights = state.get("netG_ema", state["netG"])
    try:
        model.netG.load_state_dict(weights, strict=True)
        if model.netG_ema is not None:
            model.netG_ema.load_state_dict(weights, strict=True)
            model.skip_ema_warmup()     # the average starts from trained weights
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"generator does not fit the model ({str(exc).splitlines()[0][:200]})", p) from None
    log.info("generator initialised from %s (%s)", p, "EMA weights" if "netG_ema" in state else "netG")
