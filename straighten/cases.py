"""Loading a case found by :mod:`layout.raw` (label map, CT, centroids, sub-regions), with the
TotalSegmentator numbering converted to VerSe ids."""
from __future__ import annotations

import numpy as np

from data.centroids import read_centroids
from data.io import check_same_grid, load_ct, load_label, load_volume, replace_nonfinite
from layout.raw import CaseFiles
from straighten.location_json import case_centroids, warn_unknown_labels
from utils.errors import UserError


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
        cents = case_centroids(lab)
    return lab, ct, cents, sub
