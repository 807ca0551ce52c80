#!/usr/bin/env bash
# Run the test suite (creates/updates .venv first). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m slow` for the slow tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export PYTHONUTF8=1 PYTHONIOENCODING=utf-8
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MPLBACKEND=Agg
python -m pytest "$@"
