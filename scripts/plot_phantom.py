#!/usr/bin/env python
"""Overview figure of one phantom case: curved mid-sagittal and mid-coronal views (following the
spine through the body centres), fractured case beside its healthy twin, labels in colour.

    python scripts/plot_phantom.py --case_dir ROOT/raw/phantom_000 --output overview.png
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np


from data.intensity import HU_WINDOW
from data.io import check_same_grid, load_ct, load_label
from spine.anatomy import level_name
from utils.errors import UserError, run_cli
from utils.fileio import read_json

log = logging.getLogger("plot_phantom")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case_dir", required=True, help="a phantom case folder <root>/raw/<case>")
    p.add_argument("--output", required=True, help="PNG file to write")
    p.add_argument("--dpi", type=int, default=110, help="figure resolution (default 110)")
    return p


def _load(case_dir: Path):
    name = case_dir.name
    files = {k: case_dir / f"{name}{suf}" for k, suf in
             [("ct", ".nii.gz"), ("msk", "_msk.nii.gz"), ("hct", "_healthy.nii.gz"),
              ("hmsk", "_healthy_msk.nii.gz"), ("truth", "_truth.json")]}
    for p in files.values():
        if not p.is_file():
            raise UserError("missing phantom file (is this a <root>/raw/<case> folder?)", p)
    vols = {k: (load_label(p) if "msk" in k else load_ct(p)) for k, p in files.items() if k != "truth"}
    check_same_grid(vols["ct"], vols["msk"])
    check_same_grid(vols["hct"], vols["hmsk"])
    truth = read_json(files["truth"])
    ref = vols["msk"]
    world = [{int(l): ref.voxel_to_world(np.asarray(v[key]))[0]
              for l, v in truth.get("vertebrae", {}).items()}
             for key in ("body_centroid_vox", "healthy_body_centroid_vox")]
    return {k: v.canonical() for k, v in vols.items()}, truth, world


def _curve(vol, world: dict):
    """RAS voxel x(z), y(z) of the body-centre curve for every axial slice z."""
    pts = np.array([vol.world_to_voxel(w[None])[0] for _, w in sorted(world.items())])
    order = np.argsort(pts[:, 2])
    z = np.arange(vol.shape[2])
    xs = np.interp(z, pts[order, 2], pts[order, 0])
    ys = np.interp(z, pts[order, 2], pts[order, 1])
    return np.clip(np.round(xs).astype(int), 0, vol.shape[0] - 1), \
        np.clip(np.round(ys).astype(int), 0, vol.shape[1] - 1)


def _views(vols, key_ct, key_msk, xs, ys):
    z = np.arange(vols[key_ct].shape[2])
    out = {}
    for name, take in (("sagittal", lambda a: a[xs, :, z]), ("coronal", lambda a: a[:, ys, z].T)):
        out[name] = (take(vols[key_ct].array), take(vols[key_msk].array))   # (z, y) / (z, x)
    return out


def _panel(ax, ct2d, msk2d, extent, title, cents=None):
    import matplotlib.pyplot as plt
    ax.imshow(ct2d, cmap="gray", vmin=HU_WINDOW[0], vmax=HU_WINDOW[1], extent=extent,
              origin="lower", interpolation="nearest")
    lab = np.ma.masked_equal(msk2d.astype(float), 0)
    ax.imshow(lab % 20, cmap=plt.get_cmap("tab20"), vmin=0, vmax=19, alpha=0.35, extent=extent,
              origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for l, (u, v) in (cents or {}).items():
        ax.text(u, v, level_name(l), color="yellow", fontsize=8, ha="center",
                va="center", fontweight="bold")


def _top_row(axes, vols, world, xs, ys):
    """Curved sagittal and coronal views, fractured and healthy twin."""
    sp = vols["ct"].spacing
    for col, (kct, kmsk, who) in enumerate([("ct", "msk", "fractured"), ("hct", "hmsk", "healthy twin")]):
        views = _views(vols, kct, kmsk, xs, ys)
        nz = vols[kct].shape[2] * sp[2]
        # sagittal: anterior (+y) on the left; coronal: patient right (+x) on the left
        sag_ct, sag_m = (a[:, ::-1] for a in views["sagittal"])
        ny = vols[kct].shape[1]
        vox = {l: vols["ct"].world_to_voxel(w[None])[0] for l, w in world[col].items()}
        cents = {l: ((ny - 1 - v[1]) * sp[1], v[2] * sp[2]) for l, v in vox.items()}
        _panel(axes[col], sag_ct, sag_m, [0, ny * sp[1], 0, nz],
               f"sagittal (curved), {who}\nanterior left", cents)
        cor_ct, cor_m = (a[:, ::-1] for a in views["coronal"])
        _panel(axes[2 + col], cor_ct, cor_m, [0, vols[kct].shape[0] * sp[0], 0, nz],
               f"coronal (curved), {who}\npatient right left")


def _oblique(vol, centre_w, lr, ap, half_mm: float, order: int):
    """Slice of ``vol`` in the plane through ``centre_w`` spanned by ``lr`` and ``ap`` (1 mm
    samples): rows = AP (posterior first), columns = LR (patient right first)."""
    from scipy import ndimage
    u = np.arange(-half_mm, half_mm + 1.0)
    v = np.arange(-1.3 * half_mm, 0.7 * half_mm + 1.0)
    pts = centre_w + (-u[None, :, None]) * lr + v[:, None, None] * ap     # (nv, nu, 3)
    idx = vol.world_to_voxel(pts.reshape(-1, 3)).T
    arr = np.asarray(vol.array, np.float32)
    out = ndimage.map_coordinates(arr, idx, order=order, mode="constant", cval=float(arr.min()))
    return out.reshape(len(v), len(u)), [-half_mm, half_mm, -1.3 * half_mm, 0.7 * half_mm]


def _axial_row(axes, vols, world, truth, label: int, half_mm: float = 60.0):
    """Slices perpendicular to ``label``'s SI axis through its body centre and its pedicles
    (0.12 H above), both twins; anterior up, patient right on the left."""
    v = truth["vertebrae"][str(label)]
    si, ap = np.array(v["si_axis_world"]), np.array(v["ap_axis_world"])
    lr = np.cross(ap, si)                                   # patient right (+x in RAS)
    for col, (kct, kmsk, who) in enumerate([("ct", "msk", "fractured"), ("hct", "hmsk", "healthy")]):
        for k, (dz, where) in enumerate([(0.0, "body centre"), (0.12, "pedicles")]):
            c = world[col][label] + dz * v["body_size_mm"]["height"] * si
            ct2d, ext = _oblique(vols[kct], c, lr, ap, half_mm, order=1)
            m2d, _ = _oblique(vols[kmsk], c, lr, ap, half_mm, order=0)
            _panel(axes[2 * k + col], ct2d, m2d, ext,
                   f"{v['level']} {where}, {who}\n(vertebra's axial plane, anterior up)")


def plot_case(case_dir, output, dpi: int = 110) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    case_dir = Path(case_dir)
    vols, truth, world = _load(case_dir)
    xs, ys = _curve(vols["ct"], world[1])    # the curve is the same in both twins
    fig, axes = plt.subplots(2, 4, figsize=(13, 11), gridspec_kw={"height_ratios": [3, 1.3]})
    _top_row(axes[0], vols, world, xs, ys)
    fr = {l: v for l, v in truth["vertebrae"].items() if v.get("grade", 0) > 0}
    labels = sorted(int(l) for l in truth["vertebrae"])
    worst = max(fr, key=lambda l: max(fr[l]["height_loss"].values())) if fr else labels[len(labels) // 2]
    _axial_row(axes[1], vols, world, truth, int(worst))
    desc = ", ".join(f"{v['level']}: grade {v['grade']} {v['morphology']} "
                     f"(A/M/P loss {v['height_loss']['anterior']:.2f}/{v['height_loss']['middle']:.2f}/"
                     f"{v['height_loss']['posterior']:.2f})" for v in fr.values()) or "no fracture"
    fig.suptitle(f"{case_dir.name}  [{truth.get('orientation')} {truth.get('spacing_mm')} mm]  {desc}",
                 fontsize=9)
    fig.tight_layout()
    out = Path(output)
    from utils.fileio import atomic_path
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = plot_case(args.case_dir, args.output, args.dpi)
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_cli(main)
