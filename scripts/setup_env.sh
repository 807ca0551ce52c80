#!/usr/bin/env bash
# Create or update .venv from requirements.txt and requirements-nodeps.txt (idempotent) and install this repository into it
# (editable, pyproject.toml), so every package imports from any folder and the hv-* commands exist.
# Sourced by demo.sh and test.sh. Re-installs only when requirements.txt, pyproject.toml or the
# repository's location changed since the last successful install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
STAMP="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $ROOT"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV (first run takes a few minutes) ..."
    "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "[setup] installing requirements.txt into $VENV ..."
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt" 2>&1 | grep -v "^WARNING: Location" || true
    # packages whose declared dependencies we do not want (each line says why in requirements.txt)
    "$VENV/bin/python" -m pip install --quiet --no-deps -r "$ROOT/requirements-nodeps.txt" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import torch, monai, diffdrr.drr, timm, pytorch_grad_cam, SimpleITK, nibabel" || { echo "[setup] install failed" >&2; exit 1; }
    # this repository, editable (its packages import from any folder); offline, with the pinned setuptools
    "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation \
        -e "$ROOT" >"$VENV/.editable.log" 2>&1 || { cat "$VENV/.editable.log" >&2; exit 1; }
    (cd / && "$VENV/bin/python" -c "import spine.anatomy, layout.blocks, evaluation.rhlv" ) \
        || { echo "[setup] editable install of $ROOT failed" >&2; exit 1; }
    echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
