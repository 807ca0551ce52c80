"""Split/grade files (``vertebra_data.json``) and vertebra keys.

Format: ``{"train": {key: grade}, "val": {...}, "test": {...}}`` with keys ``<case_id>_<label>``
(split with ``rsplit('_', 1)``; case ids may contain ``_``) and Genant grades 0-3.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Tuple

import numpy as np

from utils.errors import UserError
from utils.fileio import read_json, write_json

SPLITS = ("train", "val", "test")


def parse_key(key: str) -> Tuple[str, int]:
    """``'sub-verse004_20'`` -> ``('sub-verse004', 20)``."""
    case, sep, label = str(key).rpartition("_")
    if not sep or not case or not label.isdigit():
        raise UserError(f"vertebra key {key!r} is not '<case_id>_<label>'")
    return case, int(label)


def make_key(case: str, label: int) -> str:
    return f"{case}_{int(label)}"


def read_vertebra_json(path) -> Dict[str, Dict[str, int]]:
    """Return ``{split: {key: grade}}`` for the splits present; checks keys and grades."""
    data = read_json(path)
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise UserError(f"expected an object with some of the keys {list(SPLITS)}", path)
    out: Dict[str, Dict[str, int]] = {}
    for split, entries in data.items():
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r} (expected {', '.join(SPLITS)})", path)
        if not isinstance(entries, dict):
            raise UserError(f"split {split!r} must map vertebra keys to grades", path)
        out[split] = {}
        for key, grade in entries.items():
            try:
                parse_key(key)
            except UserError as exc:
                raise UserError(str(exc), path) from None
            try:
                g = int(grade)
            except (TypeError, ValueError):
                raise UserError(f"grade of {key!r} is {grade!r}, not an integer 0-3", path) from None
            if g != grade or not 0 <= g <= 3:
                raise UserError(f"grade of {key!r} is {grade!r}, not an integer 0-3", path)
            out[split][key] = g
    return out


def write_vertebra_json(path, splits: Dict[str, Dict[str, int]]) -> None:
    write_json(path, {s: {k: int(g) for k, g in splits.get(s, {}).items()} for s in SPLITS})


def keys_of(splits: Dict[str, Dict[str, int]], phases: Iterable[str]) -> Dict[str, int]:
    """Merge the given splits into one ``{key: grade}``; unknown phases are an error."""
    out: Dict[str, int] = {}
    for ph in phases:
        if ph not in splits:
            raise UserError(f"split {ph!r} is not in the vertebra JSON (has {sorted(splits)})")
        out.update(splits[ph])
    return out


# ---------------------------------------------------------------- patients
# Series of one patient (VerSe19: sub-verse401_series0 / _series1) are one patient: CV folds and
# inner selection splits group by it.
DEFAULT_GROUP_REGEX = r"^(.*?)(?:[_-]series[_-]?\d+)?$"


def patient_ids(cases, group_regex: str = DEFAULT_GROUP_REGEX) -> np.ndarray:
    """Patient id of each case id: the first group of ``group_regex`` (default: the case id
    without a trailing ``_seriesN`` / ``-series-N``); cases that do not match keep their id."""
    rx = re.compile(group_regex)
    out = []
    for c in cases:
        m = rx.match(str(c))
        out.append(m.group(1) if m and m.groups() and m.group(1) else str(c))
    return np.asarray(out)


def inner_split(keys, fraction: float = 0.2, seed: int = 0, group_regex: str = DEFAULT_GROUP_REGEX,
                classes: Dict[str, int] = None, tries: int = 50):
    """``(fit_keys, select_keys)``: vertebra keys split by *patient* (seeded), about ``fraction``
    of the vertebrae in the selection part (at least one patient, at most all but one). With
    ``classes`` ({key: class}) the first of ``tries`` seeded patient orders whose two parts both
    hold every class is taken; failing that, the first whose fitting part does (a model must see
    every class); failing that, the first order."""
    keys = sorted(keys)
    pats = patient_ids([parse_key(k)[0] for k in keys], group_regex)
    uniq = sorted(set(pats.tolist()))
    if len(uniq) < 2:
        raise UserError(f"an inner split needs at least two patients, got {len(uniq)}")
    rng = np.random.default_rng(seed)
    first = fit_ok = None
    for _ in range(max(1, tries)):
        order = rng.permutation(len(uniq))
        chosen, n = set(), 0
        for i in order:
            if chosen and (n >= fraction * len(keys) or len(chosen) == len(uniq) - 1):
                break
            chosen.add(uniq[i])
            n += int((pats == uniq[i]).sum())
        sel = [k for k, p in zip(keys, pats) if p in chosen]
        fit = [k for k, p in zip(keys, pats) if p not in chosen]
        first = first or (fit, sel)
        if classes is None:
            return fit, sel
        want = {classes[k] for k in keys}
        if {classes[k] for k in fit} == want:
            if {classes[k] for k in sel} == want:
                return fit, sel
            fit_ok = fit_ok or (fit, sel)
    return fit_ok or first


# ---------------------------------------------------------------- --phase on the command line

def expand_phases(values) -> list:
    """Split names from the command line: space- or comma-separated, ``all`` = every split;
    order kept, duplicates dropped, an unknown name is an error."""
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        for name in (s.strip() for s in str(v).split(",")):
            if not name:
                continue
            if name not in SPLITS + ("all",):
                raise UserError(f"unknown split {name!r} (choose from {', '.join(SPLITS)} or all)")
            for s in (SPLITS if name == "all" else (name,)):
                if s not in out:
                    out.append(s)
    return out


def add_phase_argument(parser, flag: str = "--phase", default=("val",), what: str = "to process",
                       aliases=()):
    """The one ``--phase`` convention of every CLI that takes splits: one or more of train, val,
    test or all, space- or comma-separated; ``args.<dest>`` is the expanded list. ``aliases``:
    older spellings of the flag that keep working."""
    import argparse

    class _Expand(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            try:
                setattr(namespace, self.dest, expand_phases(values))
            except UserError as exc:
                parser.error(f"{option_string}: {exc}")

    parser.add_argument(flag, *aliases, nargs="+", action=_Expand, default=expand_phases(default),
                        metavar="SPLIT", help=f"split(s) of the vertebra JSON {what}: train, val, "
                        f"test or all, space- or comma-separated (default: {' '.join(default)})")
