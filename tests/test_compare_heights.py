"""scripts/compare_heights.py: paired differences of two phantom_eval.py height tables."""
from __future__ import annotations

import pytest

from scripts.compare_heights import main
from utils.errors import UserError


def _table(path, errs):
    rows = ["key,gan_err_pct,interp_err_pct"] + [f"{k},{e},9.0" for k, e in errs.items()]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_paired_difference_only_over_shared_vertebrae(tmp_path, capsys):
    a = _table(tmp_path / "a.csv", {"c_19": 4.0, "c_20": 6.0, "c_21": 8.0, "only_a": 50.0})
    b = _table(tmp_path / "b.csv", {"c_19": 3.0, "c_20": 7.0, "c_21": 5.0})
    assert main([a, b, "--per_vertebra"]) == 0
    out = capsys.readouterr().out
    # differences -1, +1, -3: mean -1.00, sd 2.00, B better in 2 of 3; only_a is not compared
    assert "A 6.00 %, B 5.00 % over 3 vertebrae; paired B - A -1.00 +- 2.00 pp; B better in 2 of 3" in out
    assert "only_a" not in out and "c_21: -3.00" in out


def test_tables_of_different_cohorts_or_columns_are_errors(tmp_path):
    a = _table(tmp_path / "a.csv", {"c_19": 4.0})
    b = _table(tmp_path / "b.csv", {"d_19": 4.0})
    with pytest.raises(UserError, match="share no vertebra"):
        main([a, b])
    (tmp_path / "c.csv").write_text("key,other\nc_19,1\n")
    with pytest.raises(UserError, match="gan_err_pct"):
        main([a, str(tmp_path / "c.csv")])
