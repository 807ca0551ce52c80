"""The HealthiVert-GAN model wrapper: nets, optimisers, AMP scaler, one training step, inference,
complete state dicts. pix2pix contract: ``set_input`` -> ``optimize_parameters`` ->
``get_current_losses`` / ``get_current_visuals``.

The step is GPU-friendly: no ``.item()``, no NumPy, no per-sample Python loops; the SHRM
composite is a batched gather. Losses are returned as detached 0-d tensors; the caller syncs.

DDP: call :meth:`HealthiVertModel.wrap_ddp` after the process group is initialised. It wraps the
generator and the three discriminators in ``DistributedDataParallel``; ``netG`` / ``netD_*``
stay the raw modules (state dicts without a ``module.`` prefix), the step runs the wrappers. In
the generator step the discriminators run unwrapped with frozen weights (no gradient reduction
needed there); their BatchNorm buffers are re-broadcast from rank 0 on the next DDP forward.
"""
from __future__ import annotations

import itertools
import logging
import math
from typing import Dict, Optional

import torch
import torch.nn as nn

from models import losses as L
from models.config import ModelConfig
from models.registry import build_discriminator, build_generator
from models.shrm import band_crop, composite_index, height_rows, shrm_composite

log = logging.getLogger(__name__)
CKPT_VERSION = 1
ARCH_FIELDS = ("generator", "discriminator", "ngf", "ndf", "n_layers_D")
D_NAMES = ("netD_global", "netD_shape", "netD_local")


