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


def test_height_slope_shows_a_pull_towards_the_mean(tmp_path, capsys):
    """Heights that move half as much as the truth (t -> 12 + t / 2) have slope 0.5; the bias is
    their mean signed error."""
    true = [20.0, 22.0, 24.0, 26.0]
    rows = ["key,gan_err_pct,true_a,true_m,true_p,gan_a,gan_m,gan_p"]
    for i, t in enumerate(true):
        g = 12 + t / 2
        rows.append(f"c_{i},{abs(g - t) / t * 100},{t},{t},{t},{g},{g},{g}")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    assert main([str(tmp_path / "a.csv"), str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    # mean true 23 -> mean got 23.5: bias +0.5 mm
    assert "A: gan height on true height: slope 0.50, mean bias +0.50 mm (4 vertebrae)" in out
