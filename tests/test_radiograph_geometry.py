"""radiograph.geometry on analytic shapes: exact heights, known slips and grades, the
retrolisthesis sign, and invariance to rotating, translating and mirroring the image."""
from __future__ import annotations

import numpy as np
import pytest

from radiograph.geometry import (S1, heights, intervertebral_angle, measure_spine,
                                 meyerding_grade, sagittal_displacement, slip)


def body(x0, y0, depth=40.0, ha=25.0, hp=25.0, hm=None, anterior=-1):
    """A body whose posterior wall is at x0 and whose anterior side is toward ``anterior``·x;
    y grows caudally (image rows); superior endplate at y0 (posterior)."""
    hm = (ha + hp) / 2 if hm is None else hm
    xa, xm = x0 + anterior * depth, x0 + anterior * depth / 2
    return {"sp": (x0, y0), "ip": (x0, y0 + hp),
            "sa": (xa, y0 + (hp - ha) / 2), "ia": (xa, y0 + (hp + ha) / 2),
            "sm": (xm, y0 + (hp - hm) / 2), "im": (xm, y0 + (hp + hm) / 2)}


def transform(points, angle_deg=0.0, shift=(0.0, 0.0), mirror=False):
    t = np.radians(angle_deg)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    out = {}
    for k, v in points.items():
        p = np.asarray(v, float) * ([-1.0, 1.0] if mirror else [1.0, 1.0])
        out[k] = r @ p + shift
    return out


def test_heights_of_rectangle_and_trapezoid():
    assert np.allclose(heights(body(0, 0)), [25, 25, 25])
    assert np.allclose(heights(body(0, 0, ha=15, hp=25)), [15, 20, 25])
    assert np.allclose(heights(body(0, 0, ha=25, hp=25, hm=16)), [25, 16, 25])


@pytest.mark.parametrize("pct, grade", [(0.0, 0), (24.9, 1), (25.1, 2), (60.0, 3),
                                        (80.0, 4), (110.0, 5)])
def test_known_slips_and_meyerding(pct, grade):
    lower = body(0.0, 60.0, depth=40.0)
    upper = body(-pct / 100 * 40.0, 25.0, depth=40.0)   # moved anteriorly (−x) by pct of 40 mm
    s = slip(upper, lower)
    assert s["slip_pct"] == pytest.approx(pct, abs=1e-9)
    assert s["slip_mm"] == pytest.approx(pct * 0.4, abs=1e-9)
    assert s["meyerding"] == grade
    assert meyerding_grade(pct) == grade


def test_boundaries_are_inclusive_lower_bounds():
    assert [meyerding_grade(p) for p in (25.0, 50.0, 75.0, 100.0, 100.0001)] == [2, 3, 4, 4, 5]


def test_retrolisthesis_sign():
    lower = body(0.0, 60.0)
    upper = body(+6.0, 25.0)                    # moved posteriorly (+x)
    s = slip(upper, lower)
    assert s["slip_mm"] == pytest.approx(-6.0)
    assert s["direction"] == "retro" and s["meyerding"] == 0
    assert sagittal_displacement(upper, lower) == pytest.approx(-6.0)


@pytest.mark.parametrize("angle, mirror", [(0, False), (33, False), (-71, True), (180, True)])
def test_invariance_to_rotation_and_flip(angle, mirror):
    lower = body(0.0, 60.0, ha=28, hp=24)
    upper = body(-12.0, 22.0, ha=18, hp=26, hm=20)
    ref = slip(upper, lower), heights(upper), intervertebral_angle(upper, lower)
    u2 = transform(upper, angle, (13.0, -7.0), mirror)
    l2 = transform(lower, angle, (13.0, -7.0), mirror)
    got = slip(u2, l2), heights(u2), intervertebral_angle(u2, l2)
    for k in ("slip_mm", "slip_pct", "displacement_mm", "angle_deg", "meyerding"):
        assert got[0][k] == pytest.approx(ref[0][k], abs=1e-9), k
    assert np.allclose(got[1], ref[1])
    assert got[2] == pytest.approx(ref[2], abs=1e-9)


def test_angle_sign_lordotic_positive():
    lower = body(0.0, 60.0)
    upper = body(0.0, 20.0)
    upper["ia"] = (upper["ia"][0], upper["ia"][1] - 6.0)   # disc taller anteriorly
    assert intervertebral_angle(upper, lower) > 0
    upper["ia"] = (upper["ia"][0], upper["ia"][1] + 12.0)
    assert intervertebral_angle(upper, lower) < 0


def test_measure_spine_grades_and_pairs_only_neighbours():
    pts = {20: body(0, 0), 21: body(0, 35, ha=16, hp=25), 22: body(0, 70),
           24: body(0, 140), S1: {"sa": (-40.0, 175.0), "sp": (0.0, 175.0)}}
    out = measure_spine(pts)
    rows = {r["label"]: r for r in out["vertebrae"]}
    assert rows[21]["genant_grade"] == 2 and rows[21]["genant_type"] == "wedge"   # 1 − 16/25
    assert rows[20]["genant_grade"] == 0
    pairs = [(s["upper"], s["lower"]) for s in out["slips"]]
    assert pairs == [(20, 21), (21, 22), (24, S1)]          # no 22 -> 24 across the missing L4
    hidden = measure_spine(pts, visible={20: True, 21: False, 22: True, 24: True, S1: True})
    assert 21 not in {r["label"] for r in hidden["vertebrae"]}
