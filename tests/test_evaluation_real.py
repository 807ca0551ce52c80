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


def _plant_crush(label_dir, out_dir, key: str, label: int, rows: int):
    """Copy the blocks of ``label_dir`` to ``out_dir`` with the top ``rows`` voxels of every SI
    column of vertebra ``label``'s body removed in ``key``'s block (a crush of known size that
    follows the real, uneven endplate)."""
    import shutil

    import numpy as np

    from data.io import load_label, save_nifti
    shutil.copytree(label_dir, out_dir)
    vol = load_label(out_dir / f"{key}.nii.gz")
    arr = vol.array.copy()
    body = arr == label
    rank = np.cumsum(body, axis=0)                 # 1 for a column's first body voxel, 2 ...
    arr[body & (rank <= rows)] = 0
    save_nifti(vol.with_array(arr), out_dir / f"{key}.nii.gz", dtype=np.uint8)


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
    # RHLV of a real body against a crushed copy of itself (6 mm off the top of every column of
    # L2): the loss read back per third is 6 mm over that third's height
    key = m.set_index("level").loc["L2", "key"]
    st = tmp_path / "st" / "ts"
    _plant_crush(st / "label", tmp_path / "crushed", key, 21, 6)
    from evaluation import RHLV_quantification
    assert RHLV_quantification.main(["--label_dir", str(tmp_path / "crushed"), "--fake_dir",
                                     str(st / "label"), "--output", str(tmp_path / "crush.csv"),
                                     "--no_progress", "--column_filter", "none"]) == 0
    c = pd.read_csv(tmp_path / "crush.csv").set_index("key")
    for t in "amp":
        expected = 6.0 / c.loc[key, f"H_syn_{t}_mm"]
        assert abs(c.loc[key, f"RHLV_{t}"] - expected) < 0.03, (t, c.loc[key, f"RHLV_{t}"], expected)
    others = c.drop(index=key)
    assert (others[[f"RHLV_{t}" for t in "amp"]].abs() < 1e-9).all().all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tsw", "hv", "tpt"])
def test_every_real_label_map_runs(shared_data, tmp_path, name):
    m, r = _straighten_and_measure(shared_data, tmp_path, name)
    assert len(m) >= 2 and len(r) == len(m)
    assert m[["H_a_mm", "H_m_mm", "H_p_mm"]].notna().all().all()
