"""Compare measured RHLV with the phantom cohort's planted height loss (docs/EVALUATION.md §1-2).

The planted loss per third is read from ``<dataroot>/raw/<case>/<case>_truth.json``
(``vertebrae[label].height_loss``: (healthy − actual) / healthy by the thirds rule shared with
RHLV). The error is reported in percentage points: ``|100·RHLV − 100·planted|``.

CLI::

    python evaluation/phantom_truth.py --rhlv_csv oracle_rhlv.csv --dataroot phantom \
        --output oracle_errors.csv
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path



from data.splits import make_key
from layout.raw import raw_base, truth_files
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, read_json

log = logging.getLogger("phantom_truth")
TRUTH_THIRDS = {"a": "anterior", "m": "middle", "p": "posterior"}


def truth_table(dataroot):
    """DataFrame: key, case, label, true_grade, morphology, loss_{a,m,p}, H_true_{a,m,p}_mm."""
    import pandas as pd
    files = truth_files(dataroot)
    if not files:
        raise UserError("no <case>/<case>_truth.json files found", raw_base(dataroot))
    rows = []
    for f in files:
        t = read_json(f)
        for lab, v in t.get("vertebrae", {}).items():
            row = {"key": make_key(t["case"], int(lab)), "case": t["case"], "label": int(lab),
                   "true_grade": int(v["grade"]), "morphology": v["morphology"]}
            for s, name in TRUTH_THIRDS.items():
                row[f"loss_{s}"] = float(v["height_loss"][name])
                row[f"H_true_{s}_mm"] = float(v["healthy_heights_mm"][name])
                row[f"H_actual_{s}_mm"] = float(v["heights_mm"][name])
            rows.append(row)
    return pd.DataFrame(rows)


def compare(rhlv_df, truth_df, suffix: str = ""):
    """Merge measured RHLV with the truth; adds err_pp_{a,m,p} (percentage points)."""
    cols = ["key"] + [f"RHLV_{s}{suffix}" for s in "amp"]
    m = truth_df.merge(rhlv_df[cols + [c for c in ("split", "grade") if c in rhlv_df]],
                       on="key", how="inner")
    for s in "amp":
        m[f"err_pp_{s}"] = (100 * (m[f"RHLV_{s}{suffix}"] - m[f"loss_{s}"])).abs()
    return m


def summary(m) -> "object":
    """Mean |error| (pp) per third by true grade and by morphology (plus 'all')."""
    import pandas as pd
    errs = [f"err_pp_{s}" for s in "amp"]
    parts = [m.groupby("true_grade")[errs].mean().rename(index=lambda g: f"grade {g}"),
             m.groupby("morphology")[errs].mean(),
             pd.DataFrame([m[errs].mean()], index=["all"])]
    out = pd.concat(parts)
    out["n"] = list(m.groupby("true_grade").size()) + list(m.groupby("morphology").size()) + [len(m)]
    return out


def main(argv=None) -> int:
    import pandas as pd
    p = argparse.ArgumentParser(description="RHLV vs planted phantom height loss",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rhlv_csv", required=True, help="RHLV table (RHLV_quantification.py)")
    p.add_argument("--dataroot", required=True, help="phantom cohort root (raw/<case>/<case>_truth.json)")
    p.add_argument("--output", default=None, help="optional per-vertebra CSV with the errors")
    p.add_argument("--suffix", default="", help="RHLV column suffix ('' sagittal, '_cor' coronal)")
    args = p.parse_args(argv)
    if not Path(args.rhlv_csv).is_file():
        raise UserError("file not found", args.rhlv_csv)
    m = compare(pd.read_csv(args.rhlv_csv), truth_table(args.dataroot), args.suffix)
    if m.empty:
        raise UserError("no vertebra of the RHLV table is in the phantom truth", args.rhlv_csv)
    print(summary(m).round(2).to_string())
    if args.output:
        with atomic_path(args.output) as tmp:
            m.to_csv(tmp, index=False, float_format="%.5g")
    return 0


if __name__ == "__main__":
    run_cli(main)
