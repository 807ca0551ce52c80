#!/usr/bin/env python
"""Collect the GPU evidence in one run: CUDA tests, training and synthesis speed at the paper
preset, the segmentation and radiograph training benchmarks, and a short paper-preset training
with the fractured-height and band metrics against the neighbour baselines.

Each step runs in its own process with its own time cap, and the results are written as they
come (``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` after every step, each step's rows after
every row), so a run that is cut off still returns what it did. The caps are fitted into one
overall budget (``--budget_s``, default 540 s = 9 minutes): the study step, last, gets what the
others left (its training minutes shrink when less than ``--minutes`` remains).

``--dry_run`` runs every step on the CPU at tiny sizes, through the same code (the CUDA tests on
the CPU, the speed variants with torch.compile's eager backend, a two-step study), so that the
script cannot rot on machines without a GPU; ``tests/test_gpu_check.py`` runs it.

    python scripts/gpu_check.py OUT                # on the GPU machine (scripts/gpu_check.sh)
    python scripts/gpu_check.py OUT --dry_run      # anywhere, ~2 minutes on two cores
    python scripts/benchmark.py --merge OUT/gpu_check.json   # fill the CUDA rows of docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.benchmark import COLUMNS, fmt_cell  # noqa: E402 - one table format for both reports
from utils.errors import UserError, run_cli  # noqa: E402
from utils.fileio import read_json, write_json, write_text  # noqa: E402

STEPS = ("cuda_tests", "training", "synthesis", "segmentation", "radiograph", "study")
CAPS_S = {"cuda_tests": 75, "training": 180, "synthesis": 45, "segmentation": 30, "radiograph": 30}
STUDY_OVERHEAD_S = 130  # cohort, straightening, test.py and 3D synthesis around the training
STUDY_COHORT = ["--n_cases", "12", "--seed", "5", "--levels", "T11", "L4", "--grade_mix", "0.5", "0.15",
                "0.2", "0.15", "--anatomy", "box"]  # scripts/synthesis_study.sh's cohort
DRY_COHORT = ["--n_cases", "5", "--seed", "5", "--levels", "T11", "L3", "--grade_mix", "0.5", "0.2",
              "0.2", "0.1", "--spacing", "2", "2", "2", "--anatomy", "box"]
NEEDS_SIMPLEITK = {"segmentation": "segmentation.samples uses TorchIO, which imports SimpleITK",
                   "radiograph": "the DRR renderer (DiffDRR) reads volumes through TorchIO, which imports SimpleITK"}


# ------------------------------------------------------------------ results
class Results:
    """``OUT/gpu_check.json`` + ``OUT/gpu_check.md``, rewritten after every change."""

    def __init__(self, out: Path, machine: dict, command: str):
        self.out, self.data = out, {"machine": machine, "command": command, "steps": {}}

    def set(self, name: str, **info) -> None:
        self.data["steps"][name] = {**self.data["steps"].get(name, {}), **info}
        self.write()

    def write(self) -> None:
        write_json(self.out / "gpu_check.json", self.data)
        write_text(self.out / "gpu_check.md", render_markdown(self.data))


def render_markdown(data: dict) -> str:
    lines = ["# GPU check", "", f"Command: `{data.get('command', '')}`", "", "| machine | value |", "|---|---|"]
    lines += [f"| {k} | {fmt_cell(v)} |" for k, v in data.get("machine", {}).items()]
    lines += ["", "| step | status | seconds | cap s | rows |", "|---|---|---|---|---|"]
    for name, s in data.get("steps", {}).items():
        lines.append(f"| {name} | {s.get('status', '')} | {fmt_cell(s.get('seconds'))} | {fmt_cell(s.get('cap_s'))} | "
                     f"{len(s.get('rows', []))} |")
    for name, s in data.get("steps", {}).items():
        lines += ["", f"## {name}", ""]
        if s.get("detail"):
            lines += [s["detail"], ""]
        rows = s.get("rows") or []
        if rows:
            cols = [c for c in COLUMNS if any(c in r for r in rows)]
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(fmt_cell(r.get(c)) for c in cols) + " |" for r in rows]
        for table in s.get("tables", []):
            lines += ["", table]
    return "\n".join(lines) + "\n"


def machine_info(dry_run: bool) -> dict:
    import torch
    info = {"date (UTC, start)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "mode": "dry run (CPU, tiny sizes)" if dry_run else "GPU",
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available",
            "cpu_count": os.cpu_count(),
            "SimpleITK": "installed" if importlib.util.find_spec("SimpleITK") else "not installed"}
    if torch.cuda.is_available():
        info["cuda runtime"] = torch.version.cuda
        info["gpu memory GiB"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    return info


# ------------------------------------------------------------------ steps (child processes)
class StepOut:
    """A step's rows and tables, rewritten to its file after each addition."""

    def __init__(self, path: Path):
        self.path, self.data = path, {"rows": [], "tables": []}

    def row(self, r: dict) -> None:
        self.data["rows"].append(r)
        write_json(self.path, self.data)

    def table(self, md: str) -> None:
        self.data["tables"].append(md)
        write_json(self.path, self.data)


