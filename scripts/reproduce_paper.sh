#!/usr/bin/env bash
# Reproduce the HealthiVert-GAN paper pipeline on a VerSe-layout dataset, paper preset.
#
#   scripts/reproduce_paper.sh DATAROOT [OUT]
#
# DATAROOT: raw/<case>/<case>.nii.gz (CT), <case>_msk.nii.gz (VerSe labels), <case>.json
#           (centroids) and DATAROOT/vertebra_data.json ({train|val|test: {key: grade}}).
# OUT:      output folder (default results/paper_repro); nothing is written elsewhere.
# Environment: PYTHON (default .venv/bin/python), DEVICE (auto), FUSION=1 also trains the
# coronal model and adds the 2.5D (6-feature) grading; EPOCHS / EPOCHS_DECAY override the
# preset's 200 / 800 for a shorter run (leave unset to reproduce the paper); SYNTHESIS_PRESET=paper
# writes the synthesis with the authors' output rule (composite as is) instead of ours.
# The authors' protocol row grades the authors' RHLV rule (OUT/rhlv_original.csv,
# RHLV_quantification.py --height_rule original); the sound row grades ours (OUT/rhlv.csv).
#
# Paper table / figure  ->  output file
#   Tab. synthesis (SSIM/PSNR, Dice/IoU/RVD, val grade 0) -> OUT/generation/generation_summary.csv
#       (original whole-slice + strip metrics, stricter in-band metrics, neighbour baselines)
#   Tab. grading (macro P/R/F1, VerSe19: 0.727/0.753/0.723) -> OUT/grading/svm_original.json
#       (authors' protocol), OUT/grading/svm_sound.json (sound protocol, default),
#       OUT/grading_fusion/svm_*.json (2.5D, FUSION=1); morphometry baseline inside each JSON
#   Fig. RHLV per grade                     -> OUT/figures/rhlv_by_grade.png (from OUT/rhlv.csv)
#   Fig. results comparison (input / pseudo-healthy / real / CAM / map)
#                                           -> OUT/figures/comparison_grid.png
#   Fig. height-loss distribution maps      -> OUT/height_maps/<key>_hlmap.png,
#                                              OUT/figures/height_maps.png (given three keys)
#   Fig. confusion matrices                 -> OUT/figures/confusion.png, OUT/grading/confusion_*.png
#   Training curves                         -> OUT/figures/loss_curves.png
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,30p' "$0"; exit 2
fi
DATAROOT=$1
OUT=${2:-results/paper_repro}
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-auto}
VJ=$DATAROOT/vertebra_data.json
[[ -f $VJ ]] || { echo "error: $VJ: file not found" >&2; exit 2; }
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
EPOCH_FLAGS=()
[[ -n ${EPOCHS:-} ]] && EPOCH_FLAGS+=(--n_epochs "$EPOCHS")
[[ -n ${EPOCHS_DECAY:-} ]] && EPOCH_FLAGS+=(--n_epochs_decay "$EPOCHS_DECAY")

echo "== 1. straighten (corrected mode, 1 mm, 256x256x64 blocks, de-pedicled)"
$PY straighten/straighten_mask_3d.py --dataroot "$DATAROOT" --output "$OUT/straight" \
  --vertebra_json "$VJ" --mode corrected --spacing 1.0 --block_size 256 256 64 --skip_existing

echo "== 2. fracture classifier (2D SE-ResNet50, grade >= 2 fractured) and Grad-CAM++"
$PY Attention/train_classifier.py --dataroot "$OUT/straight" --vertebra_json "$VJ" \
  --checkpoints_dir "$OUT/checkpoints" --name fracture_classifier --dims 2 --arch seresnet50 \
  --fracture_min_grade 2 --device "$DEVICE"
$PY Attention/grad_CAM_3d_sagittal.py --dataroot "$OUT/straight" --output "$OUT/cam" \
  --checkpoints_dir "$OUT/checkpoints" --name fracture_classifier --epoch best \
  --vertebra_json "$VJ" --phase train,val,test --method gradcam++ --device "$DEVICE"

echo "== 3. HealthiVert-GAN training, paper preset (sagittal; coronal with FUSION=1)"
$PY train.py --preset paper --dataroot "$OUT/straight" --vertebra_json "$VJ" \
  --cam_folder "$OUT/cam" --checkpoints_dir "$OUT/checkpoints" --name healthivert_paper \
  --dataset_mode aligned_sagittal --phase train --healthy_max_grade 1 --device "$DEVICE" \
  "${EPOCH_FLAGS[@]}"
