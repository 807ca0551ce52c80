#!/usr/bin/env bash
# Collect the GPU evidence in one command (scripts/gpu_check.py: CUDA tests, paper-preset training
# and synthesis speed, segmentation and radiograph training benchmarks, a short paper-preset
# training with the height and band metrics), each step capped, results written as they come to
# OUT/gpu_check.json and OUT/gpu_check.md; about 9 minutes.
#   bash scripts/fetch_gpu_wheels.sh           # once, on a machine with a package index
#   bash scripts/gpu_check.sh OUT              # on the GPU machine (carry .gpu_wheels with the tree)
#   bash scripts/gpu_check.sh OUT --dry_run    # anywhere: the same steps on the CPU at tiny sizes
#   python scripts/benchmark.py --merge OUT/gpu_check.json   # then: the CUDA rows of docs/BENCHMARKS.md
# On the GPU machine the project runs on that machine's own python3 and PyTorch with the packages
# from .gpu_wheels installed into a scratch folder (nothing outside it is changed); the dry run
# uses the project's .venv (created or updated first, like scripts/test.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONUNBUFFERED=1 PYTHONUTF8=1 PYTHONIOENCODING=utf-8 MPLBACKEND=Agg
if [[ " $* " == *" --dry_run "* ]]; then
  source scripts/setup_env.sh
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
else
  SITE="${HV_GPU_SITE:-/tmp/hv_gpu_site}"
  if [ -d .gpu_wheels ] && compgen -G ".gpu_wheels/*.whl" >/dev/null; then
    echo "[gpu_check] installing .gpu_wheels into $SITE ..."
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu_wheels/*.whl
    if [ -f .gpu_wheels/simpleitk.tar.xz ]; then
      python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" .gpu_wheels/simpleitk.tar.xz "$SITE"
    fi
  else
    echo "[gpu_check] no .gpu_wheels folder: using the packages already installed (bash scripts/fetch_gpu_wheels.sh makes it)" >&2
  fi
  export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  python3 -c "import nibabel, monai" || { echo "[gpu_check] nibabel / monai missing: run scripts/fetch_gpu_wheels.sh and carry .gpu_wheels" >&2; exit 1; }
  exec python3 scripts/gpu_check.py "$@"
fi
exec python scripts/gpu_check.py "$@"