class HealthiVertModel:
    """Generator + three PatchGANs (global image, soft target shape, local band) + Adam x2.

    ``device``: a ``torch.device`` or string. AMP only when ``cfg.amp`` and the device is CUDA:
    autocast to ``cfg.amp_dtype`` (bfloat16 by default, no loss scaling; float16 adds a GradScaler,
    whose inf check is a host sync per step). ``cfg.channels_last`` puts every network in
    channels-last layout; ``cfg.compile`` runs them through ``torch.compile`` during training
    (:meth:`networks` and checkpoints keep the plain modules).
    """

    def __init__(self, cfg: ModelConfig, device="cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.netG = build_generator(cfg).to(self.device)
        self.netD_global = build_discriminator(cfg).to(self.device)
        self.netD_shape = build_discriminator(cfg).to(self.device)
        self.netD_local = build_discriminator(cfg).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=cfg.lr, betas=betas)
        d_params = itertools.chain(*(getattr(self, n).parameters() for n in D_NAMES))
        self.optimizer_D = torch.optim.Adam(d_params, lr=cfg.lr, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.amp_dtype = getattr(torch, cfg.amp_dtype)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp
                                           and self.amp_dtype == torch.float16)
        if cfg.channels_last:
            for m in self.networks().values():
                m.to(memory_format=torch.channels_last)
        self._run = {}
        self._set_run(dict(self.networks()))
        # the EMA generator: an exponential moving average of netG's weights (inference only)
        self.netG_ema = None
        if cfg.ema_decay > 0:
            import copy
            self.netG_ema = copy.deepcopy(self.netG).eval().requires_grad_(False)
        self.ema_updates = 0  # EMA steps so far (the warm-up below); saved in checkpoints
        self.inp: Dict[str, torch.Tensor] = {}
        self.out: Dict[str, torch.Tensor] = {}
        self.loss: Dict[str, torch.Tensor] = {}
        self.inference_only = False

    # ------------------------------------------------------------------ setup
    def networks(self) -> Dict[str, nn.Module]:
        """The raw (unwrapped) modules by name."""
        return {"netG": self.netG, **{n: getattr(self, n) for n in D_NAMES}}

    def parameter_counts(self) -> Dict[str, int]:
        """Trainable parameters per network (plus the generator's two stages)."""
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        counts = {name: n(m) for name, m in self.networks().items()}
        for stage in ("coarse", "fine"):
            if hasattr(self.netG, stage):
                counts[f"netG.{stage}"] = n(getattr(self.netG, stage))
        return counts

    def wrap_ddp(self, device_ids: Optional[list] = None) -> None:
        """Wrap G and the Ds in DistributedDataParallel (process group must exist)."""
        from torch.nn.parallel import DistributedDataParallel as DDP
        unused = not self.cfg.use_height  # the height heads get no gradient then
        self._set_run({name: DDP(mod, device_ids=device_ids, find_unused_parameters=unused)
                       for name, mod in self.networks().items()})

    def _set_run(self, modules: Dict[str, nn.Module]) -> None:
        """The modules the training step calls: the plain (or DDP-wrapped) networks, compiled
        with ``torch.compile`` when ``cfg.compile``."""
        if self.cfg.compile:
            modules = {name: torch.compile(mod) for name, mod in modules.items()}
        self._run = modules

    def prepare_inference(self) -> "HealthiVertModel":
        """Eval mode with the generator's spectral norms folded into plain weights
        (:func:`models.layers.fold_spectral_norm`) and, on CPU, channels-last memory layout: same
        outputs up to float rounding, faster :meth:`infer`. One-way: the model can no longer
        train or write a checkpoint."""
        from models.layers import fold_spectral_norm
        self.eval()
        with torch.no_grad():
            fold_spectral_norm(self.netG)
        if self.device.type == "cpu":
            self.netG.to(memory_format=torch.channels_last)
        self.inference_only = True
        return self

    def train(self) -> "HealthiVertModel":
        if self.inference_only:
            raise RuntimeError("model was prepared for inference only (prepare_inference)")
        for m in self.networks().values():
            m.train()
        return self

    def eval(self) -> "HealthiVertModel":
        for m in self.networks().values():
            m.eval()
        return self

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                              enabled=self.use_amp)

    # ------------------------------------------------------------------ data
    def set_input(self, batch: dict) -> None:
        """Move a GAN batch dict (data/sample.py) to the device. Images (B, 1, H, W) float;
        scalars (B,). Raises ValueError when the batch's band height differs from the config."""
        br = batch.get("band_rows")
        if isinstance(br, torch.Tensor) and br.device.type == "cpu" and br.numel():
            if bool((br != self.cfg.band_rows).any()):
                raise ValueError(f"batch band_rows {br.unique().tolist()} != model band_rows "
                                 f"{self.cfg.band_rows}")
        dev = self.device
        img = lambda k: batch[k].to(dev, torch.float32, non_blocking=True)  # noqa: E731
        vec = lambda k: torch.as_tensor(batch[k]).to(dev, non_blocking=True).reshape(-1)  # noqa: E731
        self.inp = {k: img(k) for k in ("A", "B", "mask", "A_mask", "normal_vert")}
        # the hole: band rows of the input take hole_fill (paper -1), whatever the batch holds
        self.inp["A"] = torch.where(self.inp["mask"] > 0.5, torch.full_like(self.inp["A"], self.cfg.hole_fill),
                                    self.inp["A"])
        self.inp["CAM"] = img("CAM") if "CAM" in batch else torch.zeros_like(self.inp["A"])
        self.inp["slice_ratio"] = vec("slice_ratio").float()
        for k in ("x1", "x2", "band_top"):
            self.inp[k] = vec(k).long()
        self.inp["h"] = self.inp["x2"] - self.inp["x1"]
        self.keys = batch.get("key")

    # ------------------------------------------------------------------ forward
    def forward(self, wrapped: bool = True) -> None:
        """Generator forward + SHRM composites (target frame) + D_local crops. ``wrapped=False``
        runs the raw generator even after :meth:`wrap_ddp` (evaluation on one rank: a DDP forward
        may broadcast buffers, a collective the other ranks would not join)."""
        cfg, x = self.cfg, self.inp
        inv_cam = 1.0 - x["CAM"] if cfg.use_cam else torch.ones_like(x["CAM"])
        net = self._run["netG"] if wrapped else self.netG
        with self._autocast():
            o = net(x["A"], x["mask"], x["slice_ratio"], inv_cam)
        n_rows, n_cols = x["A"].shape[-2:]
        width = min(cfg.local_cols, n_cols)
        for stage in ("coarse", "fine"):
            H = (height_rows(o[f"{stage}_height"], x["h"], cfg.band_rows) if cfg.use_height
                 else x["h"])
            idx = composite_index(x["x1"], x["x2"], x["band_top"], cfg.band_rows, H, n_rows)
            o[f"{stage}_H"] = H
            o[f"{stage}_index"] = idx
            o[f"{stage}_comp"] = shrm_composite(o[f"{stage}_img"], x["B"], idx)
            o[f"{stage}_local"] = self._local(o[f"{stage}_comp"], width)
        o["fine_seg_comp"] = shrm_composite(o["fine_seg"], None, o["fine_index"])
        o["real_local"] = self._local(x["B"], width)
        self.out = o

    def _local(self, img: torch.Tensor, width: int) -> torch.Tensor:
        """The local discriminator's input: the band rows x the central ``width`` columns, as the
        authors fed it (``local_input='padded'``: the whole image with everything else set to 0,
        (B, 1, H, W)) or as a crop (``'crop'``, (B, 1, band_rows, width))."""
        x = self.inp
        if self.cfg.local_input == "crop":
            return band_crop(img, x["band_top"], self.cfg.band_rows, width)
        n_cols = img.shape[-1]
        c0 = (n_cols - width) // 2
        cols = torch.zeros(n_cols, device=img.device, dtype=img.dtype)
        cols[c0:c0 + width] = 1
        return img * x["mask"].to(img.dtype) * cols

    def _d_losses(self, wrapped: bool = True) -> torch.Tensor:
        o, x = self.out, self.inp
        run = self._run if wrapped else self.networks()
        coarse = self.cfg.adv_coarse  # the paper scores the fine outputs only
        pairs = {"netD_global": (x["B"], [o["fine_comp"]] + ([o["coarse_comp"]] if coarse else [])),
                 "netD_shape": (x["A_mask"], [o["fine_seg_comp"]]),
                 "netD_local": (o["real_local"], [o["fine_local"]] + ([o["coarse_local"]] if coarse else []))}
        total = 0.0
        with self._autocast():
            for name, (real, fakes) in pairs.items():
                loss_real = L.gan_loss(run[name](real), True)
                loss_fake = sum(L.gan_loss(run[name](f.detach()), False) for f in fakes)
                loss_fake = loss_fake / len(fakes)
                self.loss["D_" + name[5:]] = (0.5 * (loss_real + loss_fake)).detach()
                total = total + 0.5 * (loss_real + loss_fake)
        self.loss["D"] = total.detach()
        return total

    def _g_losses(self) -> torch.Tensor:
        cfg, o, x = self.cfg, self.out, self.inp
        Dg, Ds, Dl = self.netD_global, self.netD_shape, self.netD_local  # unwrapped, frozen
        with self._autocast():
            gan = (L.gan_loss(Dg(o["fine_comp"]), True) + L.gan_loss(Dl(o["fine_local"]), True)
                   + L.gan_loss(Ds(o["fine_seg_comp"]), True))
            if cfg.adv_coarse:  # ours before: the coarse composites are scored too (5 terms)
                gan = gan + L.gan_loss(Dg(o["coarse_comp"]), True) + L.gan_loss(Dl(o["coarse_local"]), True)
        zero = torch.zeros((), device=self.device)
        terms = {
            "G_GAN": cfg.gan_weight * gan,
            "G_L1": cfg.lambda_L1 * (L.band_l1(o["fine_comp"], x["B"], x["mask"], cfg.l1_norm)
                                     + L.band_l1(o["coarse_comp"], x["B"], x["mask"], cfg.l1_norm)),
            "G_dice": cfg.lambda_dice_fine * (1 - L.soft_dice(o["fine_seg_comp"], x["A_mask"])),
            "G_dice_coarse": cfg.lambda_dice_coarse * (1 - L.soft_dice(o["coarse_seg"],
                                                                       x["normal_vert"])),
            "G_edge": (cfg.lambda_edge * L.edge_loss(o["fine_seg_comp"], x["A_mask"],
                                                     cfg.edge_on_binary, cfg.edge_operator)
                       if cfg.use_edge else zero),
            "G_height": (cfg.lambda_height * sum(L.height_loss(o[f"{s}_height"], x["h"],
                                                               cfg.band_rows)
                                                 for s in ("coarse", "fine"))
                         if cfg.use_height else zero),
        }
        total = sum(terms.values())
        self.loss.update({k: v.detach() for k, v in terms.items()})
        self.loss["G"] = total.detach()
        return total

    def _set_d_grad(self, flag: bool) -> None:
        for n in D_NAMES:
            for p in getattr(self, n).parameters():
                p.requires_grad_(flag)

    def optimize_parameters(self) -> None:
        """forward, one D step (all three Ds), one G step."""
        self.forward()
        self._set_d_grad(True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.scaler.scale(self._d_losses()).backward()
        self.scaler.step(self.optimizer_D)
        self.scaler.update()
        self._set_d_grad(False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.scaler.scale(self._g_losses()).backward()
        self.scaler.step(self.optimizer_G)
        self.scaler.update()
        self._set_d_grad(True)
        self.update_ema()

    def skip_ema_warmup(self) -> None:
        """Average with the full decay from the next update on. The warm-up exists so that random
        initial weights do not dominate a short run's average; when the generator starts from
        trained weights (``--init_generator``) it would instead hand the average the first,
        noisiest updates against fresh discriminators."""
        d = float(self.cfg.ema_decay)
        if 0.0 < d < 1.0:   # the first n with (1 + n) / (10 + n) >= d (update_ema's warm-up)
            self.ema_updates = max(self.ema_updates, math.ceil((10.0 * d - 1.0) / (1.0 - d)))

    @torch.no_grad()
    def update_ema(self) -> None:
        """netG_ema <- d * netG_ema + (1 - d) * netG (parameters); buffers copied.

        d = min(ema_decay, (1 + n) / (10 + n)) after n updates: the usual warm-up, so that a short
        run's average is not dominated by the random initial weights (0.999 ** 800 = 0.45 of them
        otherwise)."""
        if self.netG_ema is None:
            return
        n = self.ema_updates
        d = min(float(self.cfg.ema_decay), (1.0 + n) / (10.0 + n))
        self.ema_updates = n + 1
        for pe, p in zip(self.netG_ema.parameters(), self.netG.parameters()):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(self.netG_ema.buffers(), self.netG.buffers()):
            be.copy_(b)

    def compute_losses(self) -> Dict[str, torch.Tensor]:
        """Forward + all losses without stepping (validation; call :meth:`eval` first so the
        BatchNorm statistics stay untouched); raw modules, no DDP collectives. Detached 0-d
        tensors."""
        with torch.no_grad():
            self.forward(wrapped=False)
            self._d_losses(wrapped=False)
            self._g_losses()
        return self.get_current_losses()

    # ------------------------------------------------------------------ outputs
    def get_current_losses(self) -> Dict[str, torch.Tensor]:
        """Detached 0-d tensors: G_GAN, G_L1, G_dice, G_dice_coarse, G_edge, G_height, G (total),
        D_global, D_shape, D_local, D (total). Call after ``optimize_parameters``."""
        return dict(self.loss)

    def get_current_visuals(self) -> Dict[str, torch.Tensor]:
        """Detached panels (B, 1, H, W) except ``fake_B_local`` (B, 1, band_rows, local_width)
        with ``local_input='crop'``.
        Images in [-1, 1], masks/CAM in [0, 1]; ``fake_B`` is the SHRM composite (target frame),
        ``fake_B_mask_raw`` / ``fake_B_coarse`` / ``coarse_seg_binary`` are raw (A's frame)."""
        o, x = self.out, self.inp
        v = {"real_A": x["A"], "fake_B": o["fine_comp"], "real_B": x["B"], "CAM": x["CAM"],
             "fake_B_mask_raw": o["fine_seg"], "fake_B_coarse": o["coarse_img"],
             "coarse_seg_binary": (o["coarse_seg"] > 0.5).float(), "normal_vert": x["normal_vert"],
             "mask": x["mask"], "real_edges": L.edge_map(x["A_mask"], self.cfg.edge_operator),
             "fake_B_local": o["fine_local"]}
        return {k: t.detach().float() for k, t in v.items()}

    @torch.no_grad()
    def infer(self, batch: dict) -> Dict[str, torch.Tensor]:
        """Eval-mode generation with the raw generator (safe on one DDP rank). Returns (all on
        the model device):
        ``fake_B`` composite image (B,1,H,W) target frame; ``fake_B_raw`` fine output (A's frame);
        ``fake_B_coarse`` raw coarse image; ``seg`` soft composite target mask; ``seg_raw`` raw
        fine mask; ``seg_coarse`` raw coarse neighbour mask; ``height_pred`` integer H of the fine
        head (rows, (B,) float); ``height_pred_coarse``; ``height_cont`` continuous fine height
        (rows); ``composite_top`` / ``composite_bottom`` (B,) pasted rows [top, bottom)."""
        was_training = self.netG.training
        self.eval()
        try:
            self.set_input(batch)
            self.forward(wrapped=False)
        finally:
            if was_training:
                self.train()
        o = self.out
        return {"fake_B": o["fine_comp"].float(), "fake_B_raw": o["fine_img"].float(),
                "fake_B_coarse": o["coarse_img"].float(), "seg": o["fine_seg_comp"].float(),
                "seg_raw": o["fine_seg"].float(), "seg_coarse": o["coarse_seg"].float(),
                "height_pred": o["fine_H"].float(), "height_pred_coarse": o["coarse_H"].float(),
                "height_cont": self.cfg.band_rows * o["fine_height"].float(),
                "composite_top": o["fine_index"]["top"],
                "composite_bottom": o["fine_index"]["bottom"]}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Nets, optimisers, scaler and the config (plain tensors/dicts; torch.save-able)."""
        if self.inference_only:
            raise RuntimeError("model was prepared for inference only; its weights are not a checkpoint")
        sd = {"version": CKPT_VERSION, "config": self.cfg.to_dict()}
        sd.update({name: m.state_dict() for name, m in self.networks().items()})
        if self.netG_ema is not None:
            sd["netG_ema"] = self.netG_ema.state_dict()
            sd["ema_updates"] = int(self.ema_updates)
        sd.update(optimizer_G=self.optimizer_G.state_dict(),
                  optimizer_D=self.optimizer_D.state_dict(), scaler=self.scaler.state_dict())
        return sd

    def load_state_dict(self, sd: dict, strict: bool = True) -> None:
        """Restore nets (+ optimisers and scaler when present). Raises ValueError when the stored
        architecture differs from this model's, or (strict) an entry is missing."""
        stored = sd.get("config", {})
        diff = [f for f in ARCH_FIELDS if f in stored and stored[f] != getattr(self.cfg, f)]
        if diff:
            raise ValueError("checkpoint architecture differs: " + ", ".join(
                f"{f}={stored[f]!r} (model {getattr(self.cfg, f)!r})" for f in diff))
        for name, m in self.networks().items():
            if name not in sd:
                if strict:
                    raise ValueError(f"checkpoint has no {name!r}")
                continue
            m.load_state_dict(sd[name], strict=strict)
        if self.netG_ema is not None:
            self.netG_ema.load_state_dict(sd.get("netG_ema", sd["netG"]), strict=strict)
            self.ema_updates = int(sd.get("ema_updates", 0))
        for name in ("optimizer_G", "optimizer_D", "scaler"):
            if name not in sd:
                if strict:
                    raise ValueError(f"checkpoint has no {name!r}")
            elif name == "scaler" and not sd[name]:
                continue  # saved without AMP: keep this scaler's fresh state
            else:
                getattr(self, name).load_state_dict(sd[name])


def build_model(cfg: ModelConfig, device="cpu") -> HealthiVertModel:
    """Build the model and log the parameter counts (paper: G ~0.99 M, each D ~2.76 M)."""
    model = HealthiVertModel(cfg, device)
    counts = model.parameter_counts()
    log.info("parameters: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in counts.items()))
    return model
