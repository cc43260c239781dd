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


def _import_nodes(path: Path, tree=None):
    """(node, absolute module name) of every import statement under `tree` (default: the whole file of `path`):
    `import a.b` → "a.b" (its first name), `from ..x import y` → the package-resolved "pkg.x"."""
    mod = _module_name(path)
    pkg = (mod if path.name == "__init__.py" else mod.rpartition(".")[0]).split(".")
    for node in ast.walk(tree if tree is not None else ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node, node.names[0].name
        elif isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - (node.level - 1)] if node.level else []
            yield node, ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (top level or inside functions)."""
    out = set()
    for node, name in _import_nodes(path):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        else:
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


def _graph(package: str) -> dict:
    """{module: set of modules of `package` it imports} (imports anywhere in the file). `from P import a` is an
    import of P.a when that is a module (P itself is then only initialised, as for any submodule), else of P."""
    mods = {_module_name(p): p for p in _modules() if _under(_module_name(p), package)}

    def resolve(name):
        parts = name.split(".")
        while parts and ".".join(parts) not in mods:
            parts.pop()
        return ".".join(parts)

    graph = {}
    for mod, path in mods.items():
        deps = set()
        for node, name in _import_nodes(path):
            if isinstance(node, ast.Import):
                deps |= {resolve(a.name) for a in node.names}
            else:
                for a in node.names:
                    sub = f"{name}.{a.name}"
                    deps.add(sub if sub in mods else resolve(name))
        graph[mod] = {d for d in deps if d and d != mod}
    return graph


def _cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", ["recon_core", "gadget", "training"])
def test_no_import_cycles(package):
    """No module of a package reaches itself through imports (function-level ones included): a cycle hides a
    missing layer. A package's __init__ that imports its own modules is not a cycle unless one of them imports
    the __init__ back."""
    cycles = _cycles(_graph(package))
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


#: third-party libraries heavy enough to import only where used (each ≥ ~1 s here, and most commands never
#: need them); everything else — the project's own modules, the standard library, numpy/torch/scipy — is
#: imported at module level, so the import graph above is the whole truth.
HEAVY = ("sigpy", "diffusers", "transformers", "peft", "pygrappa", "nilearn", "nibabel", "matplotlib", "pydicom",
         "twixtools", "gadgetron", "skimage", "PIL", "torch.distributed", "onnxruntime", "openvino")
#: command modules (`*/commands/*.py`) load only when their command runs: the CLI imports every command module
#: to build its parser, so their `run` imports what it needs (DESIGN.md, "Commands").
#: (module, name imported inside a function, why)
LAZY_EXCEPTIONS = {
    ("gadget.mrd_server", "gadget.processor"): "the default processor factory (tests inject their own)",
}


def _function_imports(path: Path):
    """(line, module name) of every import inside a function of `path`."""
    for fn in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node, name in _import_nodes(path, fn):
                yield node.lineno, name


def test_imports_are_at_module_level_unless_heavy():
    bad = []
    for path in _modules():
        mod = _module_name(path)
        if ".commands." in f"{mod}." and not mod.endswith(".commands"):
            continue
        for line, name in _function_imports(path):
            if any(_under(name, h) for h in HEAVY) or (mod, name) in LAZY_EXCEPTIONS:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} inside a function")
    assert not bad, "\n".join(bad)
