#!/usr/bin/env bash
# The whole pipeline on built-in phantom data (creates/updates .venv first).
# Usage: bash scripts/demo.sh [--quick] [--output DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export PYTHONUTF8=1 PYTHONIOENCODING=utf-8
export MPLBACKEND=Agg
python scripts/demo.py "$@"
