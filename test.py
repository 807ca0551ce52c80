"""Run a trained HealthiVert-GAN checkpoint on a split and write panels + metrics.

    python test.py --dataroot phantom/straight --vertebra_json phantom/vertebra_data.json \
        --name phantom_run --phase val            # loads checkpoints/phantom_run/ckpt/latest.pth
    python test.py ... --checkpoint path/to/epoch_0015.pth

Output folder ``<results_dir>/<name>/<phase>_<epoch>/``: ``images/<key>_<panel>.png`` (real_A,
fake_B, real_B, CAM, fake_B_mask_raw, fake_B_coarse, coarse_seg_binary, normal_vert, mask,
real_edges, fake_B_local), ``index.html``, ``metrics.csv`` (one row per vertebra, central valid
slice) and ``summary.json``; with ``--baselines`` also ``metrics_baseline_{copy,interp}.csv`` (docs/EVALUATION.md
§2 neighbour baselines on the same slices). Metrics are computed on float arrays, never on the PNGs.
A missing or incompatible checkpoint is an error (never random weights).
"""
from __future__ import annotations

import csv
import html
import logging
from typing import Optional
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm


from training.dataset import GanDataConfig, HealthiVertDataset, select_keys
from data.intensity import hu_to_unit, unit_to_hu, unit_to_uint8
from data.splits import parse_key
from options.test_options import TestOptions, parse_test_options
from layout.runs import checkpoint_path, resolve_checkpoint, run_dir
from synthesis.model_io import load_generator
from synthesis.views import trained_coronal_band
from utils import checkpoint as ck
from utils.device import resolve_device
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, ensure_dir, write_json, write_text
from training.gan_eval import METRIC_COLUMNS, batch_metrics, slice_metrics, summarise

log = logging.getLogger("test")
PANELS = ("real_A", "fake_B", "real_B", "CAM", "fake_B_mask_raw", "fake_B_coarse",
          "coarse_seg_binary", "normal_vert", "mask", "real_edges", "fake_B_local")
IMAGE_PANELS = ("real_A", "fake_B", "real_B", "fake_B_coarse", "fake_B_local")


def _checkpoint_file(o: TestOptions) -> Path:
    if o.checkpoint:
        return resolve_checkpoint(o.checkpoint)
    return checkpoint_path(run_dir(o.checkpoints_dir, o.name), o.epoch)


def _dataset(o: TestOptions, trained: dict, band_rows: Optional[int] = None) -> HealthiVertDataset:
    pick = lambda mine, key, default: mine if mine is not None else trained.get(key, default)  # noqa: E731
    cfg = GanDataConfig(
        dataroot=o.dataroot, vertebra_json=o.vertebra_json, phase=o.phase,
        mode=pick(o.dataset_mode, "dataset_mode", "aligned_sagittal"),
        cam_folder=pick(o.cam_folder, "cam_folder", None), band_mm=pick(o.band_mm, "band_mm", 40.0),
        vert_class=o.vert_class, max_grade=o.healthy_max_grade,
        image_size=pick(o.image_size, "image_size", 256),
        fit=pick(o.slice_fit, "slice_fit", "crop"), random_slices=False,
        seed=int(trained.get("seed", 0)), cache_blocks=0, allow_missing_cam=o.allow_missing_cam,
        coronal_band=trained_coronal_band(trained),
        # the band the model was trained with, in rows (not re-derived from these blocks' spacing),
        # unless --band_mm asks for another
        band_rows=None if o.band_mm is not None else band_rows)
    ds = HealthiVertDataset(cfg)
    if o.max_items:
        ds.keys = ds.keys[:o.max_items]
    return ds


def _png(t: torch.Tensor, panel: str) -> np.ndarray:
    a = t[0].float().cpu().numpy()
    if panel in IMAGE_PANELS:
        return unit_to_uint8(a)
    if panel == "real_edges":
        a = a / max(float(a.max()), 1e-6)
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _write_panels(vis: dict, keys, img_dir: Path) -> None:
    for i, key in enumerate(keys):
        for p in PANELS:
            if p in vis:
                _save_png(_png(vis[p][i], p), img_dir / f"{key}_{p}.png")


def _write_html(out_dir: Path, rows: list, title: str) -> None:
    head = "".join(f"<th>{p}</th>" for p in PANELS)
    body = []
    for r in rows:
        cells = "".join(f'<td><img src="images/{html.escape(r["key"])}_{p}.png" width="160">'
                        f"</td>" for p in PANELS)
        info = (f'{html.escape(r["key"])} (grade {r["grade"]}, slice {r["slice_index"]})<br>'
                f'band PSNR {r["psnr_band"]:.2f} dB, SSIM {r["ssim_band"]:.3f}, '
                f'height err {r["height_error_pct"]:.1f} %')
        body.append(f"<tr><td>{info}</td>{cells}</tr>")
    write_text(out_dir / "index.html",
               f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
               f"</title></head><body><h1>{html.escape(title)}</h1><table border=1>"
               f"<tr><th>vertebra</th>{head}</tr>{''.join(body)}</table></body></html>\n")


