#!/usr/bin/env python
"""3D pseudo-healthy synthesis of straightened vertebra blocks (docs/METHOD.md §5).

For every sagittal slice that contains the target vertebra (all of them, not only the central
80 %), iteratively: rebuild the upper neighbour (if it covers > 200 mm² of the slice), then the
lower neighbour on that result, then the target on that result -- each step with the band height,
neighbour shift and SHRM paste of training. Slices of several vertebrae share each forward pass
(--batch). With --coronal_checkpoint the coronal model runs the same way on coronal slices and the
two results are fused (target: mean target probability >= 0.5; its image weighted by the views'
probabilities; neighbours and the rest from the sagittal result; see synthesis/fusion.py);
either model alone also works.

Writes under --results_dir: CT_fake/<key>.nii.gz (HU), label_fake/<key>.nii.gz (uint8) on the
block's grid, summary.csv, and with --paint_back patient_space/<case>_<label>_healthy.nii.gz (+
_healthy_msk.nii.gz) on the patient's original CT grid.

Example:
    python eval_3d_sagittal_twostage.py --checkpoint checkpoints/run/ckpt/latest.pth \\
        --dataroot straightened --vertebra_json raw/vertebra_data.json --phase val \\
        --results_dir results/synthesis --paint_back --raw_root raw
"""
from __future__ import annotations

import argparse
from pathlib import Path


from data.splits import add_phase_argument
from utils.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="sagittal model: a checkpoint file written by train.py "
                   "(ckpt/latest.pth or ckpt/epoch_NNNN.pth) or its run folder")
    p.add_argument("--coronal_checkpoint", help="coronal model (trained with --dataset_mode "
                   "aligned_coronal); with --checkpoint the two results are fused (2.5D)")
    p.add_argument("--dataroot", required=True, help="straightened blocks root (CT/, label/, geometry/)")
    p.add_argument("--cam_folder", help="attention maps <key>.nii.gz on the block grid (default: none, "
                   "the network sees 1 - CAM = 1)")
    p.add_argument("--allow_missing_cam", action="store_true", help="a vertebra without a CAM in "
                   "--cam_folder gets zeros and a warning (default: error)")
    p.add_argument("--vertebra_json", help="split/grade file selecting the keys of --phase "
                   "(default: every block under --dataroot)")
    add_phase_argument(p, default=("test",), what="to synthesise")
    p.add_argument("--results_dir", required=True, help="output folder (CT_fake/, label_fake/, "
                   "patient_space/, summary.csv)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--batch", type=int, default=None, help="slices per forward pass, across slices "
                   "and vertebrae (1 = the original one-slice-at-a-time loop; same results). Default: "
                   "4 on CPU, 16 on CUDA. On CPU the 256-px paper model is compute-bound: batch 1-4 "
                   "run at the same speed per slice and 16 runs slower (docs/BENCHMARKS.md)")
    p.add_argument("--skip_existing", action="store_true", help="skip vertebrae whose outputs exist")
    p.add_argument("--paint_back", action="store_true", help="also write the pseudo-healthy vertebra "
                   "into the patient's original CT grid (needs --raw_root)")
    p.add_argument("--raw_root", help="folder of the original cases (<case>/<case>.nii.gz), for --paint_back")
    p.add_argument("--paint_margin_mm", type=float, default=3.0, help="with --paint_back, synthetic "
                   "voxels replace the patient CT within this distance of the real or synthesised "
                   "target (default: %(default)s mm)")
    g = p.add_argument_group("output rule (synthesis/compose.py): what a target step writes")
    g.add_argument("--preset", choices=["default", "paper"], default="default",
                   help="'paper' writes the generator's composite as the authors did (every pixel of "
                        "seg >= 0.5, regenerated neighbours, whole pasted rows); the flags below "
                        "override single items")
    g.add_argument("--target_rule", choices=["body", "threshold"], help="body (default): one "
                   "connected body per slice, in the real target's columns, largest 3D component; "
                   "threshold (paper): every pixel with seg >= 0.5")
    g.add_argument("--neighbours", choices=["real", "regenerated"], help="real (default): the real "
                   "neighbours, moved apart by SHRM; regenerated (paper): the neighbours the earlier "
                   "steps rebuilt (they are always the target step's context)")
    g.add_argument("--paste", choices=["footprint", "band"], help="footprint (default): generated "
                   "pixels only in the target's columns +/- --output_margin_mm; band (paper): the "
                   "whole pasted rows")
    g.add_argument("--output_margin_mm", type=float, default=5.0,
                   help="column margin of the body and footprint rules (default: %(default)s mm)")
    p.add_argument("--no_progress", action="store_true", help="no tqdm progress bar")
    return p


def output_rule(args):
    """The :class:`synthesis.compose.OutputRule` of the parsed flags (preset, then overrides)."""
    from synthesis.compose import PAPER_OUTPUT, OutputRule
    base = PAPER_OUTPUT if args.preset == "paper" else OutputRule()
    try:
        return OutputRule(args.target_rule or base.target, args.neighbours or base.neighbours,
                          args.paste or base.paste, args.output_margin_mm)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from synthesis.runner import SynthesisOptions, run_synthesis
    opts = SynthesisOptions(
        dataroot=args.dataroot, results_dir=args.results_dir, checkpoint=args.checkpoint,
        coronal_checkpoint=args.coronal_checkpoint, cam_folder=args.cam_folder,
        allow_missing_cam=args.allow_missing_cam,
        vertebra_json=args.vertebra_json, phase=tuple(args.phase), device=args.device,
        batch=args.batch, skip_existing=args.skip_existing, paint_back=args.paint_back,
        raw_root=args.raw_root, paint_margin_mm=args.paint_margin_mm, output_rule=output_rule(args),
        progress=not args.no_progress)
    rows = run_synthesis(opts)
    written = [r for r in rows if r["status"] == "written"]
    if rows and not any(r["status"] in ("written", "skipped") for r in rows):
        raise UserError("no vertebra could be synthesised (see the warnings above)", args.dataroot)
    print(f"pseudo-healthy blocks: {len(written)} written to {Path(args.results_dir) / 'CT_fake'}"
          f" (summary {Path(args.results_dir) / 'summary.csv'})")
    return 0


if __name__ == "__main__":
    run_cli(main)
