"""scripts/benchmark.py --merge: the machine table names each earlier run once."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def _bench():
    spec = importlib.util.spec_from_file_location(
        "benchmark_cli", Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_merge_lists_earlier_runs_once_instead_of_compounding_keys():
    """Merging twice used to add keys ending in ', first run, first run'; now one line lists the
    earlier runs, newest first, each with its load averages."""
    b = _bench()
    first = {"date (UTC, end of run)": "d1", "load average at start (1/5/15 min)": "1",
             "load average at end (1/5/15 min)": "2", "cpu": "x"}
    second = {"date (UTC, end of run)": "d2", "load average at start (1/5/15 min)": "3",
              "load average at end (1/5/15 min)": "4", b.EARLIER: b._earlier_runs(first)}
    assert second[b.EARLIER] == "d1: 1 -> 2"
    assert b._earlier_runs(second) == "d2: 3 -> 4; d1: 1 -> 2"
    old_style = {"date (UTC, end of run)": "d2", "date (UTC, end of run), first run": "d1",
                 "load average at start (1/5/15 min), first run": "1"}
    assert b._earlier_runs(old_style) == "d2: ? -> ?; d1: 1 -> ?"