if [[ ${FUSION:-0} == 1 ]]; then
  $PY train.py --preset paper --dataroot "$OUT/straight" --vertebra_json "$VJ" \
    --cam_folder "$OUT/cam" --checkpoints_dir "$OUT/checkpoints" --name healthivert_paper_cor \
    --dataset_mode aligned_coronal --phase train --healthy_max_grade 1 --device "$DEVICE" \
    "${EPOCH_FLAGS[@]}"
fi

echo "== 4. 3D pseudo-healthy synthesis of every vertebra (train, val, test: the SVM needs all)"
$PY eval_3d_sagittal_twostage.py --checkpoint "$OUT/checkpoints/healthivert_paper" \
  --dataroot "$OUT/straight" --cam_folder "$OUT/cam" --vertebra_json "$VJ" \
  --phase train val test --results_dir "$OUT/synthesis" --device "$DEVICE" --preset "${SYNTHESIS_PRESET:-default}"
COR_FLAGS=()
if [[ ${FUSION:-0} == 1 ]]; then
  $PY eval_3d_sagittal_twostage.py --coronal_checkpoint "$OUT/checkpoints/healthivert_paper_cor" \
    --dataroot "$OUT/straight" --cam_folder "$OUT/cam" --vertebra_json "$VJ" \
    --phase train val test --results_dir "$OUT/synthesis_cor" --device "$DEVICE"
  COR_FLAGS=(--coronal --fake_dir_cor "$OUT/synthesis_cor/label_fake")
fi

echo "== 5. RHLV (the authors' rule for the paper row, ours for the sound one), height-loss maps, morphometry baseline"
$PY evaluation/RHLV_quantification.py --label_dir "$OUT/straight/label" \
  --fake_dir "$OUT/synthesis/label_fake" --vertebra_json "$VJ" --phase train val test \
  --output "$OUT/rhlv_original.csv" --height_rule original --column_ratio 0.7 --body all --skip_missing
$PY evaluation/RHLV_quantification.py --label_dir "$OUT/straight/label" \
  --fake_dir "$OUT/synthesis/label_fake" --vertebra_json "$VJ" --phase train val test \
  --output "$OUT/rhlv.csv" --lr_fraction 0.4 --column_ratio 0.7 --column_filter syn \
  --rescale none --align_shift 6 --skip_missing "${COR_FLAGS[@]}"
$PY evaluation/height_map.py --label_dir "$OUT/straight/label" \
  --fake_dir "$OUT/synthesis/label_fake" --vertebra_json "$VJ" --phase val --min_grade 1 \
  --output_dir "$OUT/height_maps"
$PY evaluation/morphometry.py --label_dir "$OUT/straight/label" --vertebra_json "$VJ" \
  --output "$OUT/morphometry.csv" --skip_missing

echo "== 6. SVM grading: the authors' protocol and the sound one (default)"
$PY evaluation/SVM_grading.py --rhlv_csv "$OUT/rhlv_original.csv" --output_dir "$OUT/grading" \
  --protocol original --C 1.0 --n_splits 5 --svm svc_linear --morphometry_csv "$OUT/morphometry.csv"
$PY evaluation/SVM_grading.py --rhlv_csv "$OUT/rhlv.csv" --output_dir "$OUT/grading" \
  --protocol sound --n_splits 5 --inner_splits 3 --svm svc_linear \
  --morphometry_csv "$OUT/morphometry.csv"
if [[ ${FUSION:-0} == 1 ]]; then
  for P in original sound; do
    $PY evaluation/SVM_grading.py --rhlv_csv "$OUT/rhlv.csv" --output_dir "$OUT/grading_fusion" \
      --protocol $P --fusion --morphometry_csv "$OUT/morphometry.csv"
  done
fi

echo "== 7. synthesis metrics on val grade 0 (original + in-band) with neighbour baselines"
$PY evaluation/generation_eval.py --dataroot "$OUT/straight" --results_dir "$OUT/synthesis" \
  --vertebra_json "$VJ" --phase val --grades 0 --baselines --output_dir "$OUT/generation"

echo "== 8. figures"
KEYS=$($PY - "$VJ" <<'PYEOF'
import json, sys
val = json.load(open(sys.argv[1])).get("val", {})
by = sorted(val, key=lambda k: -val[k])
print(" ".join((by[:2] + by[-1:]) if len(by) >= 3 else by))
PYEOF
)
$PY scripts/make_figures.py --output_dir "$OUT/figures" --rhlv_csv "$OUT/rhlv.csv" \
  --svm_json "$OUT/grading/svm_sound.json" "$OUT/grading/svm_original.json" \
  --loss_log "$OUT/checkpoints/healthivert_paper/loss_log.csv" \
  --dataroot "$OUT/straight" --results_dir "$OUT/synthesis" --cam_folder "$OUT/cam" --keys $KEYS
echo "done: see the table at the top of $0 for which file holds which paper result"
