"""Packages import only from lower layers (docs/DESIGN.md): no cycle, no lower layer importing a
higher one. Fails naming the file and the import that breaks the order."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["utils", "spine", "data", "layout", "straighten", "models", "evaluation", "phantom",
          "radiograph", "segmentation", "synthesis", "training", "options", "Attention", "benchmarks", "scripts", "hv"]
RANK = {p: i for i, p in enumerate(LAYERS)}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno


def test_every_package_is_listed():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"}
    assert packages == set(LAYERS)


def test_no_lower_layer_imports_a_higher_one():
    bad = []
    for pkg in LAYERS:
        for f in (ROOT / pkg).rglob("*.py"):
            for mod, line in _imports(f):
                if mod in RANK and RANK[mod] > RANK[pkg]:
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} (layer above {pkg})")
    assert not bad, "\n".join(bad)
