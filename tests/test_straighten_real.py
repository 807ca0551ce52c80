"""Corrected straightening on the three real sets (IPL 1 mm, RAS 3 mm TotalSegmentator, PIR
1.5 mm): bodies end up anterior and centred; montage PNG is written."""
from __future__ import annotations

import numpy as np
import pytest

from data.centroids import read_centroids
from data.io import load_ct, load_label, load_volume
from straighten.cases import totalseg_to_verse
from straighten.core import straighten_case
from straighten.location_json import case_centroids


def _sets(root):
    hv = load_label(root / "hv0007/0007_msk.nii.gz")
    ts = load_label(root / "totalseg_example/totalseg_vertebrae_tsnumbering.nii.gz")
    ts = ts.with_array(totalseg_to_verse(ts.array))
    tp = load_label(root / "tptbox_sample/sub-ct_seg-vert_label-22_msk.nii.gz")
    return {
        "hv0007": (hv, None, read_centroids(root / "hv0007/0007.json"), None),
        "totalseg": (ts, load_ct(root / "totalseg_example/example_ct.nii.gz"), case_centroids(ts), None),
        "tptbox": (tp, load_ct(root / "tptbox_sample/sub-ct_label-22_ct.nii.gz"), case_centroids(tp),
                   load_volume(root / "tptbox_sample/sub-ct_seg-subreg_label-22_msk.nii.gz")),
    }


@pytest.mark.parametrize("name", ["hv0007", "totalseg", "tptbox"])
def test_real_bodies_anterior_and_centred(shared_data, name):
    lab, ct, cents, sub = _sets(shared_data)[name]
    blocks = straighten_case(lab, cents, list(cents), ct, sub)
    whole = {b.label: b for b in straighten_case(lab, cents, list(cents), ct, sub, keep_arches=True)}
    assert blocks
    for b in blocks:
        body = np.argwhere(b.label_array == b.label).mean(0)
        full = np.argwhere(whole[b.label].label_array == b.label).mean(0)
        assert abs(body[1] - 128) <= 1.5 and abs(body[2] - 32) <= 1.5, (name, b.label, body)
        assert full[1] > body[1] + 3, (name, b.label, full, body)   # the arch is posterior
        if b.ct_array is not None:   # bone in the body label, fluid in the canal behind it
            bone = b.ct_array[b.label_array == b.label].mean()
            back = int(np.argwhere(b.label_array[120:137, :, 30:35] == b.label)[:, 1].max())
            canal = b.ct_array[120:137, back + 3:back + 9, 29:36].mean()
            assert bone > canal + 80, (name, b.label, bone, canal)


@pytest.mark.slow
def test_montage_script(shared_data, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    lab, ct, cents, sub = _sets(shared_data)["tptbox"]
    from layout.blocks import save_block
    for b in straighten_case(lab, cents, list(cents), ct, sub):
        save_block(tmp_path / "blocks", f"tp_{b.label}", b.geometry, b.label_array, b.ct_array)
    png = tmp_path / "m.png"
    subprocess.run([sys.executable, str(repo / "scripts/montage_blocks.py"), "--root",
                    str(tmp_path / "blocks"), "--output", str(png)], check=True, cwd=repo)
    assert png.stat().st_size > 1000
