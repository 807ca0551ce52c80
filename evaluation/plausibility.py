"""Is a pseudo-healthy body plausible? Checks that turn what a generator can get wrong into a flag
and a warning, instead of heights that look fine (issue #12).

On the synthesised block's target (``fake``) against the real block (``real``, same grid):

* **pieces**: more than one 26-connected component holding >= 0.1 % of the target's voxels;
* **taller than the band**: the body's tallest column exceeds the band the generator can fill
  (``band_mm``, 40 mm in the paper) by more than one voxel;
* **footprint**: the axial footprint area (mm^2) outside ``[area_low, area_high]`` x the mean
  footprint of the real neighbours in the block (a vertebra's footprint changes by a few percent
  per level; a fracture barely changes it, so a synthesis far from it is not a vertebral body);
* **empty**: no target voxel at all.

A row is ``plausible`` when no check fires; ``implausible`` names the checks that did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from data.masks import count_components, largest_component


@dataclass(frozen=True)
class PlausibilityRule:
    band_mm: float = 40.0
    min_piece_fraction: float = 0.001
    area_low: float = 0.6
    area_high: float = 1.6


def footprint_mm2(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Axial (AP x LR) footprint area of a (SI, AP, LR) mask in mm^2."""
    return float(np.asarray(mask, bool).any(axis=0).sum() * spacing_mm[1] * spacing_mm[2])


def implausible_reasons(fake_labels: np.ndarray, real_labels: np.ndarray, label: int,
                        spacing_mm: Sequence[float], rule: PlausibilityRule = PlausibilityRule()) -> List[str]:
    """The checks (module doc) that the synthesised target ``label`` fails; [] when plausible."""
    fake = np.asarray(fake_labels) == label
    if not fake.any():
        return ["empty"]
    out = []
    pieces = count_components(fake, rule.min_piece_fraction)
    if pieces > 1:
        out.append(f"{pieces} pieces")
    body = largest_component(fake)
    tallest = float(body.sum(axis=0).max() * spacing_mm[0])
    if tallest > rule.band_mm + spacing_mm[0]:
        out.append(f"{tallest:.0f} mm tall > band {rule.band_mm:.0f} mm")
    real = np.asarray(real_labels)
    others = [int(v) for v in np.unique(real) if v > 0 and v != label]
    if others:
        ref = float(np.mean([footprint_mm2(real == v, spacing_mm) for v in others]))
        ratio = footprint_mm2(body, spacing_mm) / max(ref, 1e-6)
        if not rule.area_low <= ratio <= rule.area_high:
            out.append(f"footprint {ratio:.2f} x the neighbours'")
    return out
