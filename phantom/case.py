"""Ground-truth spine phantom (docs/EVALUATION.md §1): a seeded thoraco-lumbar CT with labels, a
healthy twin and the planted fracture truth.

Construction: a smooth random centre curve (lordosis, kyphosis, mild scoliosis) carries each
vertebra rigidly in its local frame (x right, y anterior, z = curve tangent, cranial); bodies,
posterior elements, canal and discs are analytic shapes rendered in world mm on an axis-aligned
RAS grid, then reoriented exactly (flips/transposes) to the requested orientation codes.

Fracture design (see :mod:`phantom.fracture`): the uniform part of the collapse lifts the
inferior endplate and the whole spine caudal to the fractured vertebra moves cranially along the
curve by that amount (no gap); the non-uniform part depresses the endplate(s) and the adjacent
disc fills the depression. Everything cranial to the fractured body's healthy superior endplate
is byte-identical in the two twins.

Modules: :mod:`phantom.shapes` (anatomy), :mod:`phantom.fracture` (body, Genant),
:mod:`phantom.render` (rasterising), :mod:`phantom.cohort` (cohort writer),
:mod:`phantom.paint` (HU painted into a real label map).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from data.centroids import write_centroids
from data.io import save_nifti
from phantom.fracture import Body, draw_fracture, fracture_truth, plant, MORPHOLOGIES
from phantom.render import HU, Grid, Placed, render_arrays, texture_tile
from phantom.shapes import (ANATOMIES, DEFAULT_ANATOMY, VertebraGeom, box_corners, layout_levels,
                            level_geometry, make_curve, vertebra_box)
from spine.anatomy import LEVEL_IDS, LEVEL_NAMES
from data.volume import Volume, affine_from_spacing
from utils.errors import UserError
from utils.fileio import write_json

DEFAULT_LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
DEFAULT_GRADE_MIX = (0.80, 0.10, 0.06, 0.04)   # P(grade 0..3) per vertebra, close to VerSe19
_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
FractureSpec = Union[None, str, Dict]
# mean trabecular HU of a case: the box phantom's healthy adult range; the realistic one spans
# osteoporotic (< 110 HU) to normal bone, as in a fracture clinic's patients
DENSITY_HU = {"box": (165.0, 235.0), "realistic": (70.0, 230.0)}


@dataclass
class PhantomCase:
    """One rendered case: fractured CT/mask, healthy twin, centroids (voxel index of ``mask``)
    and the truth dict (the ``<case>_truth.json`` content)."""

    ct: Volume
    mask: Volume
    healthy_ct: Volume
    healthy_mask: Volume
    centroids: Dict[int, np.ndarray]
    truth: dict
    healthy_centroids: Optional[Dict[int, np.ndarray]] = None   # of ``healthy_mask``


def parse_level(level) -> int:
    """'L1' or 20 -> 20 (VerSe id); UserError for unknown levels."""
    if isinstance(level, (int, np.integer)) or str(level).isdigit():
        lab = int(level)
        if lab in LEVEL_NAMES and 1 <= lab <= 24:
            return lab
    elif str(level).upper() in LEVEL_IDS and LEVEL_IDS[str(level).upper()] <= 24:
        return LEVEL_IDS[str(level).upper()]
    raise UserError(f"unknown vertebra level {level!r} (use C1-C7, T1-T12, L1-L5 or ids 1-24)")


def level_range(first, last) -> List[str]:
    """Names of the levels from ``first`` to ``last`` inclusive, cranial first."""
    a, b = sorted((parse_level(first), parse_level(last)))
    return [LEVEL_NAMES[i] for i in range(a, b + 1)]


def check_orientation(code: str) -> str:
    """Validate orientation codes such as 'RAS', 'LPS', 'PIR'; return them upper-case."""
    c = str(code).upper()
    if len(c) != 3 or any(ch not in _AXIS for ch in c) or len({_AXIS[ch] for ch in c}) != 3:
        raise UserError(f"bad orientation code {code!r}: need one letter from each of R/L, A/P, "
                        "S/I, e.g. RAS, LPS, PIR")
    return c


def _labels(levels: Sequence) -> List[int]:
    labels = sorted({parse_level(l) for l in levels})
    if not labels:
        raise UserError("no vertebra levels given")
    if labels != list(range(labels[0], labels[-1] + 1)):
        raise UserError(f"levels must be contiguous, got {[LEVEL_NAMES[l] for l in labels]} "
                        f"(for a range use level_range({LEVEL_NAMES[labels[0]]!r}, "
                        f"{LEVEL_NAMES[labels[-1]]!r}))")
    return labels


def _fracture_plan(fractures: FractureSpec, labels: List[int], seed: int,
                   grade_mix: Sequence[float]) -> Dict[int, Tuple[float, str]]:
    """{label: (target loss fraction, morphology)} for the fractured vertebrae."""
    if fractures is None:
        return {}
    plan = {}
    if isinstance(fractures, str):
        if fractures != "random":
            raise UserError(f"fractures must be None, 'random' or a dict, got {fractures!r}")
        mix = np.asarray(grade_mix, dtype=float)
        if mix.shape != (4,) or np.any(mix < 0) or mix.sum() <= 0:
            raise UserError(f"grade_mix needs 4 non-negative weights, got {list(grade_mix)}")
        for lab in labels:
            rng = np.random.default_rng([seed, 2, lab])
            g = int(rng.choice(4, p=mix / mix.sum()))
            if g:
                plan[lab] = draw_fracture(rng, g)
        return plan
    for key, spec in dict(fractures).items():
        lab = parse_level(key)
        if lab not in labels:
            raise UserError(f"fracture level {key!r} is not among the rendered levels")
        grade, morph = (spec, None) if np.isscalar(spec) else tuple(spec)
        if int(grade) not in (0, 1, 2, 3) or (morph is not None and morph not in MORPHOLOGIES):
            raise UserError(f"fracture {key!r}: need grade 0-3 and morphology in {MORPHOLOGIES}")
        if int(grade):
            loss, rand_morph = draw_fracture(np.random.default_rng([seed, 2, lab]), int(grade))
            plan[lab] = (loss, morph or rand_morph)
    return plan


def _spacings(spacing, orient: str) -> Tuple[np.ndarray, np.ndarray]:
    """(spacing per output array axis, spacing per RAS world axis), mm; UserError if invalid."""
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.shape != (3,) or np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise UserError(f"spacing needs 3 positive numbers (mm), got {list(np.ravel(spacing))}")
    spacing_ras = np.zeros(3)
    for ax, ch in enumerate(orient):
        spacing_ras[_AXIS[ch]] = sp[ax]
    return sp, spacing_ras


def _place(geoms, bodies, curve, offsets, trabecular_hu: float,
           slips: Optional[Dict[int, float]] = None, isthmic=()) -> List[Placed]:
    """Vertebrae on the curve, cranial first. ``slips``: {label: mm} moves that vertebra and
    every one cranial to it anteriorly (along the next caudal vertebra's anterior axis) by mm
    (< 0 posteriorly), the disc below following: a degenerative spondylolisthesis; for the
    labels in ``isthmic`` the slipped vertebra's arch stays behind (a pars defect)."""
    out, shift = [], 0.0
    for i, (g, body) in enumerate(zip(geoms, bodies)):
        c, rot = curve.frame(g.s_mm + shift)
        d_above = geoms[i - 1].disc_below_mm if i else g.disc_below_mm
        out.append(Placed(replace(g, shift_mm=shift), body, c, rot, d_above, g.disc_below_mm,
                          offsets[i], trabecular_hu))
        shift += body.shift_mm
    move = np.zeros(3)
    for i in range(len(out) - 1, -1, -1):
        mm = (slips or {}).get(out[i].geom.label, 0.0)
        if mm and i + 1 < len(out):
            step = mm * out[i + 1].rot[:, 1]
            move = move + step
            if out[i].geom.label in isthmic:
                out[i].arch_shift = step
        out[i].centre = out[i].centre + move
    return out


SACRUM = 26          # VerSe id of the sacrum


def sacrum_geometry(last: VertebraGeom) -> VertebraGeom:
    """S1 drawn as a body below L5 (label 26): deeper and wider than L5, no disc below."""
    return replace(last, label=SACRUM, height_mm=last.height_mm * 1.1,
                   depth_mm=last.depth_mm * 1.15, width_mm=last.width_mm * 1.2,
                   disc_below_mm=4.0)


def _grid(placed: List[Placed], spacing_ras: np.ndarray, margin_mm: float = 10.0) -> Grid:
    pts = np.concatenate([v.to_world(box_corners(vertebra_box(v.geom, v.d_above, v.d_below)))
                          for v in placed])
    lo, hi = pts.min(0) - margin_mm, pts.max(0) + margin_mm
    lo = np.floor(lo / spacing_ras) * spacing_ras          # grid aligned to multiples of spacing
    shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing_ras).astype(int) + 1)
    return Grid(shape, spacing_ras, lo)


