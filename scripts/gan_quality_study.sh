#!/usr/bin/env bash
# GAN quality study on the phantom (issue #4 table): a sagittal GAN trained for MINUTES (default 10)
# on a 10-case 2 mm cohort, then test.py on the val split with the neighbour baselines (copy,
# interpolation): band PSNR/SSIM, Dice and height error per method, grade-0 vertebrae.
#   bash scripts/gan_quality_study.sh [OUT]   (default /tmp/gan_quality_study; ~MINUTES + 2 min)
OUT=$(realpath -m "${1:-/tmp/gan_quality_study}")
MINUTES=${MINUTES:-10}
source "$(dirname "$0")/study_prelude.sh"
cohort "$OUT" --n_cases 10 --seed 2 --spacing 2 2 2 --levels T11 L4 --anatomy box  # as measured in docs
python train.py --dataroot "$OUT/st" --vertebra_json "$OUT/ph/vertebra_data.json" --checkpoints_dir "$OUT/ck" \
  --name gan --dataset_mode aligned_sagittal --image_size 128 --batch_size 4 --max_minutes "$MINUTES" \
  --n_epochs 1000 --n_epochs_decay 0 --eval_freq 0 --print_freq 20 --overwrite --seed 0 --no_progress
python test.py --dataroot "$OUT/st" --vertebra_json "$OUT/ph/vertebra_data.json" --checkpoints_dir "$OUT/ck" \
  --name gan --phase val --baselines --results_dir "$OUT/test" --no_progress
