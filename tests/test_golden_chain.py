"""The phantom chain's numbers are those stored before the package redesign (issue: one owner
for every shared rule). A change that moves any height, RHLV, grade, completeness flag, SVM score
or synthesised voxel count fails here; a deliberate change re-records the digest with
``python scripts/golden_chain.py --work /tmp/golden --output tests/golden/phantom_chain.json``
and says why in the commit."""
from __future__ import annotations

import json
from pathlib import Path

from scripts.golden_chain import compare, digest, run_chain

STORED = Path(__file__).parent / "golden" / "phantom_chain.json"


def test_phantom_chain_numbers_unchanged(tmp_path):
    run_chain(tmp_path / "work")
    diffs = compare(digest(tmp_path / "work"), json.loads(STORED.read_text()))
    assert not diffs, f"{len(diffs)} numbers moved:\n" + "\n".join(diffs[:50])


def test_compare_reports_a_moved_number():
    old = {"rhlv": {"k": {"RHLV_a": 0.10, "grade": 1.0, "level": "L1"}}}
    new = {"rhlv": {"k": {"RHLV_a": 0.12, "grade": 1.0, "level": "L1"}}}
    assert compare(new, old) == ["/rhlv/k/RHLV_a: 0.1 -> 0.12"]
    assert compare(old, old) == []
