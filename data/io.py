"""Reading and writing volumes, with the checks that turn bad input into one clear line.

* :func:`load_volume` reads NIfTI (``.nii``, ``.nii.gz``) with nibabel and DICOM series folders,
  ``.mha``/``.mhd`` and ``.nrrd`` with SimpleITK (LPS converted to the RAS+ affine).
* :func:`load_ct`, :func:`load_label` add content checks (finite HU; integer, non-empty labels).
* :func:`check_same_grid` refuses a CT and mask on different grids.
* :func:`save_nifti` writes atomically with the volume's own affine (sform and qform).
"""
from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import Optional

import nibabel as nib
import numpy as np

from data.volume import Volume, to_nifti
from utils.errors import UserError
from utils.fileio import atomic_path

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")


def _suffix(p: Path) -> str:
    name = p.name.lower()
    for s in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.endswith(s):
            return s
    return p.suffix.lower()


def _read_nifti(p: Path) -> Volume:
    try:
        img = nib.load(str(p))
        arr = np.asarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"corrupt or truncated gzip data ({type(exc).__name__})", p) from None
    except Exception as exc:  # nibabel raises many types for bad headers
        raise UserError(f"not a readable NIfTI file ({str(exc).splitlines()[0][:120]})", p) from None
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    return Volume(arr, img.affine, str(p))


def _read_itk(p: Path) -> Volume:
    import SimpleITK as sitk
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(p))
            if not files:
                raise UserError("folder holds no DICOM series", p)
            reader.SetFileNames(files)
            img = reader.Execute()
        else:
            img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise UserError(f"not a readable image ({str(exc).strip().splitlines()[-1][:120]})", p) from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UserError("multi-component (vector/RGB) image; a scalar 3D volume is needed", p)
    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    if arr.ndim != 3:
        raise UserError(f"expected a 3D volume, got {arr.ndim}D", p)
    arr = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))  # -> (x, y, z) index order
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.array(img.GetSpacing(), dtype=np.float64)
    origin = np.array(img.GetOrigin(), dtype=np.float64)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
    aff[:3, 3] = lps_to_ras @ origin
    return Volume(arr, aff, str(p))


def load_volume(path) -> Volume:
    """Read any supported 3D image. Raises :class:`UserError` for missing, unreadable or non-3D files."""
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", p)
    if p.is_dir():
        vol = _read_itk(p)
    else:
        suf = _suffix(p)
        if suf in NIFTI_SUFFIXES:
            vol = _read_nifti(p)
        elif suf in ITK_SUFFIXES or suf == ".dcm":
            vol = _read_itk(p.parent if suf == ".dcm" else p)
        else:
            raise UserError(f"unsupported file type {suf or '(none)'!r}; use .nii/.nii.gz, "
                            ".mha/.mhd, .nrrd or a DICOM folder", p)
    if vol.array.ndim != 3:
        raise UserError(f"expected a 3D volume, got shape {tuple(vol.array.shape)}", p)
    if not np.all(np.isfinite(vol.affine)) or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-9:
        raise UserError("affine is singular or not finite", p)
    return vol


def load_ct(path, allow_nonfinite: bool = False) -> Volume:
    """CT in HU as float32; NaN/inf voxels are an error unless ``allow_nonfinite`` (then
    :func:`replace_nonfinite` decides with the label map)."""
    vol = load_volume(path)
    arr = np.asarray(vol.array, dtype=np.float32)
    if not allow_nonfinite and not np.all(np.isfinite(arr)):
        n = int((~np.isfinite(arr)).sum())
        raise UserError(f"{n} voxels are NaN or inf", path)
    return Volume(arr, vol.affine, vol.path)


AIR_HU = -1024.0


