"""Vertebral landmarks, heights, Genant grades and slips from lateral radiographs.

    python radiograph/predict.py IMAGE_OR_FOLDER --checkpoint runs/rg --output DIR [--mc 10]

Input: PNG / JPG / TIFF (grey or colour), a 2D NIfTI, or a dataset ``.npz`` of render.py. Each
image is resized to the model's input (aspect kept, padded) and mapped back. For every image:

* ``<name>_landmarks.json``: per level and point (``sa sm sp ia im ip``; S1 ``sa sp``) the pixel
  position (the network without dropout), heatmap peak, Monte-Carlo-dropout spread (pixels: the
  median distance of the dropout samples from that position) and whether it is kept;
* ``<name>_overlay.png``: the points by level, circles of 2 × spread, dropped points in red;
* ``<name>_measures.csv``: per level Ha / Hm / Hp (mm), Genant grade, loss and type; per
  adjacent pair slip mm / %, Meyerding grade, displacement and angle.

Millimetres: ``--pixel_mm`` is the pixel size *at the spine* (detector pixel / magnification);
without it the training camera's is assumed and the CSV says so.

Level-aware post-processing: a level is kept when all its points' heatmap peaks reach
``--min_peak`` and (with ``--mc``) their MC-dropout spread stays under ``--max_spread``; its
heights must lie within 0.4-2 × the kept bodies' median posterior height (a point on the
neighbouring body makes an impossible shape); kept levels must follow the anatomical order along
the spine's main axis (the longest run in order is kept, the others dropped with the reason)
and their spacing must be plausible (at least 0.4 × the median spacing per level). Dropped
levels are never graded nor used as a neighbour reference.
"""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from radiograph.cohort import channels_by_level, level_label, load_dataset, parse_channel
from radiograph.geometry import S1, measure_spine
from radiograph.model import TTA_HELP, TTAS
from radiograph.ordering import DECODING_HELP, DECODINGS, main_axis
from spine.anatomy import level_name, rank, spine_sequence
from utils.errors import UserError, run_cli
from utils.fileio import atomic_path, write_json

log = logging.getLogger("radiograph.predict")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_image(path: Path) -> np.ndarray:
    """Grey image as float32 in [0, 1]; UserError naming the file when it cannot be read."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib
        try:
            a = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
        except Exception as exc:
            raise UserError(f"cannot read NIfTI ({exc.__class__.__name__})", path) from exc
        a = np.squeeze(a)
        if a.ndim != 2:
            raise UserError(f"need a 2D image, got shape {a.shape}", path)
        a = a.T                                   # NIfTI (x, y) -> rows, columns
    else:
        import cv2
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise UserError("cannot read image (not a PNG/JPG/TIFF?)", path)
        if a.ndim == 3:
            a = cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2GRAY)
        a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        raise UserError("image is blank (one grey level)", path)
    return (a - lo) / (hi - lo)


def fit_square(img: np.ndarray, size: int) -> Tuple[np.ndarray, float, np.ndarray]:
    """Resize keeping the aspect and pad to ``size``²: (image, scale, offset) with
    input = (model − offset) / scale."""
    import cv2
    h, w = img.shape
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size), np.float32)
    oy, ox = (size - nh) // 2, (size - nw) // 2
    out[oy:oy + nh, ox:ox + nw] = small
    return out, s, np.array([ox, oy], np.float32)


def too_uncertain(spread: np.ndarray, max_spread: float) -> bool:
    """The ``--max_spread`` rule for one level's point spreads (NaN: not measured)."""
    return bool(np.isfinite(spread).any() and np.nanmax(spread) > max_spread)


