#!/usr/bin/env python
"""One-page summary (``index.html``) of a demo or pipeline output folder: every figure, the key
metrics tables (grading, generation, oracle check, 2D test), stage timings and links to every
output file. Pure HTML + PNG files; open it in any browser.

    python scripts/summary_page.py --demo_dir demo_output
"""
from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

from utils.errors import UserError, run_cli
from utils.fileio import write_text

CSS = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f2f2f2}img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}.note{color:#555;font-size:.9em}"""


def _table(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    return df.to_html(index=False, float_format=lambda v: floatfmt.format(v), border=0)


GRADING_RUNS = (("SVM on GAN RHLV (the paper)", "grading_gan", "svm_sound.json"),
                ("SVM on morphometric ratios", "grading_gan", "svm_sound_morph.json"),
                ("SVM on GAN RHLV + morphometric ratios", "grading_gan", "svm_sound_both.json"),
                ("SVM on oracle RHLV: healthy twin", "grading_oracle", "svm_sound.json"))


def _f1_ci(m: dict):
    ci = m.get("ci95", {}).get("macro_f1")
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _grading_rows(res: Path) -> pd.DataFrame:
    rows = []
    for name, folder, fname in GRADING_RUNS:
        f = res / folder / fname
        if not f.is_file():
            continue
        d = json.loads(f.read_text(encoding="utf-8"))
        ho, cv = d.get("val", {}), d.get("cv", {})
        rows.append({"grading": name, "CV macro-F1": cv.get("macro_f1"), "CV sd": cv.get("macro_f1_sd"),
                     "held-out macro-P": ho.get("macro_precision"), "held-out macro-R": ho.get("macro_recall"),
                     "held-out macro-F1": ho.get("macro_f1"), "macro-F1 95% CI": _f1_ci(ho),
                     "accuracy": ho.get("accuracy"), "n": ho.get("n")})
        m = d.get("morphometry_val", {})
        if m and not any(r["grading"].startswith("Genant rule") for r in rows):
            rows.append({"grading": "Genant rule on morphometry (no SVM, no synthesis)",
                         "held-out macro-P": m.get("macro_precision"), "held-out macro-R": m.get("macro_recall"),
                         "held-out macro-F1": m.get("macro_f1"), "macro-F1 95% CI": _f1_ci(m),
                         "accuracy": m.get("accuracy"), "n": m.get("n")})
    return pd.DataFrame(rows)


def _csv_section(title: str, path: Path, out: Path, cols=None, note: str = "") -> str:
    if not path.is_file():
        return ""
    df = pd.read_csv(path)
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    rel = path.relative_to(out).as_posix()
    return f"<h2>{html.escape(title)}</h2><p class=note>{note} <a href='{rel}'>{path.name}</a></p>" + _table(df)


def _fracture_heights(path: Path, out: Path) -> str:
    """Mean / sd / median absolute height error (%, A/M/P averaged) per method for the fractured
    vertebrae of ``synthesis/phantom_eval.py``'s table."""
    if not path.is_file():
        return ""
    df = pd.read_csv(path)
    names = {"gan": "GAN pseudo-healthy", "interp": "neighbour interpolation", "copy": "neighbour copy",
             "none": "fractured body as is"}
    rows = [{"method": label, "n": int(df[f"{m}_err_pct"].notna().sum()),
             "mean abs height error %": df[f"{m}_err_pct"].mean(), "sd": df[f"{m}_err_pct"].std(),
             "median": df[f"{m}_err_pct"].median()} for m, label in names.items() if f"{m}_err_pct" in df]
    rel = path.relative_to(out).as_posix()
    return ("<h2>Fractured vertebrae: restored height vs the healthy twin's true height</h2>"
            f"<p class=note>val + test vertebrae of grade 1-3; <a href='{rel}'>{path.name}</a></p>"
            + _table(pd.DataFrame(rows)))


def _radiograph_section(out: Path) -> str:
    """Predicted landmarks on the demo's DRRs, the held-out scores and the measures."""
    rg = out / "radiograph"
    if not rg.is_dir():
        return ""
    parts = ["<h2>Lateral radiographs (DRRs): landmarks, Genant and Meyerding from points</h2>",
             "<p class=note>Held-out phantom spines (seed 77) and, when present, the real abdominal CT, "
             "rendered by radiograph/render.py; points predicted by the shipped weights "
             "(radiograph/weights/MANIFEST.json) with MC-dropout spread (circles = 2 sd); red = dropped "
             "by the level-aware checks. Scores against the mask-derived landmarks.</p>"]
    rows = []
    for name in ("evaluation", "evaluation_real"):
        m = rg / name / "metrics.json"
        if m.is_file():
            d = json.loads(m.read_text(encoding="utf-8"))
            rows.append({"data": "phantom (seed 77)" if name == "evaluation" else "real abdominal CT",
                         "images": d["images"], "landmarks": d["landmarks"], "MRE mm": d["mre_mm"],
                         "SDR 2 mm": d["sdr_2mm"], "SDR 4 mm": d["sdr_4mm"],
                         "slip MAE (pts)": d["slip_pct_mae"], "Meyerding acc": d["meyerding_accuracy"],
                         "Genant macro-F1": d["genant_macro_f1"]})
    if rows:
        parts.append(_table(pd.DataFrame(rows)))
    pngs = sorted(rg.glob("predicted*/*_overlay.png"))
    if pngs:
        parts.append("<div class=grid>")
        for p in pngs:
            rel = p.relative_to(out)
            csvp = p.with_name(p.name.replace("_overlay.png", "_measures.csv"))
            tab = ""
            if csvp.is_file():
                df = pd.read_csv(csvp)
                v = df[df["kind"] == "vertebra"][["level", "genant_grade", "genant_type"]]
                sl = df[df["kind"] == "slip"][["level", "slip_pct", "meyerding"]]
                tab = ("<br>Genant: " + ", ".join(f"{r.level} {r.genant_grade}" for r in v.itertuples())
                       + "<br>slip %: " + ", ".join(f"{r.level} {r.slip_pct:.0f} ({r.meyerding})"
                                                    for r in sl.itertuples()))
            parts.append(f"<div><b>{html.escape(p.stem)}</b><br><a href='{rel}'><img src='{rel}'></a>"
                         f"<small>{html.escape(tab).replace('&lt;br&gt;', '<br>')}</small></div>")
        parts.append("</div>")
    return "\n".join(parts)


def _raw_ct_section(out: Path) -> str:
    """Segmentation of the demo's CTs with the shipped weights: VerSe metrics against the
    phantom masks, and the morphometry grade of each vertebra from the predicted masks next to
    the grade from the reference masks."""
    seg = out / "from_raw_ct"
    m = seg / "evaluation" / "metrics.json"
    if not m.is_file():
        return ""
    d = json.loads(m.read_text(encoding="utf-8"))
    a = d["all"]
    parts = ["<h2>From raw CT: vertebrae found and segmented by segmentation/ (shipped weights)</h2>",
             "<p class=note>The demo's phantom CTs segmented with no label map given "
             "(segmentation/weights/MANIFEST.json), scored against the phantom's masks (VerSe rules: "
             "identified = the right label within 20 mm and closest), then straightened and measured.</p>",
             _table(pd.DataFrame([{"cases": len(d["cases"]), "reference vertebrae": a["n_gt"],
                                   "identification rate": a["identification_rate"],
                                   "localisation error mm": a["localisation_error_mm"], "mean Dice": a["dice"],
                                   "HD95 mm": a["hd95_mm"], "missed": a["missed"], "extra": d["extra"]}]))]
    pred, ref = seg / "morphometry.csv", out / "results" / "morphometry.csv"
    if pred.is_file() and ref.is_file():
        p, r = pd.read_csv(pred), pd.read_csv(ref)
        if {"key", "morph_grade"} <= set(p.columns) and {"key", "morph_grade", "grade"} <= set(r.columns):
            j = r[["key", "grade", "morph_grade"]].rename(columns={"grade": "planted grade",
                                                                  "morph_grade": "grade (reference masks)"})
            j = j.merge(p[["key", "morph_grade"]].rename(columns={"morph_grade": "grade (predicted masks)"}),
                        on="key", how="left")
            both = j.dropna()
            agree = float((both["grade (reference masks)"] == both["grade (predicted masks)"]).mean()) \
                if len(both) else float("nan")
            parts.append(f"<p class=note>Morphometry grades: {len(both)} of {len(j)} vertebrae measured from both "
                         f"mask sets; the same grade in {agree:.0%} of them.</p>")
            parts.append(_table(j))
    return "\n".join(parts)


def build_page(out: Path) -> Path:
    """Write ``<out>/index.html`` and return its path."""
    out = Path(out)
    if not out.is_dir():
        raise UserError("not a folder", out)
    res, fig = out / "results", out / "figures"
    parts = [f"<html><head><meta charset='utf-8'><title>HealthiVert-GAN summary</title><style>{CSS}</style></head><body>",
             "<h1>HealthiVert-GAN pipeline summary</h1>",
             f"<p class=note>Output folder: {html.escape(str(out))}. Phantom cohort with planted fractures and "
             "healthy twins; every number below was produced by the scripts named in the logs.</p>"]
    grading = _grading_rows(res)
    if len(grading):
        parts += ["<h2>Genant grading (held-out val split, sound protocol)</h2>", _table(grading)]
    gen = res / "generation" / "generation_summary.csv"
    parts.append(_csv_section("Synthesis quality vs the healthy twin (with neighbour baselines)", gen, out,
                              ["method", "n", "dice_mean", "psnr_band_mean", "ssim_band_mean", "psnr_whole_mean",
                               "height_err_a_pct_mean", "height_err_m_pct_mean", "height_err_p_pct_mean"],
                              "Band = the synthesised rows; heights in % of the healthy twin's."))
    parts.append(_fracture_heights(res / "phantom_heights.csv", out))
    oracle = res / "oracle_errors.csv"
    if oracle.is_file():
        df = pd.read_csv(oracle)
        err = [c for c in df.columns if c.startswith("err_pp_")]
        if err:
            by = pd.concat([df.groupby("true_grade")[err].apply(lambda d: d.abs().mean()).rename(index=lambda g: f"grade {g}"),
                            df.groupby("morphology")[err].apply(lambda d: d.abs().mean()),
                            df[err].abs().mean().to_frame("all").T])
            by.columns = [c.replace("err_pp_", "third ") for c in by.columns]
            parts += ["<h2>RHLV vs planted loss (oracle: healthy twin as pseudo-healthy)</h2>",
                      "<p class=note>mean |RHLV - planted loss| in percentage points, per third</p>",
                      by.reset_index().rename(columns={"index": "group"}).to_html(
                          index=False, float_format=lambda v: f"{v:.2f}", border=0)]
    parts.append(_raw_ct_section(out))
    parts.append(_radiograph_section(out))
    imgs = sorted(fig.glob("*.png")) if fig.is_dir() else []
    if imgs:
        parts.append("<h2>Figures</h2><div class=grid>")
        parts += [f"<div><b>{html.escape(p.stem)}</b><br><a href='figures/{p.name}'><img src='figures/{p.name}'></a></div>"
                  for p in imgs]
        parts.append("</div>")
    tim = out / "timings.json"
    if tim.is_file():
        t = json.loads(tim.read_text(encoding="utf-8"))
        parts += ["<h2>Stage timings (s)</h2>", _table(pd.DataFrame([t]).T.reset_index().rename(
            columns={"index": "stage", 0: "seconds"}), "{:.1f}")]
    links = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".html")
                   and p.name != "index.html" and "raw" not in p.parts)
    parts.append("<h2>All tables and reports</h2><ul>" + "".join(
        f"<li><a href='{p.relative_to(out)}'>{html.escape(str(p.relative_to(out)))}</a></li>" for p in links[:300]) + "</ul>")
    parts.append("</body></html>")
    return write_text(out / "index.html", "\n".join(x for x in parts if x))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo_dir", required=True, help="demo/pipeline output folder (figures/, results/, ...)")
    args = ap.parse_args(argv)
    print(build_page(Path(args.demo_dir)))
    return 0


if __name__ == "__main__":
    run_cli(main)
