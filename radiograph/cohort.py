"""Lateral DRR datasets with exact landmarks: from phantom cases (fractures, slips, S1) or from
real CTs with masks.

One dataset is one ``.npz`` (written atomically) holding ``images`` (N, H, W) uint8,
``points`` (N, C, 2) float32 pixels (x = column, y = row), ``visible`` (N, C) bool, ``case``
(N,) case names, ``split`` (N,) train/val/test (by case: all views of one spine in one split),
and the channel names ``channels`` (C,) such as ``L3_sa`` (level × point, never sorted slots),
plus the camera (``pixel_mm``, ``mm_at_spine``).
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from phantom.shapes import DEFAULT_ANATOMY
from radiograph.drr import Camera, Jitter, LateralRenderer, Look, film, spine_centre
from radiograph.geometry import BODY_POINTS, S1, S1_POINTS
from radiograph.landmarks import spine_landmarks
from spine.anatomy import LEVEL_IDS, level_name
from utils.errors import UserError
from utils.fileio import atomic_path

log = logging.getLogger(__name__)

LUMBAR_LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5")


def channel_names(levels: Sequence[str] = LUMBAR_LEVELS, sacrum: bool = True) -> List[str]:
    """``<level>_<point>`` for every level's 6 body points, then S1's 2 (when ``sacrum``)."""
    out = [f"{lv}_{p}" for lv in levels for p in BODY_POINTS]
    return out + ([f"S1_{p}" for p in S1_POINTS] if sacrum else [])


def level_label(label: int) -> str:
    """The level's name as channels and outputs spell it: 'L3' for 22, 'S1' for the sacrum."""
    return "S1" if label == S1 else level_name(label)


def channels_by_level(channels) -> Dict[int, List[int]]:
    """{VerSe label: indices of its channels}, in channel order."""
    by_level: Dict[int, List[int]] = {}
    for k, ch in enumerate(channels):
        by_level.setdefault(parse_channel(str(ch))[0], []).append(k)
    return by_level


def parse_channel(name: str):
    """'L3_sa' -> (22, 'sa'); 'S1_sp' -> (26, 'sp')."""
    lv, p = name.rsplit("_", 1)
    return (S1 if lv == "S1" else LEVEL_IDS[lv]), p


def views_of(ct, mask, camera: Camera, jitters: Sequence[Jitter], looks: Sequence[Look],
             channels: Sequence[str], rng: np.random.Generator, centre_levels=None):
    """(images uint8 (V, H, W), points (V, C, 2), visible (V, C)) of one CT; the isocentre is
    the mean centroid of ``centre_levels`` (default: of every vertebra)."""
    lm, vis, _ = spine_landmarks(mask)
    centre = spine_centre(mask)
    if centre_levels:
        sel = mask.with_array(np.where(np.isin(mask.array, list(centre_levels)), mask.array, 0))
        if np.any(sel.array):
            centre = spine_centre(sel)
    r = LateralRenderer(ct, camera, centre)
    raw = r.render(list(jitters))
    imgs = np.stack([film(raw[i], looks[i], rng) for i in range(len(jitters))])
    pts = np.full((len(jitters), len(channels), 2), np.nan, np.float32)
    visible = np.zeros((len(jitters), len(channels)), bool)
    index = [(k, *parse_channel(c)) for k, c in enumerate(channels)]
    world = [(k, lm[lab][p]) for k, lab, p in index if lab in lm and p in lm[lab]]
    if world:
        ks = [k for k, _ in world]
        proj = r.project(np.array([w for _, w in world]), list(jitters))
        pts[:, ks] = proj
        for k, lab, p in index:
            if k in ks:
                inside = np.all((pts[:, k] >= 0) & (pts[:, k] <= camera.size - 1), axis=1)
                visible[:, k] = vis.get(lab, False) & inside
    return (np.round(imgs * 255).astype(np.uint8), pts, visible)


def phantom_cohort(out: Path, n_cases: int, seed: int, views: int = 4,
                   camera: Camera = Camera(), levels: Sequence[str] = LUMBAR_LEVELS,
                   slip_fraction: float = 0.5, isthmic_fraction: float = 0.0,
                   progress: bool = True, anatomy: str = DEFAULT_ANATOMY) -> Path:
    """Render ``n_cases`` phantom spines (``levels`` + S1; random fractures; a random slip of
    L4 or L5 in ``slip_fraction`` of them, Meyerding I-IV, isthmic (the arch left behind) in
    ``isthmic_fraction`` of those, else degenerative; a posterior slip in some others)
    and ``views`` jittered lateral DRRs of each; splits 60/20/20 by case. ``anatomy``: the
    bodies' shape (see :func:`phantom.case.render_case`)."""
    from phantom.case import render_case
    from phantom.cohort import split_cases
    from tqdm import tqdm
    channels = channel_names(levels)
    splits = split_cases(n_cases, seed)
    split_of = {i: s for s, ids in splits.items() for i in ids}
    parts = {k: [] for k in ("images", "points", "visible", "case", "split")}
    truths = []
    for i in tqdm(range(n_cases), desc="phantom DRRs", disable=not progress):
        rng = np.random.default_rng([seed, 31, i])
        slips = {}
        u = rng.random()
        if u < slip_fraction:
            lv, pct = str(rng.choice(["L4", "L5"])), float(rng.uniform(5, 95))
            isth = isthmic_fraction > 0 and np.random.default_rng([seed, 32, i]).random() < isthmic_fraction
            slips[lv] = (pct, "isthmic") if isth else pct
        elif u < slip_fraction + 0.15:
            slips[str(rng.choice(["L2", "L3"]))] = -float(rng.uniform(8, 25))
        case = render_case(int(rng.integers(1 << 30)), levels=list(levels), fractures="random",
                           grade_mix=(0.55, 0.15, 0.15, 0.15), slips=slips, sacrum=True,
                           orientation=str(rng.choice(["RAS", "LPS", "PIR"])), anatomy=anatomy)
        jit = [Jitter.draw(rng) for _ in range(views)]
        looks = [Look.draw(rng) for _ in range(views)]
        img, pts, vis = views_of(case.ct, case.mask, camera, jit, looks, channels, rng)
        name = f"rphantom_{i:03d}"
        for k, v in (("images", img), ("points", pts), ("visible", vis)):
            parts[k].append(v)
        parts["case"] += [name] * views
        parts["split"] += [split_of[i]] * views
        truths.append({"case": name, "slips": case.truth.get("slips", {}),
                       "grades": {v["level"]: v["grade"] for v in case.truth["vertebrae"].values()}})
    return write_dataset(out, parts, channels, camera, {"seed": seed, "n_cases": n_cases,
                                                  "views": views, "anatomy": anatomy,
                                                  "truth": truths})


