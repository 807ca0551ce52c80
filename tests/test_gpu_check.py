"""scripts/gpu_check.py (the one-command GPU evidence run) and scripts/benchmark.py --merge.

The dry run executes every step on the CPU at tiny sizes through the same code as on a GPU, so
the script is exercised on every CI run; the merge test builds a GPU result by hand (a dry run's
rows are CPU rows and are refused)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from utils.errors import UserError
from utils.fileio import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check(out, *extra):
    return subprocess.run([sys.executable, "scripts/gpu_check.py", str(out), "--dry_run", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_dry_run_runs_every_step_and_writes_results(tmp_path):
    proc = _gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_json(tmp_path / "gpu_check.json")
    steps = res["steps"]
    assert list(steps) == ["cuda_tests", "training", "synthesis", "segmentation", "radiograph", "study"]
    assert all(s["status"] == "ok" and s["rows"] for s in steps.values()), {n: s["status"] for n, s in steps.items()}
    tests = steps["cuda_tests"]["rows"]
    assert len(tests) >= 5 and all(r["note"].startswith("passed") for r in tests)  # run on the CPU, not skipped
    assert len(steps["training"]["rows"]) == 4 and "torch.compile" in steps["training"]["rows"][-1]["setting"]
    assert any("fastest" in r["setting"] for r in steps["synthesis"]["rows"])
    tables = "\n".join(steps["study"]["tables"])
    for method in ("| gan |", "| interp |", "| copy |", "| interpolation |"):
        assert method in tables
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## study" in md and "dry run" in md


def test_a_step_over_its_cap_keeps_the_rows_it_finished(tmp_path):
    """The budget leaves the training step ~12 s: it is stopped, says so, and keeps the speed
    variants it had measured by then (on an idle two-core machine one or two of the four; none on a
    much slower one, so only the upper bound is asserted); the step after it still runs."""
    proc = _gpu_check(tmp_path, "--only", "training", "synthesis", "--budget_s", "32")
    assert proc.returncode == 1  # a step that did not finish makes the run fail
    steps = read_json(tmp_path / "gpu_check.json")["steps"]
    assert steps["training"]["status"] == "timed out"
    assert len(steps["training"]["rows"]) < 4, steps["training"]
    assert "stopped at its cap" in (tmp_path / "gpu_check.md").read_text()
    assert steps["synthesis"]["status"] == "ok"


def _bench(tmp_path):
    old = {"machine": {"cpu": "test cpu"}, "command": "python scripts/benchmark.py --quick",
           "stages": {"training": {"seconds": 1.0, "status": "ok"}},
           "results": {"training": [
               {"benchmark": "training_iteration", "setting": "paper preset, fp32", "device": "cpu",
                "seconds_median": 60.0, "note": "cpu row"},
               {"benchmark": "training_iteration", "setting": "paper preset, fp32", "device": "cuda",
                "seconds_median": None, "note": "not measured (no GPU on this machine)"}],
               "phantom": [{"benchmark": "phantom", "device": "cpu", "seconds_median": 2.0}]}}
    write_json(tmp_path / "bench.json", old)
    gpu = {"machine": {"mode": "GPU", "cuda": "NVIDIA H100 80GB HBM3", "date (UTC, start)": "2026-12-07 10:00",
                       "torch": "2.11.0"},
           "steps": {"training": {"status": "ok", "rows": [
               {"benchmark": "training_iteration", "setting": "paper preset batch 12, 256x256, fp32",
                "device": "cuda", "seconds_median": 0.2, "note": "5 it/s"}]},
               "radiograph": {"status": "ok", "rows": [
                   {"benchmark": "radiograph", "setting": "3D landmarks", "device": "cpu", "seconds_median": 0.1}]},
               "cuda_tests": {"status": "ok", "rows": [{"setting": "test_x", "device": "cuda", "note": "passed"}]},
               "study": {"status": "ok", "rows": [], "tables": ["| gan | 12 | 5.00 |"]}}}
    write_json(tmp_path / "gpu_check.json", gpu)
    return tmp_path / "bench.md", tmp_path / "gpu_check.json"


def test_benchmark_merge_fills_the_cuda_rows_from_a_gpu_check(tmp_path):
    from scripts.benchmark import main
    md, gpu = _bench(tmp_path)
    assert main(["--merge", str(gpu), "--output", str(md)]) == 0
    res = read_json(md.with_suffix(".json"))
    rows = res["results"]["training"]
    assert [r["device"] for r in rows] == ["cpu", "cuda"]
    assert rows[1]["seconds_median"] == 0.2 and "GPU check on NVIDIA H100 80GB HBM3, 2026-12-07 10:00" in rows[1]["note"]
    assert res["results"]["phantom"] == [{"benchmark": "phantom", "device": "cpu", "seconds_median": 2.0}]
    assert "radiograph" not in res["results"]  # the GPU machine's CPU rows are not CUDA rows
    text = md.read_text()
    assert "not measured (no GPU" not in text and "## GPU check" in text and "| gan | 12 | 5.00 |" in text
    # an entry re-run later on a machine without a GPU keeps the measured CUDA rows
    from scripts.benchmark import _merge
    again = _merge(res["results"], {"training": [rows[0], {"device": "cuda", "seconds_median": None}]})
    assert [r["seconds_median"] for r in again["training"]] == [60.0, 0.2]


def test_benchmark_merge_refuses_a_dry_run(tmp_path):
    from scripts.benchmark import main
    md, gpu = _bench(tmp_path)
    data = read_json(gpu)
    data["machine"].update(mode="dry run (CPU, tiny sizes)", cuda="not available")
    write_json(gpu, data)
    with pytest.raises(UserError, match="dry run"):
        main(["--merge", str(gpu), "--output", str(md)])
