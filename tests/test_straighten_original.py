"""``--mode original`` reproduces the authors' reference blocks on the real hv0007 mask."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from data.centroids import read_centroids
from data.io import load_label
from straighten.original import original_centroids, straighten_original


@pytest.fixture(scope="module")
def hv0007(shared_data):
    d = shared_data / "hv0007"
    lab = load_label(d / "0007_msk.nii.gz")
    return d, lab, read_centroids(d / "0007.json")


def test_original_mode_matches_reference_blocks(hv0007):
    d, lab, cents = hv0007
    blocks = straighten_original(lab, cents, range(18, 24))
    assert [b.label for b in blocks] == list(range(18, 24))
    for b in blocks:
        ref = np.asarray(nib.load(str(d / "straightened_label" / f"0007_{b.label}.nii.gz")).dataobj)
        assert b.label_array.shape == ref.shape == (256, 256, 64)
        agree = float((b.label_array == ref).mean())
        fg = float(((ref > 0) & (b.label_array == ref)).sum() / (ref > 0).sum())
        assert agree >= 0.99, (b.label, agree)
        assert fg >= 0.90, (b.label, fg)


def test_original_centroid_rule_drops_sliver(hv0007):
    _, lab, cents = hv0007
    mine = original_centroids(lab.array)
    assert sorted(mine) == sorted(cents) == list(range(17, 25))   # label 16 (66 voxels) dropped
    for l in cents:
        assert np.allclose(mine[l], cents[l], atol=1e-3)


def test_original_geometry_maps_centroid_row(hv0007):
    _, lab, cents = hv0007
    from straighten.inverse import block_to_patient
    b = straighten_original(lab, cents, [20])[0]
    idx = np.array([[b.geometry.target_row, b.geometry.centre_ap, b.geometry.centre_lr]])
    assert np.allclose(block_to_patient(b.geometry, idx)[0], cents[20], atol=0.51)
