"""The documentation users have: every file a doc or a module cites exists in the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a repository path in backticks or a markdown link: dir/file.ext or file.py / file.sh
PATH = re.compile(r"[`(]((?:[A-Za-z_][\w.-]*/)*[A-Za-z_][\w.-]*\.(?:py|sh|md|json|txt|toml|ini))[`)#]")
OUTSIDE = ("../shared", "options.json", "env.json", "metrics.json", "vertebra_data.json",
           "BENCHMARKS.json", "phantom_chain.json")


def _cited(text: str):
    for m in PATH.finditer(text):
        p = m.group(1)
        first = p.split("/")[0]
        if "<" in p or p.startswith(("http", "../", "_")) or Path(p).name in OUTSIDE or \
                ("/" in p and first.isupper()):          # OUT/…, ST/…: a user's folder
            continue
        yield p


def _exists(p: str, base: Path) -> bool:
    """A path from the repository root or beside the doc; a bare file name anywhere in it."""
    if (ROOT / p).exists() or (base / p).exists():
        return True
    return "/" not in p and any(q for q in ROOT.glob(f"**/{p}") if ".venv" not in q.parts)


def test_docs_cite_files_that_exist():
    missing = [f"{d.name}: {p}" for d in DOCS for p in _cited(d.read_text()) if not _exists(p, d.parent)]
    assert not missing, missing


def test_modules_cite_docs_that_exist():
    bad = []
    for f in ROOT.rglob("*.py"):
        if ".venv" in f.parts or "demo_output" in f.parts:
            continue
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r"\b([A-Z]+)\.md\b", text):
            name = m.group(0)
            if name not in ("README.md",) and not (ROOT / "docs" / name).is_file():
                bad.append(f"{f.relative_to(ROOT)}: {name}")
    assert not bad, bad
