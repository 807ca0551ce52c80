"""Vertebral morphometry from 2D points on a lateral radiograph (pure numpy).

Six points per vertebral body, named (never sorted slots): superior-anterior ``sa``, superior-mid
``sm``, superior-posterior ``sp``, inferior-anterior ``ia``, inferior-mid ``im``,
inferior-posterior ``ip``. S1 has ``sa`` and ``sp`` only. Points are (x, y) in mm (image pixels
× pixel spacing at the detector, or at the spine after dividing by the magnification).

Rules (docs/RADIOGRAPH.md, ../shared/spec/RADIOGRAPH.md):

* heights Ha = |sa − ia|, Hm = |sm − im|, Hp = |sp − ip|; Genant from the heights through the CT
  side's own rule (:func:`evaluation.morphometry.grade_vertebra`: wedge 1 − Ha/Hp, biconcave
  1 − Hm/Hp, crush against the neighbours' expected heights; :func:`spine.anatomy.genant_grade`).
* slip of an upper vertebra U over the lower one L: u = (sa_L − sp_L)/|sa_L − sp_L|,
  slip_mm = (ip_U − sp_L)·u (> 0 anterolisthesis, < 0 retrolisthesis),
  slip % = 100 · slip_mm / |sa_L − sp_L|.
* Meyerding from |slip %|: 0 none (0 %), I (0, 25), II [25, 50), III [50, 75), IV [75, 100],
  V > 100 (spondyloptosis); lower bounds inclusive as Genant's, compared after rounding to 1e-9.
* sagittal displacement: distance from ip_U to the lower posterior wall line sp_L–ip_L,
  > 0 anterior; intervertebral angle between the upper inferior endplate (ia_U − ip_U) and the
  lower superior endplate (sa_L − sp_L), > 0 when the disc opens anteriorly (lordotic).

Every quantity is invariant to rotating, translating and mirroring the image: "anterior" is
carried by the names of the points, never by the image's x direction.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from evaluation.morphometry import expected_heights, grade_vertebra
from spine.anatomy import neighbour_list, neighbours, order_labels

BODY_POINTS = ("sa", "sm", "sp", "ia", "im", "ip")
S1_POINTS = ("sa", "sp")
S1 = 26                                   # VerSe id of the sacrum (its first segment, S1)
MEYERDING = (0.0, 25.0, 50.0, 75.0, 100.0)   # lower bounds of grades I..V (percent)
MEYERDING_NAMES = ("none", "I", "II", "III", "IV", "V")
_DECIMALS = 9
INSTABILITY_MM, INSTABILITY_DEG = 3.0, 12.0   # LSLD-Net / White & Panjabi thresholds

Points = Mapping[str, Sequence[float]]


def _p(points: Points, name: str) -> np.ndarray:
    v = np.asarray(points[name], dtype=float)
    if v.shape != (2,):
        raise ValueError(f"point {name!r} must be (x, y), got shape {v.shape}")
    return v


def heights(points: Points) -> np.ndarray:
    """[Ha, Hm, Hp] of one body (NaN where a point is missing)."""
    out = []
    for top, bot in (("sa", "ia"), ("sm", "im"), ("sp", "ip")):
        if top in points and bot in points:
            out.append(float(np.linalg.norm(_p(points, top) - _p(points, bot))))
        else:
            out.append(np.nan)
    return np.asarray(out)


def meyerding_grade(slip_pct: float) -> int:
    """0 (no slip) .. 5 (V) from the slip percentage's magnitude."""
    s = round(abs(float(slip_pct)), _DECIMALS)
    if s <= 0.0:
        return 0
    if s > MEYERDING[-1]:
        return 5
    return int(sum(s >= b for b in MEYERDING[1:4])) + 1