def _device(dry: bool) -> str:
    import torch
    if dry:
        return "cpu"
    if not torch.cuda.is_available():
        raise UserError("no CUDA device: run with --dry_run on a machine without a GPU")
    return "cuda"


def step_cuda_tests(a, out: StepOut) -> None:
    import xml.etree.ElementTree as ET
    xml = Path(a.work) / "cuda_tests.xml"
    env = {**os.environ, "HV_CUDA_TESTS_ON_CPU": "1" if a.dry_run else "0"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                           "tests/test_cuda.py", f"--junitxml={xml}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    dev = "cpu (dry run)" if a.dry_run else "cuda"
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, msg = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    outcome, msg = tag, (el.get("message") or "").splitlines()[0][:200] if el.get("message") else ""
            out.row({"benchmark": "cuda_tests", "setting": case.get("name"), "device": dev,
                     "seconds_median": float(case.get("time") or 0), "note": f"{outcome} {msg}".strip()})
    tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    out.table(f"pytest: `{tail}`")
    if proc.returncode != 0:
        raise RuntimeError(f"CUDA tests failed: {tail}")


def step_training(a, out: StepOut) -> None:
    import tempfile
    import torch
    from benchmarks.training import _blocks, time_speed_variants
    dev = _device(a.dry_run)
    if a.dry_run:  # torch.compile's default backend would spend minutes compiling for the CPU
        real = torch.compile
        torch.compile = lambda m, **kw: real(m, backend="eager", **kw)
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        if a.dry_run:
            root = _blocks(Path(tmp), 1, 2.0, ["--spacing", "2", "--block_size", "64", "64", "32"])
            time_speed_variants(root, dev, image_size=64, batch=2, repeats=1, warmup=1, workers=0,
                                band_mm=48.0, emit=out.row)
        else:
            root = _blocks(Path(tmp), 3, 1.0, ["--workers", "8"], workers=3)
            time_speed_variants(root, dev, image_size=256, batch=12, repeats=5, warmup=3, workers=6,
                                emit=out.row)


def step_synthesis(a, out: StepOut) -> None:
    from benchmarks.synthesis import time_batches
    from models.config import ModelConfig
    dev = _device(a.dry_run)
    if a.dry_run:
        time_batches(ModelConfig(ngf=4, ndf=4, image_size=64, band_rows=24), dev, 4, (1, 4), 1, out.row)
    else:
        time_batches(ModelConfig.paper(), dev, 40, (1, 4, 16, 64, 128), 3, out.row)


def step_segmentation(a, out: StepOut) -> None:
    from benchmarks.segmentation import run
    for r in run(quick=True, devices=[_device(a.dry_run)], real=False):
        out.row(r)


def step_radiograph(a, out: StepOut) -> None:
    from benchmarks.radiograph import run
    run(quick=True, devices=[_device(a.dry_run)], size=64 if a.dry_run else 256, emit=out.row)


def _run(cmd, log) -> None:
    """Run a project CLI; its output goes to the step's log; a failure names the command."""
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode} (log: {log.name})")


