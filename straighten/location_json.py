"""Write a centroid JSON (the original list format: voxel indices of the mask array) per case.

Partial vertebrae at the field-of-view edge are dropped by a size-relative rule: working inwards
from each end of the spine (cranial-most and caudal-most label), an end vertebra is dropped while
its voxel volume is below ``--min_fraction`` (default 0.5) of its inner neighbour's; any label
below ``--min_volume_mm3`` (default 1000 mm^3) is dropped anywhere. (The original instead dropped
the largest id if < 8000 voxels and the smallest if < 6000, which depends on the voxel size.)

``--body_only`` writes vertebral-*body* centroids: from a VerSe sub-region map (labels 49/50)
when ``--subreg`` is given, else geometrically (arch removed from the anterior side, see
:mod:`straighten.orient`). Example::

    python straighten/location_json.py --mask raw/c1/c1_msk.nii.gz --output raw/c1/c1.json
    python straighten/location_json.py --dataroot phantom/ --overwrite
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np


from data.centroids import centroids_from_mask, write_centroids
from data.io import check_same_grid, load_label, load_volume
from data.volume import Volume
from layout.raw import centroid_path, mask_files
from spine.anatomy import VERTEBRA_LABELS as VERTEBRA_IDS, order_labels
from utils.errors import UserError, run_cli

log = logging.getLogger("location_json")


def vertebra_volumes_mm3(mask: Volume) -> Dict[int, float]:
    """Voxel volume (mm^3) of every VerSe vertebra id present in the mask."""
    counts = np.bincount(mask.array.ravel().astype(np.int64))
    vox = float(np.prod(mask.spacing))
    return {l: counts[l] * vox for l in range(len(counts)) if counts[l] and l in VERTEBRA_IDS}


def kept_labels(volumes_mm3: Dict[int, float], min_fraction: float = 0.5,
                min_volume_mm3: float = 1000.0) -> list:
    """Labels kept by the partial-vertebra rule (see module doc), cranial -> caudal."""
    labs = [l for l in order_labels(volumes_mm3) if volumes_mm3[l] >= min_volume_mm3]
    while len(labs) > 1 and volumes_mm3[labs[0]] < min_fraction * volumes_mm3[labs[1]]:
        labs.pop(0)
    while len(labs) > 1 and volumes_mm3[labs[-1]] < min_fraction * volumes_mm3[labs[-2]]:
        labs.pop()
    return labs


def case_centroids(mask: Volume, subreg: Optional[Volume] = None, body_only: bool = False,
                   min_fraction: float = 0.5, min_volume_mm3: float = 1000.0):
    """``{label: voxel index (3,)}`` of the kept vertebrae of ``mask``."""
    labs = kept_labels(vertebra_volumes_mm3(mask), min_fraction, min_volume_mm3)
    if not labs:
        raise UserError("no complete vertebra (VerSe ids 1-25, 28) in the mask", mask.path)
    cents = centroids_from_mask(mask.array, labs)
    if not body_only:
        return cents
    from straighten.orient import body_centroids
    whole_mm = {l: mask.voxel_to_world(c[None])[0] for l, c in cents.items()}
    bodies = body_centroids(mask, whole_mm, subreg)[0]
    return {l: mask.world_to_voxel(p[None])[0] for l, p in bodies.items()}


def warn_unknown_labels(mask: Volume) -> None:
    """Warn (naming the file) about labels that are not VerSe vertebra ids; they get no centroid."""
    other = sorted(set(np.unique(mask.array).tolist()) - VERTEBRA_IDS - {0})
    if other:
        log.warning("%s: labels %s are not VerSe vertebra ids (1-25, 28); ignored", mask.path, other)


def _write_one(mask_p: Path, out_p: Path, args) -> None:
    mask = load_label(mask_p)
    warn_unknown_labels(mask)
    sub = load_volume(args.subreg) if args.subreg else None
    if sub is not None:
        check_same_grid(mask, sub)
    cents = case_centroids(mask, sub, args.body_only, args.min_fraction, args.min_volume_mm3)
    write_centroids(out_p, cents)
    log.info("wrote %s (%d vertebrae)", out_p, len(cents))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mask", help="one label map (VerSe ids); writes --output")
    ap.add_argument("--output", help="centroid JSON to write for --mask")
    ap.add_argument("--dataroot", help="instead: every <case><mask_suffix>.nii.gz under it "
                    "(or its raw/ folder) gets <case>.json beside it")
    ap.add_argument("--mask_suffix", default="_msk", help="mask file suffix with --dataroot")
    ap.add_argument("--subreg", help="VerSe sub-region map (49/50 = body) for --body_only")
    ap.add_argument("--body_only", action="store_true", help="write vertebral-body centroids")
    ap.add_argument("--min_fraction", type=float, default=0.5,
                    help="drop an end vertebra smaller than this fraction of its inner neighbour")
    ap.add_argument("--min_volume_mm3", type=float, default=1000.0,
                    help="drop any label smaller than this (mm^3)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing JSON files")
    args = ap.parse_args(argv)
    if bool(args.mask) == bool(args.dataroot):
        raise UserError("give either --mask (with --output) or --dataroot")
    if args.mask:
        if not args.output:
            raise UserError("--mask needs --output")
        jobs = [(Path(args.mask), Path(args.output))]
    else:
        files = mask_files(Path(args.dataroot), args.mask_suffix)
        if not files:
            raise UserError(f"no *{args.mask_suffix}.nii.gz masks found", args.dataroot)
        jobs = [(p, centroid_path(p.parent, p.name[:-len(args.mask_suffix) - 7], args.mask_suffix))
                for p in files]
    todo, failed = 0, 0
    for mask_p, out_p in jobs:
        if out_p.exists() and not args.overwrite and args.dataroot:
            log.info("keeping existing %s", out_p)
            continue
        todo += 1
        try:
            _write_one(mask_p, out_p, args)
        except UserError as exc:
            if args.mask:
                raise
            failed += 1
            log.warning("skipped: %s", exc)
    if todo and failed == todo:
        raise UserError(f"no centroid file written: all {failed} masks failed (see above)", args.dataroot)
    return 0


if __name__ == "__main__":
    run_cli(main)
