"""RHLV and morphometry on the real label maps of ../shared/data (skipped when absent)."""
from __future__ import annotations

import os

import pandas as pd
import pytest

REAL = {  # case folder -> (symlink name -> shared file, extra straighten flags)
    "ts": ({"tsbody_msk.nii.gz": "totalseg_example/vertebrae_body_verse_labels.nii.gz"}, []),
    "tsw": ({"tswhole_msk.nii.gz": "totalseg_example/totalseg_vertebrae_tsnumbering.nii.gz"},
            ["--label_scheme", "totalseg"]),
    "hv": ({"0007_msk.nii.gz": "hv0007/0007_msk.nii.gz", "0007.json": "hv0007/0007.json"}, []),
    "tpt": ({"tpt_msk.nii.gz": "tptbox_sample/sub-ct_seg-vert_label-22_msk.nii.gz",
             "tpt_subreg.nii.gz": "tptbox_sample/sub-ct_seg-subreg_label-22_msk.nii.gz"}, []),
}


def _straighten_and_measure(shared, tmp, name):
    from evaluation import RHLV_quantification, morphometry
    from straighten import straighten_mask_3d
    links, extra = REAL[name]
    src = tmp / "in" / name
    src.mkdir(parents=True)
    for link, target in links.items():
        os.symlink(shared / target, src / link)
    out = tmp / "st" / name
    straighten_mask_3d.main(["--dataroot", str(src), "--output", str(out), "--no_ct",
                             "--no_progress", *extra])
    assert morphometry.main(["--label_dir", str(out / "label"), "--output", str(tmp / f"{name}_m.csv"),
                             "--no_progress"]) == 0
    assert RHLV_quantification.main(["--label_dir", str(out / "label"), "--fake_dir", str(out / "label"),
                                     "--output", str(tmp / f"{name}_r.csv"), "--coronal",
                                     "--no_progress"]) == 0
    return pd.read_csv(tmp / f"{name}_m.csv"), pd.read_csv(tmp / f"{name}_r.csv")


def test_totalseg_lumbar_body_heights(shared_data, tmp_path):
    m, r = _straighten_and_measure(shared_data, tmp_path, "ts")
    lum = m[m["level"].isin(["L1", "L2", "L3", "L4", "L5"])].set_index("level")
    assert len(lum) == 5
    h = lum[["H_a_mm", "H_m_mm", "H_p_mm"]].to_numpy()
    assert (h > 20).all() and (h < 32).all(), lum   # adult lumbar bodies, 3 mm source grid
    assert (lum["morph_grade"] == 0).all()
    assert (r[[c for c in r.columns if c.startswith("RHLV_")]].abs() < 1e-9).all().all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tsw", "hv", "tpt"])
def test_every_real_label_map_runs(shared_data, tmp_path, name):
    m, r = _straighten_and_measure(shared_data, tmp_path, name)
    assert len(m) >= 2 and len(r) == len(m)
    assert m[["H_a_mm", "H_m_mm", "H_p_mm"]].notna().all().all()
