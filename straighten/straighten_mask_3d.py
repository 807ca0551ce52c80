"""Straighten the spine of every case and write one block per target vertebra.

For each case under ``--dataroot`` (``raw/<case>/<case>.nii.gz`` CT (optional),
``<case>_msk.nii.gz`` or ``_seg.nii.gz`` labels, ``<case>.json`` centroids (optional)) and each
vertebra listed in ``--vertebra_json`` (all if not given), writes under ``--output``:
``CT/<key>.nii.gz`` (HU float32; only when the case has a CT), ``label/<key>.nii.gz`` (uint8
VerSe ids, de-pedicled), ``geometry/<key>.npz`` (exact block -> patient map, see
``straighten/inverse.py`` and ``straighten/paint_back.py``, plus the vertebra's completeness flag)
and ``summary.csv`` (one row per vertebra: status, ``complete`` 1/0 and the reason when a
vertebra is cut by the scan's field of view or otherwise incomplete, see
``straighten/completeness.py``; such vertebrae are never graded nor used as height references).

Default mode (corrected): physical grid (``--spacing`` mm), smooth spline through the
vertebral-body centroids, rotation-minimising frames from the anatomical anterior direction, the
target body centroid at the block centre, each block with its own affine.
``--mode original`` reproduces the authors' algorithm (voxel grid, piecewise-linear curve, their
crop rule; block files carry the raw affine as theirs did).

Block axes: axis0 cranial -> caudal, axis1 anterior -> posterior, axis2 left -> right.
Example::

    python straighten/straighten_mask_3d.py --dataroot phantom --output phantom/straight --workers 2
    python straighten/straighten_mask_3d.py --dataroot phantom --output phantom/straight_healthy \\
        --ct_suffix _healthy --mask_suffix _healthy_msk
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import multiprocessing as mp
import time

import numpy as np


from data.splits import parse_key, read_vertebra_json
from layout.blocks import block_complete, save_block
from layout.raw import find_cases
from straighten.cases import load_case
from straighten.completeness import Completeness, case_completeness
from utils.errors import UserError, run_cli
from utils.fileio import ensure_dir, write_text

log = logging.getLogger("straighten")
FIELDS = ("case", "key", "label", "status", "message", "complete", "reason", "seconds")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataroot", required=True, help="folder with raw/<case>/ (or case folders)")
    ap.add_argument("--output", required=True, help="output root (CT/, label/, geometry/)")
    ap.add_argument("--vertebra_json", help="split/grade file; only its keys are straightened")
    ap.add_argument("--mode", choices=("corrected", "original"), default="corrected",
                    help="corrected (default) or the authors' original algorithm")
    ap.add_argument("--spacing", type=float, nargs="+", default=[1.0],
                    help="output voxel size in mm: one value (isotropic) or SI AP LR (corrected mode)")
    ap.add_argument("--block_size", type=int, nargs=3, default=[256, 256, 64],
                    metavar=("SI", "AP", "LR"), help="block shape in voxels")
    ap.add_argument("--keep_arches", action="store_true", help="skip de-pedicle (keep arches)")
    ap.add_argument("--frames", choices=("rigid", "smooth"), default="rigid",
                    help="corrected mode: 'rigid' keeps each vertebral body rigid (bending in the "
                         "discs; true heights), 'smooth' uses the spline's normal planes")
    ap.add_argument("--label_interp", choices=("auto", "nearest", "linear"), default="auto",
                    help="corrected mode label resampling: nearest, linear per-label indicator "
                         "(smooth surfaces from thick slices), auto = linear when a voxel side "
                         "> 1.5 x output spacing")
    ap.add_argument("--ct_suffix", default="", help="CT file is <case><ct_suffix>.nii.gz")
    ap.add_argument("--mask_suffix", default=None,
                    help="mask file is <case><mask_suffix>.nii.gz (default: _msk, else _seg; "
                         "*_healthy* files are skipped unless named here)")
    ap.add_argument("--subreg_suffix", default="_subreg",
                    help="optional VerSe sub-region map <case><suffix>.nii.gz (49/50 = body)")
    ap.add_argument("--label_scheme", choices=("verse", "totalseg"), default="verse",
                    help="label numbering of the masks (totalseg is converted to VerSe ids)")
    ap.add_argument("--no_ct", action="store_true", help="write label blocks only")
    ap.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    ap.add_argument("--skip_existing", action="store_true", help="skip vertebrae already written")
    ap.add_argument("--summary", help="summary CSV path (default <output>/summary.csv)")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar")
    return ap


def _targets(cents, wanted):
    return sorted(cents) if wanted is None else sorted(wanted)


def process_case(job) -> list:
    """Straighten one case; returns summary rows. Never raises (a failure is a row)."""
    files, wanted, opts = job
    t0 = time.time()
    rows = []
    try:
        lab, ct, cents, sub = load_case(files, opts["label_scheme"], not opts["no_ct"])
        if opts["mode"] == "original" and files.centroids is None:
            from straighten.original import original_centroids
            cents = original_centroids(lab.array)
        targets = _targets(cents, wanted)
        missing = [t for t in targets if t not in cents]
        todo = [t for t in targets if t in cents and not (
            opts["skip_existing"] and block_complete(opts["output"], f"{files.case}_{t}", ct is not None))]
        flags = case_completeness(lab, cents, sub, ct)
        incomplete = sorted(l for l, c in flags.items() if not c.complete)
        # not knots of the centre line at the spine's ends: every vertebra that is not complete
        # (cut by the scan, a label with no body left, whose centroid is the arch's, or metal)
        cut = [l for l, c in flags.items() if not c.complete]
        blocks = _straighten(lab, ct, cents, sub, todo, opts, cut) if todo else []
        for b in blocks:
            key = f"{files.case}_{b.label}"
            flag = flags.get(b.label, Completeness())
            b.geometry.extra.update(complete=flag.complete, status=flag.status, reason=flag.reason,
                                    incomplete_labels=np.asarray(incomplete, int),
                                    incomplete_reasons=np.asarray([flags[l].reason for l in incomplete]
                                                                  or [""], str)[:len(incomplete)])
            save_block(opts["output"], key, b.geometry, b.label_array, b.ct_array,
                       affine=lab.affine if opts["mode"] == "original" else None)
            rows.append([files.case, key, b.label, "ok", "" if ct is not None else "label only",
                         int(flag.complete), flag.reason])
        done = {b.label for b in blocks}
        for t in targets:
            if t in missing:
                rows.append([files.case, f"{files.case}_{t}", t, "missing", "no centroid/label",
                             "", ""])
            elif t not in done:
                flag = flags.get(t, Completeness())
                rows.append([files.case, f"{files.case}_{t}", t, "skipped", "exists",
                             int(flag.complete), flag.reason])
        for t in sorted(set(flags) - set(targets)):
            if wanted is None:  # a vertebra of the mask that gets no block: say why
                rows.append([files.case, f"{files.case}_{t}", t, "no block", "no centroid",
                             int(flags[t].complete), flags[t].reason])
    except Exception as exc:  # report and continue with the other cases
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        rows = [[files.case, "", "", "failed", f"{type(exc).__name__}: {msg}", "", ""]]
    dt = round(time.time() - t0, 3)
    return [dict(zip(FIELDS, r + [dt])) for r in rows]


def _straighten(lab, ct, cents, sub, todo, opts, cut=()):
    if opts["mode"] == "original":
        from straighten.original import straighten_original
        return straighten_original(lab, cents, todo, ct, opts["block_size"],
                                   keep_arches=opts["keep_arches"])
    from straighten.core import straighten_case
    return straighten_case(lab, cents, todo, ct, sub, opts["block_size"], opts["spacing"],
                           opts["keep_arches"], opts["frames"], opts["label_interp"], cut)


def _wanted_by_case(path):
    if path is None:
        return None
    out = {}
    for split in read_vertebra_json(path).values():
        for key in split:
            case, lab = parse_key(key)
            out.setdefault(case, set()).add(lab)
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    spacing = args.spacing * 3 if len(args.spacing) == 1 else args.spacing
    if len(spacing) != 3 or min(spacing) <= 0:
        raise UserError(f"--spacing needs 1 or 3 positive values, got {args.spacing}")
    if min(args.block_size) < 2:
        raise UserError(f"--block_size must be >= 2, got {args.block_size}")
    cases = find_cases(args.dataroot, args.mask_suffix, args.ct_suffix, args.subreg_suffix)
    wanted = _wanted_by_case(args.vertebra_json)
    if wanted is not None:
        cases = [c for c in cases if c.case in wanted]
    if not cases:
        raise UserError("no cases found (expected raw/<case>/<case>_msk.nii.gz)", args.dataroot)
    out = ensure_dir(args.output)
    opts = dict(output=str(out), mode=args.mode, spacing=tuple(spacing),
                block_size=tuple(args.block_size), keep_arches=args.keep_arches,
                frames=args.frames, label_interp=args.label_interp,
                label_scheme=args.label_scheme, no_ct=args.no_ct, skip_existing=args.skip_existing)
    jobs = [(c, None if wanted is None else wanted[c.case], opts) for c in cases]
    rows = _run_jobs(jobs, args.workers, args.no_progress)
    _write_summary(args.summary or out / "summary.csv", rows)
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        log.error("%s failed: %s", r["case"], r["message"])
    for r in rows:
        if r["status"] == "missing":
            log.warning("%s: listed in --vertebra_json but case %s has no such vertebra (skipped)",
                        r["key"], r["case"])
    n_ok = sum(r["status"] == "ok" for r in rows)
    log.info("%d blocks written, %d cases failed of %d", n_ok, len(failed), len(cases))
    return 1 if len(failed) == len(cases) else 0


def _run_jobs(jobs, workers: int, no_progress: bool) -> list:
    from tqdm import tqdm
    rows = []
    bar = tqdm(total=len(jobs), desc="straighten", unit="case", disable=no_progress)
    if workers <= 1 or len(jobs) == 1:
        for j in jobs:
            rows += process_case(j)
            bar.update()
    else:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for r in pool.imap_unordered(process_case, jobs):
                rows += r
                bar.update()
    bar.close()
    return sorted(rows, key=lambda r: (r["case"], str(r["label"])))


def _write_summary(path, rows) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


if __name__ == "__main__":
    run_cli(main)
