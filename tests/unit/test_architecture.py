"""The package layout is the architecture: layers only import downwards, no module imports itself back.

Read with `ast` from the source (nothing is imported), so every import counts: module level,
inside functions, and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"

# Lower number = lower layer. A module may import its own layer and the layers below it, never above.
LAYERS = {
    "orchestrator.errors": 0, "orchestrator.findings": 0, "orchestrator.paths": 0, "orchestrator.hostmodel": 0,
    "orchestrator.spec": 1, "orchestrator.ca": 1, "orchestrator.host": 1,
    "orchestrator.plan": 2,
    "orchestrator.run": 3, "orchestrator.doctor": 3, "orchestrator.export": 3, "orchestrator.images": 3,
    "orchestrator.cli": 4, "orchestrator.render": 4, "orchestrator.pytest_plugin": 4,
    "orchestrator.completion": 4,
    "orchestrator": 0,  # the package itself holds only __version__ (OCI image labels, --version)
}
MAX_TOP_LEVEL_MODULES = 10  # .py files directly in orchestrator/, __init__.py included


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The orchestrator modules `module` imports (a package's __init__ counts as the package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "orchestrator":
                target = _resolve(name, known)
                if target and target != module:
                    out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def layer_of(module: str) -> int:
    name = _resolve(module, LAYERS)  # type: ignore[arg-type]
    if name is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS (and docs/architecture.md)")
    return LAYERS[name]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_among_orchestrator_modules():
    assert cycles(graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_from_a_layer_above_it():
    above = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                   for m, targets in graph().items() for t in targets if layer_of(t) > layer_of(m))
    assert above == []


def test_at_most_ten_modules_sit_directly_in_orchestrator():
    top = sorted(p.name for p in ROOT.glob("*.py"))  # __init__.py counts
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_package_says_what_it_owns():
    for init in ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 8, f"{init} needs a docstring saying what the package owns"


@pytest.mark.parametrize("package, allowed", [
    ("orchestrator.spec", {"orchestrator.errors", "orchestrator.paths", "orchestrator.ca.env"}),
    ("orchestrator.ca", {"orchestrator.errors", "orchestrator.hostmodel"}),
    ("orchestrator.plan", {"orchestrator.errors", "orchestrator.findings", "orchestrator.hostmodel",
                           "orchestrator.spec", "orchestrator.spec.model", "orchestrator.host",
                           "orchestrator.ca.rules"}),
])
def test_bottom_packages_import_only_what_their_docstring_says(package, allowed):
    outside = sorted({t for m, targets in graph().items() if m == package or m.startswith(package + ".")
                      for t in targets if not (t == package or t.startswith(package + "."))
                      and not any(t == a or t.startswith(a + ".") for a in allowed)})
    assert outside == []


def test_the_layer_test_sees_an_upward_import(tmp_path):
    fake = tmp_path / "orchestrator"
    (fake / "plan").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "plan" / "__init__.py").write_text("")
    (fake / "plan" / "x.py").write_text("def f():\n    from orchestrator.run import y\n")
    (fake / "run").mkdir()
    (fake / "run" / "__init__.py").write_text("")
    (fake / "run" / "y.py").write_text("from orchestrator.plan import x\n")
    known = {"orchestrator": fake / "__init__.py", "orchestrator.plan": fake / "plan" / "__init__.py",
             "orchestrator.plan.x": fake / "plan" / "x.py", "orchestrator.run": fake / "run" / "__init__.py",
             "orchestrator.run.y": fake / "run" / "y.py"}
    edges = {m: imports_of(m, p, known) for m, p in known.items()}
    assert edges["orchestrator.plan.x"] == {"orchestrator.run.y"}  # a function-level import counts
    assert cycles(edges) == [["orchestrator.plan.x", "orchestrator.run.y"]]
    assert layer_of("orchestrator.run.y") > layer_of("orchestrator.plan.x")


# One module per outside library (docs/architecture.md): who may import what.
OWNERS = {
    "psutil": {"orchestrator.host"},
    "netifaces": {"orchestrator.host"},
    "docker": {"orchestrator.run.backends.docker", "orchestrator.images.build"},
}


def outside_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_psutil_netifaces_and_docker_are_each_imported_by_their_owners_only():
    strays = sorted(f"{module} imports {lib}" for module, path in modules().items()
                    for lib in outside_imports(path) & set(OWNERS) if module not in OWNERS[lib])
    assert strays == []


def test_the_planner_side_is_pure_only_onhost_asks_this_host():
    asking = sorted(m for m, targets in graph().items() if m.startswith("orchestrator.plan")
                    and "orchestrator.host" in targets)
    assert asking == ["orchestrator.plan.onhost"]