def step_study(a, out: StepOut) -> None:
    """Paper-preset training for ``--minutes`` on the synthesis study's cohort, then test.py's band
    metrics on val with the copy / interpolation baselines and the 3D synthesis of the val + test
    fractured vertebrae against the healthy twins (synthesis/phantom_eval.py)."""
    import shutil
    from synthesis.phantom_eval import METHODS, method_summary
    dev = _device(a.dry_run)
    w = Path(a.work) / "study"
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    workers = "2" if a.dry_run else "8"
    with open(w / "log.txt", "w") as log:
        _run(["scripts/make_phantom.py", "--output", w / "ph", *(DRY_COHORT if a.dry_run else STUDY_COHORT),
              "--workers", workers, "--no_progress"], log)
        st = ["--spacing", "2", "--block_size", "64", "64", "32"] if a.dry_run else []
        _run(["straighten/straighten_mask_3d.py", "--dataroot", w / "ph", "--output", w / "st", *st,
              "--workers", workers, "--no_progress"], log)
        vj = w / "ph" / "vertebra_data.json"
        train = ["train.py", "--preset", "paper", "--dataroot", w / "st", "--vertebra_json", vj,
                 "--checkpoints_dir", w / "ck", "--name", "gan", "--device", dev, "--eval_freq", "0",
                 "--print_freq", "20", "--save_epoch_freq", "0", "--seed", "0", "--no_progress", "--overwrite",
                 *a.train_flags.split()]
        if a.dry_run:
            train += ["--image_size", "64", "--band_mm", "48", "--batch_size", "2", "--max_steps", "2"]
        else:
            train += ["--max_minutes", f"{a.minutes:g}", "--num_threads", "6"]
        t0 = time.perf_counter()
        _run(train, log)
        import torch
        state = torch.load(w / "ck" / "gan" / "ckpt" / "latest.pth", map_location="cpu", weights_only=False)
        out.row({"benchmark": "study", "setting": "paper-preset training " + a.train_flags, "device": dev,
                 "seconds_median": time.perf_counter() - t0, "repeats": 1,
                 "note": f"{state['step']} steps, batch {state['options'].get('batch_size')}, "
                         f"{state['options'].get('image_size')} px"})
        _run(["test.py", "--dataroot", w / "st", "--vertebra_json", vj, "--checkpoints_dir", w / "ck",
              "--name", "gan", "--phase", "val", "--baselines", "--results_dir", w / "test", "--no_images",
              "--no_progress"], log)
        summary = read_json(next((w / "test").rglob("summary.json")))
        band = ["| method (val, healthy targets) | n | band PSNR dB | band SSIM | Dice | height error % |",
                "|---|---|---|---|---|---|"]
        for name, key in (("GAN", next(k for k in summary if k.startswith("grade_le_"))),
                          ("copy", "baseline_copy"), ("interpolation", "baseline_interp")):
            s = summary.get(key)
            if s:
                band.append(f"| {name} | {int(s['n'])} | {s['psnr_band']:.2f} | {s['ssim_band']:.3f} | "
                            f"{s['dice']:.3f} | {s['height_error_pct']:.2f} |")
        out.table("Band metrics (test.py --baselines):\n\n" + "\n".join(band))
        _run(["eval_3d_sagittal_twostage.py", "--checkpoint", w / "ck" / "gan" / "ckpt" / "latest.pth",
              "--dataroot", w / "st", "--vertebra_json", vj, "--phase", "val", "test", "--results_dir",
              w / "syn", "--device", dev, "--no_progress"], log)
        _run(["synthesis/phantom_eval.py", "--results_dir", w / "syn", "--dataroot", w / "st", "--cohort", w / "ph",
              "--phase", "val", "test", "--output", w / "heights.csv"], log)
    import pandas as pd
    rows = pd.read_csv(w / "heights.csv").to_dict("records")
    tab = ["| method | fractured vertebrae | mean abs height error % | sd | within 10 % |", "|---|---|---|---|---|"]
    for m in METHODS:
        s = method_summary(rows, m)
        tab.append(f"| {m} | {len(rows)} | {s['mean']:.2f} | {s['sd']:.2f} | {s['within_10pct']:.2f} |")
    out.table("Fractured-vertebra heights vs the healthy twin (synthesis/phantom_eval.py, val + test):\n\n"
              + "\n".join(tab))


