"""Typed options: frozen dataclasses turned into argparse flags, parsed once, dumped as JSON.

A field becomes ``--<name>``; its help text and choices come from ``field(metadata=...)`` (use
:func:`opt`). Booleans are ``--name`` / ``--no-name`` (fields named ``no_*`` are plain switches). A preset (``--preset paper`` or a path to a
JSON file) replaces the *defaults* before parsing, so flags given explicitly always win. Unknown
preset keys and typos in choices fail at parse time (exit 2) with the valid names.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Type

from utils.errors import UserError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def opt(default: Any, help: str, choices: Optional[Iterable] = None, **kw) -> Any:
    """A dataclass field carrying its argparse help and choices."""
    md = {"help": help}
    if choices is not None:
        md["choices"] = list(choices)
    return dataclasses.field(default=default, metadata=md, **kw)


def _base_type(tp) -> Tuple[type, bool]:
    """(python type, optional?) of an annotation such as ``Optional[float]`` or ``'int'``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: Type, title: str,
                       skip: Sequence[str] = (), rename: Optional[Dict[str, str]] = None) -> None:
    """Add one flag per field of dataclass ``cls`` to an argument group ``title``.

    ``rename`` maps field name -> flag name (e.g. ``lambda_l1`` -> ``lambda_L1``)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    rename = rename or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        helptext = f.metadata.get("help", f.name.replace("_", " "))
        kw: Dict[str, Any] = dict(dest=f.name, default=default,
                                  help=f"{helptext} (default: %(default)s)")
        if tp is bool:  # --x / --no-x, except flags already named no_* (plain switches)
            kw["action"] = ("store_true" if f.name.startswith("no_")
                            else argparse.BooleanOptionalAction)
        elif tp in (int, float, str):
            kw["type"] = tp
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if optional:
                kw["metavar"] = tp.__name__.upper()
        elif typing.get_origin(tp) in (tuple, list):
            inner = typing.get_args(tp)[0]
            kw.update(type=inner, nargs="+")
        else:
            continue  # non-CLI field
        group.add_argument(f"--{rename.get(f.name, f.name)}", **kw)


def build(cls: Type, ns: argparse.Namespace):
    """Instantiate ``cls`` from the parsed namespace (fields absent from it keep defaults)."""
    kw = {}
    for f in dataclasses.fields(cls):
        if f.init and hasattr(ns, f.name):
            v = getattr(ns, f.name)
            kw[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kw)


def load_preset(name: Optional[str]) -> Dict[str, Any]:
    """Preset values: ``name`` is a file in options/presets (without .json) or a JSON path."""
    if not name:
        return {}
    path = Path(name)
    if not path.suffix:
        path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        avail = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
        raise UserError(f"unknown preset {name!r} (available: {', '.join(avail)} or a JSON path)",
                        path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"preset is not valid JSON ({exc.msg})", path) from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def parse_with_preset(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
                      ) -> argparse.Namespace:
    """Parse ``argv`` once, after replacing defaults by the preset named by ``--preset``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    known, _ = pre.parse_known_args(argv)
    values = load_preset(known.preset)
    dests = {a.dest for a in parser._actions}
    unknown = sorted(set(values) - dests)
    if unknown:
        raise UserError(f"preset {known.preset!r} sets unknown options {unknown}")
    parser.set_defaults(**values)
    return parser.parse_args(argv)


def to_dict(*objs) -> Dict[str, Any]:
    """Merge dataclass instances into one JSON-able dict (for options.json)."""
    out: Dict[str, Any] = {}
    for o in objs:
        for k, v in dataclasses.asdict(o).items():
            out[k] = list(v) if isinstance(v, tuple) else v
    return out
