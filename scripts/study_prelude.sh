# Sourced by the phantom study scripts (scripts/*_study.sh): strict mode, repo root as the working
# folder, the project venv, UTF-8 and thread settings, and `cohort OUT ARGS...`, which writes a
# phantom cohort to OUT/ph (make_phantom.py ARGS) and straightens it into OUT/st (extra
# straighten_mask_3d.py flags in STRAIGHTEN_FLAGS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
export PYTHONUTF8=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

cohort() {
  local out=$1; shift
  python scripts/make_phantom.py --output "$out/ph" "$@" --workers 2 --overwrite --no_progress
  python straighten/straighten_mask_3d.py --dataroot "$out/ph" --output "$out/st" ${STRAIGHTEN_FLAGS:-} \
    --workers 2 --no_progress
}
