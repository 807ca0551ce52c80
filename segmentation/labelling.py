"""One anatomically consistent sequence of vertebrae from heatmap candidates.

Each candidate is a (label, position, heatmap value). The chosen sequence is the best path through
the candidates in label order, found by dynamic programming over the levels (the graph is
ordered, so the shortest path of Payer et al.'s released code reduces to it; the one rule that is
not local, a peak used once, is checked along each partial path):

  score = sum over chosen c of  (value(c) - threshold)
        + weight * sum over consecutive pairs (a, b) of  (exp(-m^2 / 2) - 0.5),

where m is the offset b - a compared, axis by axis, with that pair's mean and spread learnt from
training centroids (:class:`PairStats`). A path may start and end at any level (levels missing at
the ends of the field of view), may skip only the variants T13 and L6, and uses each label once;
it never has a gap inside, so a missed level in the middle costs the path its continuation rather
than leaving a hole in the output. A vertebra labelled with a variant (T13, L6) pays
``variant_cost`` from its value, so that a weak variant peak does not shift the run above it.
Peaks are also offered to the two neighbouring labels at 0.1 of their value, so a vertebra whose
heatmap peaks in the wrong channel can still be labelled right."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from segmentation.heatmaps import CHANNELS
from spine.anatomy import VARIANTS, level_name, rank

# typical cranio-caudal distance (mm) between the centroids of consecutive vertebrae, used for
# pairs the training data never showed (cervical 16, upper / lower thoracic 21 / 26, lumbar 35)
_PRIOR_SPACING = {**{l: 16.0 for l in range(1, 8)}, **{l: 21.0 for l in range(8, 14)},
                  **{l: 26.0 for l in range(14, 20)}, 28: 28.0, **{l: 35.0 for l in range(20, 26)}}


def successors(label: int) -> List[int]:
    """Labels that may follow ``label`` in a sequence: the next level, and the one after it when
    the next one is a variant (T12 -> T13 or L1; L5 -> L6)."""
    i = CHANNELS.index(label)
    out = []
    if i + 1 < len(CHANNELS):
        out.append(CHANNELS[i + 1])
        if CHANNELS[i + 1] in VARIANTS and i + 2 < len(CHANNELS):
            out.append(CHANNELS[i + 2])
    return out


@dataclass
class PairStats:
    """Mean and spread (RAS mm, per axis) of the offset between consecutive centroids."""
    mean: Dict[Tuple[int, int], np.ndarray]
    sd: Dict[Tuple[int, int], np.ndarray]

    @classmethod
    def learn(cls, cases: Iterable[Dict[int, np.ndarray]], sd_floor_mm: float = 4.0,
              sd_rel: float = 0.15) -> "PairStats":
        """From training centroid sets ``{label: RAS mm}``; pairs seen fewer than 3 times keep a
        prior (straight down by the typical spacing) blended in."""
        obs: Dict[Tuple[int, int], list] = {}
        for cents in cases:
            labs = [l for l in CHANNELS if l in cents]
            for a in labs:
                for b in successors(a):
                    if b in cents and not any(m in cents for m in CHANNELS[CHANNELS.index(a) + 1:CHANNELS.index(b)]):
                        obs.setdefault((a, b), []).append(np.asarray(cents[b], float) - np.asarray(cents[a], float))
        mean, sd = {}, {}
        for a in CHANNELS:
            for b in successors(a):
                d = _PRIOR_SPACING[a] if b in (CHANNELS[CHANNELS.index(a) + 1],) else _PRIOR_SPACING[a] + 4.0
                prior_m, prior_s = np.array([0.0, 0.0, -d]), np.array([0.4 * d, 0.4 * d, 0.3 * d])
                o = np.array(obs.get((a, b), []))
                n = len(o)
                if n:
                    w = n / (n + 3.0)
                    m = w * o.mean(0) + (1 - w) * prior_m
                    s = np.sqrt(w * (o.std(0) ** 2 if n > 1 else 0.0) + (1 - w) * prior_s ** 2)
                else:
                    m, s = prior_m, prior_s
                mean[(a, b)] = m
                sd[(a, b)] = np.maximum(s, np.maximum(sd_floor_mm, sd_rel * np.abs(m).max()))
        return cls(mean, sd)

    def to_dict(self) -> dict:
        return {f"{a}-{b}": {"mean": self.mean[(a, b)].tolist(), "sd": self.sd[(a, b)].tolist()}
                for (a, b) in self.mean}

    @classmethod
    def from_dict(cls, d: dict) -> "PairStats":
        mean, sd = {}, {}
        for k, v in d.items():
            a, b = (int(x) for x in k.split("-"))
            mean[(a, b)], sd[(a, b)] = np.asarray(v["mean"], float), np.asarray(v["sd"], float)
        return cls(mean, sd)

    def agreement(self, a: int, b: int, offset: np.ndarray) -> float:
        """exp(-m^2 / 2) in (0, 1], m^2 the mean squared standardised deviation per axis."""
        m2 = float(np.mean(((np.asarray(offset) - self.mean[(a, b)]) / self.sd[(a, b)]) ** 2))
        return float(np.exp(-0.5 * m2))


@dataclass
class Candidate:
    label: int
    pos: np.ndarray         # RAS mm
    value: float
    source: int = -1        # index of the peak it came from (copies share it)


def candidates_from_peaks(peaks: Sequence[Tuple[int, np.ndarray, float]], copy_factor: float = 0.1,
                          same_mm: float = 8.0) -> List[Candidate]:
    """``(label, RAS mm, value)`` peaks -> candidates, each also offered to the two neighbouring
    labels at ``copy_factor`` of its value. Peaks of different channels closer than ``same_mm``
    are one physical vertebra: they share a source, so at most one of them is labelled."""
    out = []
    pos_all = [np.asarray(p, float) for _, p, _ in peaks]
    source = list(range(len(peaks)))
    order = sorted(range(len(peaks)), key=lambda k: -peaks[k][2])      # the strongest peak names the group
    for a_i, a in enumerate(order):
        if source[a] != a:
            continue
        for b in order[a_i + 1:]:
            if source[b] == b and np.linalg.norm(pos_all[a] - pos_all[b]) < same_mm:
                source[b] = a
    for k, (lab, pos, val) in enumerate(peaks):
        k = source[k]
        out.append(Candidate(int(lab), np.asarray(pos, float), float(val), k))
        i = CHANNELS.index(int(lab))
        if copy_factor > 0:
            for j in (i - 1, i + 1):
                if 0 <= j < len(CHANNELS):
                    out.append(Candidate(CHANNELS[j], np.asarray(pos, float), copy_factor * float(val), k))
    return out


def label_sequence(cands: Sequence[Candidate], stats: PairStats, threshold: float = 0.1,
                   pair_weight: float = 1.0, variant_cost: float = 0.0) -> Dict[int, Candidate]:
    """The best sequence ``{label: candidate}`` (empty when no candidate scores above 0). A
    physical peak is used once."""
    order = sorted(range(len(cands)), key=lambda i: rank(cands[i].label))
    best: List[float] = [0.0] * len(cands)
    back: List[Optional[int]] = [None] * len(cands)
    by_label: Dict[int, List[int]] = {}
    for i in order:
        c = cands[i]
        unary = c.value - threshold - (variant_cost if c.label in VARIANTS else 0.0)
        best[i], back[i] = unary, None
        preds = [p for p in CHANNELS if c.label in successors(p)]
        for p in preds:
            for j in by_label.get(p, []):
                if cands[j].source == c.source and c.source >= 0:
                    continue
                if _uses_source(j, back, cands, c.source):
                    continue
                s = best[j] + unary + pair_weight * (stats.agreement(p, c.label, c.pos - cands[j].pos) - 0.5)
                if s > best[i]:
                    best[i], back[i] = s, j
        by_label.setdefault(c.label, []).append(i)
    if not cands or max(best) <= 0:
        return {}
    i = int(np.argmax(best))
    out = {}
    while i is not None:
        out[cands[i].label] = cands[i]
        i = back[i]
    return out


def _uses_source(j: int, back, cands, source: int) -> bool:
    """Whether the path ending at ``j`` already uses peak ``source``."""
    if source < 0:
        return False
    while j is not None:
        if cands[j].source == source:
            return True
        j = back[j]
    return False


def describe(seq: Dict[int, Candidate]) -> str:
    labs = [l for l in CHANNELS if l in seq]
    return f"{level_name(labs[0])}-{level_name(labs[-1])} ({len(labs)})" if labs else "none"