def postprocess(points: np.ndarray, peak: np.ndarray, channels, min_peak: float = 0.3,
                spread=None, max_spread: float = 4.0):
    """({label: kept}, {label: reason}) by the level-aware rules of the module docstring."""
    by_level = channels_by_level(channels)
    keep = {l: bool(np.all(peak[ks] >= min_peak)) for l, ks in by_level.items()}
    why = {l: "" if keep[l] else "weak heatmap" for l in by_level}
    if spread is not None:
        for l, ks in by_level.items():
            s = np.asarray(spread)[ks]
            if keep[l] and too_uncertain(s, max_spread):
                keep[l], why[l] = False, f"uncertain (MC spread {np.nanmax(s):.1f} px)"
    _implausible_shapes(points, list(channels), by_level, keep, why)
    levels = [l for l in sorted(by_level, key=rank) if keep[l]]
    if len(levels) >= 3:
        centre = {l: points[by_level[l]].mean(0) for l in levels}
        c = np.array([centre[l] for l in levels])
        t = (c - c.mean(0)) @ main_axis(c)
        best: List[int] = []            # longest run in anatomical order (O(n^2), n <= 26)
        prev = [-1] * len(t)
        length = [1] * len(t)
        for i in range(len(t)):
            for j in range(i):
                if t[j] < t[i] and length[j] + 1 > length[i]:
                    length[i], prev[i] = length[j] + 1, j
        i = int(np.argmax(length))
        while i >= 0:
            best.append(i)
            i = prev[i]
        for i, l in enumerate(levels):
            if i not in best:
                keep[l], why[l] = False, "out of anatomical order"
        kept = [l for l in levels if keep[l]]
        if len(kept) >= 3:
            seq = spine_sequence(by_level) + [S1]       # S1 after L5 (or L6 when it has channels)
            gaps = [np.linalg.norm(centre[b] - centre[a]) / max(seq.index(b) - seq.index(a), 1)
                    for a, b in zip(kept, kept[1:])]
            med = float(np.median(gaps))
            for (a, b), g in zip(zip(kept, kept[1:]), gaps):
                if g < 0.4 * med:
                    weaker = a if peak[by_level[a]].mean() < peak[by_level[b]].mean() else b
                    keep[weaker], why[weaker] = False, "too close to its neighbour"
    return keep, why


def _implausible_shapes(points, channels, by_level, keep, why, lo: float = 0.4,
                        hi: float = 2.0) -> None:
    """Drop bodies whose heights are far from the kept bodies' median posterior height (a point
    on the neighbouring body makes a height of nearly nothing, or of two bodies)."""
    from radiograph.geometry import heights
    h = {}
    for l, ks in by_level.items():
        if l != S1 and keep[l]:
            h[l] = heights({parse_channel(str(channels[i]))[1]: points[i] for i in ks})
    ref = np.nanmedian([v[2] for v in h.values()]) if len(h) >= 3 else np.nan
    if not np.isfinite(ref) or ref <= 0:
        return
    for l, v in h.items():
        r = v / ref
        if np.any(r < lo) or np.any(r > hi):
            keep[l], why[l] = False, (f"implausible shape (heights {np.round(v, 1).tolist()} px vs "
                                      f"median {ref:.1f})")


def predict_image(model, img: np.ndarray, size: int, mc: int, device, channels=None,
                  mirror: bool = False):
    """Points, peaks and spreads of one image in its own pixels; ``channels`` (the model's) for
    level-ordered decoding, None for each channel's own maximum; ``mirror``: heatmaps averaged
    with the mirrored image's."""
    from radiograph.model import predict_points
    sq, s, off = fit_square(img, size)
    x = torch.as_tensor(sq[None, None], device=device)
    p, peak, spread = predict_points(model, x, mc=mc, channels=channels, mirror=mirror)
    pts = (p[0].cpu().numpy() - off) / s
    return pts, peak[0].cpu().numpy(), spread[0].cpu().numpy() / s


