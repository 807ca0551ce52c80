#!/usr/bin/env bash
# Oracle study on the phantom (issue #7 figures): 40 cases x 6 levels (T11-L4), fracture-rich mix;
# the healthy twin resampled through each fractured block is the "pseudo-healthy" input. Prints
# |RHLV - planted loss| per grade/morphology and the SVM (sound + original) vs morphometry.
#   bash scripts/oracle_study.sh [OUT]        (default /tmp/oracle_study; ~10 min on 2 cores)
# COHORT_ARGS replaces the cohort's make_phantom.py arguments, e.g. a real-anatomy cohort:
#   COHORT_ARGS="--from_real CT1 MSK1 --from_real CT2 MSK2 --from_real CT3 MSK3 --n_cases 9 --seed 1" \
#     bash scripts/oracle_study.sh OUT
OUT=$(realpath -m "${1:-/tmp/oracle_study}")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$(dirname "$0")/study_prelude.sh"
COHORT_ARGS=${COHORT_ARGS:-"--n_cases 40 --seed 11 --levels T11 L4 --grade_mix 0.55 0.15 0.15 0.15"}
# shellcheck disable=SC2086
STRAIGHTEN_FLAGS=--no_ct cohort "$OUT" $COHORT_ARGS
python evaluation/oracle.py --dataroot "$OUT/ph" --straight_root "$OUT/st" --output_root "$OUT/twin" --no_progress
python evaluation/RHLV_quantification.py --label_dir "$OUT/st/label" --fake_dir "$OUT/twin/label" \
  --vertebra_json "$OUT/ph/vertebra_data.json" --output "$OUT/rhlv_oracle.csv" --coronal --no_progress
python evaluation/phantom_truth.py --rhlv_csv "$OUT/rhlv_oracle.csv" --dataroot "$OUT/ph" --output "$OUT/oracle_errors.csv"
python evaluation/morphometry.py --label_dir "$OUT/st/label" --vertebra_json "$OUT/ph/vertebra_data.json" \
  --output "$OUT/morphometry.csv" --no_progress
for p in sound original; do
  python evaluation/SVM_grading.py --rhlv_csv "$OUT/rhlv_oracle.csv" --output_dir "$OUT/svm" --protocol $p \
    --morphometry_csv "$OUT/morphometry.csv"
done