def _write_csv(path: Path, rows: list) -> None:
    cols = ["key", "grade", "slice_index", *METRIC_COLUMNS]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def baseline_metrics(ds: HealthiVertDataset, batch: dict, grades: dict, method: str) -> list:
    """docs/EVALUATION.md §2 baselines on the same slices: ``copy`` (nearer healthy neighbour) and
    ``interp`` (mean of both), pasted with the SHRM rule by evaluation.baselines."""
    from data import band as bd
    from evaluation.baselines import baseline_slice, neighbour_health
    rows = []
    for i, key in enumerate(batch["key"]):
        case, label = parse_key(key)
        img, lab, _, _ = ds.slice_arrays(key, int(batch["slice_index"][i]))
        healthy = neighbour_health(case, label, grades, np.unique(lab).tolist())
        ct, lab_out = baseline_slice(unit_to_hu(img), lab, label, method, healthy)
        x1, x2 = bd.target_rows(lab_out == label)
        m = slice_metrics(hu_to_unit(ct), batch["B"][i, 0].numpy(), batch["mask"][i, 0].numpy(),
                          int(batch["x1"][i]), int(batch["x2"][i]), (lab_out == label) * 1.0,
                          batch["A_mask"][i, 0].numpy(), float(x2 - x1), float(batch["height"][i]))
        rows.append({"key": key, "slice_index": int(batch["slice_index"][i]), **m})
    return rows


def bd_rows_from_mm(ds: HealthiVertDataset) -> int:
    """The band rows the dataset's blocks would give for its ``band_mm``."""
    from data import band as bd
    return bd.band_rows_from_mm(ds.cfg.band_mm, ds.slice_geometry()[1][0])


def run_test(o: TestOptions) -> Path:
    """Load, run, write. Returns the output folder."""
    if not o.dataroot or not Path(o.dataroot).is_dir():
        raise UserError("--dataroot folder not found", o.dataroot or "--dataroot")
    if not o.vertebra_json or not Path(o.vertebra_json).is_file():
        raise UserError("--vertebra_json file not found", o.vertebra_json or "--vertebra_json")
    device = resolve_device(o.device)
    path = _checkpoint_file(o)
    state = ck.load_checkpoint(path, map_location="cpu")
    stored = state.get("extra", {}).get("model_config") or state.get("model", {}).get("config") or {}
    ds = _dataset(o, state.get("options", {}), stored.get("band_rows"))
    if stored.get("band_rows") and o.band_mm is None:
        rows_here = bd_rows_from_mm(ds)
        if rows_here != int(stored["band_rows"]):
            log.warning("the model was trained with a %d-row band; these blocks would give %d rows "
                        "for its %.1f mm: using the trained %d rows", int(stored["band_rows"]),
                        rows_here, ds.cfg.band_mm, int(stored["band_rows"]))
    # the one generator loader (as synthesis): the moving-average weights when the run has them,
    # folded spectral norms (same outputs up to rounding, faster)
    model = load_generator(path, device, image_size=ds.cfg.image_size,
                           band_rows=ds.slice_geometry()[0], checkpoint=state).model
    grades = select_keys(o.vertebra_json, o.phase, "all", 3)
    tag = f"{o.phase}_{o.epoch if not o.checkpoint else Path(o.checkpoint).stem}"
    out_dir = ensure_dir(Path(o.results_dir) / o.name / tag)
    rows, base = [], {m: [] for m in (("copy", "interp") if o.baselines else ())}
    loader = DataLoader(ds, batch_size=o.batch_size, shuffle=False, num_workers=o.num_threads)
    for batch in tqdm(loader, desc="test", disable=o.no_progress):
        out = model.infer(batch)
        rows.extend(batch_metrics(batch, out))
        for method in base:
            base[method].extend(baseline_metrics(ds, batch, grades, method))
        if not o.no_images:
            _write_panels(model.get_current_visuals(), batch["key"], out_dir / "images")
    for r in rows:
        r["grade"] = grades.get(r["key"], -1)
    _write_csv(out_dir / "metrics.csv", rows)
    healthy = [r for r in rows if 0 <= r["grade"] <= o.healthy_max_grade]
    summary = {"checkpoint": str(path), "epoch": state.get("epoch"), "phase": o.phase,
               "all": summarise(rows), f"grade_le_{o.healthy_max_grade}": summarise(healthy)}
    for method, brows in base.items():
        for r in brows:
            r["grade"] = grades.get(r["key"], -1)
        _write_csv(out_dir / f"metrics_baseline_{method}.csv", brows)
        summary[f"baseline_{method}"] = summarise(
            r for r in brows if 0 <= r["grade"] <= o.healthy_max_grade)
    write_json(out_dir / "summary.json", summary)
    if not o.no_images:
        _write_html(out_dir, rows, f"{o.name} {tag}")
    s = summary[f"grade_le_{o.healthy_max_grade}"]
    print(f"summary {o.phase} grade<={o.healthy_max_grade} n={int(s['n'])}: band PSNR "
          f"{s['psnr_band']:.2f} dB SSIM {s['ssim_band']:.3f} | strip PSNR {s['psnr_strip']:.2f} "
          f"SSIM {s['ssim_strip']:.3f} | slice PSNR {s['psnr_slice']:.2f} SSIM "
          f"{s['ssim_slice']:.3f} | Dice {s['dice']:.3f} IoU {s['iou']:.3f} | height error "
          f"{s['height_error_pct']:.2f} % (continuous head {s['height_error_cont_pct']:.2f} %) "
          f"(all n={len(rows)}) -> {out_dir}", flush=True)
    for method in base:
        b = summary[f"baseline_{method}"]
        print(f"baseline {method:6s} n={int(b['n'])}: band PSNR {b['psnr_band']:.2f} dB SSIM "
              f"{b['ssim_band']:.3f} | Dice {b['dice']:.3f} | height error "
              f"{b['height_error_pct']:.2f} %", flush=True)
    return out_dir


def main(argv=None) -> int:
    run_test(parse_test_options(argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
