"""The straighten CLI on a phantom cohort: outputs, summary, resume, healthy twins, failures."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from layout.blocks import load_block, load_geometry
from straighten.straighten_mask_3d import main

data_phantom = pytest.importorskip("phantom.case")
LEVELS = ("L1", "L2", "L3")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    case = data_phantom.render_case(3, levels=LEVELS, orientation="LPS", fractures={"L2": (2, "wedge")})
    data_phantom.write_case(case, root, "c1")
    bad = root / "raw" / "c2"
    bad.mkdir(parents=True)
    (bad / "c2_msk.nii.gz").write_bytes(b"not a nifti")
    return root


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_writes_blocks_and_reports_failure(cohort, tmp_path):
    out = tmp_path / "straight"
    code = main(["--dataroot", str(cohort), "--output", str(out), "--no_progress"])
    assert code == 0
    rows = _rows(out / "summary.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["key"] for r in ok) == ["c1_20", "c1_21", "c1_22"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["case"] == "c2" and "\n" not in failed[0]["message"]
    ct, lab = load_block(out, "c1_21")
    assert ct.shape == lab.shape == (256, 256, 64) and np.allclose(lab.spacing, 1.0)
    assert lab.orientation == "IPR" and ct.array.dtype == np.float32
    assert load_geometry(out, "c1_21").target_label == 21
    # resume: nothing rewritten
    code = main(["--dataroot", str(cohort), "--output", str(out), "--no_progress", "--skip_existing"])
    assert code == 0 and all(r["status"] in ("skipped", "failed") for r in _rows(out / "summary.csv"))


def test_cli_healthy_twins_and_vertebra_json(cohort, tmp_path):
    vj = tmp_path / "v.json"
    vj.write_text('{"train": {"c1_21": 2}}')
    out = tmp_path / "healthy"
    code = main(["--dataroot", str(cohort), "--output", str(out), "--vertebra_json", str(vj),
                 "--ct_suffix", "_healthy", "--mask_suffix", "_healthy_msk", "--no_progress",
                 "--spacing", "0.8", "--block_size", "128", "128", "48"])
    assert code == 0
    ct, lab = load_block(out, "c1_21")
    assert lab.shape == (128, 128, 48) and np.allclose(lab.spacing, 0.8)
    assert sorted(p.name for p in (out / "label").iterdir()) == ["c1_21.nii.gz"]


def test_cli_all_failed_exits_nonzero(tmp_path):
    d = tmp_path / "raw" / "x"
    d.mkdir(parents=True)
    (d / "x_msk.nii.gz").write_bytes(b"junk")
    assert main(["--dataroot", str(tmp_path), "--output", str(tmp_path / "o"), "--no_progress"]) == 1


def test_cli_original_mode_label_only(cohort, tmp_path):
    out = tmp_path / "orig"
    assert main(["--dataroot", str(cohort), "--output", str(out), "--mode", "original",
                 "--no_ct", "--no_progress"]) == 0
    ct, lab = load_block(out, "c1_21")
    assert ct is None and lab.shape == (256, 256, 64)


def test_location_json_twin_masks_write_the_twin_file(cohort, tmp_path):
    """--mask_suffix _healthy_msk writes <case>_healthy.json (the file straightening reads for the
    twin) and leaves the fractured case's <case>.json alone."""
    import shutil
    from data.centroids import read_centroids
    from straighten.location_json import main as location_main
    root = tmp_path / "raw" / "c1"
    shutil.copytree(cohort / "raw" / "c1", root)
    planted = read_centroids(root / "c1_healthy.json")
    (root / "c1_healthy.json").unlink()
    before = (root / "c1.json").read_bytes()
    assert location_main(["--dataroot", str(tmp_path), "--mask_suffix", "_healthy_msk"]) == 0
    assert (root / "c1.json").read_bytes() == before
    twin = read_centroids(root / "c1_healthy.json")
    assert set(twin) == set(planted) == {20, 21, 22}
    for lab in twin:
        assert np.linalg.norm(np.subtract(twin[lab], planted[lab])) < 1.0, lab
