"""Helpers for tests/test_robustness.py: a CLI runner and the bad-input builders.

CLI runs. Every CLI case is a separate process started from the repository root with
``OMP_NUM_THREADS=1``, exactly as a user runs ``python <script> ...``: ``sys.argv`` set, the
script run as ``__main__``, stdout/stderr captured, the exit status returned. Starting a fresh
interpreter costs ~2 s of CPU per case (torch import), too slow for a ~100-case matrix on two
shared cores, so by default one helper interpreter (``python tests/robustness_fixtures.py
--serve``, started with ``sys.executable``) imports the heavy libraries once and *forks* a child
per case; the child runs the script with :mod:`runpy` and exits with its status, like a fresh
``python script.py``. Set ``HV_ROBUST_PLAIN=1`` to start a plain ``sys.executable script.py``
process per case instead (same results, slower).

Also here: the outcome checks (:func:`expect_error`, :func:`expect_warn`, :func:`expect_either`,
:func:`expect_ok`) and the builders of bad inputs (truncated gzip, text named ``.nii.gz``, PNG,
grid mismatch, label 99, an output path below a regular file).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class CliResult:
    argv: List[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = [l for l in self.stderr.strip().splitlines() if l.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-15:])
        return f"$ {' '.join(self.argv)}\nexit {self.rc} after {self.seconds:.1f} s; stderr tail:\n{tail}"


class Runner:
    """Runs ``python <script> args...`` (cwd = repo root); see the module doc."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.plain = os.environ.get("HV_ROBUST_PLAIN", "") not in ("", "0")
        self.proc: Optional[subprocess.Popen] = None
        self.n = 0

    def _server(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                         cwd=ROOT, env=cli_env(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1)
            ready = self.proc.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(f"robustness runner did not start: {ready!r}")
        return self.proc

    def run(self, script: str, args: Sequence, timeout: float = TIMEOUT_S) -> CliResult:
        argv = [str(a) for a in args]
        self.n += 1
        out, err = self.workdir / f"{self.n:04d}.out", self.workdir / f"{self.n:04d}.err"
        t0 = time.time()
        if self.plain:
            with open(out, "w") as fo, open(err, "w") as fe:
                try:
                    rc = subprocess.run([sys.executable, script, *argv], cwd=ROOT, env=cli_env(),
                                        stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                        timeout=timeout).returncode
                except subprocess.TimeoutExpired:
                    rc = -9
        else:
            srv = self._server()
            srv.stdin.write(json.dumps({"script": script, "args": argv, "out": str(out),
                                        "err": str(err), "timeout": timeout}) + "\n")
            srv.stdin.flush()
            reply = srv.stdout.readline()
            if not reply:
                raise RuntimeError("robustness runner died")
            rc = json.loads(reply)["rc"]
        res = CliResult([script, *argv], rc, out.read_text(errors="replace"),
                        err.read_text(errors="replace"), time.time() - t0)
        with open(self.workdir / "runs.tsv", "a") as fh:
            fh.write(f"{res.seconds:.2f}\t{rc}\t{' '.join(res.argv)}\n")
        return res

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ------------------------------------------------------------------ the fork server
def _child(job: dict) -> None:
    """In the forked child: run the script as __main__ and exit with its status."""
    import runpy
    import traceback
    code = 1
    try:
        os.chdir(ROOT)
        fo = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fe = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fi = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fi, 0)
        os.dup2(fo, 1)
        os.dup2(fe, 2)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        script = str((ROOT / job["script"]).resolve())
        sys.argv = [job["script"], *job["args"]]
        sys.path[0] = str(Path(script).parent)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    t_end = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.time() > t_end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.02)


CLI_SCRIPTS = ("scripts/make_phantom.py", "straighten/location_json.py",
               "straighten/straighten_mask_3d.py", "Attention/train_classifier.py",
               "Attention/grad_CAM_3d_sagittal.py", "train.py", "test.py",
               "eval_3d_sagittal_twostage.py", "evaluation/RHLV_quantification.py",
               "evaluation/morphometry.py", "evaluation/SVM_grading.py",
               "evaluation/generation_eval.py", "scripts/make_figures.py")


def _preload() -> None:
    """Import what the CLIs import (their top level, not ``main``), so that a forked child only
    runs the CLI itself. A script that fails to import here fails again, visibly, in its child."""
    import importlib.util
    import logging
    for i, rel in enumerate(CLI_SCRIPTS):
        path = ROOT / rel
        if not path.is_file():
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"_hv_preload_{i}", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except BaseException:  # noqa: BLE001 - only a warm-up
            pass
    logging.getLogger().handlers.clear()   # a fresh interpreter has no logging handlers


def serve() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import nibabel  # noqa: F401
    import numpy  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import sklearn.svm  # noqa: F401
    import torch  # noqa: F401
    import tqdm  # noqa: F401
    _preload()
    proto = sys.stdout
    proto.write("ready\n")
    proto.flush()
    for line in sys.stdin:
        job = json.loads(line)
        proto.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        rc = _wait(pid, job["timeout"])
        proto.write(json.dumps({"rc": rc}) + "\n")
        proto.flush()


