"""The tree keeps the shape docs/architecture.md describes: layers import only downwards, no
import cycles (function-level imports included), only ``simtune.sweep`` imports Ray, small files."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simtune"

# docs/architecture.md, "Layers": a module may import its own layer and the ones below.
LAYERS: dict[str, int] = {
    "errors": 0, "keys": 0, "labels": 0, "files": 0, "stats": 0, "tables": 0, "schema": 0, "config": 0,
    "provenance": 0, "rundir": 0,
    "data": 1, "models": 1, "sim": 1, "evaluation": 1, "selection": 1,
    "preflight": 2,
    "train": 3,
    "testing": 4, "search": 4, "results": 4, "bench": 4, "figures": 4,
    "tracking": 5,
    "sweep": 6,
    "workflows": 7,
    "commands": 8, "cli": 8, "__init__": 8, "__main__": 8,
}
MAX_FILE_LINES = 400
MAX_FLAT_PACKAGE_LINES = 1500


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (top level, functions, TYPE_CHECKING)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.startswith("simtune") and t in known)
    return found - {name}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    assert top in LAYERS, f"{module}: its package '{top}' has no layer in tests/test_layout.py (LAYERS)"
    return LAYERS[top]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def test_layers_import_only_downwards() -> None:
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    deps = graph()
    # A package's __init__ importing its own submodules is not a cycle of concepts.
    deps = {a: {b for b in targets if not b.startswith(a + ".")} for a, targets in deps.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(deps):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_sweep_package_imports_ray() -> None:
    offenders = []
    for name, path in modules().items():
        if name.startswith("simtune.sweep"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name}: {n}" for n in names if n == "ray" or n.startswith("ray.")]
    assert not offenders, "\n".join(offenders)


def test_files_and_flat_packages_stay_small() -> None:
    big = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    for package in [p for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()]:
        if any((sub / "__init__.py").is_file() for sub in package.iterdir() if sub.is_dir()):
            continue
        total = sum(len(f.read_text().splitlines()) for f in package.glob("*.py"))
        if total > MAX_FLAT_PACKAGE_LINES and package != PACKAGE:
            big.append(f"{package.relative_to(PACKAGE.parent)}/: {total} lines without subpackages")
    assert not big, "\n".join(big)