def ct_views(ct_path, mask_path, out: Optional[Path], views: int = 1, camera: Camera = Camera(),
             seed: int = 0, levels: Optional[Sequence[str]] = None, jitter: bool = True,
             sacrum: Optional[bool] = None, label_scheme: str = "verse"):
    """DRRs of one real CT + VerSe mask (split 'test'); channels for the mask's own levels
    (all its vertebrae, or ``levels``) and S1 when labelled. The first view is the plain
    lateral; the others are jittered (``jitter``). Writes ``out`` (.npz) when given; returns
    the dataset dict. With ``levels`` the view is centred on those levels. ``label_scheme``: ``verse`` or ``totalseg`` (converted to VerSe ids)."""
    from data.io import load_ct_and_label
    ct, mask = load_ct_and_label(ct_path, mask_path)
    if label_scheme == "totalseg":           # TotalSegmentator numbering; its S1 (26) kept
        from straighten.cases import totalseg_to_verse
        arr = np.asarray(mask.array)
        conv = totalseg_to_verse(arr)
        conv[arr == 26] = S1
        mask = mask.with_array(conv)
    present = sorted(int(l) for l in np.unique(mask.array) if l)
    lv = list(levels) if levels else [level_name(l) for l in present if l in range(1, 26)]
    if sacrum is None:          # given levels: the trained models' layout (levels + S1)
        sacrum = True if levels else S1 in present
    channels = channel_names(lv, sacrum=sacrum)
    rng = np.random.default_rng(seed)
    jit = [Jitter()] + [Jitter.draw(rng) if jitter else Jitter() for _ in range(views - 1)]
    wanted = [parse_channel(c)[0] for c in channels]
    img, pts, vis = views_of(ct, mask, camera, jit, [Look()] * views, channels, rng,
                             centre_levels=[l for l in wanted if l != S1] if levels else None)
    name = case_name(ct_path)
    parts = {"images": [img], "points": [pts], "visible": [vis], "case": [name] * views,
             "split": ["test"] * views}
    if out is not None:
        write_dataset(out, parts, channels, camera, {"ct": str(ct_path), "mask": str(mask_path)})
    return {"images": img, "points": pts, "visible": vis, "channels": np.array(channels),
            "case": np.array([name] * views), "split": np.array(["test"] * views),
            "pixel_mm": camera.pixel_mm, "mm_at_spine": camera.mm_at_spine, "name": name}


def case_name(ct_path) -> str:
    """'example_ct' for '.../example_ct.nii.gz'."""
    return Path(str(ct_path)).name.split(".")[0]


def write_dataset(out: Path, parts: Dict[str, list], channels, camera: Camera, meta: dict) -> Path:
    """Write a dataset ``.npz`` atomically from per-spine lists (module docstring)."""
    import json
    out = Path(out)
    if out.suffix != ".npz":
        raise UserError("the dataset file must end in .npz", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.concatenate(v) for k, v in parts.items() if k in ("images", "points", "visible")}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays, case=np.array(parts["case"]),
                                split=np.array(parts["split"]), channels=np.array(channels),
                                pixel_mm=camera.pixel_mm, mm_at_spine=camera.mm_at_spine,
                                camera=json.dumps(asdict(camera)), meta=json.dumps(meta))
    log.info("%s: %d images, %d channels", out, len(arrays["images"]), len(channels))
    return out


def load_dataset(path) -> dict:
    """The arrays of a dataset written here; UserError naming the file when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise UserError("dataset file not found", p)
    try:
        z = np.load(p, allow_pickle=False)
        d = {k: z[k] for k in z.files}
    except Exception as exc:
        raise UserError(f"not a radiograph dataset ({exc.__class__.__name__})", p) from exc
    need = {"images", "points", "visible", "channels", "split", "case"}
    if not need <= set(d):
        raise UserError(f"not a radiograph dataset (missing {sorted(need - set(d))})", p)
    return d
