"""The realistic phantom anatomy (``anatomy='realistic'``, issue #15): concave endplates and
anterior wall, rounded rims, lateral waist, physiological wedge, ribs at thoracic levels and a
wider bone-density range; the box phantom stays as it was."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from phantom.case import render_case
from phantom.fracture import Body, fracture_truth, plant
from phantom.shapes import DEFAULT_ANATOMY, level_geometry
from tests.test_phantom import _check_heights

LEVELS = ("T10", "T11", "T12", "L1", "L2")
FRACTURES = {"T12": (2, "biconcave"), "L1": (3, "wedge"), "L2": (1, "crush")}


@pytest.fixture(scope="module")
def real_case():
    return render_case(7, levels=LEVELS, fractures=FRACTURES, anatomy="realistic")


def _body(**terms):
    return Body(a=20.0, b=15.0, height=24.0, p=2.5, **terms)


def test_shape_terms_change_the_body_where_they_should():
    box = _body()
    real = _body(endplate=1.5, rim=2.0, wall=2.0, waist=0.1, wedge=2.0)
    assert not box.realistic and real.realistic
    inside = lambda body, x, y, z: float(body.depth(np.float32(x), np.float32(y), np.float32(z))[0]) > 0
    # concave endplate: 1.5 mm below the rim plane at the centre, nothing removed at the rim
    top_c, _ = real.surfaces(np.zeros(1), np.zeros(1))
    assert top_c[0] == pytest.approx(12.0 - 1.5, abs=1e-4)
    assert inside(box, 0, 0, 11.5) and not inside(real, 0, 0, 11.5)
    # concave anterior wall: a point 1.5 mm inside the anterior wall at mid-height is outside,
    # the same point near the endplate inside; the posterior wall is straight
    assert inside(box, 0, 13.5, 0) and not inside(real, 0, 13.5, 0) and inside(real, 0, 13.5, 9.0)
    assert inside(real, 0, -13.5, 0)
    # rounded rim: the square corner is cut
    assert inside(box, 0, -14.7, 11.7) and not inside(real, 0, -14.7, 11.7)
    # lateral waist at mid-height
    assert inside(box, 19.0, 0, 0) and not inside(real, 19.0, 0, 0)
    # physiological wedge: the posterior wall is taller than the anterior
    h = real.thirds_heights()
    assert h["posterior"] > h["anterior"] + 0.5
    assert h["middle"] < max(h["anterior"], h["posterior"])


def test_planting_hits_the_requested_loss_on_realistic_bodies():
    body = _body(endplate=1.5, rim=2.0, wall=2.5, waist=0.1, wedge=1.5)
    for morph, loss, third in (("wedge", 0.5, "anterior"), ("biconcave", 0.3, "middle"),
                               ("crush", 0.22, None)):
        t = fracture_truth(body, plant(body, morph, loss))
        worst = max(t["height_loss"].values())
        assert worst == pytest.approx(loss, abs=0.005), (morph, t["height_loss"])
        if third:
            assert max(t["height_loss"], key=t["height_loss"].get) == third


def test_box_anatomy_keeps_the_original_geometry():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    box = level_geometry([17, 18, 20], rng_a, "box")
    assert all(g.endplate_mm == g.rim_mm == g.wall_mm == g.waist == g.wedge_mm == 0 and not g.ribs
               for g in box)
    assert [g.height_mm for g in level_geometry([17, 18, 20], rng_b, "box")] == \
        [g.height_mm for g in box]
    assert [g.ribs for g in level_geometry([17, 18, 20], np.random.default_rng(3))] == \
        [True, True, False]                               # realistic is the default
    real = level_geometry([17, 18, 20], np.random.default_rng(3), "realistic")
    assert [g.ribs for g in real] == [True, True, False]
    assert all(g.endplate_mm > 0 and g.rim_mm > 0 and g.wall_mm > 0 for g in real)
    with pytest.raises(ValueError):
        level_geometry([17], np.random.default_rng(0), "boxy")
    c = render_case(2, levels=("L1", "L2"), anatomy="box")
    assert c.truth["anatomy"] == "box" and 165 <= c.truth["trabecular_hu"] <= 235
    assert render_case(2, levels=("L1", "L2")).truth["anatomy"] == DEFAULT_ANATOMY == "realistic"


def test_realistic_heights_measured_on_the_mask(real_case):
    """The truth heights (column counts kept by the project's rule) against an independent
    measurement: runs of the label along SI lines through the rendered mask."""
    c = real_case
    assert c.truth["anatomy"] == "realistic"
    for lab, v in c.truth["vertebrae"].items():
        v = {**v, "_label": lab}
        _check_heights(c.mask, v, "heights_mm", "body_centroid_vox", tol=1.0)
        _check_heights(c.healthy_mask, v, "healthy_heights_mm", "healthy_body_centroid_vox", tol=1.0)
    grades = {v["level"]: v["grade"] for v in c.truth["vertebrae"].values()}
    assert grades == {"T10": 0, "T11": 0, "T12": 2, "L1": 3, "L2": 1}


def test_each_label_is_one_piece(real_case):
    for m in (real_case.mask.array, real_case.healthy_mask.array):
        for lab in np.unique(m[m > 0]):
            n = ndimage.label(m == lab, np.ones((3, 3, 3), bool))[1]
            assert n == 1, (int(lab), n)


def test_ribs_are_bone_outside_the_label_map(real_case):
    """Thoracic levels carry ribs: bone HU, label 0, lateral to the vertebra; lumbar levels and
    the box phantom have none."""
    ct, m = real_case.healthy_ct.array, real_case.healthy_mask.array
    bone_unlabelled = (ct > 350) & (m == 0)
    for lab, expect in ((18, True), (21, False)):        # T11 has ribs, L2 none
        z = np.argwhere(m == lab)[:, 2]
        sl = bone_unlabelled[:, :, z.min():z.max() + 1]
        n = ndimage.label(sl)[1]
        sizes = ndimage.sum(sl, ndimage.label(sl)[0], range(1, n + 1)) if n else np.zeros(0)
        assert bool(sizes.max(initial=0) > 200) is expect, (lab, sizes.max(initial=0))
    box = render_case(7, levels=LEVELS, anatomy="box")
    assert not (((box.healthy_ct.array > 350) & (box.healthy_mask.array == 0)).sum() > 200)


def test_density_spans_osteoporotic_bone():
    hu = [render_case(s, levels=("L1", "L2"), anatomy="realistic").truth["trabecular_hu"]
          for s in range(6)]
    assert min(hu) >= 70 and max(hu) <= 230
    assert min(hu) < 120          # the box phantom never goes below 165


def test_measure_anatomy_sees_the_shape_terms(real_case, tmp_path):
    """scripts/measure_anatomy.py (the measurement the shape ranges came from) finds a concave
    anterior wall, a waist and a middle third shorter than the walls on the realistic phantom,
    and none of them on the box phantom."""
    import importlib.util
    from pathlib import Path
    from data.io import save_nifti
    spec = importlib.util.spec_from_file_location(
        "measure_anatomy", Path(__file__).parents[1] / "scripts" / "measure_anatomy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    box = render_case(7, levels=LEVELS, anatomy="box")
    out = {}
    for name, vol in (("realistic", real_case.healthy_mask), ("box", box.healthy_mask)):
        path = tmp_path / f"{name}.nii.gz"
        save_nifti(vol, path, dtype=np.uint8)
        assert mod.main([str(path), "--output", str(tmp_path / f"{name}.csv")]) == 0
        import pandas as pd
        out[name] = pd.read_csv(tmp_path / f"{name}.csv").set_index("level").loc[["T11", "T12", "L1"]]
    real, flat = out["realistic"], out["box"]
    assert (real["anterior_wall_concavity_mm"] > 0.4).all() and (flat["anterior_wall_concavity_mm"].abs() < 0.6).all()
    assert (real["lr_waist_mm"] > 1.0).all() and (flat["lr_waist_mm"].abs() < 1.1).all()
    assert (real["middle_over_ap_mean"] < 0.99).all() and (flat["middle_over_ap_mean"] > 0.985).all()
