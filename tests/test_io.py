"""Volume I/O: formats, affines, orientation round trips and every bad-input case."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from data.centroids import read_centroids, write_centroids, centroids_from_mask
from data.intensity import hu_to_unit, unit_to_hu, hu_to_uint8
from data.io import (check_same_grid, load_ct, load_ct_and_label, load_label, load_volume,
                     save_itk, save_nifti)
from data.splits import parse_key, read_vertebra_json, write_vertebra_json
from data.volume import Volume, affine_from_spacing
from utils.errors import UserError


def _vol(shape=(12, 10, 8), orientation="RAS", spacing=(1.0, 1.5, 2.0), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=shape).astype(dtype) * 100
    return Volume(arr, affine_from_spacing(spacing, orientation, origin=(3.0, -2.0, 5.0)))


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR", "IPL", "ASL"])
def test_reorientation_round_trip_is_exact(codes):
    v = _vol()
    r = v.reorient(codes)
    assert r.orientation == codes
    back = r.reorient("RAS")
    assert np.array_equal(back.array, v.array)
    assert np.allclose(back.affine, v.affine)
    # every voxel keeps its world position
    idx = np.array([[1, 2, 3], [11, 0, 7]])
    world = v.voxel_to_world(idx)
    r_idx = np.rint(r.world_to_voxel(world)).astype(int)
    for (i, j, k), (a, b, c) in zip(idx, r_idx):
        assert r.array[a, b, c] == v.array[i, j, k]


def test_spacing_and_orientation_from_affine():
    v = _vol(orientation="PIR", spacing=(0.8, 0.8, 3.0))
    assert v.orientation == "PIR"
    assert np.allclose(v.spacing, [0.8, 0.8, 3.0])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".nrrd"])
def test_write_read_preserves_voxels_and_world_geometry(tmp_path, suffix):
    v = _vol(orientation="LPS")
    p = tmp_path / f"img{suffix}"
    (save_nifti if "nii" in suffix else save_itk)(v, p)
    r = load_volume(p)
    assert np.allclose(r.array, v.array)
    assert np.allclose(r.affine, v.affine, atol=1e-4)
    assert not list(tmp_path.glob(".img*")), "temporary file left behind"


def test_dicom_series_folder(tmp_path):
    import SimpleITK as sitk
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 7 - 300).astype(np.int16)  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.7, 2.5))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(arr.shape[0]):
        sl = img[:, :, z]
        sl.SetMetaData("0020|0032", f"0\\0\\{z * 2.5}")
        sl.SetMetaData("0020|0013", str(z))
        sl.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        writer.SetFileName(str(tmp_path / f"s{z:03d}.dcm"))
        writer.Execute(sl)
    v = load_volume(tmp_path)
    assert v.shape == (6, 5, 4)
    assert np.allclose(v.spacing, [0.7, 0.7, 2.5], atol=1e-3)
    assert np.array_equal(v.array, np.transpose(arr, (2, 1, 0)))


# ---------------------------------------------------------------- bad input, one line each

def _save(arr, path, affine=None):
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return path


def _assert_one_line(exc, path):
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as e:
        load_ct(tmp_path / "nope.nii.gz")
    _assert_one_line(e, tmp_path / "nope.nii.gz")


def test_not_3d(tmp_path):
    p = _save(np.zeros((4, 4), np.float32), tmp_path / "flat.nii.gz")
    with pytest.raises(UserError, match="3D") as e:
        load_ct(p)
    _assert_one_line(e, p)


def test_truncated_gzip(tmp_path):
    good = _save(np.ones((20, 20, 20), np.float32), tmp_path / "good.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError) as e:
        load_ct(bad)
    _assert_one_line(e, bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti at all" * 10))
    with pytest.raises(UserError) as e:
        load_volume(bad)
    _assert_one_line(e, bad)


def test_unsupported_type(tmp_path):
    p = tmp_path / "scan.png"
    p.write_bytes(b"\x89PNG")
    with pytest.raises(UserError, match="unsupported"):
        load_volume(p)


def test_label_with_non_integer_values(tmp_path):
    p = _save(np.full((5, 5, 5), 0.5, np.float32), tmp_path / "m.nii.gz")
    with pytest.raises(UserError, match="non-integer") as e:
        load_label(p)
    _assert_one_line(e, p)


def test_empty_label_map(tmp_path):
    p = _save(np.zeros((5, 5, 5), np.uint8), tmp_path / "m.nii.gz")
    with pytest.raises(UserError, match="empty"):
        load_label(p)
    assert load_label(p, allow_empty=True).array.sum() == 0


def test_nan_inf_voxels(tmp_path):
    a = np.zeros((5, 5, 5), np.float32)
    a[1, 1, 1] = np.nan
    a[2, 2, 2] = np.inf
    p = _save(a, tmp_path / "ct.nii.gz")
    with pytest.raises(UserError, match="2 voxels are NaN or inf"):
        load_ct(p)


def test_grid_mismatch_shape_and_affine(tmp_path):
    ct = _save(np.zeros((6, 6, 6), np.int16), tmp_path / "ct.nii.gz")
    m_shape = _save(np.ones((6, 6, 5), np.uint8), tmp_path / "m1.nii.gz")
    aff = np.eye(4)
    aff[0, 3] = 10.0
    m_aff = _save(np.ones((6, 6, 6), np.uint8), tmp_path / "m2.nii.gz", aff)
    for m in (m_shape, m_aff):
        with pytest.raises(UserError, match="grid mismatch") as e:
            load_ct_and_label(ct, m)
        _assert_one_line(e, m)
    ok_ct, ok_m = load_ct_and_label(ct, _save(np.ones((6, 6, 6), np.uint8), tmp_path / "m3.nii.gz"))
    check_same_grid(ok_ct, ok_m)


def test_inputs_never_modified(tmp_path):
    p = _save(np.arange(27, dtype=np.int16).reshape(3, 3, 3), tmp_path / "ct.nii.gz")
    before = p.read_bytes()
    v = load_ct(p)
    v.array[:] = 0
    save_nifti(v, tmp_path / "out.nii.gz")
    assert p.read_bytes() == before


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    v = _vol()
    with pytest.raises(UserError):
        save_nifti(v, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- JSON readers

def test_centroids_original_format_round_trip(tmp_path):
    c = {20: np.array([1.0, 2.0, 3.0]), 21: np.array([4.5, 5.0, 6.0])}
    write_centroids(tmp_path / "c.json", c)
    r = read_centroids(tmp_path / "c.json")
    assert set(r) == {20, 21} and np.allclose(r[21], [4.5, 5.0, 6.0])


def test_centroids_verse_format_converts_axes(tmp_path):
    mask = np.zeros((10, 12, 14), np.uint8)
    mask[2, 3, 4] = 20
    vol = Volume(mask, affine_from_spacing((1, 1, 1), "RAS"))
    pir = vol.reorient("PIR")
    idx = np.argwhere(pir.array == 20)[0]
    doc = [{"direction": ["P", "I", "R"]}, {"label": 20, "X": float(idx[0]), "Y": float(idx[1]), "Z": float(idx[2])},
           {"label": 21, "X": "nan", "Y": "nan", "Z": "nan"}]
    (tmp_path / "ctd.json").write_text(json.dumps(doc))
    r = read_centroids(tmp_path / "ctd.json", reference=vol)
    assert list(r) == [20] and np.allclose(r[20], [2, 3, 4])
    with pytest.raises(UserError, match="need the mask"):
        read_centroids(tmp_path / "ctd.json")


def test_centroids_bad_entries(tmp_path):
    (tmp_path / "c.json").write_text('[{"label": "x", "X": 1}]')
    with pytest.raises(UserError, match="label"):
        read_centroids(tmp_path / "c.json")
    (tmp_path / "d.json").write_text('{"label": 1')
    with pytest.raises(UserError, match="not valid JSON"):
        read_centroids(tmp_path / "d.json")


def test_centroids_from_mask():
    m = np.zeros((10, 10, 10), np.uint8)
    m[2:4, 2:4, 2:4] = 20
    assert np.allclose(centroids_from_mask(m)[20], [2.5, 2.5, 2.5])


def test_vertebra_json(tmp_path):
    write_vertebra_json(tmp_path / "v.json", {"train": {"case_a_20": 0, "case_b_21": 3}, "val": {"c_19": 1}})
    s = read_vertebra_json(tmp_path / "v.json")
    assert s["train"]["case_b_21"] == 3 and s["test"] == {}
    assert parse_key("sub-verse004_series1_20") == ("sub-verse004_series1", 20)
    for bad in ('{"train": {"nolabel": 0}}', '{"train": {"a_20": 5}}', '{"train": {"a_20": "x"}}',
                '{"training": {}}'):
        (tmp_path / "b.json").write_text(bad)
        with pytest.raises(UserError):
            read_vertebra_json(tmp_path / "b.json")


def test_real_verse19_grade_file(shared_data):
    s = read_vertebra_json(shared_data / "verse19_genant_grades.json")
    assert [len(s[k]) for k in ("train", "val", "test")] == [729, 365, 366]
    grades = np.bincount([g for sp in s.values() for g in sp.values()], minlength=4)
    assert grades.tolist() == [1172, 141, 96, 51]


# ---------------------------------------------------------------- real files

def test_real_volumes_load_with_expected_geometry(shared_data):
    m = load_label(shared_data / "hv0007" / "0007_msk.nii.gz")
    assert m.orientation == "IPL" and m.shape == (280, 180, 179)
    ct, lab = load_ct_and_label(shared_data / "tptbox_sample" / "sub-ct_label-22_ct.nii.gz",
                                shared_data / "tptbox_sample" / "sub-ct_seg-vert_label-22_msk.nii.gz")
    assert lab.orientation == "PIR" and np.allclose(ct.spacing, 1.5, atol=0.01)
    ct = load_ct(shared_data / "totalseg_example" / "example_ct.nii.gz")
    assert ct.orientation == "RAS" and np.allclose(ct.spacing, 3.0, atol=0.01)


# ---------------------------------------------------------------- intensity

def test_hu_unit_round_trip():
    hu = np.array([-300.0, 0.0, 250.0, 800.0])
    assert np.allclose(unit_to_hu(hu_to_unit(hu)), hu)
    assert hu_to_unit(np.array([-2000.0, 5000.0])).tolist() == [-1.0, 1.0]
    assert hu_to_uint8(np.array([-300.0, 800.0])).tolist() == [0, 255]


def test_cli_wrapper_exits_2_with_one_line(tmp_path):
    code = ("from utils.errors import run_cli\nfrom data.io import load_ct\n"
            f"run_cli(lambda argv: load_ct({str(tmp_path / 'x.nii.gz')!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(__import__('pathlib').Path(__file__).resolve().parents[1]))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:") and "file not found" in r.stderr


def test_written_files_have_normal_permissions(tmp_path):
    import os
    p = save_nifti(_vol(), tmp_path / "out.nii.gz")
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_output_below_a_file_names_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        save_nifti(_vol(), tmp_path / "afile" / "sub" / "out.nii.gz")
