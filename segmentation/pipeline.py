"""Inference: a CT in, vertebra label map (on the CT's own grid) and centroids out.

1. spine localisation on the coarse grid: the all-centroid heatmap gives the spine's x/y line and
   its cranio-caudal extent;
2. vertebra localisation: SpatialConfiguration-Net heatmaps on tiles along the spine (overlapping,
   merged by maximum), candidate peaks, one labelled sequence (:mod:`segmentation.labelling`);
3. vertebra segmentation: a crop around each centroid (image + that vertebra's heatmap), merged
   on the CT's own voxels by the largest probability, background where every one is below 0.5.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from scipy import ndimage

from data.volume import Volume
from segmentation.grid import Grid, box_in_scan, canonical_grid, normalise_ct, scan_corners_mm, to_grid, to_scan
from segmentation.heatmaps import CHANNELS, find_peaks, gaussian_heatmaps
from segmentation.labelling import PairStats, candidates_from_peaks, label_sequence
from segmentation.networks import KIND, STAGES, StageConfig, build
from segmentation.samples import AIR_HU
from utils.checkpoint import load_checkpoint, load_model_state, verify_manifest
from utils.errors import UserError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights"
# Labelling defaults. DEFAULT_THRESHOLD: the smallest heatmap peak that is a candidate, and the
# least a level must add to the sequence's score; DEFAULT_PAIR_WEIGHT: the weight of the spacing
# term (labelling.label_sequence). Chosen on tuning phantom cohorts of seeds 202-204 (18 cases,
# T6-L5, IPL; never on the held-out seed 201) among thresholds 0.1-0.3, weights 1-2 and merge
# distances 8-14 mm: identification 51.4 % -> 63.0 %, extra levels 63 -> 27 there (0.1 and 1
# before).
# DEFAULT_MERGE_MM: peaks of different channels closer than this are one vertebra;
# DEFAULT_VARIANT_COST: what labelling a vertebra T13 or L6 costs (their ~5 % prevalence). With the
# stages retrained on realistic bodies, chosen on realistic tuning cohorts of seeds 202-203 (11
# cases, T6-L5) among merge 8-20 mm, peak copies 0-0.3, pair weights 1-4 and variant costs 0-0.5:
# identification 57.6 % -> 74.2 %, extra levels 7 -> 2 there (merge 8 mm and no variant cost
# before); the stages had labelled thoracic runs one level off around a spurious T13.
DEFAULT_THRESHOLD = 0.2
DEFAULT_PAIR_WEIGHT = 2.0
DEFAULT_MERGE_MM = 12.0
DEFAULT_VARIANT_COST = 0.5


@dataclass
class Stage:
    cfg: StageConfig
    net: torch.nn.Module
    extra: dict = field(default_factory=dict)


def load_stage(path, stage: str, device="cpu") -> Stage:
    """One stage's network from its checkpoint; a missing, foreign or changed file is a UserError."""
    p = Path(path)
    verify_manifest(p)
    ck = load_checkpoint(p)
    if ck.get("kind") != KIND:
        raise UserError(f"not a segmentation stage checkpoint (kind {ck.get('kind')!r})", p)
    cfg = StageConfig.from_dict(ck["config"])
    if cfg.stage != stage:
        raise UserError(f"holds the {cfg.stage!r} stage, expected {stage!r}", p)
    net = build(cfg)
    load_model_state(net, ck, p)
    return Stage(cfg, net.to(device).eval(), {"pair_stats": ck.get("pair_stats")})


def load_models(weights, device="cpu") -> Dict[str, Stage]:
    """The three stages from a folder holding ``spine.pth``, ``vertebrae.pth`` and
    ``segmentation.pth`` (each may also be a run folder's ``ckpt/best.pth``)."""
    w = Path(weights)
    if not w.is_dir():
        raise UserError("weights folder not found", w)
    out = {}
    for st in STAGES:
        p = w / f"{st}.pth"
        if not p.is_file():
            p = w / st / "ckpt" / "best.pth"
        if not p.is_file():
            raise UserError(f"no {st}.pth (nor {st}/ckpt/best.pth)", w)
        out[st] = load_stage(p, st, device)
    return out


def _pad_to(arr: np.ndarray, mult: int, value: float):
    pad = [(0, (-n) % mult) for n in arr.shape]
    return np.pad(arr, pad, constant_values=value), arr.shape


