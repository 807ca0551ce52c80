"""The official VerSe layout (issue #13): ``<sub>_ct.nii.gz``, ``<sub>_seg-vert_msk.nii.gz`` and
``<sub>_seg-subreg_ctd.json``, flat or in ``rawdata/`` + ``derivatives/`` folders, is found,
straightened and keyed ``<sub>_<label>`` as the VerSe grade file expects."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layout.raw import find_cases

ROOT = Path(__file__).resolve().parents[1]
SUB = "sub-verse004"


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    from data.centroids import read_centroids
    from data.io import load_label
    from phantom.cohort import write_cohort
    root = tmp_path_factory.mktemp("ph")
    write_cohort(root, 1, seed=3, levels=("T12", "L1", "L2", "L3"), spacing=(2, 2, 2), progress=False)
    case = root / "raw" / "phantom_000"
    mask = load_label(case / "phantom_000_msk.nii.gz")
    cents = read_centroids(case / "phantom_000.json", reference=mask)
    return case, cents, mask.orientation


def _write_verse(phantom_case, ct_dir: Path, der_dir: Path):
    """Copy the phantom case into VerSe names; centroids in the VerSe format (with 'direction')."""
    case, cents, _ = phantom_case
    ct_dir.mkdir(parents=True, exist_ok=True)
    der_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(case / "phantom_000.nii.gz", ct_dir / f"{SUB}_ct.nii.gz")
    shutil.copy(case / "phantom_000_msk.nii.gz", der_dir / f"{SUB}_seg-vert_msk.nii.gz")
    (der_dir / f"{SUB}_seg-vert_snp.png").write_bytes(b"not an image we read")
    case, cents, orientation = phantom_case
    direction = list(orientation)  # VerSe: indices in the array reoriented to 'direction'
    entries = [{"label": int(k), "X": float(v[0]), "Y": float(v[1]), "Z": float(v[2])} for k, v in cents.items()]
    data = [{"direction": direction}] + entries
    (der_dir / f"{SUB}_seg-subreg_ctd.json").write_text(json.dumps(data))


@pytest.mark.parametrize("layout", ["flat", "rawdata_derivatives"])
def test_verse_names_are_found(phantom_case, tmp_path, layout):
    if layout == "flat":
        _write_verse(phantom_case, tmp_path, tmp_path)
    else:
        _write_verse(phantom_case, tmp_path / "rawdata" / SUB, tmp_path / "derivatives" / SUB)
    (case,) = find_cases(tmp_path)
    assert case.case == SUB
    assert case.mask.name == f"{SUB}_seg-vert_msk.nii.gz"
    assert case.ct is not None and case.ct.name == f"{SUB}_ct.nii.gz"
    assert case.centroids is not None and case.centroids.name == f"{SUB}_seg-subreg_ctd.json"


def test_verse_tree_is_straightened_under_the_grade_file_keys(phantom_case, tmp_path, shared_data):
    src = tmp_path / "verse"
    _write_verse(phantom_case, src / "rawdata" / SUB, src / "derivatives" / SUB)
    out = tmp_path / "st"
    r = subprocess.run([sys.executable, str(ROOT / "straighten" / "straighten_mask_3d.py"), "--dataroot",
                        str(src), "--output", str(out), "--spacing", "2", "--block_size", "64", "64", "16",
                        "--no_progress"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    keys = sorted(p.name[:-7] for p in (out / "label").glob("*.nii.gz"))
    assert keys == [f"{SUB}_{l}" for l in (19, 20, 21, 22)]
    assert (out / "CT" / f"{SUB}_20.nii.gz").is_file()
    grades = json.loads((shared_data / "verse19_genant_grades.json").read_text())
    known = {k for split in grades.values() for k in split}
    assert set(keys) <= known
