"""The one-way import rules of DESIGN.md, enforced by parsing every module's imports (ast, not importing):

    recon_core (library)  ← gadget (scanner path), training (prior training + evaluation, bench, validation)
    recon_core imports neither gadget nor training; gadget never imports training; training never imports
    gadget.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recon_core", "gadget", "training", "xml_chains")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (top level or inside functions)."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return out


def _modules():
    for p in PACKAGES:
        yield from sorted((ROOT / p).rglob("*.py"))


def _under(name: str, pkg: str) -> bool:
    return name == pkg or name.startswith(pkg + ".")


RULES = [  # (importer package, forbidden package, except importers under)
    ("recon_core", "gadget", None),
    ("recon_core", "training", None),
    ("gadget", "training", None),
    ("training", "gadget", None),
]


@pytest.mark.parametrize("importer,forbidden,exempt", RULES, ids=[f"{a}-x-{b}" for a, b, _ in RULES])
def test_one_way_imports(importer, forbidden, exempt):
    bad = []
    for path in _modules():
        mod = _module_name(path)
        if not _under(mod, importer) or (exempt and _under(mod, exempt)):
            continue
        hits = sorted(n for n in _imports(path) if _under(n, forbidden))
        if hits:
            bad.append(f"{path.relative_to(ROOT)} imports {hits[0]}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    src = ROOT / "training" / "evaluation" / "harness.py"
    names = _imports(src)
    assert "recon_core.samplers" in names and "training.evaluation.cache" in names   # nested and top-level relative