def replace_nonfinite(ct: Volume, label: Volume, margin_mm: float = 5.0) -> Volume:
    """NaN / inf voxels of ``ct`` outside the spine (farther than ``margin_mm`` from any labelled
    voxel) become air (-1024 HU) with a warning; any inside the spine is an error."""
    bad = ~np.isfinite(ct.array)
    if not bad.any():
        return ct
    from scipy import ndimage
    lab = np.asarray(label.array) > 0
    if lab.any():
        steps = np.maximum(1, np.ceil(margin_mm / np.asarray(ct.spacing, float))).astype(int)
        box = ndimage.find_objects(lab.astype(np.uint8))[0]
        box = tuple(slice(max(0, s.start - k), s.stop + k) for s, k in zip(box, steps))
        near = ndimage.binary_dilation(lab[box], np.ones(tuple(2 * steps + 1), bool))
        n_in = int((bad[box] & near).sum())
        if n_in:
            raise UserError(f"{n_in} NaN or inf voxels lie inside the spine (within "
                            f"{margin_mm:g} mm of a vertebra label)", ct.path)
    n = int(bad.sum())
    log.warning("%s: %d NaN or inf voxels outside the spine replaced with air (%g HU)",
                ct.path, n, AIR_HU)
    arr = ct.array.copy()
    arr[bad] = AIR_HU
    return Volume(arr, ct.affine, ct.path)


def load_label(path, allow_empty: bool = False) -> Volume:
    """Label map as an integer array; non-integer values or an empty map are errors."""
    vol = load_volume(path)
    arr = np.asarray(vol.array)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)):
            raise UserError("label map contains NaN or inf", path)
        if np.any(arr != np.round(arr)):
            raise UserError("label map has non-integer values (is this a CT, not a mask?)", path)
    if arr.min() < 0:
        raise UserError(f"label map has negative values (min {arr.min()})", path)
    arr = arr.astype(np.uint16 if arr.max() > 255 else np.uint8)
    if not allow_empty and not arr.any():
        raise UserError("label map is empty (no foreground voxels)", path)
    return Volume(arr, vol.affine, vol.path)


def check_same_grid(a: Volume, b: Volume, atol: float = 1e-3) -> None:
    """Raise if two volumes (e.g. CT and mask) are not on the same voxel grid."""
    if a.shape != b.shape:
        raise UserError(f"grid mismatch: shape {tuple(a.shape)} vs {tuple(b.shape)} of {a.path}", b.path)
    if not np.allclose(a.affine, b.affine, atol=atol):
        raise UserError(f"grid mismatch: affine differs from that of {a.path}", b.path)


def load_ct_and_label(ct_path: Optional[str], label_path) -> tuple:
    """(ct or None, label) on the same grid."""
    lab = load_label(label_path)
    if ct_path is None:
        return None, lab
    ct = load_ct(ct_path, allow_nonfinite=True)
    check_same_grid(ct, lab)
    return replace_nonfinite(ct, lab), lab


def save_nifti(vol: Volume, path, dtype=None) -> Path:
    """Write ``vol`` as NIfTI with its own affine, atomically. Returns the path."""
    p = Path(path)
    if _suffix(p) not in NIFTI_SUFFIXES:
        raise UserError("output must end in .nii or .nii.gz", p)
    img = to_nifti(vol, dtype)
    with atomic_path(p) as tmp:
        nib.save(img, str(tmp))
    return p


def save_itk(vol: Volume, path) -> Path:
    """Write ``vol`` with SimpleITK (``.mha``, ``.nrrd``, ...), atomically."""
    import SimpleITK as sitk
    p = Path(path)
    img = sitk.GetImageFromArray(np.transpose(vol.array, (2, 1, 0)))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    m = lps_to_ras @ vol.affine[:3, :3]
    sp = vol.spacing
    img.SetSpacing(tuple(float(s) for s in sp))
    img.SetDirection(tuple((m / sp).ravel()))
    img.SetOrigin(tuple(lps_to_ras @ vol.affine[:3, 3]))
    with atomic_path(p) as tmp:
        sitk.WriteImage(img, str(tmp))
    return p
