"""Paint a straightened block (e.g. a pseudo-healthy CT or a label block) back into patient space.

Every patient voxel within the block's reach is mapped into the block through the exact inverse
of the straightening (``geometry/<key>.npz``) and the block is sampled there (nearest for labels,
linear for intensities). Voxels out of reach get ``--background`` or, with ``--keep_reference``,
the reference image's own values (so a pseudo-healthy block replaces only its region of the CT).
Example::

    python straighten/paint_back.py --block out/CT_fake/c1_21.nii.gz \\
        --geometry out/geometry/c1_21.npz --reference raw/c1/c1.nii.gz \\
        --output c1_21_healthy_patient.nii.gz --order 1 --keep_reference
"""
from __future__ import annotations

import argparse

import numpy as np


from data.io import load_volume, save_nifti
from data.volume import Volume
from layout.blocks import BlockGeometry
from straighten.inverse import paint_back
from utils.errors import UserError, run_cli


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", required=True, help="block NIfTI (CT/label/pseudo-healthy)")
    ap.add_argument("--geometry", required=True, help="the block's geometry/<key>.npz")
    ap.add_argument("--reference", help="patient image defining the output grid (default: the "
                    "grid the block was cut from)")
    ap.add_argument("--output", required=True, help="output NIfTI on the patient grid")
    ap.add_argument("--order", type=int, choices=(0, 1), default=None,
                    help="0 nearest (labels), 1 linear (intensities); default: 0 for integer blocks")
    ap.add_argument("--background", type=float, default=None,
                    help="value out of reach (default 0 for labels, -1024 for intensities)")
    ap.add_argument("--keep_reference", action="store_true",
                    help="keep the reference's values out of the block's reach")
    args = ap.parse_args(argv)
    block = load_volume(args.block)
    geo = BlockGeometry.load(args.geometry)
    if tuple(block.shape) != tuple(geo.block_shape):
        raise UserError(f"block shape {block.shape} does not match the geometry's {geo.block_shape}",
                        args.block)
    is_int = np.issubdtype(block.array.dtype, np.integer)
    order = args.order if args.order is not None else (0 if is_int else 1)
    background = args.background if args.background is not None else (0 if order == 0 else -1024)
    ref = load_volume(args.reference) if args.reference else None
    if args.keep_reference and ref is None:
        raise UserError("--keep_reference needs --reference")
    arr = block.array if order == 0 else block.array.astype(np.float32)
    out = paint_back(arr, geo, ref, order=order, background=background,
                     keep_reference=args.keep_reference)
    affine = ref.affine if ref is not None else geo.patient_affine
    save_nifti(Volume(out, affine), args.output)
    return 0


if __name__ == "__main__":
    run_cli(main)