@torch.no_grad()
def _run(net, x: np.ndarray, device) -> np.ndarray:
    return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None].to(device))[0].float().cpu().numpy()


@dataclass
class SpineLine:
    xy_mm: np.ndarray           # (2,) R, A of the spine's centre
    z_mm: tuple                 # (lowest, highest) S of the heatmap
    peak: float


def localise_spine(ct: Volume, st: Stage, device="cpu", min_peak: float = 0.2) -> SpineLine:
    grid = canonical_grid(ct, st.cfg.spacing)
    img = normalise_ct(to_grid(ct, grid, 1, AIR_HU, 0.75))
    mult = 2 ** (st.cfg.levels - 1)
    x, shape = _pad_to(img, mult, float(normalise_ct(AIR_HU)))
    heat = _run(st.net, x, device)[0][:shape[0], :shape[1], :shape[2]]
    peak = float(heat.max())
    if peak < min_peak:
        raise UserError(f"no spine found (spine heatmap peak {peak:.2f} < {min_peak})", ct.path or "CT")
    w = np.clip(heat, 0, None) * (heat >= 0.5 * peak)
    idx = np.array(np.nonzero(w)).T
    ww = w[w > 0]
    com = (idx * ww[:, None]).sum(0) / ww.sum()
    world = grid.index_to_world(com)[0]
    zs = grid.index_to_world(np.c_[np.zeros(len(idx)), np.zeros(len(idx)), idx[:, 2]])[:, 2]
    return SpineLine(world[:2], (float(zs.min()), float(zs.max())), peak)