def slip(upper: Points, lower: Points) -> Dict[str, float]:
    """Slip of ``upper`` over ``lower`` (lower may be S1: it needs ``sa`` and ``sp`` only)."""
    sa_l, sp_l, ip_u = _p(lower, "sa"), _p(lower, "sp"), _p(upper, "ip")
    depth = float(np.linalg.norm(sa_l - sp_l))
    if depth <= 0:
        raise ValueError("lower endplate has zero length (sa == sp)")
    u = (sa_l - sp_l) / depth
    mm = float(np.dot(ip_u - sp_l, u))
    pct = 100.0 * mm / depth
    grade = meyerding_grade(pct)
    out = {"slip_mm": mm, "slip_pct": pct, "endplate_mm": depth,
           "direction": "antero" if mm > 0 and grade else ("retro" if mm < 0 and grade else "none"),
           "meyerding": grade if mm >= 0 else 0, "meyerding_name": MEYERDING_NAMES[grade if mm >= 0 else 0]}
    if "ip" in lower:
        out["displacement_mm"] = sagittal_displacement(upper, lower)
    if "ia" in upper:
        out["angle_deg"] = intervertebral_angle(upper, lower)
    if "displacement_mm" in out and "angle_deg" in out:
        out["unstable_hint"] = bool(abs(out["displacement_mm"]) > INSTABILITY_MM)
    return out


def sagittal_displacement(upper: Points, lower: Points) -> float:
    """Signed distance (mm) from ip_U to the line sp_L–ip_L, > 0 anterior of the wall."""
    sp_l, ip_l, sa_l, ip_u = _p(lower, "sp"), _p(lower, "ip"), _p(lower, "sa"), _p(upper, "ip")
    wall = sp_l - ip_l
    n = np.array([-wall[1], wall[0]]) / np.linalg.norm(wall)
    if np.dot(sa_l - sp_l, n) < 0:           # the normal points anteriorly
        n = -n
    return float(np.dot(ip_u - sp_l, n))


def intervertebral_angle(upper: Points, lower: Points) -> float:
    """Angle (degrees) between the upper inferior and the lower superior endplates, > 0 when
    the disc is taller anteriorly than posteriorly."""
    a = _p(upper, "ia") - _p(upper, "ip")
    b = _p(lower, "sa") - _p(lower, "sp")
    cosang = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    ang = float(np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0))))
    front = np.linalg.norm(_p(upper, "ia") - _p(lower, "sa"))
    back = np.linalg.norm(_p(upper, "ip") - _p(lower, "sp"))
    return ang if front >= back else -ang


def measure_spine(points_by_level: Mapping[int, Points],
                  visible: Optional[Mapping[int, bool]] = None) -> Dict[str, list]:
    """Heights and Genant grades of every body, slips of every adjacent pair.

    ``points_by_level``: {VerSe id: {point name: (x, y) mm}}; S1 (26) takes part in slips only.
    Levels marked not visible are skipped (never graded, never a neighbour reference).
    Returns {'vertebrae': [rows], 'slips': [rows]}.
    """
    vis = {k: True for k in points_by_level} if visible is None else dict(visible)
    levels = [l for l in order_labels(points_by_level) if vis.get(l, False)]
    h = {l: heights(points_by_level[l]) for l in levels if l != S1}
    rows = []
    present = set(h)
    for l in levels:
        if l == S1:
            continue
        neigh = {n: h[n] for n in neighbour_list(l, present) if n in h}
        g = grade_vertebra(h[l], expected_heights(neigh) if neigh else None)
        rows.append({"label": l, "ha_mm": h[l][0], "hm_mm": h[l][1], "hp_mm": h[l][2],
                     "genant_grade": g["morph_grade"], "genant_loss": g["morph_loss"],
                     "genant_type": g["morph_type"], "wedge": g["wedge"],
                     "biconcave": g["biconcave"], "crush": g["crush"]})
    slips = []
    for up, lo in zip(levels, levels[1:]):
        if up == S1 or lo != (neighbours(up, present)[1] or S1):
            continue                         # not anatomical neighbours (a level is missing)
        try:
            slips.append({"upper": up, "lower": lo, **slip(points_by_level[up], points_by_level[lo])})
        except (KeyError, ValueError):
            continue
    return {"vertebrae": rows, "slips": slips}
