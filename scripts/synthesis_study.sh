#!/usr/bin/env bash
# Fractured-vertebra height study on the phantom (issues #6, #12): train a sagittal GAN on a 12-case
# fracture-rich cohort for MINUTES of wall-clock time (default 10), synthesise the val + test
# vertebrae, and compare the pseudo-healthy heights with the healthy twin's true heights, next to
# the neighbour interpolation / copy baselines and the fractured body itself.
#
# The weights are also kept at each of SNAPSHOT_MINUTES (default "10" when MINUTES > 10) during
# the same run and evaluated the same way, so one run answers "is the longer run better?" (the
# learning rate is constant, so the snapshot is what a MINUTES=10 run would give). With PAPER=1
# (default) the final weights are also synthesised with the authors' output rule
# (eval_3d_sagittal_twostage.py --preset paper) to show what the output rule changes.
#   bash scripts/synthesis_study.sh [OUT]     (default /tmp/synthesis_study; ~MINUTES + 10 min on 2 cores)
#   MINUTES=45 bash scripts/synthesis_study.sh /tmp/study45
# COHORT_ARGS replaces the cohort's make_phantom.py arguments, e.g. fractures planted into real
# scans (issue #15):
#   COHORT_ARGS="--from_real CT1 MSK1 --from_real CT2 MSK2 --from_real CT3 MSK3 --n_cases 9 --seed 1" \
#     bash scripts/synthesis_study.sh /tmp/synthesis_real
# TRAIN_FLAGS: extra train.py flags, default "--ema_decay 0.999" (synthesis with the moving average
# of the generator: 7.65 % at 45 min with it and the authors losses, 10.50 % without it and the
# earlier losses, issue #12); TRAIN_FLAGS="" trains
# without it. Leave the machine
# otherwise idle: the budget is wall-clock, so a busy CPU trains fewer steps (the step count is
# printed).
OUT=$(realpath -m "${1:-/tmp/synthesis_study}")
MINUTES=${MINUTES:-10}
if [ -z "${SNAPSHOT_MINUTES+x}" ]; then SNAPSHOT_MINUTES=$([ "$MINUTES" -gt 10 ] && echo 10 || echo ""); fi
PAPER=${PAPER:-1}
TRAIN_FLAGS=${TRAIN_FLAGS---ema_decay 0.999}
source "$(dirname "$0")/study_prelude.sh"
# the box phantom: the cohort of the shipped generators and of the numbers in README and docs
COHORT_ARGS=${COHORT_ARGS:-"--n_cases 12 --seed 5 --levels T11 L4 --grade_mix 0.5 0.15 0.2 0.15 --anatomy box"}
cohort "$OUT" $COHORT_ARGS
CK="$OUT/ck/gan/ckpt"
snapshot() {  # copy the latest weights once $1 minutes of training have passed
  local m=$1
  sleep $((m * 60))
  [ -f "$CK/latest.pth" ] && cp "$CK/latest.pth" "$CK/.at_${m}min.tmp" && mv "$CK/.at_${m}min.tmp" "$CK/at_${m}min.pth"
}
pids=()
for m in $SNAPSHOT_MINUTES; do snapshot "$m" & pids+=($!); done
python train.py --dataroot "$OUT/st" --vertebra_json "$OUT/ph/vertebra_data.json" --checkpoints_dir "$OUT/ck" \
  --name gan --dataset_mode aligned_sagittal --image_size 128 --batch_size 4 --max_minutes "$MINUTES" \
  --n_epochs 1000 --n_epochs_decay 0 --eval_freq 0 --print_freq 20 --overwrite --seed 0 --no_progress \
  --save_epoch_freq 0 ${TRAIN_FLAGS:-}
for p in "${pids[@]}"; do wait "$p" || true; done

evaluate() {  # $1 checkpoint, $2 name, further args: synthesis flags
  local ck=$1 name=$2; shift 2
  python eval_3d_sagittal_twostage.py --checkpoint "$ck" --dataroot "$OUT/st" \
    --vertebra_json "$OUT/ph/vertebra_data.json" --phase val test --results_dir "$OUT/syn_$name" --no_progress "$@"
  python synthesis/phantom_eval.py --results_dir "$OUT/syn_$name" --dataroot "$OUT/st" --cohort "$OUT/ph" \
    --phase val test --output "$OUT/heights_$name.csv" | tee "$OUT/summary_$name.md"
}
steps_of() { python -c "import torch,sys; s=torch.load(sys.argv[1],map_location='cpu',weights_only=False); print(s['step'])" "$1"; }
{
  echo "# Synthesis study: MINUTES=$MINUTES (cohort: $COHORT_ARGS) ${TRAIN_FLAGS:-}"
  for m in $SNAPSHOT_MINUTES; do
    if [ -f "$CK/at_${m}min.pth" ]; then
      echo; echo "## weights after ${m} min ($(steps_of "$CK/at_${m}min.pth") steps)"
      evaluate "$CK/at_${m}min.pth" "${m}min"
    fi
  done
  echo; echo "## weights after ${MINUTES} min ($(steps_of "$CK/latest.pth") steps)"
  evaluate "$CK/latest.pth" final
  if [ "$PAPER" = 1 ]; then
    echo; echo "## the same final weights, authors' output rule (--preset paper)"
    evaluate "$CK/latest.pth" final_paper --preset paper
  fi
} 2>&1 | grep -v " INFO \| WARNING " | tee "$OUT/study.md"
echo "study: $OUT/study.md; per-vertebra tables: $OUT/heights_*.csv"
