"""scripts/make_figures.py: choosing the comparison grid's vertebrae from the split file."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from data.splits import write_vertebra_json

ROOT = Path(__file__).resolve().parents[1]


def _make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "scripts" / "make_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pick_keys_most_severe_first_only_synthesised_val_test(tmp_path):
    vj = tmp_path / "vertebra_data.json"
    write_vertebra_json(vj, {"train": {"a_20": 3},
                             "val": {"b_19": 0, "b_20": 2, "b_21": 3},
                             "test": {"c_19": 1, "c_20": 3, "c_21": 2}})
    fake = tmp_path / "res" / "CT_fake"
    fake.mkdir(parents=True)
    for key in ("a_20", "b_19", "b_20", "c_19", "c_20", "c_21"):  # b_21 was not synthesised
        (fake / f"{key}.nii.gz").write_bytes(b"")
    pick = _make_figures().pick_keys
    assert pick(vj, tmp_path / "res", 3) == ["c_20", "b_20", "c_21"]
    assert pick(vj, tmp_path / "res", 10) == ["c_20", "b_20", "c_21", "c_19", "b_19"]
