"""Relative height loss of vertebrae (RHLV) per vertebra -> one CSV (docs/METHOD.md §6).

For every vertebra key, compares the real straightened body (``--label_dir/<key>.nii.gz``) with
its pseudo-healthy counterpart (``--fake_dir/<key>.nii.gz``: the 3D synthesis' ``label_fake``
folder, or the healthy twin's straightened ``label`` folder for the phantom oracle) and writes
key, case, label, level, split, grade, H_syn_{a,m,p}_mm, H_ori_{a,m,p}_mm, RHLV_{a,m,p} (and the
``_cor`` coronal variants with ``--coronal``), ``complete``/``reason`` (cut by the scan) and
``plausible``/``implausible`` (a synthesis in pieces, taller than the band or with a footprint
far from its neighbours', :mod:`evaluation.plausibility`). The measurement rule and every option kept from
the original are documented in :mod:`evaluation.heights`.

Example::

    python evaluation/RHLV_quantification.py --label_dir straight/label \
        --fake_dir results/paper/label_fake --vertebra_json vertebra_data.json \
        --output results/paper/rhlv.csv --coronal --fake_dir_cor results/paper_cor/label_fake
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


from data.splits import add_phase_argument, read_vertebra_json
from evaluation.heights import BODIES, FILTERS, RESCALES, HeightRule
from evaluation.plausibility import PlausibilityRule
from evaluation.rhlv import rhlv_table
from layout.blocks import list_keys
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path

log = logging.getLogger("RHLV_quantification")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--label_dir", required=True,
                   help="folder of real straightened label blocks <key>.nii.gz")
    p.add_argument("--fake_dir", required=True,
                   help="folder of pseudo-healthy label blocks <key>.nii.gz on the same grids "
                        "(label_fake of the 3D synthesis, or the healthy twin's label folder)")
    p.add_argument("--output", required=True, help="output CSV path")
    p.add_argument("--vertebra_json", default=None,
                   help="split/grade file; gives split and grade columns and the keys to measure "
                        "(default: every file in --label_dir, split/grade empty)")
    add_phase_argument(p, "--phase", ("all",), "to measure", aliases=("--phases",))
    p.add_argument("--coronal", action="store_true",
                   help="also write the coronal variant (_cor columns)")
    p.add_argument("--fake_dir_cor", default=None,
                   help="pseudo-healthy labels of the coronal model for the _cor columns "
                        "(default: --fake_dir, measured with the coronal centre-column rule)")
    p.add_argument("--lr_fraction", type=float, default=0.4,
                   help="central fraction of the LR extent whose slices are measured")
    p.add_argument("--column_ratio", type=float, default=0.7,
                   help="keep columns taller than this x the centre column (0 disables)")
    p.add_argument("--column_filter", choices=FILTERS, default="syn",
                   help="whose heights the column filter uses: syn = the pseudo-healthy body's "
                        "(same columns for both), each = each body its own, none = no filter")
    p.add_argument("--rescale", choices=RESCALES, default="none",
                   help="original = scale synthetic heights up when shorter than the real ones")
    p.add_argument("--align_shift", type=int, default=6,
                   help="align the real body's axial footprint to the pseudo-healthy one by up to "
                        "this many voxels in AP/LR before measuring (0 disables; see heights.py)")
    p.add_argument("--height_rule", choices=("ours", "original"), default="ours",
                   help="original = the authors' rule exactly (evaluation/heights_original.py: LR slab "
                        "from the real body, per-slice thirds, each body filtered by its own centre "
                        "column at --column_ratio, per-part rescale; sagittal only); the paper row "
                        "of reproduce_paper.sh uses it. ours = evaluation/heights.py")
    p.add_argument("--coronal_thirds", choices=("lr", "ap"), default="lr",
                   help="with --coronal: lr = left/middle/right thirds over the central AP slab (the "
                        "authors'), ap = A/M/P thirds over the central LR slab")
    p.add_argument("--body", choices=BODIES, default="largest",
                   help="largest (default) = measure each body's largest 3D component, so islands "
                        "beside a synthesised body cannot move its thirds; all = every voxel (original)")
    p.add_argument("--band_mm", type=float, default=40.0,
                   help="band height the generator fills; a pseudo-healthy body taller than it is "
                        "flagged implausible (columns plausible / implausible; default %(default)s)")
    p.add_argument("--skip_missing", action="store_true",
                   help="skip vertebrae whose real or pseudo-healthy file is missing (else error)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _items(args):
    if args.vertebra_json is None:
        return [(k, None, None) for k in list_keys(args.label_dir)]
    splits = read_vertebra_json(args.vertebra_json)
    items = []
    for ph in args.phase:
        for key, grade in splits.get(ph, {}).items():
            items.append((key, ph, grade))
    if not items:
        raise UserError(f"no vertebrae in splits {args.phase}", args.vertebra_json)
    return items


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output)
    for d in (args.label_dir, args.fake_dir, args.fake_dir_cor):
        if d is not None and Path(d).resolve() in out.resolve().parents:
            raise UserError("output must not be written inside an input folder", out)
    try:
        rule = HeightRule(args.lr_fraction, args.column_ratio, args.column_filter, "sagittal",
                          args.rescale, args.align_shift, args.body, args.height_rule,
                          args.coronal_thirds)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    df = rhlv_table(_items(args), args.label_dir, args.fake_dir, rule, coronal=args.coronal,
                    fake_dir_cor=args.fake_dir_cor, skip_missing=args.skip_missing,
                    progress=not args.no_progress, plausibility=PlausibilityRule(band_mm=args.band_mm))
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.5g")
    cols = [c for c in df.columns if c.startswith("RHLV_")]
    log.info("wrote %d vertebrae to %s; mean RHLV %s", len(df), out,
             ", ".join(f"{c}={df[c].mean():.3f}" for c in cols))
    return 0


if __name__ == "__main__":
    run_cli(main)
