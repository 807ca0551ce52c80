#!/usr/bin/env python
"""Copy a trained landmark checkpoint into the repository as shipped weights, with a manifest.

    python scripts/ship_radiograph_weights.py --checkpoint RUN/ckpt/best.pth \\
        --heldout_metrics EVAL/metrics.json --command "the commands that made it" \\
        --data_seeds 1 2 --heldout_seed 9

Writes ``radiograph/weights/landmarks_cpu.pth`` (weights, config, channels and camera only: no
optimizer state) and ``radiograph/weights/MANIFEST.json`` (sha256, size, the commands, the data
seeds, the held-out metrics). Refuses files over 25 MB.
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
KEEP = ("version", "kind", "model", "step", "config", "channels", "mm_at_spine", "pixel_mm", "sigma",
        "best_mre_px")
LIMIT_MB = 25.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--heldout_metrics", required=True, help="metrics.json of radiograph/evaluate.py")
    ap.add_argument("--command", required=True, help="the commands that made the data and the run")
    ap.add_argument("--data_seeds", nargs="+", type=int, required=True)
    ap.add_argument("--heldout_seed", type=int, required=True)
    ap.add_argument("--output", default=str(ROOT / "radiograph" / "weights" / "landmarks_cpu.pth"))
    args = ap.parse_args(argv)
    ck = load_checkpoint(args.checkpoint)
    if ck.get("kind") != "radiograph-landmarks":
        raise UserError("not a radiograph landmark checkpoint", args.checkpoint)
    out = Path(args.output)
    save_checkpoint({k: ck[k] for k in KEEP if k in ck}, out)
    size_mb = out.stat().st_size / 2 ** 20
    if size_mb > LIMIT_MB:
        out.unlink()
        raise UserError(f"{size_mb:.1f} MB is over the {LIMIT_MB:.0f} MB limit for shipped weights", out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    m = read_json(args.heldout_metrics)
    write_json(out.parent / "MANIFEST.json", {
        "file": out.name, "sha256": digest, "size_mb": round(size_mb, 2),
        "made_by": args.command, "training_data_seeds": args.data_seeds,
        "heldout_data_seed": args.heldout_seed, "step": int(ck.get("step", 0)),
        "config": ck["config"], "channels": ck["channels"],
        "heldout_metrics": {k: m[k] for k in ("images", "landmarks", "mre_mm", "median_mm", "sdr_2mm",
                                              "sdr_2.5mm", "sdr_4mm", "slip_pct_mae",
                                              "meyerding_accuracy", "genant_macro_f1",
                                              "genant_accuracy") if k in m},
        "torch": torch.__version__})
    print(f"{out} ({size_mb:.2f} MB, sha256 {digest[:12]}...)")
    return 0


if __name__ == "__main__":
    run_cli(main)
