"""PNG montage of mid-sagittal slices of straightened blocks (for looking, not measuring).

Each tile is ``block[:, :, W_lr // 2]`` (rows SI with cranial at the top, columns AP with
anterior on the left): the CT in the HU window (if the block has one) with the label outlines
in colour, or the labels alone. The target vertebra is drawn brighter. Example::

    python scripts/montage_blocks.py --root out/straight --output montage.png
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


from data.intensity import hu_to_uint8
from data.splits import parse_key
from layout.blocks import LABEL_DIR, load_block
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

log = logging.getLogger("montage_blocks")


def tile(root, key: str) -> np.ndarray:
    """RGB uint8 (H, W_ap, 3) mid-sagittal tile of one block."""
    import matplotlib
    ct, lab = load_block(root, key)
    z = lab.shape[2] // 2
    lab2 = lab.array[:, :, z]
    target = parse_key(key)[1]
    if ct is not None:
        grey = hu_to_uint8(ct.array[:, :, z]).astype(np.float32) / 255.0
        rgb = np.repeat(grey[..., None], 3, axis=2)
        alpha = 0.35
    else:
        rgb = np.zeros(lab2.shape + (3,), np.float32)
        alpha = 0.8
    cmap = matplotlib.colormaps["tab20"]
    for l in np.unique(lab2):
        if l == 0:
            continue
        m = lab2 == l
        colour = np.array(cmap((int(l) % 20) / 20.0)[:3])
        a = 1.0 if l == target else alpha
        rgb[m] = (1 - a) * rgb[m] + a * colour
    h, w = lab2.shape
    rgb[h // 2, :] = [1, 0, 0]  # centre row
    rgb[:, w // 2] = [1, 0, 0]  # centre column (the curve)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", nargs="+", required=True,
                    help="one or more straightened output roots (with label/, optionally CT/)")
    ap.add_argument("--output", required=True, help="PNG file to write")
    ap.add_argument("--keys", nargs="*", default=None, help="vertebra keys to show (default: all)")
    ap.add_argument("--columns", type=int, default=8, help="tiles per montage row")
    ap.add_argument("--max_tiles", type=int, default=48, help="at most this many tiles")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    items = []
    for root in args.root:
        keys = args.keys or sorted(p.name[:-7] for p in (Path(root) / LABEL_DIR).glob("*.nii.gz"))
        items += [(root, k) for k in keys if (Path(root) / LABEL_DIR / f"{k}.nii.gz").is_file()]
    items = items[:args.max_tiles]
    if not items:
        raise UserError("no blocks found", args.root[0])
    ncol = min(args.columns, len(items))
    nrow = int(np.ceil(len(items) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.4 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (root, key) in zip(axes.ravel(), items):
        ax.imshow(tile(root, key))
        ax.set_title(f"{Path(root).name}\n{key}", fontsize=6)
    fig.suptitle("mid-sagittal: rows SI (cranial top), columns AP (anterior left); red = centre",
                 fontsize=8)
    fig.tight_layout()
    with atomic_path(args.output) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    log.info("wrote %s (%d tiles)", args.output, len(items))


if __name__ == "__main__":
    run_cli(main)
