#!/usr/bin/env python
"""Copy self-trained weights into the repository, with their manifest entry.

    python scripts/ship_weights.py --kind gan --checkpoint RUN/ckpt/latest.pth --name gan_sagittal_cpu.pth \\
        --command "the commands that made it" --data "phantom seed 5, 12 cases, train split" \\
        --heldout "the held-out scores" [--heldout_file summary.md]
    python scripts/ship_weights.py --kind segmentation --checkpoint RUN/ckpt/best.pth --name vertebrae.pth ...

``--kind gan`` keeps the generator only (its moving average when trained with one) plus the model
config and the options synthesis reads, in ``synthesis/weights/``; ``--kind segmentation`` keeps a
stage's network, config and labelling statistics, in ``segmentation/weights/``. No optimiser or
discriminator state. The folder's ``MANIFEST.json`` gets, per file, its sha256, size, the command,
the data and the held-out scores; loaders refuse a file whose sha256 differs. Files over 25 MB in
all (every shipped weight of the repository together) are refused.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch

from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError, run_cli
from utils.fileio import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"gan": ROOT / "synthesis" / "weights", "segmentation": ROOT / "segmentation" / "weights"}
GAN_OPTIONS = ("dataset_mode", "band_mm", "slice_fit", "image_size", "cam_folder", "use_cam", "coronal_band")
LIMIT_MB = 25.0


def slim(kind: str, ck: dict, path) -> dict:
    if kind == "gan":
        st = ck.get("model") or {}
        if "netG" not in st:
            raise UserError("not a GAN training checkpoint (no netG)", path)
        opts = ck.get("options") or {}
        return {"version": ck["version"], "kind": "healthivert-generator", "step": int(ck.get("step", 0)),
                "epoch": ck.get("epoch"), "options": {k: opts[k] for k in GAN_OPTIONS if k in opts},
                "model": {"version": st.get("version"), "config": st["config"],
                          "netG": st.get("netG_ema", st["netG"])}}
    if ck.get("kind") != "segmentation-stage":
        raise UserError("not a segmentation stage checkpoint", path)
    return {k: ck[k] for k in ("version", "kind", "config", "model", "step", "score", "score_unit",
                               "pair_stats", "data") if k in ck}


def shipped_mb() -> float:
    files = [p for p in ROOT.glob("*/weights/*.pth")]
    return sum(p.stat().st_size for p in files) / 2 ** 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=sorted(FOLDERS), required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--name", required=True, help="file name in the weights folder")
    ap.add_argument("--command", required=True, help="the commands that made the data and the run")
    ap.add_argument("--data", required=True, help="what it was trained on (seeds, cases, split)")
    ap.add_argument("--heldout", required=True, help="held-out scores, in words and numbers")
    ap.add_argument("--heldout_file", help="a JSON file of held-out metrics to copy in")
    args = ap.parse_args(argv)
    ck = load_checkpoint(args.checkpoint)
    folder = FOLDERS[args.kind]
    out = folder / args.name
    save_checkpoint(slim(args.kind, ck, args.checkpoint), out)
    total = shipped_mb()
    if total > LIMIT_MB:
        out.unlink()
        raise UserError(f"shipped weights would be {total:.1f} MB, over the {LIMIT_MB:.0f} MB limit", out)
    manifest = folder / "MANIFEST.json"
    m = read_json(manifest) if manifest.is_file() else {"files": {}}
    entry = {"sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
             "size_mb": round(out.stat().st_size / 2 ** 20, 2), "step": int(ck.get("step", 0)),
             "made_by": args.command, "training_data": args.data, "heldout": args.heldout,
             "torch": torch.__version__}
    if args.heldout_file:
        entry["heldout_metrics"] = read_json(args.heldout_file)
    m["files"][out.name] = entry
    write_json(manifest, m)
    print(f"{out} ({entry['size_mb']} MB, sha256 {entry['sha256'][:12]}...; all shipped weights {total:.1f} MB)")
    return 0


if __name__ == "__main__":
    run_cli(main)
