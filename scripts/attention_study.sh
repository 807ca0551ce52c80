#!/usr/bin/env bash
# Attention-map study on the phantom (issue #5 figures): a 2D fracture classifier on a 20-case
# fracture-rich cohort, then Grad-CAM++ on the val vertebrae. Prints the val AUC (grade >= 2 vs
# the rest) and the pointing rate (CAM maximum inside the fractured body, mid-sagittal slice).
#   bash scripts/attention_study.sh [OUT]     (default /tmp/attention_study; ~2 min on 2 cores)
OUT=$(realpath -m "${1:-/tmp/attention_study}")
source "$(dirname "$0")/study_prelude.sh"
cohort "$OUT" --n_cases 20 --seed 3 --levels T11 L4 --grade_mix 0.5 0.1 0.2 0.2 --anatomy box  # as measured in docs
python Attention/train_classifier.py --dataroot "$OUT/st" --vertebra_json "$OUT/ph/vertebra_data.json" \
  --checkpoints_dir "$OUT/ck" --name cls --dims 2 --arch resnet_tiny --image_size 80 --crop 80 \
  --mask_margin_mm 6 --n_epochs 6 --samples_per_epoch 1600 --fracture_min_grade 2 --overwrite --seed 0 --no_progress
python Attention/grad_CAM_3d_sagittal.py --checkpoints_dir "$OUT/ck" --name cls --epoch best --dataroot "$OUT/st" \
  --vertebra_json "$OUT/ph/vertebra_data.json" --phase val --output "$OUT/cam" --no_progress
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
m = json.load(open(f"{out}/ck/cls/metrics.json", encoding="utf-8"))
best = m["best"]["vertebra"] if "vertebra" in (m.get("best") or {}) else m.get("best")
s = json.load(open(f"{out}/cam/summary.json", encoding="utf-8"))
print(f"best epoch {m['best_epoch']}: val vertebra AUC {best.get('auc')}, balanced accuracy {best.get('balanced_accuracy')}")
print(f"pointing (mid-slice) on {s['n_fractured']} fractured val vertebrae: {s['pointing_mid_rate']}")
PY
