#!/usr/bin/env python
"""Generate the ground-truth spine phantom (docs/EVALUATION.md §1).

Three modes:

    # a cohort: <root>/raw/<case>/..., <root>/vertebra_data.json, summary.json, README.md
    python scripts/make_phantom.py --output ROOT --n_cases 16 --seed 0
    # one case (optionally with chosen fractures) under <root>/raw/<case>/
    python scripts/make_phantom.py --output ROOT --case demo --seed 3 --fracture L1:3:wedge
    # paint synthetic HU into a real label map, on the mask's own grid
    python scripts/make_phantom.py --from_mask MSK.nii.gz --output CT.nii.gz --seed 0
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


from phantom.case import (DEFAULT_GRADE_MIX, check_orientation, level_range,
                          parse_level, render_case, write_case)
from phantom.fracture import MORPHOLOGIES
from phantom.shapes import ANATOMIES, DEFAULT_ANATOMY
from utils.errors import UserError, run_cli

log = logging.getLogger("make_phantom")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True,
                   help="cohort/case root folder, or the CT file (.nii.gz) with --from_mask")
    p.add_argument("--n_cases", type=int, default=16, help="number of cases in a cohort (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical output")
    p.add_argument("--levels", nargs=2, default=["T10", "L5"], metavar=("FIRST", "LAST"),
                   help="first and last vertebra level rendered (default T10 L5)")
    p.add_argument("--spacing", nargs=3, type=float, default=[1.0, 1.0, 1.0], metavar="MM",
                   help="voxel size in mm per axis of the written array, in --orientation order "
                        "(default 1 1 1; e.g. 0.8 0.8 3)")
    p.add_argument("--orientation", default="RAS",
                   help="orientation codes of the written arrays, e.g. RAS, LPS, PIR, IPL (default RAS)")
    p.add_argument("--grade_mix", nargs=4, type=float, default=list(DEFAULT_GRADE_MIX),
                   metavar=("G0", "G1", "G2", "G3"),
                   help="relative frequency of Genant grades 0-3 per vertebra (default 0.8 0.1 0.06 0.04)")
    p.add_argument("--sacrum", action="store_true",
                   help="also draw the sacrum's S1 below L5 (VerSe label 26), as a lumbar CT shows it "
                        "(--levels must end at L5)")
    p.add_argument("--anatomy", choices=ANATOMIES, default=DEFAULT_ANATOMY,
                   help="vertebral shape: 'realistic' (default: concave endplates and anterior "
                        "wall, rounded rims, lateral waist, physiological wedge, level sizes "
                        "measured on a real mask, ribs at thoracic levels, osteoporotic to normal "
                        "density; phantom/shapes.py) or 'box' (the original phantom: flat walls "
                        "and endplates, square rims, no ribs, healthy bone density; regenerates "
                        "numbers measured before realistic became the default)")
    p.add_argument("--split", nargs=3, type=float, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of cases in train/val/test (patient-disjoint; default 0.6 0.2 0.2)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes for a cohort (default 1)")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output folder "
                   "or over an existing output file")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--case", metavar="NAME", help="write one case called NAME under <output>/raw/NAME "
                   "instead of a cohort (the output folder may hold other cases; the case folder "
                   "itself must be empty unless --overwrite)")
    p.add_argument("--fracture", action="append", default=[], metavar="LEVEL:GRADE[:MORPH]",
                   help=f"with --case: plant a fracture, e.g. L1:3:wedge (morphology one of "
                        f"{', '.join(MORPHOLOGIES)}; random if omitted). Repeatable. Without any, "
                        "--case draws fractures at random from --grade_mix")
    p.add_argument("--from_mask", metavar="PATH",
                   help="paint HU into this label map instead (writes one CT to --output)")
    p.add_argument("--from_real", nargs=2, action="append", metavar=("CT", "MASK"),
                   help="a cohort on real anatomy instead: fractures planted into this real CT and "
                        "its VerSe label map (phantom/real_cohort.py); repeat for several scans, "
                        "cases of one scan share a split. --n_cases, --seed, --split and "
                        "--grade_mix (its G0 ignored) apply")
    p.add_argument("--elastic_mm", type=float, default=2.0,
                   help="with --from_real: largest random elastic displacement between cases (mm)")
    return p


def parse_fracture(text: str):
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        raise UserError(f"--fracture {text!r}: expected LEVEL:GRADE[:MORPHOLOGY], e.g. L1:3:wedge")
    morph = parts[2].lower() if len(parts) == 3 else None
    if morph is not None and morph not in MORPHOLOGIES:
        raise UserError(f"--fracture {text!r}: morphology must be one of {', '.join(MORPHOLOGIES)}")
    return parse_level(parts[0]), (int(parts[1]), morph)


def _from_mask(args) -> None:
    from data.io import load_label, save_nifti
    from phantom.paint import paint_from_mask
    out = Path(args.output)
    if not (out.name.endswith(".nii.gz") or out.name.endswith(".nii")):
        raise UserError("with --from_mask, --output must be a .nii or .nii.gz file", out)
    if out.exists() and not args.overwrite:
        raise UserError("output file exists (use --overwrite)", out)
    mask = load_label(args.from_mask)
    ct = paint_from_mask(mask, seed=args.seed)
    save_nifti(ct, out, dtype="int16")
    log.info("painted %s -> %s", args.from_mask, out)


def _one_case(args) -> None:
    from phantom.cohort import check_output_root
    root = Path(args.output)
    if not args.case or args.case in (".", "..") or any(c in args.case for c in "/\\"):
        raise UserError(f"--case {args.case!r} must be a plain folder name")
    case_dir = root / "raw" / args.case
    if case_dir.exists() and any(case_dir.iterdir()) and not args.overwrite:
        raise UserError("case folder is not empty (use --overwrite)", case_dir)
    if root.exists() and not root.is_dir():
        raise UserError("output exists and is not a folder", root)
    fractures = dict(parse_fracture(f) for f in args.fracture) if args.fracture else "random"
    case = render_case(args.seed, levels=level_range(*args.levels), spacing=args.spacing,
                       orientation=args.orientation, fractures=fractures,
                       grade_mix=args.grade_mix, case_id=args.case, anatomy=args.anatomy,
                       sacrum=args.sacrum)
    check_output_root(root, overwrite=True)
    d = write_case(case, root, args.case)
    graded = {v["level"]: (v["grade"], v["morphology"]) for v in case.truth["vertebrae"].values()
              if v["grade"]}
    log.info("wrote %s (fractures: %s)", d, graded or "none")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_orientation(args.orientation)
    if args.from_mask:
        return _from_mask(args)
    if args.from_real:
        from phantom.cohort import check_output_root
        from phantom.real_cohort import write_real_cohort
        check_output_root(Path(args.output), overwrite=args.overwrite)
        summary = write_real_cohort([tuple(x) for x in args.from_real], args.output, args.n_cases,
                                    args.seed, grade_mix=args.grade_mix, elastic_mm=args.elastic_mm,
                                    split_fractions=args.split, progress=not args.no_progress)
        print(f"wrote {args.n_cases} real-anatomy cases to {args.output}; grades per split "
              f"(0/1/2/3): {summary['grade_counts']}")
        return 0
    if args.fracture and not args.case:
        raise UserError("--fracture needs --case (a cohort draws fractures from --grade_mix)")
    if args.case:
        return _one_case(args)
    from phantom.cohort import write_cohort
    summary = write_cohort(args.output, args.n_cases, args.seed, levels=level_range(*args.levels),
                           spacing=args.spacing, orientation=args.orientation,
                           grade_mix=args.grade_mix, workers=args.workers,
                           progress=not args.no_progress, overwrite=args.overwrite,
                           split_fractions=args.split, anatomy=args.anatomy, sacrum=args.sacrum)
    print(f"wrote {args.n_cases} cases to {args.output}; grades per split "
          f"(0/1/2/3): {summary['grade_counts']}")


if __name__ == "__main__":
    run_cli(main)