def write_outputs(out: Path, name: str, img: np.ndarray, pts, peak, spread, channels,
                  mm_per_px: float, assumed: bool, min_peak: float, max_spread: float = 4.0) -> dict:
    from radiograph.evaluate import points_by_level
    from radiograph.render import overlay_png
    keep, why = postprocess(pts, peak, channels, min_peak, spread, max_spread)
    vis = np.array([keep[parse_channel(str(c))[0]] for c in channels])
    levels: Dict[str, dict] = {}
    for k, ch in enumerate(channels):
        lab, nm = parse_channel(str(ch))
        lv = level_label(lab)
        levels.setdefault(lv, {"kept": keep[lab], "reason": why[lab]})[nm] = {
            "xy": [round(float(v), 2) for v in pts[k]], "peak": round(float(peak[k]), 3),
            "spread_px": None if not np.isfinite(spread[k]) else round(float(spread[k]), 2)}
    write_json(out / f"{name}_landmarks.json",
               {"image": name, "levels": levels, "mm_per_pixel": mm_per_px,
                "mm_per_pixel_assumed": assumed,
                "coordinates": "pixels of the input image, x = column, y = row"})
    overlay_png(out / f"{name}_overlay.png", np.round(img * 255).astype(np.uint8), pts, vis,
                channels, f"{name}: predicted landmarks", spread=spread)
    pl, v = points_by_level(pts, vis, channels, mm_per_px)
    m = measure_spine(pl, v)
    with atomic_path(out / f"{name}_measures.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "level", "ha_mm", "hm_mm", "hp_mm", "genant_grade", "genant_loss",
                    "genant_type", "slip_mm", "slip_pct", "meyerding", "direction",
                    "displacement_mm", "angle_deg", "spread_px_max", "mm_assumed"])
        by_level = channels_by_level(channels)
        for r in m["vertebrae"]:
            ks = by_level[r["label"]]
            w.writerow(["vertebra", level_name(r["label"]), *(round(r[x], 2) for x in
                        ("ha_mm", "hm_mm", "hp_mm")), r["genant_grade"],
                        round(r["genant_loss"], 4), r["genant_type"], "", "", "", "", "", "",
                        round(float(np.nanmax(spread[ks])), 2) if np.isfinite(spread[ks]).any() else "",
                        assumed])
        for sl in m["slips"]:
            w.writerow(["slip", f"{level_name(sl['upper'])}/{level_label(sl['lower'])}",
                        "", "", "", "", "", "", round(sl["slip_mm"], 2), round(sl["slip_pct"], 1),
                        sl["meyerding_name"],
                        sl["direction"], round(sl.get("displacement_mm", np.nan), 2),
                        round(sl.get("angle_deg", np.nan), 1), "", assumed])
    return m


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="image file, folder of images, or dataset .npz")
    ap.add_argument("--checkpoint", required=True, help="run folder (ckpt/best.pth) or .pth file")
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument("--pixel_mm", type=float, default=None,
                    help="pixel size at the spine (mm); default: the training camera's")
    ap.add_argument("--mc", type=int, default=10, help="Monte-Carlo dropout samples (0: off)")
    ap.add_argument("--min_peak", type=float, default=0.3, help="heatmap peak to keep a point")
    ap.add_argument("--max_spread", type=float, default=4.0,
                    help="drop a level whose MC-dropout spread exceeds this (model pixels)")
    ap.add_argument("--decoding", choices=DECODINGS, default="ordered", help=DECODING_HELP)
    ap.add_argument("--tta", choices=TTAS, default="mirror", help=TTA_HELP)
    ap.add_argument("--device", default="auto")
    return ap


def _inputs(path: Path):
    if path.suffix == ".npz":
        d = load_dataset(path)
        for i, im in enumerate(d["images"]):
            yield f"{d['case'][i]}_{i}", im.astype(np.float32) / 255.0
        return
    files = sorted(p for p in path.iterdir() if p.name.lower().endswith(IMAGE_EXT + (".nii", ".nii.gz"))) \
        if path.is_dir() else [path]
    if not files:
        raise UserError("no images (PNG/JPG/TIFF/NIfTI) in the folder", path)
    for p in files:
        if not p.is_file():
            raise UserError("file not found", p)
        yield p.name.split(".")[0], read_image(p)


def main(argv=None) -> int:
    from radiograph.train import load_landmark_model
    from utils.device import resolve_device
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    model, ck = load_landmark_model(args.checkpoint, device)
    size = int(ck["config"]["size"])
    mm, assumed = (args.pixel_mm, False) if args.pixel_mm else (float(ck["mm_at_spine"]), True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    channels = list(map(str, ck["channels"])) if args.decoding == "ordered" else None
    n = 0
    for name, img in _inputs(Path(args.input)):
        pts, peak, spread = predict_image(model, img, size, args.mc, device, channels,
                                          mirror=args.tta == "mirror")
        scale = mm * size / max(img.shape) if assumed else mm
        m = write_outputs(out, name, img, pts, peak, spread, ck["channels"], scale, assumed,
                          args.min_peak, args.max_spread * max(img.shape) / size)
        grades = {level_name(r["label"]): r["genant_grade"] for r in m["vertebrae"]}
        log.info("%s: Genant %s; slips %s", name, grades,
                 {f"{level_name(s['upper'])}": round(s["slip_pct"], 1) for s in m["slips"]})
        n += 1
    log.info("%d image(s) -> %s", n, out)
    return 0


if __name__ == "__main__":
    run_cli(main)
