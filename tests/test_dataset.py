"""GAN dataset on hand-made straightened blocks (boxes as vertebrae)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.dataset import GanDataConfig, HealthiVertDataset
from data.intensity import hu_to_unit
from data.io import save_nifti
from data.splits import write_vertebra_json
from data.volume import Volume, affine_from_spacing
from utils.errors import UserError

# block (SI, AP, LR) = (64, 64, 16) at 1 mm: target 20 rows [26, 38), neighbours 19 and 21
BOXES = {19: (10, 22), 20: (26, 38), 21: (42, 54)}


def synthetic_block(shape=(64, 64, 16), boxes=BOXES):
    """CT whose HU encodes the row (row r -> -300 + 15 r HU, so every row is distinct in [-1, 1])
    and a label map of boxes (cols 20..44, LR 3..13)."""
    h, w, d = shape
    ct = np.repeat(np.repeat((-300.0 + 15.0 * np.arange(h))[:, None, None], w, 1), d, 2)
    lab = np.zeros(shape, np.uint8)
    for label, (r0, r1) in boxes.items():
        lab[r0:r1, 20:44, 3:13] = label
    return ct.astype(np.float32), lab


def write_blocks(root: Path, keys_grades: dict, shape=(64, 64, 16), spacing=(1.0, 1.0, 1.0)):
    """Write CT/label blocks for ``{key: grade}`` (all splits: train) and a vertebra JSON."""
    aff = affine_from_spacing(spacing, "IPR")
    for key in keys_grades:
        ct, lab = synthetic_block(shape)
        label = int(key.rsplit("_", 1)[1])
        boxes = {label - 1: BOXES[19], label: BOXES[20], label + 1: BOXES[21]}
        ct, lab = synthetic_block(shape, boxes)
        save_nifti(Volume(ct, aff), root / "CT" / f"{key}.nii.gz")
        save_nifti(Volume(lab, aff), root / "label" / f"{key}.nii.gz", dtype=np.uint8)
    write_vertebra_json(root / "vertebra_data.json", {"train": keys_grades, "val": keys_grades})
    return root / "vertebra_data.json"


@pytest.fixture()
def blocks(tmp_path):
    js = write_blocks(tmp_path, {"c1_20": 0, "c1_21": 0, "c2_20": 2})
    return tmp_path, js


def _cfg(root, js, **kw):
    base = dict(dataroot=str(root), vertebra_json=str(js), image_size=64, band_mm=16)
    base.update(kw)
    return GanDataConfig(**base)


def test_shapes_ranges_and_band_exact(blocks):
    root, js = blocks
    ds = HealthiVertDataset(_cfg(root, js, random_slices=False))
    assert ds.keys == ["c1_20", "c1_21"]        # grade 2 excluded from the normal class
    s = ds[0]
    for k in ("A", "B", "mask", "A_mask", "normal_vert", "CAM"):
        assert s[k].shape == (1, 64, 64) and s[k].dtype == torch.float32
    assert s["A"].min() >= -1 and s["A"].max() <= 1 and s["B"].min() >= -1
    assert (int(s["x1"]), int(s["x2"]), float(s["height"])) == (26, 38, 12.0)
    assert int(s["band_rows"]) == 16 and int(s["band_top"]) == 32 - 8
    a = int(s["band_top"])
    rows = torch.nonzero(s["mask"][0, :, 0]).flatten()
    assert rows.min() == a and rows.max() == a + 15 and s["mask"][0].sum() == 16 * 64
    row_val = hu_to_unit(-300.0 + 15.0 * np.arange(64)).astype(np.float16).astype(np.float32)
    col = s["A"][0, :, 0].numpy()
    np.testing.assert_allclose(col[:a], row_val[26 - a:26])               # above, shifted up
    np.testing.assert_allclose(col[a + 16:], row_val[38:38 + 64 - a - 16])  # below from x2
    assert (col[a:a + 16] == 0).all()
    assert not np.isin(col, row_val[26:38]).any()                         # no target row leaks
    np.testing.assert_allclose(s["B"][0, :, 0].numpy(), row_val)
    assert s["A_mask"][0, 26:38, 20:44].all() and s["A_mask"].sum() == 12 * 24
    # neighbours shifted like A: upper neighbour rows 10..22 -> 10-(26-a) .. ; lower from x2 on
    nv = s["normal_vert"][0, :, 30].numpy()
    up = np.flatnonzero(nv[:a]); down = np.flatnonzero(nv[a + 16:]) + a + 16
    np.testing.assert_array_equal(up, np.arange(10, 22) - (26 - a))
    np.testing.assert_array_equal(down, np.arange(42, 54) - 38 + a + 16)
    assert s["CAM"].abs().sum() == 0
    assert s["slice_index"] == 7 and abs(float(s["slice_ratio"]) - 0.1) < 1e-6  # centre 7.5, tie -> lower


def test_deterministic_and_seeded(blocks):
    root, js = blocks
    ds1 = HealthiVertDataset(_cfg(root, js, seed=3))
    ds2 = HealthiVertDataset(_cfg(root, js, seed=3, cache_blocks=0))
    picks1 = [ds1[i % 2]["slice_index"] for i in range(2)]
    picks2 = [ds2[i % 2]["slice_index"] for i in range(2)]
    assert picks1 == picks2
    assert torch.equal(ds1[0]["A"], ds2[0]["A"])
    draws = set()
    for e in range(12):
        ds1.set_epoch(e)
        z = ds1[0]["slice_index"]
        assert 4 <= z <= 11                      # central 80 % of LR extent 3..13
        draws.add(z)
    assert len(draws) > 2                        # epochs differ
    ev = HealthiVertDataset(_cfg(root, js, random_slices=False))
    assert ev[0]["slice_index"] == ev[0]["slice_index"] == 7


def test_coronal_mode_pastes_into_canvas(blocks):
    root, js = blocks
    ds = HealthiVertDataset(_cfg(root, js, mode="aligned_coronal", random_slices=False))
    s = ds[0]
    assert s["B"].shape == (1, 64, 64)
    cols = torch.nonzero(s["A_mask"][0].any(0)).flatten()
    # LR 3..13 of a 16-wide slice pasted at column (64 - 16) // 2 = 24
    assert cols.min() == 24 + 3 and cols.max() == 24 + 12
    assert (s["B"][0, :, :24] == -1).all()
    assert 20 <= s["slice_index"] < 44


def test_reduced_image_size_proportional_band(tmp_path):
    js = write_blocks(tmp_path, {"c1_20": 0}, shape=(64, 64, 16))
    ds = HealthiVertDataset(_cfg(tmp_path, js, image_size=32, band_mm=16, random_slices=False,
                                 fit="resize"))
    s = ds[0]
    assert s["B"].shape == (1, 32, 32)
    assert int(s["band_rows"]) == 8 and (int(s["x1"]), int(s["x2"])) == (13, 19)
    # crop keeps 1 mm pixels: rows 16..48 of the block, band 16 rows, target rows 26-16 .. 38-16
    s = HealthiVertDataset(_cfg(tmp_path, js, image_size=32, band_mm=16, random_slices=False))[0]
    assert s["B"].shape == (1, 32, 32) and int(s["band_rows"]) == 16
    assert (int(s["x1"]), int(s["x2"])) == (10, 22)


def test_cam_folder_and_missing_cam(blocks, tmp_path, caplog):
    root, js = blocks
    cam_dir = tmp_path / "cams"
    cam = np.zeros((64, 64, 16), np.float32)
    cam[0:5] = 0.5                             # rows 0..4, shifted up by (x1 - a) = 2
    save_nifti(Volume(cam, np.eye(4)), cam_dir / "c1_20.nii.gz")
    # a CAM folder that lacks vertebrae is an error naming the first missing map ...
    with pytest.raises(UserError, match="allow_missing_cam") as exc:
        HealthiVertDataset(_cfg(root, js, cam_folder=str(cam_dir), random_slices=False))
    assert "c1_21.nii.gz" in str(exc.value)
    # ... unless asked: then zeros and one warning
    ds = HealthiVertDataset(_cfg(root, js, cam_folder=str(cam_dir), random_slices=False,
                                 allow_missing_cam=True))
    s = ds[0]
    rows = torch.nonzero(s["CAM"][0, :, 0]).flatten().tolist()
    assert rows == [0, 1, 2] and float(s["CAM"].max()) == 0.5
    assert float(ds[1]["CAM"].abs().sum()) == 0            # missing -> zeros
    assert "CAM" in caplog.text


def test_band_rows_fixed_by_the_checkpoint(tmp_path):
    """test.py hands the dataset the trained band in rows: blocks at another spacing keep it."""
    js = write_blocks(tmp_path, {"c1_20": 0}, spacing=(1.25, 1.0, 1.0))
    derived = HealthiVertDataset(_cfg(tmp_path, js, band_mm=16, random_slices=False))[0]
    assert int(derived["band_rows"]) == 13                  # 16 mm / 1.25 mm
    fixed = HealthiVertDataset(_cfg(tmp_path, js, band_mm=16, band_rows=16, random_slices=False))[0]
    assert int(fixed["band_rows"]) == 16 and int(fixed["mask"][0, :, 0].sum()) == 16


def test_user_errors(tmp_path, blocks):
    root, js = blocks
    with pytest.raises(UserError):
        HealthiVertDataset(_cfg(tmp_path / "nope", js))
    with pytest.raises(UserError):
        HealthiVertDataset(_cfg(root, tmp_path / "missing.json"))
    with pytest.raises(UserError):
        HealthiVertDataset(_cfg(root, js, phase="test"))
    # targets too tall for the band: each is warned about, and when none is usable, a clear error
    ds = HealthiVertDataset(_cfg(root, js, band_mm=8, random_slices=False))
    with pytest.raises(UserError, match="no vertebra has a usable slice"):
        ds[0]


def test_augmentation_off_by_default_and_seeded(blocks):
    root, js = blocks
    plain = HealthiVertDataset(_cfg(root, js, seed=1))[0]
    aug1 = HealthiVertDataset(_cfg(root, js, seed=1, aug_intensity=0.1, aug_shift_px=2))[0]
    aug2 = HealthiVertDataset(_cfg(root, js, seed=1, aug_intensity=0.1, aug_shift_px=2))[0]
    assert torch.equal(aug1["A"], aug2["A"])
    assert not torch.equal(plain["B"], aug1["B"])
    # band logic still exact after augmentation: A_mask rows == [x1, x2)
    rows = torch.nonzero(aug1["A_mask"][0].any(1)).flatten()
    assert rows.min() == int(aug1["x1"]) and rows.max() == int(aug1["x2"]) - 1


def test_block_cache_lru(blocks):
    root, js = blocks
    ds = HealthiVertDataset(_cfg(root, js, cache_blocks=1))
    ds[0]; ds[1]
    assert list(ds._cache) == ["c1_21"]
    ds_all = HealthiVertDataset(_cfg(root, js, cache_blocks=-1))
    ds_all[0]; ds_all[1]
    assert len(ds_all._cache) == 2
    assert ds_all.block("c1_20").ct.dtype == np.float16     # half the memory of float32


def test_epoch_tuple_items_match_set_epoch(blocks):
    root, js = blocks
    ds = HealthiVertDataset(_cfg(root, js, seed=2))
    ds.set_epoch(5)
    a = ds[1]
    b = HealthiVertDataset(_cfg(root, js, seed=2))[(5, 1)]
    assert a["slice_index"] == b["slice_index"] and torch.equal(a["A"], b["A"])


def test_coarse_target_is_the_patients_healthy_vertebrae(tmp_path):
    """The paper's coarse target: the other vertebrae graded <= healthy_max_grade; a fractured
    neighbour (here L1 = 21, grade 2) is not a 'healthy neighbour' (--coarse_target all keeps it)."""
    js = write_blocks(tmp_path, {"c1_20": 0, "c1_21": 2})
    s = HealthiVertDataset(_cfg(tmp_path, js, random_slices=False))[0]
    a = int(s["band_top"])
    nv = s["normal_vert"][0, :, 30].numpy()
    assert nv[:a].any() and not nv[a + 16:].any()          # upper kept, fractured lower dropped
    s_all = HealthiVertDataset(_cfg(tmp_path, js, random_slices=False, coarse_target="all"))[0]
    assert s_all["normal_vert"][0, a + 16:, 30].any()


def test_vertebra_without_a_usable_slice_does_not_stop_training(tmp_path, caplog):
    js = write_blocks(tmp_path, {"c1_20": 0, "c2_20": 0})
    from data.io import load_label
    p = tmp_path / "label" / "c1_20.nii.gz"
    lab = load_label(p)
    arr = lab.array.copy()
    arr[arr == 20] = 0
    arr[30:32, 20:22, 7:9] = 20                              # 4 voxels per slice: below 50 mm^2
    save_nifti(lab.with_array(arr), p, dtype=np.uint8)
    ds = HealthiVertDataset(_cfg(tmp_path, js, random_slices=False))
    s = ds[0]
    assert s["key"] == "c2_20" and "c1_20" in caplog.text


def test_coronal_band_covers_the_slice_columns_as_the_authors(blocks):
    """``coronal_band='slice'`` (the authors', the default): the band (hole) mask covers only the
    16 columns of the coronal slice pasted at 24..40 of the 64-wide canvas, and the band rows of
    ``A`` outside them keep the canvas padding (-1); so the band L1 is the slice's own error, not
    diluted 4x by padding. ``'canvas'`` (ours before) covers all 64 columns. Synthesis builds the
    same mask from the checkpoint's option through ``SliceGrid.band_cols``."""
    from synthesis.views import SliceGrid
    root, js = blocks
    s = HealthiVertDataset(_cfg(root, js, mode="aligned_coronal", random_slices=False))[0]
    wide = HealthiVertDataset(_cfg(root, js, mode="aligned_coronal", random_slices=False,
                                   coronal_band="canvas"))[0]
    rows = torch.nonzero(wide["mask"][0, :, 0]).flatten()
    assert rows.numel() == int(s["band_rows"])
    cols = torch.nonzero(s["mask"][0].any(0)).flatten()
    assert (int(cols.min()), int(cols.max())) == (24, 39)
    assert int(wide["mask"][0].any(0).sum()) == 64
    assert float(s["mask"].sum()) == rows.numel() * 16
    band_rows = s["A"][0, rows]
    assert (band_rows[:, :24] == -1).all() and (band_rows[:, 40:] == -1).all()
    g = SliceGrid("coronal", 64, (64, 64, 16), (1.0, 1.0, 1.0))
    assert g.band_cols("slice") == (24, 40) and g.band_cols("canvas") is None
    assert SliceGrid("sagittal", 64, (64, 64, 16), (1.0, 1.0, 1.0)).band_cols("slice") is None
