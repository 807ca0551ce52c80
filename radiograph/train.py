"""Train the landmark heatmap network on DRR datasets (radiograph/render.py writes them).

    python radiograph/train.py --data train.npz --output runs/rg --preset cpu --minutes 20

Trains on the ``train`` split of every ``--data`` file, keeps the checkpoint with the lowest
mean radial error on their ``val`` split, points decoded level by level in anatomical order as
predict.py does (radiograph/ordering.py) (``ckpt/best.pth``; ``ckpt/latest.pth`` every
evaluation, exact resume with ``--resume``). The held-out evaluation is radiograph/evaluate.py
on a dataset of another seed: nothing here sees it. Logs: ``log.csv`` and TensorBoard events.
"""
from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from radiograph.cohort import load_dataset
from radiograph.model import (PRESETS, ModelConfig, build_model, gaussian_targets,
                              heatmap_loss, predict_points, to_heatmap)
from utils.checkpoint import (capture_rng, load_checkpoint, load_model_state, restore_rng,
                              refuse_init_with_resume, save_checkpoint, verify_manifest)
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.fileio import write_json
from utils.seed import seed_everything

log = logging.getLogger("radiograph.train")
KIND = "radiograph-landmarks"


def merge(paths: Sequence) -> dict:
    """The datasets of ``paths`` concatenated; their channels must agree."""
    ds = [load_dataset(p) for p in paths]
    ch = list(ds[0]["channels"])
    for p, d in zip(paths, ds):
        if list(d["channels"]) != ch:
            raise UserError(f"channels differ from {paths[0]}'s", p)
        if d["images"].shape[1:] != ds[0]["images"].shape[1:]:
            raise UserError(f"image size {d['images'].shape[1:]} differs from {paths[0]}'s", p)
    out = {k: np.concatenate([d[k] for d in ds]) for k in
           ("images", "points", "visible", "split", "case")}
    out["channels"] = np.array(ch)
    out["mm_at_spine"] = float(ds[0]["mm_at_spine"])
    out["pixel_mm"] = float(ds[0]["pixel_mm"])
    return out


def batch_tensors(data: dict, idx: np.ndarray, rng: Optional[np.random.Generator], device):
    """Images (B, 1, H, W) in [0, 1], points (B, C, 2), visible (B, C); with ``rng``: random
    mirror (x -> W − 1 − x: anterior may face either way), intensity scale/offset and gamma."""
    img = data["images"][idx].astype(np.float32) / 255.0
    pts = data["points"][idx].copy()
    vis = data["visible"][idx].copy()
    if rng is not None:
        w = img.shape[-1]
        flip = rng.random(len(idx)) < 0.5
        img[flip] = img[flip][:, :, ::-1]
        pts[flip, :, 0] = w - 1 - pts[flip, :, 0]
        g = rng.uniform(0.75, 1.33, (len(idx), 1, 1)).astype(np.float32)
        img = np.clip(img, 0, 1) ** g
        img = img * rng.uniform(0.8, 1.2, (len(idx), 1, 1)) + rng.uniform(-0.1, 0.1, (len(idx), 1, 1))
    return (torch.as_tensor(np.ascontiguousarray(img[:, None]), dtype=torch.float32, device=device),
            torch.as_tensor(np.nan_to_num(pts), dtype=torch.float32, device=device),
            torch.as_tensor(vis, device=device))


