#!/usr/bin/env python
"""Run every benchmark entry (``benchmarks/<stage>.py: run(quick) -> rows``) and regenerate
``docs/BENCHMARKS.md`` (+ ``.json``) with the machine, library versions, load average, the command,
one table per stage and a peak-memory-per-stage table.

Each entry runs in its own subprocess, so its peak RSS (``VmHWM`` of that process; ``ru_maxrss``
is monotonic per process and survives exec) is the peak of that stage alone. Entries report medians of repeated runs and, where they compare
two settings, both measured in the same process so the ratio is meaningful. CUDA rows are measured
only when ``torch.cuda.is_available()``; otherwise they are marked "not measured".

    OMP_NUM_THREADS=2 python scripts/benchmark.py --quick      # ~15 min on a 2-core CPU
    python scripts/benchmark.py --quick --only scaling --merge # re-run one entry, keep the rest
    python scripts/benchmark.py --quick --only phantom straighten --output /tmp/b.md
    python scripts/benchmark.py --merge OUT/gpu_check.json   # CUDA rows from scripts/gpu_check.sh
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from utils.errors import UserError, run_cli
from utils.fileio import read_json, write_json, write_text

ENTRIES = ("phantom", "straighten", "scaling", "training", "synthesis", "rhlv", "cam", "radiograph",
           "segmentation")
CPU_ONLY = {"phantom", "straighten", "rhlv"}  # numpy/scipy code: there is no CUDA path to time
COLUMNS = ("benchmark", "setting", "device", "seconds_median", "repeats", "ratio", "peak_mem_mb", "note")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import numpy
    import torch
    info = {"date (UTC, end of run)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "torch threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": numpy.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"}
    from importlib import metadata
    for dist in ("monai", "scipy", "SimpleITK", "nibabel", "scikit-learn", "grad-cam", "Pillow"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # informational only
            info[dist] = "not installed"
    return info


def fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v).replace("|", "/")


def _summary(name: str) -> str:
    """First paragraph of an entry's module docstring (what it measures), one line."""
    path = ROOT / "benchmarks" / f"{name}.py"
    try:
        import ast
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def _stage_table(stages: dict) -> list:
    lines = ["", "## Peak memory per stage", "",
             "Each stage ran in its own process: peak RSS of that process (imports included), the RSS "
             "right after imports, and the difference (what the stage's work added).", "",
             "| stage | wall s (whole entry) | peak RSS MB | RSS after imports MB | added by the stage MB | status |",
             "|---|---|---|---|---|---|"]
    for name, s in stages.items():
        peak, base = s.get("peak_rss_mb"), s.get("import_rss_mb")
        added = peak - base if peak is not None and base is not None else None
        lines.append(f"| {name} | {fmt_cell(s.get('seconds'))} | {fmt_cell(peak)} | {fmt_cell(base)} | "
                     f"{fmt_cell(added)} | {s.get('status', '')} |")
    return lines


GPU_ENTRIES = {"training": "training", "synthesis": "synthesis", "segmentation": "segmentation",
               "radiograph": "radiograph"}  # gpu_check step -> benchmark entry


def merge_gpu(previous: dict, gpu: dict, source: str) -> dict:
    """``previous`` (a BENCHMARKS.json) with the CUDA rows of each entry replaced by the CUDA rows
    of a ``scripts/gpu_check.py`` result (``gpu``), each marked with the GPU and the date; the CUDA
    tests and the short training study go to a ``gpu_check`` section. A dry run (CPU rows) is
    refused."""
    machine = gpu.get("machine", {})
    if "GPU" != machine.get("mode") or machine.get("cuda", "not available") == "not available":
        raise UserError("not a GPU run of scripts/gpu_check.py (a dry run's rows are CPU rows)", source)
    tag = f"{machine['cuda']}, {machine.get('date (UTC, start)', '?')}"
    results = {k: (list(v) if isinstance(v, list) else v) for k, v in previous.get("results", {}).items()}
    steps = gpu.get("steps", {})
    for step, entry in GPU_ENTRIES.items():
        new = [r for r in steps.get(step, {}).get("rows", []) if r.get("device") == "cuda"]
        if not new:
            continue
        old = results.get(entry) if isinstance(results.get(entry), list) else []
        results[entry] = [r for r in old if r.get("device") != "cuda"] + [
            {**r, "note": f"GPU check on {tag}: {r.get('note', '')}"} for r in new]
    out = {**previous, "results": results}
    out["gpu_check"] = {"source": str(source), "machine": machine,
                        "steps": {n: {k: s.get(k) for k in ("status", "seconds", "detail", "rows", "tables")}
                                  for n, s in steps.items() if n in ("cuda_tests", "study")}}
    info = dict(previous.get("machine", {}))
    info["cuda rows"] = f"scripts/gpu_check.py on {tag} ({machine.get('torch', '?')}), merged"
    out["machine"] = info
    return out


