"""Figure: axial height-loss maps of a wedge, a biconcave and a crush fracture side by side.

Either name the vertebrae (``--keys`` with ``--label_dir`` real blocks and ``--fake_dir``
pseudo-healthy blocks), or give a phantom cohort (``--phantom_root``) and the script picks, for
each morphology, a typical vertebra of its most severe grade present in ``--label_dir``. Writes
``<output>`` (PNG); rows of each map run anterior -> posterior, columns left -> right.

Example::

    python scripts/figure_height_maps.py --label_dir phantom/straight/label \
        --fake_dir phantom/oracle/label --phantom_root phantom --output figures/height_maps.png
"""
from __future__ import annotations

import argparse


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from evaluation.height_map import draw_map, map_for_key
from evaluation.phantom_truth import truth_table
from layout.blocks import block_path
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

MORPHS = ("wedge", "biconcave", "crush")


def pick_examples(phantom_root, label_dir, fake_dir) -> list:
    """(key, title) per morphology: among its most severe grade present (both blocks on disk),
    the vertebra of median planted loss (a typical example, not the extreme one)."""
    t = truth_table(phantom_root)
    t = t[[block_path(label_dir, k).exists() and block_path(fake_dir, k).exists() for k in t["key"]]]
    t = t.assign(worst=t[["loss_a", "loss_m", "loss_p"]].max(axis=1))
    out = []
    for m in MORPHS:
        sub = t[t["morphology"] == m]
        if len(sub):
            sub = sub[sub["true_grade"] == sub["true_grade"].max()].sort_values("worst")
            r = sub.iloc[len(sub) // 2]
            out.append((r["key"], f"{m}, grade {r['true_grade']} (planted max {100 * r['worst']:.0f} %)"))
    if not out:
        raise UserError("no fractured vertebra of the cohort has blocks in both folders", label_dir)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Wedge / biconcave / crush height-loss maps side by side",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--label_dir", required=True, help="real straightened label blocks")
    p.add_argument("--fake_dir", required=True, help="pseudo-healthy label blocks (same grids)")
    p.add_argument("--output", required=True, help="output PNG")
    p.add_argument("--keys", nargs="+", help="vertebra keys to show (default: picked from --phantom_root)")
    p.add_argument("--titles", nargs="+", help="panel titles for --keys")
    p.add_argument("--phantom_root", help="phantom cohort root with the truth files")
    p.add_argument("--vmax", type=float, default=60.0, help="colour scale maximum (%%)")
    args = p.parse_args(argv)
    if args.keys:
        titles = args.titles or args.keys
        if len(titles) != len(args.keys):
            raise UserError("--titles needs one title per key")
        examples = list(zip(args.keys, titles))
    elif args.phantom_root:
        examples = pick_examples(args.phantom_root, args.label_dir, args.fake_dir)
    else:
        raise UserError("give --keys or --phantom_root")
    fig, axes = plt.subplots(1, len(examples), figsize=(4.3 * len(examples), 3.8), squeeze=False)
    for ax, (key, title) in zip(axes[0], examples):
        _, frac, sp = map_for_key(key, args.label_dir, args.fake_dir)
        im = draw_map(ax, frac, (sp[1], sp[2]), args.vmax, f"{key}\n{title}")
    fig.colorbar(im, ax=list(axes[0]), label="height loss (%)", shrink=0.85)
    with atomic_path(args.output) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return 0


if __name__ == "__main__":
    run_cli(main)
