"""Finding and loading the cases under a ``--dataroot``.

Layouts: ``<dataroot>/raw/<case>/<case>.nii.gz`` (CT, optional), ``<case>_msk.nii.gz`` or
``<case>_seg.nii.gz`` (labels), ``<case>.json`` (centroids, optional: computed from the mask when
absent), optionally ``<case>_subreg.nii.gz`` (VerSe sub-regions). The ``raw/`` level may be
absent, and files may also lie flat in the folder. ``<case>_healthy*`` files are skipped unless
asked for through the suffixes (``--ct_suffix _healthy --mask_suffix _healthy_msk``).

The official VerSe naming is recognised as well, flat or as the download ships it
(``rawdata/<sub>/`` for CTs, ``derivatives/<sub>/`` for masks and centroids):
``<case>_ct.nii.gz`` (CT), ``<case>_seg-vert_msk.nii.gz`` (labels) and
``<case>_seg-subreg_ctd.json`` (centroids), e.g. case ``sub-verse004`` or ``sub-gl003_dir-ax``, so
the keys are ``<case>_<label>`` as in the VerSe grade files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from data.centroids import read_centroids
from data.io import check_same_grid, load_ct, load_label, load_volume, replace_nonfinite
from utils.errors import UserError

DEFAULT_MASK_SUFFIXES = ("_msk", "_seg")
VERSE_MASK, VERSE_CT, VERSE_CTD = "_seg-vert_msk", "_ct", "_seg-subreg_ctd.json"


@dataclass
class CaseFiles:
    case: str
    mask: Path
    ct: Optional[Path]
    centroids: Optional[Path]
    subreg: Optional[Path]


def _nii(folder: Path, stem: str) -> Optional[Path]:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def find_cases(dataroot, mask_suffix: Optional[str] = None, ct_suffix: str = "",
               subreg_suffix: str = "_subreg") -> List[CaseFiles]:
    """All cases with a label map under ``dataroot`` (sorted by case id)."""
    root = Path(dataroot)
    if not root.is_dir():
        raise UserError("dataroot is not a folder", root)
    base = root / "raw" if (root / "raw").is_dir() else root
    suffixes = (mask_suffix,) if mask_suffix else DEFAULT_MASK_SUFFIXES
    found = {} if mask_suffix else _verse_cases(base)
    verse_masks = {c.mask for c in found.values()}
    for suf in suffixes:
        for ext in (".nii.gz", ".nii"):
            for p in sorted(base.rglob(f"*{suf}{ext}")):
                case = p.name[: -len(suf + ext)]
                if not case or case in found or p in verse_masks:
                    continue
                if mask_suffix is None and (case.endswith("_healthy") or case.endswith("_subreg")):
                    continue
                found[case] = CaseFiles(case, p, _nii(p.parent, case + ct_suffix),
                                        _json(p.parent, case, suf), _nii(p.parent, case + subreg_suffix))
    return [found[c] for c in sorted(found)]


def _verse_ct(mask: Path, case: str) -> Optional[Path]:
    """``<case>_ct`` beside the mask, or in the ``rawdata`` twin of its ``derivatives`` folder."""
    p = _nii(mask.parent, case + VERSE_CT)
    if p is not None:
        return p
    parts = list(mask.parent.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "derivatives":
            twin = Path(*parts[:i], "rawdata", *parts[i + 1:])
            return _nii(twin, case + VERSE_CT)
    return None


def _verse_cases(base: Path) -> dict:
    """Cases named the official VerSe way under ``base`` (module doc), by case id."""
    found = {}
    for ext in (".nii.gz", ".nii"):
        for p in sorted(base.rglob(f"*{VERSE_MASK}{ext}")):
            case = p.name[: -len(VERSE_MASK + ext)]
            if not case or case in found:
                continue
            ctd = p.parent / f"{case}{VERSE_CTD}"
            found[case] = CaseFiles(case, p, _verse_ct(p, case), ctd if ctd.is_file() else None, None)
    return found


def centroid_path(folder: Path, case: str, mask_suffix: str = "_msk") -> Path:
    """Centroid file belonging to the mask ``<case><mask_suffix>``: ``<case>.json`` for ``_msk`` /
    ``_seg``; ``<case>_healthy.json`` for ``_healthy_msk`` (a phantom's healthy twin, whose
    vertebrae below a fracture sit elsewhere)."""
    stem = mask_suffix
    for tail in ("_msk", "_seg"):
        if stem.endswith(tail):
            stem = stem[: -len(tail)]
            break
    return Path(folder) / f"{case}{stem}.json"


def _json(folder: Path, case: str, mask_suffix: str = "_msk") -> Optional[Path]:
    """:func:`centroid_path` when that file exists; None (computed from the mask) otherwise."""
    p = centroid_path(folder, case, mask_suffix)
    return p if p.is_file() else None


def totalseg_to_verse(arr: np.ndarray) -> np.ndarray:
    """TotalSegmentator vertebra numbering (26 S1, 27 L5 ... 50 C1) -> VerSe ids (S1 dropped)."""
    out = np.zeros(arr.shape, np.uint8)
    for t in range(27, 51):
        out[arr == t] = 51 - t
    return out


def load_case(files: CaseFiles, label_scheme: str = "verse", use_ct: bool = True):
    """``(label Volume, ct Volume or None, centroids {label: voxel idx}, subreg or None)``."""
    lab = load_label(files.mask)
    if label_scheme == "verse":
        from straighten.location_json import warn_unknown_labels
        warn_unknown_labels(lab)
    if label_scheme == "totalseg":
        lab = lab.with_array(totalseg_to_verse(lab.array))
        if not lab.array.any():
            raise UserError("no TotalSegmentator vertebra labels (27-50) in the mask", files.mask)
    ct = None
    if use_ct and files.ct is not None:
        ct = load_ct(files.ct, allow_nonfinite=True)
        check_same_grid(lab, ct)
        ct = replace_nonfinite(ct, lab)
    sub = None
    if files.subreg is not None:
        sub = load_volume(files.subreg)
        check_same_grid(lab, sub)
    if files.centroids is not None and label_scheme == "verse":
        cents = read_centroids(files.centroids, reference=lab)
    else:
        from straighten.location_json import case_centroids
        cents = case_centroids(lab)
    return lab, ct, cents, sub