def _gpu_section(gpu: dict) -> list:
    if not gpu:
        return []
    m = gpu.get("machine", {})
    lines = ["", "## GPU check", "", f"`scripts/gpu_check.sh` on {m.get('cuda')} ({m.get('date (UTC, start)')}, "
             f"torch {m.get('torch')}); merged from `{gpu.get('source')}`. Its speed rows are the CUDA rows of "
             "the tables above.", ""]
    for name, s in gpu.get("steps", {}).items():
        lines += [f"### {name}: {s.get('status')}", ""]
        if s.get("detail"):
            lines += [s["detail"], ""]
        rows = s.get("rows") or []
        if rows:
            lines += ["| setting | seconds | note |", "|---|---|---|"]
            lines += [f"| {fmt_cell(r.get('setting'))} | {fmt_cell(r.get('seconds_median'))} | {fmt_cell(r.get('note'))} |"
                      for r in rows]
        for t in s.get("tables") or []:
            lines += ["", t]
        lines.append("")
    return lines


def render_markdown(info: dict, command: str, results: dict, stages: dict, gpu: dict = None) -> str:
    lines = ["# Benchmarks", "", "Regenerated by `scripts/benchmark.py`; do not edit by hand.", "",
             f"Command: `{command}`", "",
             "Timings are wall-clock medians on a shared machine (other jobs may run: see the load "
             "averages); `ratio` compares against the baseline named in each note, measured in the "
             "same process. `peak_mem_mb` is the process peak RSS so far unless the note says "
             "otherwise (RSS is monotonic: rows later in a table include earlier peaks).", "",
             "| machine | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += _stage_table(stages)
    for name, rows in results.items():
        lines += ["", f"## {name}", "", _summary(name), ""]
        if name in CPU_ONLY:
            lines += ["CPU only: this stage is numpy/scipy code with no CUDA path.", ""]
        if isinstance(rows, str):
            lines.append(f"Failed: `{rows}`")
            continue
        cols = [c for c in COLUMNS if any(c in r for r in rows)]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt_cell(r.get(c)) for c in cols) + " |" for r in rows]
    lines += _gpu_section(gpu or {})
    return "\n".join(lines) + "\n"


def _rss_mb() -> float:
    """Peak RSS of this process image in MiB: VmHWM (reset at exec, unlike ``ru_maxrss``, which
    Linux carries over from the parent across execve), falling back to ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(name: str, quick: bool, out: str) -> int:
    """Child mode: import and run one entry, write rows + this process's peaks to ``out``."""
    import numpy  # noqa: F401 - counted in the import baseline like the entry's own imports
    import torch
    t0 = time.perf_counter()
    mod = importlib.import_module(f"benchmarks.{name}")
    import_rss = _rss_mb()
    rows = mod.run(quick=quick)
    res = {"rows": rows, "seconds": time.perf_counter() - t0, "peak_rss_mb": _rss_mb(),
           "import_rss_mb": import_rss}
    if torch.cuda.is_available():
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    write_json(out, res)
    return 0


def run_entry(name: str, quick: bool, timeout_s: float) -> tuple:
    """(rows or error string, stage info) for one entry run in a subprocess."""
    if not (ROOT / "benchmarks" / f"{name}.py").exists():
        raise UserError(f"benchmark entry benchmarks/{name}.py is missing")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child_out", str(out)]
        cmd += ["--quick"] if quick else []
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout_s:.0f} s", {"seconds": timeout_s, "status": "timed out"}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(proc.stderr)
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return f"exit {proc.returncode}: {tail}", {"seconds": wall, "status": "failed"}
        res = read_json(out)
    stage = {k: res.get(k) for k in ("seconds", "peak_rss_mb", "import_rss_mb", "cuda_peak_mb")}
    stage["status"] = "ok"
    return res["rows"], stage


EARLIER = "earlier merged runs (end date: load average at start -> end)"