@torch.no_grad()
def radial_errors(model, data: dict, idx: np.ndarray, device, batch: int = 16, mc: int = 0,
                  decoding: str = "ordered", tta: str = "none"):
    """(points (N, C, 2), peak (N, C), spread (N, C), errors (N, C) pixels, NaN where not
    visible); ``decoding`` and ``tta`` as predict.py's ``--decoding`` and ``--tta``."""
    channels = list(map(str, data["channels"])) if decoding == "ordered" else None
    P, K, S = [], [], []
    for s in range(0, len(idx), batch):
        im, _, _ = batch_tensors(data, idx[s:s + batch], None, device)
        p, k, sp = predict_points(model, im, mc=mc, channels=channels, mirror=tta == "mirror")
        P.append(p.cpu().numpy()), K.append(k.cpu().numpy()), S.append(sp.cpu().numpy())
    P, K, S = np.concatenate(P), np.concatenate(K), np.concatenate(S)
    err = np.linalg.norm(P - data["points"][idx], axis=-1)
    err[~data["visible"][idx]] = np.nan
    return P, K, S, err


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="dataset .npz files (render.py)")
    ap.add_argument("--output", required=True, help="run folder (created)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                    help="cpu: 256 px, small U-Net; paper: 512 px, wider (default cpu)")
    ap.add_argument("--arch", choices=["unet", "hrnet"], default="unet")
    ap.add_argument("--loss", choices=["mse", "awing"], default="mse")
    ap.add_argument("--sigma", type=float, default=2.0, help="target Gaussian sd (heatmap pixels)")
    ap.add_argument("--fg_weight", type=float, default=10.0)
    ap.add_argument("--neg_weight", type=float, default=1.0,
                    help="weight, in each channel, of the pixels that are another channel's "
                         "foreground (a peak there is a point of the wrong type or level; "
                         "default 1: no extra weight; 10 broke a fine-tune, docs/RADIOGRAPH.md)")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--steps", type=int, default=100000, help="stop after this many steps")
    ap.add_argument("--lr_schedule", choices=["constant", "cosine"], default="constant",
                    help="constant (default: 6.2 px val MRE at 28 min vs 7.5 px for cosine at 25 "
                         "min, docs/RADIOGRAPH.md) or cosine: warm-up, then decay over the budget")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--eval_every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep_steps", action="store_true",
                    help="also keep the weights of every evaluation (ckpt/step_NNNNNN.pth)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="continue from <output>/ckpt/latest.pth")
    ap.add_argument("--init", default=None, metavar="FILE",
                    help="start from these weights (a run folder or .pth of the same network, input "
                         "size and channels, e.g. radiograph/weights/landmarks_cpu.pth) with a new "
                         "optimiser: fine-tuning")
    return ap


def _init_weights(path, cfg: ModelConfig, channels) -> dict:
    """The state dict of ``path`` when its network, input size and channels are ``cfg``'s and
    ``channels``; a UserError naming the file otherwise (raised before the run folder exists)."""
    model, ck = load_landmark_model(path)
    theirs = _config_of(ck)
    diff = [k for k in cfg.to_dict() if k != "dropout" and getattr(theirs, k) != getattr(cfg, k)]
    if diff:
        raise UserError("--init: another network or input ("
                        + ", ".join(f"{k} {getattr(theirs, k)} vs {getattr(cfg, k)}" for k in diff) + ")", path)
    if list(ck["channels"]) != list(map(str, channels)):
        raise UserError("--init: its landmark channels differ from the data's", path)
    return model.state_dict()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    seed_everything(args.seed, deterministic=False)
    device = resolve_device(args.device)
    data = merge(args.data)
    size = data["images"].shape[-1]
    cfg = ModelConfig(arch=args.arch, channels=len(data["channels"]), dropout=args.dropout,
                      **{**PRESETS[args.preset], "size": size})
    train = np.flatnonzero(data["split"] == "train")
    val = np.flatnonzero(data["split"] == "val")
    if not len(train) or not len(val):
        raise UserError(f"need train and val images, got {len(train)} and {len(val)}", args.data[0])
    refuse_init_with_resume(args.init, args.resume, args.output)
    init = _init_weights(args.init, cfg, data["channels"]) if args.init else None
    out = Path(args.output)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    model = build_model(cfg).to(device)
    if init is not None:
        model.load_state_dict(init)
        log.info("weights from %s", args.init)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    def lr_at(frac: float) -> float:
        """Warm-up over the first 3 %, then cosine to 1 % of --lr (``constant``: --lr)."""
        if args.lr_schedule == "constant":
            return args.lr
        if frac < 0.03:
            return args.lr * max(frac / 0.03, 0.05)
        return args.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * min(1.0, (frac - 0.03) / 0.97))))
    step, best, rng = 0, float("inf"), np.random.default_rng(args.seed)
    if args.resume:
        ck = load_checkpoint(out / "ckpt" / "latest.pth")
        load_model_state(model, ck, out / "ckpt" / "latest.pth")
        opt.load_state_dict(ck["optimizer"])
        step, best = ck["step"], ck["best_mre_px"]
        rng.bit_generator.state = ck["np_rng"]
        restore_rng(ck["rng"])
    write_json(out / "options.json", {**vars(args), "config": cfg.to_dict(),
                                      "channels": list(map(str, data["channels"])),
                                      "mm_at_spine": data["mm_at_spine"], "pixel_mm": data["pixel_mm"]})
    from torch.utils.tensorboard import SummaryWriter
    tb = SummaryWriter(str(out / "tb"))
    logf = open(out / "log.csv", "a", newline="")
    writer = csv.writer(logf)
    t0, losses = time.time(), []
    log.info("%d train / %d val images, %d channels, %s on %s", len(train), len(val),
             cfg.channels, cfg.arch, device)
    elapsed0 = float(ck.get("elapsed_s", 0.0)) if args.resume else 0.0

    def progress() -> float:              # share of the budget used: steps or minutes
        f = step / args.steps
        if args.minutes is not None:
            f = max(f, (elapsed0 + time.time() - t0) / (args.minutes * 60))
        return f
    while progress() < 1.0:
        for g in opt.param_groups:
            g["lr"] = lr_at(progress())
        model.train()
        idx = rng.choice(train, args.batch, replace=False)
        im, pts, vis = batch_tensors(data, idx, rng, device)
        st = getattr(model, "stride", 1)
        target = gaussian_targets(to_heatmap(pts, st), vis, size // st, args.sigma)
        loss = heatmap_loss(model(im), target, vis, args.loss, args.fg_weight, args.neg_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.detach())
        if step % args.eval_every == 0 or step == args.steps:
            _, _, _, err = radial_errors(model, data, val, device)
            mre = float(np.nanmean(err))
            mean_loss = float(torch.stack(losses).mean())
            losses = []
            tb.add_scalar("loss/train", mean_loss, step)
            tb.add_scalar("val/mre_px", mre, step)
            writer.writerow([step, round(time.time() - t0, 1), mean_loss, mre])
            logf.flush()
            ck = {"version": 1, "kind": KIND, "model": model.state_dict(),
                  "optimizer": opt.state_dict(), "step": step, "config": cfg.to_dict(),
                  "channels": list(map(str, data["channels"])), "mm_at_spine": data["mm_at_spine"],
                  "pixel_mm": data["pixel_mm"], "sigma": args.sigma,
                  "best_mre_px": min(best, mre), "np_rng": rng.bit_generator.state,
                  "elapsed_s": elapsed0 + time.time() - t0,
                  "rng": capture_rng()}
            save_checkpoint(ck, out / "ckpt" / "latest.pth")
            if args.keep_steps:        # weights only, to score one run at several budgets
                save_checkpoint({k: v for k, v in ck.items() if k not in ("optimizer", "rng", "np_rng")},
                                out / "ckpt" / f"step_{step:06d}.pth")
            if mre < best:
                best = mre
                save_checkpoint(ck, out / "ckpt" / "best.pth")
            log.info("step %d  loss %.5f  val MRE %.2f px (best %.2f)", step, mean_loss, mre, best)
    logf.close()
    tb.close()
    return 0


def load_landmark_model(path, device="cpu"):
    """(model, checkpoint) from a run folder (its ckpt/best.pth) or a checkpoint file; a missing
    or foreign file is a UserError, never random weights."""
    p = Path(path)
    if p.is_dir():
        p = p / "ckpt" / "best.pth"
    verify_manifest(p)  # shipped weights: the bytes must be the manifest's
    ck = load_checkpoint(p)
    if ck.get("kind") != KIND:
        raise UserError(f"not a radiograph landmark checkpoint (kind {ck.get('kind')!r})", p)
    model = build_model(_config_of(ck))
    load_model_state(model, ck, p)
    return model.to(device).eval(), ck


def _config_of(ck: dict) -> ModelConfig:
    """The checkpoint's network configuration (JSON lists back to tuples)."""
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["config"].items()})


if __name__ == "__main__":
    run_cli(main)
