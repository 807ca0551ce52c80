"""Train the binary fracture classifier (class 1 = Genant grade >= --fracture_min_grade) on
straightened blocks; the Grad-CAM stage (grad_CAM_3d_sagittal.py) loads its checkpoint.

Run folder ``<checkpoints_dir>/<name>/``: ``options.json``, ``env.json``, ``tb/`` (TensorBoard),
``ckpt/latest.pth`` and ``ckpt/best.pth`` (complete dicts: net, optimizer, epoch, step, options,
history, version), ``metrics.json`` (per-epoch selection-split AUC, balanced accuracy, confusion
matrix - per slice and per vertebra - and the best epoch).

Which split chooses ``best.pth`` (``--select_on``): ``inner`` (default) holds out about
``--inner_fraction`` of the *training* patients (series of one patient together) and selects on
them, so the validation split, whose CAMs feed the synthesis that is later scored on it, is never
seen before it is scored; ``val`` selects on ``--phase_val`` (the original's, which leaks);
``last`` keeps the last epoch (``best.pth`` = ``latest.pth``).

Example (phantom, CPU, a few minutes)::

    python Attention/train_classifier.py --dataroot /tmp/blocks --vertebra_json /tmp/cohort/vertebra_data.json \
        --dims 2 --arch resnet_tiny --image_size 64 --crop 128 --n_epochs 8 --name cls_phantom
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path


import numpy as np
import torch
from tqdm import tqdm

from Attention.classifier import ARCHS, build_classifier, make_checkpoint, read_checkpoint
from Attention.dataset import Preproc, VertebraDataset, balanced_sampler, cache_blocks
from Attention.metrics import classification_report
from data.splits import add_phase_argument, inner_split, keys_of, read_vertebra_json
from layout.blocks import block_keys
from layout.runs import checkpoint_path, run_dir
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.checkpoint import save_checkpoint
from utils.fileio import ensure_dir, write_json
from utils.seed import seed_everything, worker_init_fn

log = logging.getLogger("train_classifier")
COMPAT_KEYS = ("arch", "dims", "image_size", "crop", "mask_margin_mm", "fracture_min_grade")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--dataroot", required=True, help="straightened-block root with CT/ and label/")
    a("--vertebra_json", default=None, help="split/grade JSON (default <dataroot>/vertebra_data.json)")
    a("--name", default="fracture_classifier", help="run folder name under --checkpoints_dir")
    a("--checkpoints_dir", default="./checkpoints", help="parent folder of run folders")
    a("--dims", type=int, choices=(2, 3), default=2, help="2: per sagittal slice (paper); 3: whole block")
    a("--arch", choices=sorted(ARCHS), default="seresnet50", help="network (seresnet50 = paper)")
    a("--fracture_min_grade", type=int, choices=(1, 2), default=2,
      help="grade >= this is class 1 (fractured); lower grades are class 0")
    a("--image_size", type=int, default=256, help="in-plane (SI x AP) network input size, pixels")
    a("--crop", type=int, default=0, help="central SI x AP window of the block, voxels (0 = whole slice)")
    a("--mask_margin_mm", type=float, default=None,
      help="set voxels outside the target's bounding box grown by this many mm to -1 (off by default)")
    a("--slice_fraction", type=float, default=0.8,
      help="2D: train/validate on this central fraction of the slices containing the target")
    add_phase_argument(p, "--phase_train", ("train",), "to train on")
    add_phase_argument(p, "--phase_val", ("val",), "to select on with --select_on val")
    a("--select_on", choices=("inner", "val", "last"), default="inner",
      help="checkpoint selection: inner = held-out training patients (val never seen), val = "
           "--phase_val (the original's; leaks into val-scored results), last = last epoch")
    a("--inner_fraction", type=float, default=0.2,
      help="with --select_on inner: share of the training vertebrae (whole patients) held out")
    a("--batch_size", type=int, default=32, help="samples per step")
    a("--n_epochs", type=int, default=10, help="number of epochs")
    a("--samples_per_epoch", type=int, default=0, help="class-balanced draws per epoch (0 = training set size)")
    a("--lr", type=float, default=1e-3, help="AdamW learning rate")
    a("--weight_decay", type=float, default=1e-4, help="AdamW weight decay")
    a("--shift_px", type=int, default=2, help="augmentation: random SI/AP shift, pixels (0 = off)")
    a("--no_augment", action="store_true", help="disable augmentation")
    a("--seed", type=int, default=0, help="random seed")
    a("--device", default="auto", help="auto, cpu or cuda[:N]")
    a("--num_workers", type=int, default=0, help="DataLoader workers")
    a("--overwrite", action="store_true", help="replace an existing run folder's checkpoints")
    a("--continue_train", action="store_true", help="resume from <run>/ckpt/latest.pth")
    a("--no_progress", action="store_true", help="no tqdm bars")
    return p


def prepare_run(args) -> tuple:
    """(run folder, resume checkpoint or None); refuses to clobber an existing run."""
    run = run_dir(args.checkpoints_dir, args.name)
    latest = checkpoint_path(run, "latest")
    if args.continue_train:
        ckpt = read_checkpoint(latest)
        old = ckpt["options"]
        bad = [k for k in COMPAT_KEYS if old.get(k) != getattr(args, k)]
        if bad:
            raise UserError(f"--continue_train with different {', '.join(bad)} than the checkpoint", latest)
        return run, ckpt
    if run.exists() and any(run.iterdir()) and not args.overwrite:
        raise UserError("run folder exists; use --overwrite or --continue_train", run)
    return ensure_dir(run), None


def load_data(args, pre: Preproc, progress):
    vj = Path(args.vertebra_json) if args.vertebra_json else Path(args.dataroot) / "vertebra_data.json"
    if not Path(args.dataroot).is_dir():
        raise UserError("--dataroot folder not found", args.dataroot)
    splits = read_vertebra_json(vj)
    train = keys_of(splits, args.phase_train)
    if args.select_on == "inner":
        blocks = set(block_keys(args.dataroot, need_ct=True))
        have = {k: g for k, g in train.items() if k in blocks}
        if len(have) < len(train):   # split the vertebrae that can be loaded
            missing = sorted(set(train) - set(have))
            log.warning("%d training keys have no block under %s (skipped), e.g. %s", len(missing),
                        args.dataroot, missing[:3])
        train = have or train
        fit, sel = inner_split(train, args.inner_fraction, args.seed,
                               classes={k: int(g >= args.fracture_min_grade) for k, g in train.items()})
        parts = (({k: train[k] for k in fit}, "train (fit)", not args.no_augment),
                 ({k: train[k] for k in sel}, "train (selection)", False))
        log.info("selection on %d held-out training vertebrae of %d patients; %s never seen",
                 len(sel), len({k.rsplit('_', 1)[0] for k in sel}), args.phase_val)
    else:
        parts = ((train, args.phase_train, not args.no_augment),
                 (keys_of(splits, args.phase_val), args.phase_val, False))
    sets = []
    for keys, desc, aug in parts:
        blocks = cache_blocks(args.dataroot, keys, pre, progress=lambda it, d=desc: progress(it, desc=f"load {d}"))
        sets.append(VertebraDataset(blocks, args.dims, args.fracture_min_grade,
                                    args.slice_fraction, aug and args.shift_px > 0, args.shift_px))
    return sets


@torch.no_grad()
def predict(net, ds, device, batch_size: int) -> np.ndarray:
    """P(fractured) for every item of ``ds`` (eval mode, no augmentation)."""
    net.eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    out = [torch.softmax(net(x.to(device)).float(), 1)[:, 1].cpu().numpy() for x, _, _ in loader]
    return np.concatenate(out)


def evaluate(net, ds: VertebraDataset, device, batch_size: int) -> dict:
    """Slice-level and vertebra-level (mean slice probability) metrics."""
    probs = predict(net, ds, device, batch_size)
    blocks = np.array([b for b, _ in ds.items])
    v_idx = np.unique(blocks)
    v_prob = np.array([probs[blocks == b].mean() for b in v_idx])
    v_lab = np.array([ds.labels[blocks == b][0] for b in v_idx])
    return {"vertebra": classification_report(v_lab, v_prob), "slice": classification_report(ds.labels, probs),
            "per_key": {ds.blocks[b].key: float(p) for b, p in zip(v_idx, v_prob)}}


def train_epoch(net, opt, ds, args, epoch: int, device, progress) -> float:
    n = args.samples_per_epoch or len(ds)
    np.random.seed(args.seed * 1000 + epoch)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, sampler=balanced_sampler(ds.labels, n, args.seed * 1000 + epoch),
        num_workers=args.num_workers, worker_init_fn=worker_init_fn, drop_last=len(ds) > args.batch_size)
    net.train()
    losses = []
    for x, y, _ in progress(loader, desc=f"epoch {epoch}"):
        loss = torch.nn.functional.cross_entropy(net(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def score(metrics: dict) -> float:
    v = metrics["vertebra"]
    return v["auc"] if v["auc"] is not None else v["balanced_accuracy"]


def write_env(run: Path) -> None:
    import monai
    import pytorch_grad_cam  # noqa: F401
    from importlib.metadata import version
    write_json(run / "env.json", {"python": platform.python_version(), "torch": torch.__version__,
                                  "monai": monai.__version__, "grad-cam": version("grad-cam"),
                                  "argv": sys.argv})


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    pbar = lambda it, desc="": tqdm(it, desc=desc, disable=args.no_progress, leave=False)  # noqa: E731
    run, resume = prepare_run(args)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    pre = Preproc(args.dims, args.image_size, args.crop or None, args.mask_margin_mm)
    train_ds, val_ds = load_data(args, pre, pbar)
    log.info("train: %d samples (%d fractured), selection: %d samples (%d fractured)", len(train_ds),
             int(train_ds.labels.sum()), len(val_ds), int(val_ds.labels.sum()))
    net = build_classifier(args.arch, args.dims).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    options, history, best, start, step = vars(args).copy(), [], {"epoch": None, "score": -1.0}, 1, 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["optimizer"])
        history, best = resume["history"], resume["best"]
        start, step = resume["epoch"] + 1, resume["step"]
    write_json(run / "options.json", options)
    write_env(run)
    from torch.utils.tensorboard import SummaryWriter
    tb = SummaryWriter(str(run / "tb"))
    for epoch in range(start, args.n_epochs + 1):
        loss = train_epoch(net, opt, train_ds, args, epoch, device, pbar)
        step += 1
        m = evaluate(net, val_ds, device, args.batch_size)
        history.append({"epoch": epoch, "train_loss": loss, **{k: m[k] for k in ("vertebra", "slice")}})
        for lvl in ("vertebra", "slice"):
            for k in ("auc", "balanced_accuracy"):
                if m[lvl][k] is not None:
                    tb.add_scalar(f"val_{lvl}/{k}", m[lvl][k], epoch)
        tb.add_scalar("train/loss", loss, epoch)
        log.info("epoch %d loss %.4f selection vertebra AUC %s bal.acc %.3f", epoch, loss,
                 m["vertebra"]["auc"], m["vertebra"]["balanced_accuracy"])
        if args.select_on == "last" or score(m) > best["score"]:
            best = {"epoch": epoch, "score": score(m), "val": m}
            save_checkpoint(make_checkpoint(net, opt, epoch, step, options, history, best), checkpoint_path(run, "best"))
        save_checkpoint(make_checkpoint(net, opt, epoch, step, options, history, best), checkpoint_path(run, "latest"))
        write_json(run / "metrics.json", {"best_epoch": best["epoch"], "best": best.get("val"),
                                          "selected_on": args.select_on, "history": history})
    tb.close()
    print(json.dumps({"run": str(run), "best_epoch": best["epoch"],
                      "best_val_vertebra": (best.get("val") or {}).get("vertebra")}))
    return 0


if __name__ == "__main__":
    run_cli(main)