def _earlier_runs(machine: dict) -> str:
    """The earlier runs a merged file holds rows of, newest first, from its machine table: its own
    run, then those it already listed (older files named them by key suffixes instead)."""
    runs = []
    for key, value in machine.items():
        if key.startswith("date"):
            suffix = key[len("date (UTC, end of run)"):]
            start = machine.get("load average at start (1/5/15 min)" + suffix, "?")
            end = machine.get("load average at end (1/5/15 min)" + suffix, "?")
            runs.append(f"{value}: {start} -> {end}")
    if machine.get(EARLIER):
        runs.append(machine[EARLIER])
    return "; ".join(runs)


def _measured_cuda(rows) -> list:
    return [r for r in rows if r.get("device") == "cuda" and r.get("seconds_median") is not None] \
        if isinstance(rows, list) else []


def _merge(old: dict, new: dict) -> dict:
    """Entries of ``old`` replaced or extended by ``new``, in :data:`ENTRIES` order. An entry re-run
    on a machine without a GPU keeps the measured CUDA rows it had (e.g. merged from a GPU check)."""
    both = {**old, **new}
    for k, rows in new.items():
        kept = _measured_cuda(old.get(k))
        if kept and isinstance(rows, list) and not _measured_cuda(rows):
            both[k] = [r for r in rows if r.get("device") != "cuda"] + kept
    return {k: both[k] for k in ENTRIES if k in both}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (minutes, not tens)")
    ap.add_argument("--only", nargs="+", choices=ENTRIES, default=list(ENTRIES), help="entries to run")
    ap.add_argument("--output", default=str(ROOT / "docs" / "BENCHMARKS.md"),
                    help="markdown file to write (the JSON goes next to it with a .json suffix)")
    ap.add_argument("--merge", nargs="*", metavar="GPU_JSON",
                    help="keep the other entries' results from the existing JSON next to --output and "
                         "replace only the entries run now (e.g. after fixing one entry); with files "
                         "(OUT/gpu_check.json of scripts/gpu_check.sh) run nothing and fill the CUDA "
                         "rows from them instead")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per entry")
    ap.add_argument("--child", choices=ENTRIES, help=argparse.SUPPRESS)
    ap.add_argument("--child_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(args.child, args.quick, args.child_out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge:
        out_json = Path(args.output).with_suffix(".json")
        if not out_json.is_file():
            raise UserError("no benchmark results to merge into (run scripts/benchmark.py first)", out_json)
        merged = read_json(out_json)
        for src in args.merge:
            if not Path(src).is_file():
                raise UserError("GPU check result not found", src)
            merged = merge_gpu(merged, read_json(src), src)
        merged["command"] = f"{merged.get('command', '?')}; then python scripts/benchmark.py --merge {' '.join(args.merge)}"
        md = render_markdown(merged["machine"], merged["command"], merged["results"], merged.get("stages", {}),
                             merged.get("gpu_check"))
        write_text(args.output, md)
        write_json(out_json, merged)
        print(f"wrote {args.output} (CUDA rows from {', '.join(args.merge)})")
        return 0
    load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results, stages = {}, {}  # torch is imported only after the children ran (keeps this process small)
    for name in args.only:
        logging.info("benchmark %s ...", name)
        results[name], stages[name] = run_entry(name, args.quick, args.timeout)
        logging.info("benchmark %s: %s (%.0f s)", name, stages[name]["status"], stages[name]["seconds"])
    previous = read_json(Path(args.output).with_suffix(".json")) if args.merge is not None else {}
    info = machine_info()
    info["load average at start (1/5/15 min)"] = load_start
    info["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    info["total wall s"] = round(sum(s["seconds"] for s in stages.values()), 1)
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = (env + "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if previous:
        results = _merge(previous.get("results", {}), results)
        stages = _merge(previous.get("stages", {}), stages)
        command = f"{previous.get('command', '?')}; then {command} (merged: {' '.join(args.only)})"
        info["total wall s"] = round(sum(s.get("seconds") or 0 for s in stages.values()), 1)
        info[EARLIER] = _earlier_runs(previous.get("machine", {}))
    gpu = previous.get("gpu_check") if previous else None
    md = render_markdown(info, command, results, stages, gpu)
    write_text(args.output, md)
    write_json(Path(args.output).with_suffix(".json"),
               {"machine": info, "command": command, "stages": stages, "results": results,
                **({"gpu_check": gpu} if gpu else {})})
    print(md)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
