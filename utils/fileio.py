"""Atomic writes: write to a temporary name in the destination folder, then rename.

A crash or an error never leaves a half-written output under its final name, and existing
inputs are never opened for writing.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from utils.errors import UserError

PathLike = Union[str, os.PathLike]


def ensure_dir(path: PathLike) -> Path:
    """Create ``path`` (and parents); a clear :class:`UserError` if that is not possible."""
    p = Path(path)
    blocker = next((q for q in [p, *p.parents] if q.exists() and not q.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot create output folder: {blocker} is a file, not a folder", p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder ({exc.strerror})", p) from None
    if not os.access(p, os.W_OK):
        raise UserError("output folder is not writable", p)
    return p


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` with the same suffixes; rename it onto ``path``
    when the block succeeds, delete it when it fails."""
    final = Path(path)
    ensure_dir(final.parent)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name.split('.')[0]}.", suffix=suffix,
                               dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get normal permissions
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: PathLike, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_json(path: PathLike):
    """Read a JSON file; missing file or bad JSON becomes a one-line :class:`UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError("file not found", p)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON (line {exc.lineno}: {exc.msg})", p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read ({exc})", p) from None