# ------------------------------------------------------------------ bad inputs
def truncate_gz(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """A copy of ``src`` cut to ``fraction`` of its bytes (a download that stopped)."""
    data = Path(src).read_bytes()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(data[: max(20, int(len(data) * fraction))])
    return Path(dst)


def text_as_nii(dst: Path) -> Path:
    """A text file named like a volume (e.g. a saved error page)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text("<html>404 not found</html>\n")
    return Path(dst)


def write_png(dst: Path) -> Path:
    """A real PNG image (2D), wrong type for a volume input."""
    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(str(dst), np.zeros((8, 8)), cmap="gray")
    return Path(dst)


def gz_text(dst: Path, text: str) -> Path:
    """A valid gzip stream holding text (not a NIfTI) under ``dst``."""
    with gzip.open(dst, "wt") as fh:
        fh.write(text)
    return Path(dst)


def copy_tree(src: Path, dst: Path, keys: Optional[Iterable[str]] = None) -> Path:
    """Copy a straightened root (CT/, label/, geometry/), optionally only ``keys``."""
    dst = Path(dst)
    for sub in ("CT", "label", "geometry"):
        if not (Path(src) / sub).is_dir():
            continue
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(src) / sub).iterdir()):
            key = f.name.split(".")[0]
            if keys is None or key in keys:
                shutil.copy2(f, dst / sub / f.name)
    return dst


def hidden_files(*roots: Path) -> List[Path]:
    """Temp-looking leftovers (``.name*``, ``*.tmp``, ``*.part``) under the roots."""
    out = []
    for r in roots:
        r = Path(r)
        if not r.exists():
            continue
        for p in ([r] if r.is_file() else r.rglob("*")):
            if p.is_file() and (p.name.startswith(".") or p.suffix in (".tmp", ".part")):
                out.append(p)
    return out


def mtimes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in Path(folder).rglob("*") if p.is_file()}


# ------------------------------------------------------------------ outcome checks
def problems_common(res, absent=(), scan=()):
    probs = []
    if "Traceback" in res.stderr:
        probs.append("Python traceback on stderr")
    for p in absent:   # an empty folder is not an output (run folders are reused when empty)
        p = Path(p)
        if p.is_file() or (p.is_dir() and any(q.is_file() for q in p.rglob("*"))):
            probs.append(f"output for the failed item exists: {p}")
    left = hidden_files(*scan)
    if left:
        probs.append(f"temp files left: {[str(p) for p in left]}")
    return probs


def expect_error(res, names, absent=(), scan=()):
    """Exit 2, last stderr line 'error: ...' naming one of ``names``, nothing written."""
    probs = problems_common(res, absent, scan)
    if res.rc != 2:
        probs.append(f"exit status {res.rc}, expected 2")
    if not res.last_line.startswith("error:"):
        probs.append("last stderr line does not start with 'error:'")
    elif not any(str(n) in res.last_line for n in names):
        probs.append(f"error line does not name any of {[str(n) for n in names]}")
    assert not probs, "; ".join(probs) + "\n" + res.describe()


def expect_warn(res, item, present=(), absent=(), scan=()):
    """Exit 0, ``item`` named on stderr, the other items written, nothing for ``item``."""
    probs = problems_common(res, absent, scan)
    if res.rc != 0:
        probs.append(f"exit status {res.rc}, expected 0 (warn and continue)")
    if str(item) not in res.stderr:
        probs.append(f"stderr does not name {item!r}")
    for p in present:
        if not Path(p).exists():
            probs.append(f"good item not written: {p}")
    assert not probs, "; ".join(probs) + "\n" + res.describe()


def expect_either(res, item, names=None, present=(), absent=(), scan=()):
    """A one-line error naming ``item`` (or one of ``names``), or a warning and continue."""
    if res.rc == 0:
        expect_warn(res, item, present, absent, scan)
    else:
        expect_error(res, names or [item], absent, scan)


def expect_ok(res, present=(), scan=()):
    probs = problems_common(res, (), scan)
    if res.rc != 0:
        probs.append(f"exit status {res.rc}, expected 0")
    for p in present:
        if not Path(p).exists():
            probs.append(f"not written: {p}")
    assert not probs, "; ".join(probs) + "\n" + res.describe()


# ------------------------------------------------------------------ more bad inputs
def afile_out(tmp, name="out"):
    """An output path whose parent is a regular file (unwritable even for root)."""
    (tmp / "afile").write_text("I am a file, not a folder\n")
    return tmp / "afile" / name


def empty_dir(tmp):
    p = tmp / "empty"
    p.mkdir()
    return p


def edit_volume(src, dst, fn):
    """Write ``fn(Volume) -> Volume`` of ``src`` to ``dst``."""
    from data.io import load_volume, save_nifti
    vol = load_volume(src)
    save_nifti(fn(vol), dst)
    return Path(dst)


def add_label_99(vol):
    arr = np.asarray(vol.array).copy()
    arr[:4, :4, :4] = 99
    return vol.with_array(arr)


def crop_last_axis(vol):
    from data.volume import Volume
    return Volume(np.ascontiguousarray(np.asarray(vol.array)[:, :, :-1]), vol.affine)


def only_label(keep):
    def fn(vol):
        arr = np.asarray(vol.array)
        return vol.with_array(np.where(arr == keep, arr, 0).astype(arr.dtype))
    return fn


def drop_label(lab):
    def fn(vol):
        arr = np.asarray(vol.array)
        return vol.with_array(np.where(arr == lab, 0, arr).astype(arr.dtype))
    return fn


def changed(before, after, suffix=""):
    """Files (relative names ending in ``suffix``) new or rewritten between two :func:`mtimes`."""
    return {k for k in after if k.endswith(suffix) and before.get(k) != after[k]}


def write_vj(path, splits):
    from data.splits import write_vertebra_json
    write_vertebra_json(path, splits)
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print("usage: robustness_fixtures.py --serve (used by tests/test_robustness.py)")
        sys.exit(2)
