"""Train one stage of the CT -> vertebra masks pipeline.

    python segmentation/train.py --stage spine        --data COHORT [COHORT ...] --output runs/seg_spine
    python segmentation/train.py --stage vertebrae    --data COHORT ... --output runs/seg_vert --minutes 20
    python segmentation/train.py --stage segmentation --data COHORT ... --output runs/seg_seg

``--data`` are cohort folders as ``scripts/make_phantom.py`` writes them (``raw/<case>/`` CT +
``_msk`` label map, ``vertebra_data.json`` with the patient-disjoint splits) or any VerSe-style
folder (no split file: all train). Trains on ``train``, keeps the checkpoint with the best score
on ``val`` (``ckpt/best.pth``; ``ckpt/latest.pth`` at every evaluation, exact resume with
``--resume``). Held-out scores come from segmentation/evaluate.py on another cohort. Logs:
``log.csv`` and TensorBoard. Every size and spacing of ``--preset`` can be overridden.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segmentation.context import add_body_context
from segmentation.samples import Augment, cut_field_of_view, load_cases, patch_image, sample_patch
from segmentation.heatmaps import CHANNEL_OF, CHANNELS, gaussian_heatmaps, heatmap_loss
from segmentation.labelling import PairStats
from segmentation.networks import KIND, PRESETS, STAGES, StageConfig, build
from utils.checkpoint import (capture_rng, load_checkpoint, load_model_state, refuse_init_with_resume,
                              restore_rng, save_checkpoint)
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.fileio import write_json
from utils.seed import seed_everything

log = logging.getLogger("segmentation.train")
# Per preset, the phantom-only training options left unset on the command line. p_context: share
# of patches painted with a random body (segmentation.context): the phantom CT has none, and without
# it the spine stage took the whole body of a real CT for the spine. p_fov: share of vertebra-stage
# patches cut as a scan that ends inside them (samples.cut_field_of_view): each phantom cohort
# starts at one level, and the stage learnt to name a scan's top vertebra by it. The paper preset
# trains on real CTs as Payer et al.: neither.
PRESET_TRAINING = {"cpu": {"p_context": 0.8, "p_fov": 0.5}, "paper": {"p_context": 0.0, "p_fov": 0.0}}


def stage_batch(cfg: StageConfig, cases, rng, aug, batch: int, p_context: float = 0.0, p_fov: float = 0.0):
    """(inputs, targets, extra) tensors for one training step of ``cfg.stage``; a share
    ``p_context`` of the patches gets a random body around its spine (:mod:`segmentation.context`),
    and, in the vertebrae stage, a share ``p_fov`` ends inside the patch (``cut_field_of_view``)."""
    imgs, tgts, cents, pres, sizes = [], [], [], [], []
    patch = np.array(cfg.patch)
    for _ in range(batch):
        case = cases[rng.integers(len(cases))]
        labs = sorted(case.centroids)
        allc = np.array([case.centroids[l] for l in labs])
        if cfg.stage == "spine":
            centre = allc.mean(0) + rng.uniform(-1, 1, 3) * patch / 4
        elif cfg.stage == "vertebrae":
            centre = allc.mean(0)
            centre[:2] += rng.uniform(-1, 1, 2) * (aug.shift_vox if aug else 0)
            centre[2] = allc[rng.integers(len(allc)), 2] + rng.uniform(-1, 1) * patch[2] / 4
        else:
            lab = labs[rng.integers(len(labs))]
            centre = case.centroids[lab] + rng.uniform(-1, 1, 3) * (min(aug.shift_vox, 2.0) if aug else 0)
        hu, lp, pc = sample_patch(case, centre, cfg.patch, rng, aug)
        if p_context > 0 and rng.random() < p_context:
            hu = add_body_context(hu, lp, pc, cfg.spacing, rng)
        if cfg.stage == "vertebrae" and p_fov > 0 and rng.random() < p_fov:
            hu, lp, pc = cut_field_of_view(hu, lp, pc, rng)
        imgs.append(patch_image(hu, lp, rng, aug))
        if cfg.stage == "segmentation":
            tgts.append((lp == lab).astype(np.float32))
            cents.append(pc[lab][None])
            pres.append(np.ones(1, bool))
        else:
            c = np.zeros((len(CHANNELS), 3))
            p = np.zeros(len(CHANNELS), bool)
            for l, v in pc.items():
                if l in CHANNEL_OF:
                    c[CHANNEL_OF[l]], p[CHANNEL_OF[l]] = v, True
            cents.append(c)
            pres.append(p)
        sizes.append(patch)
    x = torch.from_numpy(np.stack(imgs))[:, None]
    return (x, torch.from_numpy(np.stack(tgts))[:, None] if tgts else None,
            torch.from_numpy(np.stack(cents)).float(), torch.from_numpy(np.stack(pres)))


def sigma_vox(cfg: StageConfig, net) -> torch.Tensor:
    if getattr(net, "sigma", None) is not None:
        return net.sigma()
    n = len(CHANNELS) if cfg.stage == "vertebrae" else 1
    return torch.full((n,), cfg.sigma_mm / cfg.spacing)


def step_loss(cfg: StageConfig, net, batch, device):
    x, tgt, cents, pres = (t.to(device) if t is not None else None for t in batch)
    sig = sigma_vox(cfg, net).to(device)
    if cfg.stage == "segmentation":
        hm = gaussian_heatmaps(x.shape[2:], cents, pres, sig)
        logits = net(torch.cat([x, hm], 1))
        return F.binary_cross_entropy_with_logits(logits, tgt), logits
    if cfg.stage == "spine":
        hm = gaussian_heatmaps(x.shape[2:], cents, pres, sig.expand(cents.shape[1])).amax(1, keepdim=True)
        pred = net(x)
        return heatmap_loss(pred, hm, torch.ones(x.shape[0], 1, dtype=torch.bool, device=device),
                            fg_weight=cfg.fg_weight), pred
    hm = gaussian_heatmaps(x.shape[2:], cents, pres, sig)
    pred = net(x)
    learn = getattr(net, "sigma", None) is not None
    return heatmap_loss(pred, hm, torch.ones_like(pres), sig if learn else None, cfg.sigma_alpha, cfg.fg_weight), pred


@torch.no_grad()
def val_score(cfg: StageConfig, net, val_batches, device) -> float:
    """Lower is better. spine / vertebrae: mean distance (mm) from each present landmark's true
    position to the maximum of its heatmap (spine: of the all-centroid heatmap's centre of mass
    in x/y); segmentation: 1 - mean Dice."""
    net.eval()
    errs = []
    for b in val_batches:
        _, out = step_loss(cfg, net, b, device)
        x, tgt, cents, pres = b
        out = out.cpu()
        if cfg.stage == "segmentation":
            p = (out > 0).float()
            inter = (p * tgt).sum((1, 2, 3, 4))
            errs += list((1 - 2 * inter / (p.sum((1, 2, 3, 4)) + tgt.sum((1, 2, 3, 4))).clamp_min(1)).numpy())
        elif cfg.stage == "spine":
            for i in range(len(x)):
                h = out[i, 0].clamp_min(0)
                h = h * (h >= 0.5 * h.max())          # as localise_spine reads it
                if h.sum() <= 0:
                    errs.append(1e3)
                    continue
                grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in h.shape],
                                                  indexing="ij"))
                com = (grid * h).sum((1, 2, 3)) / h.sum()
                true = cents[i][pres[i]].mean(0)
                errs.append(float(torch.linalg.norm(com[:2] - true[:2])) * cfg.spacing)
        else:
            shape = torch.tensor(out.shape[2:])
            for i in range(len(x)):
                for c in torch.nonzero(pres[i]).flatten():
                    t = cents[i, c]
                    if torch.any(t < 0) or torch.any(t > shape - 1):
                        continue
                    k = int(torch.argmax(out[i, c]))
                    idx = torch.tensor(np.unravel_index(k, tuple(out.shape[2:])), dtype=torch.float32)
                    errs.append(float(torch.linalg.norm(idx - t)) * cfg.spacing)
    net.train()
    return float(np.mean(errs)) if errs else float("inf")


def config_from_args(args) -> StageConfig:
    cfg = PRESETS[args.preset][args.stage]
    over = {k: getattr(args, k) for k in ("spacing", "filters", "levels", "sigma_mm", "dropout", "sigma_alpha",
                                          "fg_weight")
            if getattr(args, k) is not None}
    if args.patch is not None:
        over["patch"] = tuple(args.patch)
    if args.learn_sigma is not None:
        over["learn_sigma"] = args.learn_sigma == "on"
    cfg = dataclasses.replace(cfg, **over)
    mult = int(np.lcm(2 ** (cfg.levels - 1), 4 if cfg.stage == "vertebrae" else 1))
    if any(p % mult for p in cfg.patch):
        raise UserError(f"--patch {cfg.patch} must be divisible by {mult} for {cfg.levels} levels", "--patch")
    return cfg


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=STAGES, required=True)
    ap.add_argument("--data", nargs="+", required=True, help="cohort folders (train and val splits are read)")
    ap.add_argument("--output", required=True, help="run folder (created)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                    help="cpu: 8 / 4 / 2 mm grids, few filters (default); paper: Payer et al.'s 8 / 2 / 1 mm")
    ap.add_argument("--spacing", type=float, help="grid spacing mm (override the preset)")
    ap.add_argument("--patch", type=int, nargs=3, help="patch size in voxels, R A S (override)")
    ap.add_argument("--filters", type=int, help="U-Net filters per level (override)")
    ap.add_argument("--levels", type=int, help="U-Net levels (override)")
    ap.add_argument("--sigma_mm", type=float, help="heatmap Gaussian width mm (override)")
    ap.add_argument("--dropout", type=float, help="dropout (override)")
    ap.add_argument("--learn_sigma", choices=["on", "off"], help="learnable per-landmark sigma (vertebrae)")
    ap.add_argument("--sigma_alpha", type=float, help="weight of the sigma regulariser (override)")
    ap.add_argument("--fg_weight", type=float,
                    help="heatmap loss weight 1 + fg_weight * target (cpu preset 10, paper 0 = plain L2)")
    ap.add_argument("--p_synth", type=float, default=0.5,
                    help="share of patches whose image is generated from the label map (default 0.5)")
    ap.add_argument("--p_context", type=float,
                    help="share of patches (train and val) given a random body around the spine: outline, "
                         "fat, lungs, ribs, heart, aorta, organs, bowel gas, pelvis, table; for phantom "
                         "cohorts, whose CT is a box of soft tissue (default: 0.8 with --preset cpu, 0 with "
                         "--preset paper, which trains on real CTs as Payer et al.; 0 = the box alone)")
    ap.add_argument("--p_fov", type=float,
                    help="vertebrae stage: share of patches (train and val) cut as a scan that starts or "
                         "ends inside them, at a random plane (default: 0.5 with --preset cpu, whose "
                         "phantom cohorts each start at one level; 0 with --preset paper)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="Adam learning rate (default 1e-3; the shipped vertebrae stage used 5e-4: 2e-3 diverged)")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, help="stop after this many minutes")
    ap.add_argument("--eval_every", type=int, default=100)
    ap.add_argument("--val_patches", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="continue from <output>/ckpt/latest.pth")
    ap.add_argument("--init", help="start from this stage checkpoint's network (same stage and sizes; "
                                   "a fresh optimiser), e.g. segmentation/weights/vertebrae.pth to fine-tune")
    return ap


def _matching_checkpoint(path, cfg: StageConfig, mismatch: str) -> dict:
    """A stage checkpoint of exactly ``cfg`` (kind, stage and sizes); anything else is a UserError."""
    ck = load_checkpoint(path)
    if ck.get("kind") != KIND or ck.get("config") != cfg.to_dict():
        raise UserError(mismatch, path)
    return ck


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    seed_everything(args.seed, deterministic=False)
    device = resolve_device(args.device)
    cfg = config_from_args(args)
    for k, v in PRESET_TRAINING[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    refuse_init_with_resume(args.init, args.resume, args.output)
    cases = load_cases(args.data, cfg.spacing)
    train = [c for c in cases if c.split == "train" and c.centroids]
    val = [c for c in cases if c.split == "val" and c.centroids]
    if not train or not val:
        raise UserError(f"need train and val cases with vertebrae, got {len(train)} and {len(val)}", args.data[0])
    init = None
    if args.init:
        init = _matching_checkpoint(args.init, cfg, f"--init holds another stage or configuration than "
                                                    f"{cfg.stage} with these sizes")
    out = Path(args.output)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    net = build(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    aug = Augment(p_synth=args.p_synth)
    vrng = np.random.default_rng(12345)               # the same val patches at every evaluation
    val_batches = [stage_batch(cfg, val, vrng, None, 4, args.p_context, args.p_fov) for _ in range(max(1, args.val_patches // 4))]
    pairs = PairStats.learn([{l: case.grid.index_to_world(v)[0] for l, v in case.centroids.items()} for case in train])
    step, best, rng, elapsed0 = 0, float("inf"), np.random.default_rng(args.seed), 0.0
    if init is not None:
        load_model_state(net, init, args.init)
    if args.resume:
        ck = _matching_checkpoint(out / "ckpt" / "latest.pth", cfg, "latest.pth is another stage or configuration")
        load_model_state(net, ck, out / "ckpt" / "latest.pth")
        opt.load_state_dict(ck["optimizer"])
        step, best, elapsed0 = ck["step"], ck["best"], ck["elapsed_s"]
        rng.bit_generator.state = ck["np_rng"]
        restore_rng(ck["rng"])
    write_json(out / "options.json", {**vars(args), "config": cfg.to_dict(),
                                      "train_cases": [c.name for c in train], "val_cases": [c.name for c in val]})
    from torch.utils.tensorboard import SummaryWriter
    tb = SummaryWriter(str(out / "tb"))
    logf = open(out / "log.csv", "a", newline="")
    writer = csv.writer(logf)
    log.info("stage %s: %d train / %d val cases on a %.1f mm grid, %.2f M parameters, %s", cfg.stage,
             len(train), len(val), cfg.spacing, sum(p.numel() for p in net.parameters()) / 1e6, device)
    t0, losses = time.time(), []
    unit = "1 - Dice" if cfg.stage == "segmentation" else "mm"

    def done() -> bool:
        return step >= args.steps or (args.minutes is not None and elapsed0 + time.time() - t0 >= args.minutes * 60)
    while not done():
        net.train()
        loss, _ = step_loss(cfg, net, stage_batch(cfg, train, rng, aug, args.batch, args.p_context, args.p_fov),
                            device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.detach())
        if step % args.eval_every == 0 or done():
            score = val_score(cfg, net, val_batches, device)
            mean_loss = float(torch.stack(losses).mean())
            losses = []
            tb.add_scalar("loss/train", mean_loss, step)
            tb.add_scalar(f"val/{cfg.stage}", score, step)
            sig = sigma_vox(cfg, net).detach().cpu()
            if getattr(net, "sigma", None) is not None:
                tb.add_scalar("sigma/mean_mm", float(sig.mean()) * cfg.spacing, step)
            writer.writerow([step, round(elapsed0 + time.time() - t0, 1), mean_loss, score])
            logf.flush()
            ck = {"version": 1, "kind": KIND, "config": cfg.to_dict(), "model": net.state_dict(),
                  "optimizer": opt.state_dict(), "step": step, "best": min(best, score),
                  "score": score, "score_unit": unit, "pair_stats": pairs.to_dict(),
                  "elapsed_s": elapsed0 + time.time() - t0, "np_rng": rng.bit_generator.state,
                  "rng": capture_rng(), "data": [str(d) for d in args.data]}
            save_checkpoint(ck, out / "ckpt" / "latest.pth")
            if score < best:
                best = score
                save_checkpoint(ck, out / "ckpt" / "best.pth")
            log.info("step %d  loss %.5f  val %.3f %s (best %.3f)", step, mean_loss, score, unit, best)
    logf.close()
    tb.close()
    return 0


if __name__ == "__main__":
    run_cli(main)
