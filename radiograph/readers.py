"""Readers for public lateral-radiograph landmark datasets, into this package's named points
(``{label: {'sa', 'sp', 'ia', 'ip': (x, y)}}``, S1 ``sa sp``).

* **Spondylolisthesis Vertebral Landmark Dataset** (Mendeley Data, doi 10.17632/5jdfdgp762.1,
  CC BY 4.0): one JSON per image in Keypoint-RCNN form, ``boxes`` [N, 4] (x1, y1, x2, y2),
  ``keypoints`` [N, 4, 3] (x, y, visibility), optional ``labels``. The 4 corners of a vertebra
  are in image order: top-left, top-right, bottom-left, bottom-right. Vertebrae carry no level
  name: they are sorted top to bottom and named upward from the lowest, which is S1 unless
  ``--lowest`` says otherwise (the dataset covers L3-S1 on most films).
* **BUU-LSPINE** (Klinwichit et al., Appl. Sci. 2023): one CSV per lateral film, one row per
  endplate line ``x1, y1, x2, y2`` (a header row is allowed), top to bottom: L1 superior, L1
  inferior, ..., L5 inferior, S1 superior (11 rows).

Which side is anterior is never assumed from the image: it is read from S1 (its superior
endplate slopes down anteriorly on a standing lateral film: sacral slope), else from the
lordosis (the lumbar vertebrae's centres bulge anteriorly of the line through the end ones),
else ``anterior`` must be given ('left' or 'right'). Every problem is a one-line UserError naming
the file.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from radiograph.geometry import S1
from spine.anatomy import LEVEL_IDS
from utils.errors import UserError

Corners = Dict[str, np.ndarray]        # 'tl', 'tr', 'bl', 'br' in image terms


def anterior_side(vertebrae: Sequence[Corners], has_s1: bool, path=None,
                  anterior: Optional[str] = None) -> str:
    """'left' or 'right': where the anterior side of the bodies faces on the image."""
    if anterior in ("left", "right"):
        return anterior
    if anterior is not None:
        raise UserError(f"anterior must be 'left' or 'right', got {anterior!r}", path)
    if has_s1:
        s1 = vertebrae[-1]
        tl, tr = s1["tl"], s1["tr"]
        if abs(tl[1] - tr[1]) > 0.05 * np.linalg.norm(tl - tr):
            return "left" if tl[1] > tr[1] else "right"     # the lower superior corner is anterior
    lumbar = vertebrae[:-1] if has_s1 else vertebrae
    if len(lumbar) >= 3:
        c = np.array([np.mean(list(v.values()), axis=0) for v in lumbar])
        a, b = c[0], c[-1]
        d = b - a
        n = np.array([d[1], -d[0]]) / np.linalg.norm(d)   # points to image-right for a top-down spine
        bulge = (c[1:-1] - a) @ n
        if np.abs(bulge).max() > 2.0:
            return "right" if bulge.mean() > 0 else "left"
    raise UserError("cannot tell which side is anterior (no S1 slope, no lordosis): give "
                    "anterior='left' or 'right'", path)


def named_points(vertebrae: Sequence[Corners], labels: Sequence[int], side: str):
    """Corners in image terms -> ``{label: {'sa', 'sp', 'ia', 'ip'}}``."""
    a, p = ("l", "r") if side == "left" else ("r", "l")
    out = {}
    for v, lab in zip(vertebrae, labels):
        pts = {"sa": v["t" + a], "sp": v["t" + p]}
        if lab != S1:
            pts.update({"ia": v["b" + a], "ip": v["b" + p]})
        out[lab] = {k: np.asarray(x, float) for k, x in pts.items()}
    return out


def _labels_upward(n: int, lowest: str, path) -> List[int]:
    low = S1 if lowest.upper() == "S1" else LEVEL_IDS.get(lowest.upper())
    if low is None:
        raise UserError(f"unknown lowest level {lowest!r}", path)
    seq = list(range(1, 25)) + [S1]
    i = seq.index(low)
    if i + 1 < n:
        raise UserError(f"{n} vertebrae do not fit above {lowest}", path)
    return seq[i + 1 - n:i + 1]


def read_keypoint_json(path, lowest: str = "S1", anterior: Optional[str] = None):
    """(points {label: {name: (x, y)}}, visible {label: bool}) of one Mendeley JSON file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read JSON ({exc.__class__.__name__})", p) from exc
    kp = np.asarray(d.get("keypoints", []), dtype=float) if isinstance(d, dict) else np.zeros(0)
    if kp.ndim != 3 or kp.shape[1:] != (4, 3) or len(kp) == 0:
        raise UserError(f"'keypoints' must be [N, 4, 3] (x, y, visibility), got shape {kp.shape}", p)
    verts = []
    for k in kp:
        # corners may come in any order: sort into top/bottom by y, then left/right by x
        idx = np.argsort(k[:, 1])
        top, bot = k[idx[:2]], k[idx[2:]]
        top, bot = top[np.argsort(top[:, 0])], bot[np.argsort(bot[:, 0])]
        verts.append({"tl": top[0, :2], "tr": top[1, :2], "bl": bot[0, :2], "br": bot[1, :2],
                      "_vis": bool(np.all(k[:, 2] > 0))})
    order = np.argsort([np.mean([v[c][1] for c in ("tl", "tr", "bl", "br")]) for v in verts])
    verts = [verts[i] for i in order]
    labels = _labels_upward(len(verts), lowest, p)
    corners = [{c: v[c] for c in ("tl", "tr", "bl", "br")} for v in verts]
    side = anterior_side(corners, labels[-1] == S1, p, anterior)
    return named_points(corners, labels, side), {l: v["_vis"] for l, v in zip(labels, verts)}


BUU_LEVELS = ("L1", "L2", "L3", "L4", "L5")


def read_buu_csv(path, anterior: Optional[str] = None):
    """(points, visible) of one BUU-LSPINE lateral CSV (11 endplate rows, see module doc)."""
    p = Path(path)
    try:
        rows = [r for r in csv.reader(p.read_text(encoding="utf-8").splitlines()) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read CSV ({exc.__class__.__name__})", p) from exc
    vals = []
    for r in rows:
        try:
            vals.append([float(x) for x in r[:4]])
        except ValueError:
            if vals:                               # only the first row may be a header
                raise UserError(f"non-numeric row {r!r}", p) from None
    if len(vals) != 11 or any(len(v) != 4 for v in vals):
        raise UserError(f"need 11 endplate rows of x1, y1, x2, y2 (L1 sup ... L5 inf, S1 sup), "
                        f"got {len(vals)}", p)
    lines = [np.array(v).reshape(2, 2) for v in vals]
    lines = [l[np.argsort(l[:, 0])] for l in lines]             # left point first
    corners = []
    for i in range(5):
        sup, inf = lines[2 * i], lines[2 * i + 1]
        corners.append({"tl": sup[0], "tr": sup[1], "bl": inf[0], "br": inf[1]})
    s1 = lines[10]
    corners.append({"tl": s1[0], "tr": s1[1], "bl": s1[0], "br": s1[1]})
    labels = [LEVEL_IDS[l] for l in BUU_LEVELS] + [S1]
    side = anterior_side(corners, True, p, anterior)
    return named_points(corners, labels, side), {l: True for l in labels}

