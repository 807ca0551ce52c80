#!/usr/bin/env bash
# Fractured-vertebra height study on the phantom (issue #6): train a sagittal GAN on a 12-case
# fracture-rich cohort for MINUTES of CPU time (default 10), synthesise the val + test vertebrae,
# and compare the pseudo-healthy heights with the healthy twin's true heights, next to the
# neighbour interpolation / copy baselines and the fractured body itself.
#   bash scripts/synthesis_study.sh [OUT]     (default /tmp/synthesis_study; ~MINUTES + 5 min on 2 cores)
#   MINUTES=30 bash scripts/synthesis_study.sh /tmp/study30
OUT=$(realpath -m "${1:-/tmp/synthesis_study}")
MINUTES=${MINUTES:-10}
source "$(dirname "$0")/study_prelude.sh"
cohort "$OUT" --n_cases 12 --seed 5 --levels T11 L4 --grade_mix 0.5 0.15 0.2 0.15
python train.py --dataroot "$OUT/st" --vertebra_json "$OUT/ph/vertebra_data.json" --checkpoints_dir "$OUT/ck" \
  --name gan --dataset_mode aligned_sagittal --image_size 128 --batch_size 4 --max_minutes "$MINUTES" \
  --n_epochs 1000 --n_epochs_decay 0 --eval_freq 0 --print_freq 20 --overwrite --seed 0 --no_progress
python eval_3d_sagittal_twostage.py --checkpoint "$OUT/ck/gan/ckpt/latest.pth" --dataroot "$OUT/st" \
  --vertebra_json "$OUT/ph/vertebra_data.json" --phase val test --results_dir "$OUT/syn" --no_progress
python synthesis/phantom_eval.py --results_dir "$OUT/syn" --dataroot "$OUT/st" --cohort "$OUT/ph" \
  --phase val test --output "$OUT/phantom_heights.csv"