def _background(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Soft tissue (~40 HU) with a gentle separable low-frequency variation, float32."""
    prof = []
    for n, sp in zip(grid.shape, grid.spacing):
        t = np.arange(n) * sp
        prof.append((6.0 * np.sin(2 * np.pi * t / rng.uniform(80, 160) + rng.uniform(0, 6.3)))
                    .astype(np.float32))
    return (HU["soft"] + prof[0][:, None, None] + prof[1][None, :, None]
            + prof[2][None, None, :]).astype(np.float32)


def render_case(seed: int, levels: Sequence = DEFAULT_LEVELS, spacing=(1.0, 1.0, 1.0),
                orientation: str = "RAS", fractures: FractureSpec = None,
                grade_mix: Sequence[float] = DEFAULT_GRADE_MIX,
                case_id: Optional[str] = None, slips: Optional[Dict] = None,
                sacrum: bool = False, anatomy: str = DEFAULT_ANATOMY) -> PhantomCase:
    """Render one case and its healthy twin.

    ``spacing``: mm per axis of the *output* array (in ``orientation`` order). ``fractures``:
    None (healthy), ``'random'`` (grades drawn from ``grade_mix`` per vertebra) or
    ``{level: (grade, morphology or None)}``. ``slips``: {level: percent of the lower body's
    depth, or (percent, 'degenerative' | 'isthmic')} (> 0 anterolisthesis of that level over the
    next one, in both twins: a slip is not a fracture; isthmic leaves the level's arch behind).
    ``sacrum``: draw S1 (label 26) below L5 (the last level must be L5). ``anatomy``:
    ``'realistic'`` (the default, ``phantom.shapes.DEFAULT_ANATOMY``: bodies with concave
    endplates and walls, rounded rims, sizes measured on a real mask, ribs at thoracic levels,
    osteoporotic to normal bone density) or ``'box'`` (the
    original phantom, kept so earlier numbers can be regenerated).
    Same arguments -> byte-identical arrays.
    """
    seed = int(seed)
    labels = _labels(levels)
    orient = check_orientation(orientation)
    sp, spacing_ras = _spacings(spacing, orient)
    rng_anat = np.random.default_rng([seed, 1])
    if anatomy not in ANATOMIES:
        raise UserError(f"anatomy must be one of {', '.join(ANATOMIES)}, got {anatomy!r}")
    geoms = level_geometry(labels, rng_anat, anatomy)
    if sacrum:
        if labels[-1] != 24:
            raise UserError("a sacrum needs L5 as the last level")
        geoms.append(sacrum_geometry(geoms[-1]))
    length = layout_levels(geoms)
    lumbar = [g for g in geoms if g.lumbar]
    s_junction = (lumbar[0].s_mm + lumbar[0].height_mm / 2) if lumbar else -50.0
    curve = make_curve(length, s_junction, rng_anat)
    rng_tex = np.random.default_rng([seed, 4])
    tile = texture_tile(rng_tex)
    offsets = [rng_tex.uniform(0, tile.shape[0], size=3) for _ in geoms]
    slip_mm, slip_kind = {}, {}
    for key, spec in (slips or {}).items():
        pct, kind = (spec, "degenerative") if np.isscalar(spec) else tuple(spec)
        if kind not in ("degenerative", "isthmic"):
            raise UserError(f"slip {key!r}: type must be degenerative or isthmic, got {kind!r}")
        lab = parse_level(key)
        slip_kind[lab] = kind
        if lab not in labels or lab == labels[-1] and not sacrum:
            raise UserError(f"slip level {key!r} needs a rendered level below it")
        below = geoms[labels.index(lab) + 1]
        slip_mm[lab] = float(pct) / 100.0 * below.depth_mm
    healthy_bodies = [Body(g.a, g.b, g.height_mm, g.exponent, waist=g.waist, endplate=g.endplate_mm,
                           rim=g.rim_mm, wall=g.wall_mm, wedge=g.wedge_mm) for g in geoms]
    plan = _fracture_plan(fractures, labels, seed, grade_mix)
    bodies = [plant(b, plan[g.label][1], plan[g.label][0]) if g.label in plan else b
              for g, b in zip(geoms, healthy_bodies)]
    density = float(np.random.default_rng([seed, 6]).uniform(*DENSITY_HU[anatomy]))   # trabecular HU
    isth = {l for l, k in slip_kind.items() if k == "isthmic"}
    healthy = _place(geoms, healthy_bodies, curve, offsets, density, slip_mm, isth)
    placed = _place(geoms, bodies, curve, offsets, density, slip_mm, isth)
    if sacrum:            # posterior walls of L5 and S1 in line (George's line), not centres
        for pl in (healthy, placed):
            pl[-1].centre = pl[-1].centre + (pl[-1].geom.b - pl[-2].geom.b) * pl[-1].rot[:, 1]
    grid = _grid(healthy, spacing_ras)
    rng_noise = np.random.default_rng([seed, 3])
    background = _background(grid, rng_noise)
    noise = rng_noise.standard_normal(grid.shape, dtype=np.float32) * np.float32(HU["noise"])
    ct_h, lab_h = render_arrays(grid, healthy, tile, background)
    ct_f, lab_f = render_arrays(grid, placed, tile, background) if plan else (ct_h, lab_h)
    affine = affine_from_spacing(spacing_ras, "RAS", grid.origin)

    def vol(arr, is_ct):
        a = np.clip(np.round(arr + noise), -1024, 3071).astype(np.float32) if is_ct else arr
        return Volume(a, affine).reorient(orient)
    ct, mask = vol(ct_f, True), vol(lab_f, False)
    hct, hmask = (vol(ct_h, True), vol(lab_h, False)) if plan else (ct, mask)
    cents = mask_centroids(mask.array)
    hcents = mask_centroids(hmask.array) if plan else cents
    truth = _truth(case_id, seed, sp, orient, labels, healthy, placed, mask)
    truth["trabecular_hu"] = round(density, 1)
    truth["anatomy"] = anatomy
    if slip_mm:
        truth["slips"] = {LEVEL_NAMES[l]: {
            "percent_of_lower_depth": round(100.0 * slip_mm[l] / geoms[labels.index(l) + 1].depth_mm, 3),
            "mm": round(slip_mm[l], 3), "type": slip_kind[l]} for l in slip_mm}
    if sacrum:
        truth["sacrum"] = SACRUM
    return PhantomCase(ct, mask, hct, hmask, cents, truth, hcents)


def mask_centroids(mask: np.ndarray) -> Dict[int, np.ndarray]:
    """Mean voxel index of every non-zero label (same values as
    :func:`data.centroids.centroids_from_mask`, computed per bounding box: much faster)."""
    from scipy import ndimage
    out = {}
    for i, sl in enumerate(ndimage.find_objects(mask)):
        if sl is None:
            continue
        m = mask[sl] == i + 1
        n = m.sum()
        out[i + 1] = np.array([s.start + (m.sum(axis=tuple(a for a in range(3) if a != ax))
                                          * np.arange(m.shape[ax])).sum() / n
                               for ax, s in enumerate(sl)], dtype=np.float64)
    return out


def _truth(case_id, seed, sp, orient, labels, healthy, placed, mask: Volume) -> dict:
    verts = {}
    for h, v in zip(healthy, placed):
        if v.geom.label not in LEVEL_NAMES:
            continue                            # the sacrum: not a graded vertebra
        t = fracture_truth(h.body, v.body)
        top, bot = v.body.surfaces(np.zeros(1), np.zeros(1))
        ctr = v.to_world(np.array([[0.0, 0.0, float(top[0] + bot[0]) / 2]]))
        hctr = h.to_world(np.zeros((1, 3)))
        verts[str(v.geom.label)] = {
            "level": LEVEL_NAMES[v.geom.label], **t,
            "body_centroid_vox": [round(float(c), 3) for c in mask.world_to_voxel(ctr)[0]],
            "healthy_body_centroid_vox": [round(float(c), 3)
                                          for c in mask.world_to_voxel(hctr)[0]],
            "si_axis_world": [round(float(c), 6) for c in v.rot[:, 2]],
            "ap_axis_world": [round(float(c), 6) for c in v.rot[:, 1]],
            "body_size_mm": {"height": round(v.geom.height_mm, 3),
                             "depth": round(v.geom.depth_mm, 3),
                             "width": round(v.geom.width_mm, 3)},
            "collapse_shift_mm": round(v.body.shift_mm, 3),
            "shift_mm": round(v.geom.shift_mm, 3)}
    return {"case": case_id, "seed": seed, "spacing_mm": [float(s) for s in sp],
            "orientation": orient, "levels": [LEVEL_NAMES[l] for l in labels],
            "fracture_model": "uniform collapse shifts the caudal spine cranially; endplate "
                              "depressions are filled by the adjacent disc",
            "vertebrae": verts}


def write_case(case: PhantomCase, root, case_id: str):
    """Write ``case`` under ``<root>/raw/<case_id>/`` (the raw cohort layout, layout/raw.py), plus
    ``<case>_healthy.json``: the healthy twin's centroids (levels caudal to a fracture sit lower
    in the twin, so ``<case>.json`` does not fit it)."""
    from layout.raw import case_paths
    p = case_paths(root, case_id)
    save_nifti(case.ct, p["ct"], dtype=np.int16)
    save_nifti(case.mask, p["mask"], dtype=np.uint8)
    save_nifti(case.healthy_ct, p["healthy_ct"], dtype=np.int16)
    save_nifti(case.healthy_mask, p["healthy_mask"], dtype=np.uint8)
    write_centroids(p["centroids"], case.centroids)
    hc = case.healthy_centroids if case.healthy_centroids is not None else \
        mask_centroids(np.asarray(case.healthy_mask.array))
    write_centroids(p["healthy_centroids"], hc)     # the twin's (caudal levels differ)
    write_json(p["truth"], {**case.truth, "case": case_id})
    return p["dir"]
