"""The raw cohort: where a case's CT, label map, centroids, healthy twin and truth live.

Layouts: ``<dataroot>/raw/<case>/<case>.nii.gz`` (CT, optional), ``<case>_msk.nii.gz`` or
``<case>_seg.nii.gz`` (labels), ``<case>.json`` (centroids, optional: computed from the mask when
absent), optionally ``<case>_subreg.nii.gz`` (VerSe sub-regions). The ``raw/`` level may be
absent, and files may also lie flat in the folder. A phantom case adds its healthy twin
(``<case>_healthy.nii.gz``, ``<case>_healthy_msk.nii.gz``, centroids ``<case>_healthy.json``)
and the planted truth (``<case>_truth.json``). ``<case>_healthy*`` files are skipped when
cases are listed unless asked for through the suffixes (``--ct_suffix _healthy --mask_suffix
_healthy_msk``).

The official VerSe naming is recognised as well, flat or as the download ships it
(``rawdata/<sub>/`` for CTs, ``derivatives/<sub>/`` for masks and centroids):
``<case>_ct.nii.gz`` (CT), ``<case>_seg-vert_msk.nii.gz`` (labels) and
``<case>_seg-subreg_ctd.json`` (centroids), e.g. case ``sub-verse004`` or ``sub-gl003_dir-ax``, so
the keys are ``<case>_<label>`` as in the VerSe grade files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from utils.errors import UserError

RAW_DIR = "raw"
MASK_SUFFIX, TWIN_SUFFIX, TWIN_MASK_SUFFIX, SUBREG_SUFFIX = "_msk", "_healthy", "_healthy_msk", "_subreg"
TRUTH_SUFFIX = "_truth.json"
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
               subreg_suffix: str = SUBREG_SUFFIX) -> List[CaseFiles]:
    """All cases with a label map under ``dataroot`` (sorted by case id)."""
    root = Path(dataroot)
    if not root.is_dir():
        raise UserError("dataroot is not a folder", root)
    base = raw_base(root)
    suffixes = (mask_suffix,) if mask_suffix else DEFAULT_MASK_SUFFIXES
    found = {} if mask_suffix else _verse_cases(base)
    verse_masks = {c.mask for c in found.values()}
    for suf in suffixes:
        for ext in (".nii.gz", ".nii"):
            for p in sorted(base.rglob(f"*{suf}{ext}")):
                case = p.name[: -len(suf + ext)]
                if not case or case in found or p in verse_masks:
                    continue
                if mask_suffix is None and is_derived(case):
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


def raw_base(dataroot) -> Path:
    """``<dataroot>/raw`` when it exists, else ``dataroot`` itself."""
    root = Path(dataroot)
    return root / RAW_DIR if (root / RAW_DIR).is_dir() else root


def is_derived(stem: str) -> bool:
    """A file stem that belongs to another case (its healthy twin, its sub-region map)."""
    return stem.endswith(TWIN_SUFFIX) or stem.endswith(SUBREG_SUFFIX)


def mask_files(dataroot, mask_suffix: str = MASK_SUFFIX) -> List[Path]:
    """Every ``<case><mask_suffix>.nii.gz`` under the raw folder (healthy twins left out)."""
    base = raw_base(dataroot)
    n = len(mask_suffix) + len(".nii.gz")
    return sorted(p for p in base.rglob(f"*{mask_suffix}.nii.gz") if not is_derived(p.name[:-n]))


def case_file(dataroot, case: str, suffix: str) -> Path:
    """``<raw>/<case>/<case><suffix>`` (suffix with its extension), or the flat
    ``<dataroot>/<case>/…`` when that is where it is."""
    p = raw_base(dataroot) / case / f"{case}{suffix}"
    if not p.is_file() and (Path(dataroot) / case / f"{case}{suffix}").is_file():
        return Path(dataroot) / case / f"{case}{suffix}"
    return p


def truth_path(dataroot, case: str) -> Path:
    """The planted truth of a phantom case."""
    return case_file(dataroot, case, TRUTH_SUFFIX)


def truth_files(dataroot) -> List[Path]:
    """Every ``<case>/<case>_truth.json`` of a cohort."""
    return sorted(raw_base(dataroot).glob(f"*/*{TRUTH_SUFFIX}"))


def case_paths(root, case: str) -> Dict[str, Path]:
    """Where a new case is written: ``<root>/raw/<case>/`` with the CT, mask, centroids, healthy
    twin (CT, mask, centroids) and truth."""
    d = Path(root) / RAW_DIR / case
    return {"dir": d, "ct": d / f"{case}.nii.gz", "mask": d / f"{case}{MASK_SUFFIX}.nii.gz",
            "centroids": d / f"{case}.json", "healthy_ct": d / f"{case}{TWIN_SUFFIX}.nii.gz",
            "healthy_mask": d / f"{case}{TWIN_MASK_SUFFIX}.nii.gz",
            "healthy_centroids": d / f"{case}{TWIN_SUFFIX}.json", "truth": d / f"{case}{TRUTH_SUFFIX}"}