def vertebra_heatmaps(ct: Volume, line: SpineLine, st: Stage, device="cpu", overlap: float = 0.5):
    """(heatmaps (26, X, Y, Z) on a grid of the stage's spacing around the spine, that Grid)."""
    cfg = st.cfg
    full = canonical_grid(ct, cfg.spacing)
    px, py, pz = cfg.patch
    # the window: the patch's x/y around the spine line, the whole scan in z (padded to tiles)
    c = full.world_to_index(np.r_[line.xy_mm, full.affine[2, 3]])[0]
    x0, y0 = int(round(c[0] - (px - 1) / 2)), int(round(c[1] - (py - 1) / 2))
    nz = max(full.shape[2], pz)
    step = max(4, int(pz * (1 - overlap)) // 4 * 4)
    n_tiles = 1 + int(np.ceil(max(nz - pz, 0) / step))
    nz_pad = pz + (n_tiles - 1) * step
    z0 = -(nz_pad - full.shape[2]) // 2
    aff = full.affine.copy()
    aff[:3, 3] = full.index_to_world([x0, y0, z0])[0]
    grid = Grid((px, py, nz_pad), aff)
    img = normalise_ct(to_grid(ct, grid, 1, AIR_HU, 0.75))
    heat = np.full((len(CHANNELS), px, py, nz_pad), -1.0, np.float32)
    for t in range(n_tiles):
        z = t * step
        h = _run(st.net, img[:, :, z:z + pz], device)
        heat[:, :, :, z:z + pz] = np.maximum(heat[:, :, :, z:z + pz], h)
    return heat, grid


def locate_vertebrae(heat: np.ndarray, grid: Grid, stats: PairStats, ct: Volume, threshold: float = DEFAULT_THRESHOLD,
                     edge_mm: float = 10.0, pair_weight: float = DEFAULT_PAIR_WEIGHT,
                     merge_mm: float = DEFAULT_MERGE_MM, variant_cost: float = DEFAULT_VARIANT_COST):
    """Peaks -> one labelled sequence ``{label: Candidate}`` (positions in RAS mm). Peaks within
    ``edge_mm`` of the scan's top or bottom are dropped (Payer et al.)."""
    peaks = []
    zlo, zhi = _scan_z_range(ct)
    for ch, idx, val in find_peaks(heat, threshold=threshold):
        pos = grid.index_to_world(idx)[0]
        if pos[2] < zlo + edge_mm or pos[2] > zhi - edge_mm:
            continue
        peaks.append((CHANNELS[ch], pos, val))
    return label_sequence(candidates_from_peaks(peaks, same_mm=merge_mm), stats, threshold=threshold,
                          pair_weight=pair_weight, variant_cost=variant_cost)


def _scan_z_range(ct: Volume):
    z = scan_corners_mm(ct)[:, 2]
    return float(z.min()), float(z.max())


def segment_vertebrae(ct: Volume, centres_mm: Dict[int, np.ndarray], st: Stage, device="cpu",
                      batch: int = 4, threshold: float = 0.5) -> np.ndarray:
    """Label map (uint8, the CT's grid): per voxel the label of the largest probability, 0 where
    every probability is below ``threshold``."""
    cfg = st.cfg
    sp = ct.spacing
    sig = np.sqrt(0.75 ** 2 + np.maximum(cfg.spacing ** 2 - sp ** 2, 0) / 4) / sp
    src = ndimage.gaussian_filter(ct.array.astype(np.float32), sig, mode="nearest")
    sm = Volume(src, ct.affine, ct.path)
    half = (np.array(cfg.patch) - 1) / 2.0
    labels = list(centres_mm)
    best = np.zeros(ct.shape, np.float16)
    out = np.zeros(ct.shape, np.uint8)
    sigma = torch.full((1,), cfg.sigma_mm / cfg.spacing)
    for i in range(0, len(labels), batch):
        chunk = labels[i:i + batch]
        grids, xs = [], []
        for lab in chunk:
            aff = np.diag([cfg.spacing] * 3 + [1.0])
            aff[:3, 3] = np.asarray(centres_mm[lab]) - half * cfg.spacing
            g = Grid(tuple(cfg.patch), aff)
            grids.append(g)
            xs.append(normalise_ct(to_grid(sm, g, 1, AIR_HU)))
        x = torch.from_numpy(np.stack(xs))[:, None]
        hm = gaussian_heatmaps(x.shape[2:], torch.tensor(np.tile(half, (len(chunk), 1, 1))).float(),
                               torch.ones(len(chunk), 1, dtype=torch.bool), sigma)
        with torch.no_grad():
            prob = torch.sigmoid(st.net(torch.cat([x, hm], 1).to(device))).float().cpu().numpy()[:, 0]
        for lab, g, p in zip(chunk, grids, prob):
            lo = g.index_to_world([0, 0, 0])[0]
            hi = g.index_to_world(np.array(cfg.patch) - 1)[0]
            box = box_in_scan(ct, lo, hi)
            if box is None:
                continue
            q = to_scan(p, g, ct, order=1, box=box).astype(np.float16)
            b, o = best[box], out[box]
            win = (q > b) & (q >= threshold)
            b[win], o[win] = q[win], lab
    return out


@dataclass
class Result:
    mask: Volume
    centroids_mm: Dict[int, np.ndarray]
    scores: Dict[int, float]
    seconds: Dict[str, float]
    heatmaps: Optional[np.ndarray] = None
    heat_grid: Optional[Grid] = None


def run(ct: Volume, models: Dict[str, Stage], device="cpu", keep_heatmaps: bool = False,
        threshold: float = DEFAULT_THRESHOLD, merge_mm: float = DEFAULT_MERGE_MM,
        variant_cost: float = DEFAULT_VARIANT_COST) -> Result:
    t = {"start": time.time()}
    line = localise_spine(ct, models["spine"], device)
    t["spine"] = time.time()
    heat, grid = vertebra_heatmaps(ct, line, models["vertebrae"], device)
    stats = PairStats.from_dict(models["vertebrae"].extra["pair_stats"])
    seq = locate_vertebrae(heat, grid, stats, ct, threshold, merge_mm=merge_mm, variant_cost=variant_cost)
    if not seq:
        raise UserError("no vertebra found (no heatmap peak above the threshold)", ct.path or "CT")
    t["vertebrae"] = time.time()
    centres = {lab: c.pos for lab, c in seq.items()}
    mask = segment_vertebrae(ct, centres, models["segmentation"], device)
    t["segmentation"] = time.time()
    secs = {k: round(t[k] - t[p], 2) for p, k in zip(["start", "spine", "vertebrae"], ["spine", "vertebrae", "segmentation"])}
    secs["total"] = round(t["segmentation"] - t["start"], 2)
    return Result(Volume(mask, ct.affine.copy(), None), centres, {lab: c.value for lab, c in seq.items()}, secs,
                  heat if keep_heatmaps else None, grid if keep_heatmaps else None)