STEP_FUNCS = {"cuda_tests": step_cuda_tests, "training": step_training, "synthesis": step_synthesis,
              "segmentation": step_segmentation, "radiograph": step_radiograph, "study": step_study}


# ------------------------------------------------------------------ driver
def run_step(name: str, a, cap_s: float, results: Results) -> None:
    work = Path(a.work)
    step_file = work / f"{name}.json"
    step_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--step_out", str(step_file),
           "--work", str(work), "--minutes", f"{a.minutes:g}", "--train_flags", a.train_flags]
    cmd += ["--dry_run"] if a.dry_run else []
    results.set(name, status="running", cap_s=round(cap_s))
    t0 = time.perf_counter()
    print(f"[gpu_check] {name} (cap {cap_s:.0f} s) ...", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap_s)
        status = "ok" if proc.returncode == 0 else "failed"
        err = proc.stderr.strip().splitlines()
        detail = "" if status == "ok" else f"exit {proc.returncode}: `{(err or ['no output'])[-1][:300]}`"
        if status != "ok":
            sys.stderr.write(proc.stderr[-4000:])
    except subprocess.TimeoutExpired:
        status, detail = "timed out", f"stopped at its cap of {cap_s:.0f} s; the rows below are what it finished"
    part = read_json(step_file) if step_file.is_file() else {}
    results.set(name, status=status, seconds=round(time.perf_counter() - t0, 1), detail=detail,
                rows=part.get("rows", []), tables=part.get("tables", []))
    print(f"[gpu_check] {name}: {status} ({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="gpu_check_out", help="folder for gpu_check.json / .md")
    ap.add_argument("--dry_run", action="store_true", help="every step on the CPU at tiny sizes (same code)")
    ap.add_argument("--minutes", type=float, default=4.0, help="training minutes of the study step (default 4)")
    ap.add_argument("--budget_s", type=float, default=540.0,
                    help="wall-clock budget of the whole run in seconds (default 540 = 9 min)")
    ap.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run")
    ap.add_argument("--train_flags", default="--amp --ema_decay 0.999",
                    help="extra train.py flags of the study's paper-preset run (default: bf16 AMP and "
                         "the generator's moving average)")
    ap.add_argument("--work", help="scratch folder (default OUT/work; the cohort and checkpoints go there)")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    ap.add_argument("--step_out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    a.work = str(Path(a.work).resolve() if a.work else out / "work")
    Path(a.work).mkdir(parents=True, exist_ok=True)
    if a.step:
        STEP_FUNCS[a.step](a, StepOut(Path(a.step_out)))
        return 0
    if not a.dry_run:
        import torch
        if not torch.cuda.is_available():
            raise UserError("no CUDA device: run with --dry_run on a machine without a GPU")
    t_start = time.perf_counter()
    results = Results(out, machine_info(a.dry_run),
                      "python scripts/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    for name in a.only:
        if name in NEEDS_SIMPLEITK and not importlib.util.find_spec("SimpleITK"):
            results.set(name, status="skipped", detail=f"SimpleITK is not installed: {NEEDS_SIMPLEITK[name]}")
            continue
        left = a.budget_s - (time.perf_counter() - t_start)
        later = sum(min(CAPS_S.get(n, 0), 20) for n in a.only[a.only.index(name) + 1:])
        if name == "study":
            fit = (left - STUDY_OVERHEAD_S) / 60.0
            if fit < 0.5 and not a.dry_run:
                results.set(name, status="skipped", detail=f"{left:.0f} s left of the budget")
                continue
            if not a.dry_run:
                a.minutes = min(a.minutes, fit)
            cap = max(left, 60.0) if a.dry_run else left
        else:
            cap = min(CAPS_S[name] * (4 if a.dry_run else 1), max(left - later, 10.0))
        run_step(name, a, cap, results)
    results.data["machine"]["total wall s"] = round(time.perf_counter() - t_start, 1)
    results.write()
    failed = [n for n, s in results.data["steps"].items() if s.get("status") not in ("ok", "skipped")]
    print(f"[gpu_check] wrote {out / 'gpu_check.md'}; " + (f"not ok: {', '.join(failed)}" if failed else "all ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
