#!/usr/bin/env python
"""Paired comparison of two fractured-height tables of ``synthesis/phantom_eval.py`` (same cohort,
two settings): per vertebra the difference of the mean abs height error (B - A, percentage
points), its mean +- sd over the vertebrae both tables hold, and in how many B is better; and for
each table the least-squares slope of the method's height (mean of its three thirds) on the true
height, with the mean signed bias in mm: a slope below 1 means tall bodies come out short and
short ones tall (a pull towards the cohort's mean height).

    python scripts/compare_heights.py /tmp/base/heights_final.csv /tmp/opt/heights_final.csv
    python scripts/compare_heights.py A.csv B.csv --method interp --per_vertebra
"""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.errors import UserError, run_cli


def _read(path: str, col: str):
    import pandas as pd
    p = Path(path)
    if not p.is_file():
        raise UserError("height table not found", p)
    df = pd.read_csv(p)
    if "key" not in df or col not in df:
        raise UserError(f"not a phantom_eval.py height table (needs 'key' and '{col}')", p)
    return df.set_index("key")[col]


def height_slope(path: str, method: str):
    """(slope, mean signed bias mm, n) of the method's mean-of-thirds height on the true one, or
    None when the table has no height columns."""
    import numpy as np
    import pandas as pd
    df = pd.read_csv(path)
    cols = [f"{method}_{t}" for t in "amp"]
    true = [f"true_{t}" for t in "amp"]
    if not set(cols + true) <= set(df.columns):
        return None
    got, want = df[cols].mean(axis=1).to_numpy(float), df[true].mean(axis=1).to_numpy(float)
    ok = np.isfinite(got) & np.isfinite(want)
    if ok.sum() < 3 or np.ptp(want[ok]) == 0:
        return None
    return float(np.polyfit(want[ok], got[ok], 1)[0]), float(np.mean(got[ok] - want[ok])), int(ok.sum())


def compare(a, b) -> dict:
    """Paired statistics of two error series indexed by vertebra key (B - A)."""
    common = a.index.intersection(b.index)
    if not len(common):
        raise UserError("the two tables share no vertebra (different cohorts?)")
    d = (b[common] - a[common]).astype(float)
    return {"n": int(len(common)), "mean_a": float(a[common].mean()), "mean_b": float(b[common].mean()),
            "diff_mean": float(d.mean()), "diff_sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "b_better": int((d < 0).sum()), "diff": d}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="height table of the reference setting (heights_*.csv)")
    ap.add_argument("b", help="height table of the setting compared with it")
    ap.add_argument("--method", default="gan", choices=("gan", "interp", "copy", "none"),
                    help="which method's error to compare (default gan)")
    ap.add_argument("--per_vertebra", action="store_true", help="also print each vertebra's difference")
    args = ap.parse_args(argv)
    col = f"{args.method}_err_pct"
    s = compare(_read(args.a, col), _read(args.b, col))
    print(f"{args.method} mean abs height error: A {s['mean_a']:.2f} %, B {s['mean_b']:.2f} % over {s['n']} "
          f"vertebrae; paired B - A {s['diff_mean']:+.2f} +- {s['diff_sd']:.2f} pp; B better in "
          f"{s['b_better']} of {s['n']}")
    for name, path in (("A", args.a), ("B", args.b)):
        fit = height_slope(path, args.method)
        if fit:
            print(f"{name}: {args.method} height on true height: slope {fit[0]:.2f}, mean bias {fit[1]:+.2f} mm "
                  f"({fit[2]} vertebrae)")
    if args.per_vertebra:
        for k, v in s["diff"].items():
            print(f"  {k}: {v:+.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
