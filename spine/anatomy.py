"""VerSe vertebra labels, their cranio-caudal order and neighbours, and the Genant grade.

Label ids are VerSe's: C1–C7 = 1–7, T1–T12 = 8–19, L1–L5 = 20–24, and the two transitional
variants L6 = 25 (after L5) and T13 = 28 (between T12 and L1). Every stage that needs a level
name, an order along the spine or a vertebra's neighbours asks this module, so that T13 and L6
spines are handled the same way everywhere.

Neighbours: the vertebrae directly above and below in the patient's spine. The standard levels
are always part of the sequence; T13 and L6 are part of it only when the patient has them (they
are in ``present``), so L1's upper neighbour is T13 in a spine with T13 and T12 otherwise.

Genant grade (Genant et al., J Bone Miner Res 1993;8:1137–48): a height loss of 20–25 % is
grade 1, 25–40 % grade 2, 40 % and more grade 3. Each grade's lower bound belongs to that grade
(a loss of exactly 0.20 is grade 1), compared after rounding away float noise (1 − 16/20 is
0.19999999999999996 in floating point, and is graded as 0.20).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import numpy as np

LEVEL_NAMES = {**{i: f"C{i}" for i in range(1, 8)}, **{i: f"T{i - 7}" for i in range(8, 20)},
               **{i: f"L{i - 19}" for i in range(20, 25)}, 25: "L6", 28: "T13"}
LEVEL_IDS = {v: k for k, v in LEVEL_NAMES.items()}
VERTEBRA_LABELS = frozenset(LEVEL_NAMES)
T13, L6 = 28, 25
VARIANTS = frozenset((T13, L6))

# cranio-caudal rank of the ids that are not in numeric order
_RANK = {T13: 19.5, L6: 24.5}

GENANT_LOSS = (0.20, 0.25, 0.40)       # lower bounds of grades 1 / 2 / 3 (inclusive)
_GRADE_DECIMALS = 9                    # losses are compared after rounding to 1e-9


def level_name(label: int) -> str:
    """'L1' for 20; the number as text for an id that is not a vertebra."""
    return LEVEL_NAMES.get(int(label), str(int(label)))


def rank(label: int) -> float:
    """Position along the spine (C1 = 1, T13 = 19.5, L6 = 24.5); larger is more caudal."""
    return _RANK.get(int(label), float(label))


def order_labels(labels: Iterable[int]) -> List[int]:
    """VerSe ids sorted cranial -> caudal."""
    return sorted((int(l) for l in labels), key=rank)


def spine_sequence(present: Iterable[int] = ()) -> List[int]:
    """The standard levels C1–L5 plus the variants (T13, L6) found in ``present``, in order."""
    have = {int(l) for l in present}
    return order_labels(set(range(1, 25)) | (VARIANTS & have))


def neighbours(label: int, present: Iterable[int] = ()) -> Tuple[Optional[int], Optional[int]]:
    """(above, below): the levels directly cranial and caudal to ``label`` in a spine whose
    labels include ``present`` (None past C1 or past the last lumbar level). Whether the
    neighbour was imaged is for the caller to check."""
    label = int(label)
    seq = spine_sequence(set(present) | {label})
    i = seq.index(label)
    above = seq[i - 1] if i > 0 else None
    below = seq[i + 1] if i + 1 < len(seq) else None
    return above, below


def neighbour_list(label: int, present: Iterable[int] = ()) -> List[int]:
    """The neighbours of :func:`neighbours` that exist, above first."""
    return [n for n in neighbours(label, present) if n is not None]


def genant_grade(loss: float) -> int:
    """Genant grade (0–3) of a fractional height loss; NaN (nothing measured) is 0."""
    loss = float(loss)
    if not np.isfinite(loss):
        return 0
    loss = round(loss, _GRADE_DECIMALS)
    return int(sum(loss >= t for t in GENANT_LOSS))


COMPLETE, TRUNCATED, INCOMPLETE = "complete", "truncated", "incomplete"


@dataclass(frozen=True)
class Completeness:
    """Whether a vertebra can be measured, and why not: ``complete``, ``truncated`` (cut by the
    field of view) or ``incomplete`` (no body in the label, metal). Decided once, at
    straightening (``straighten/completeness.py``), stored with each block
    (``layout.blocks.load_completeness``); incomplete vertebrae are never graded nor used as a
    height reference."""

    status: str = COMPLETE
    reason: str = ""

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def truncated(self) -> bool:
        return self.status == TRUNCATED
