"""The tree keeps the shape docs/architecture.md describes: layers import only downwards, no
import cycles between modules or between packages (function-level imports included), only
``simtune.sweep`` imports Ray and only ``simtune.tracking`` imports MLflow or calls its client, small files."""

from __future__ import annotations

import ast
from itertools import chain
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simtune"

# docs/architecture.md, "Layers": a module may import its own layer and the ones below.
LAYERS: dict[str, int] = {
    "errors": 0, "keys": 0, "labels": 0, "files": 0, "stats": 0, "tables": 0, "schema": 0, "config": 0,
    "provenance": 0, "rundir": 0, "seeds": 0,
    "data": 1, "models": 1, "sim": 1, "evaluation": 1, "heldout": 1, "selection": 1,
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

# Package cycles being removed; each entry goes once its cycle is gone (the test says when).
KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()


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


def package_cycles(deps: dict[str, set[str]]) -> dict[frozenset[str], list[str]]:
    """Packages (at every depth; a top-level module counts as one) that import each other through
    some chain, each set with the module imports that cross between its members.

    A package is never in a cycle with a package it contains: a subpackage is part of its parent.
    """
    depth = max(len(module.split(".")) for module in deps)
    found: dict[frozenset[str], list[str]] = {}
    for level in range(2, depth + 1):
        unit = {module: ".".join(module.split(".")[:level]) for module in {*deps, *chain(*deps.values())}}
        edges: dict[str, set[str]] = {}
        crossing: dict[tuple[str, str], list[str]] = {}
        for a, targets in deps.items():
            for b in sorted(targets):
                ua, ub = unit[a], unit[b]
                if ua != ub and not ua.startswith(ub + ".") and not ub.startswith(ua + "."):
                    edges.setdefault(ua, set()).add(ub)
                    crossing.setdefault((ua, ub), []).append(f"{a} -> {b}")
        for group in strongly_connected(edges):
            found[group] = [line for (ua, ub), lines in sorted(crossing.items()) if {ua, ub} <= group
                            for line in lines]
    return found


def strongly_connected(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The sets of two or more nodes that each reach every other one."""
    reach = {node: reachable(edges, node) for node in sorted({*edges, *chain(*edges.values())})}
    groups = {frozenset(b for b in reach[a] if a in reach[b]) | {a} for a in reach}
    return sorted((g for g in groups if len(g) > 1), key=sorted)


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def describe(cycles: dict[frozenset[str], list[str]]) -> str:
    return "\n".join(" <-> ".join(sorted(group)) + ": " + "; ".join(lines) for group, lines in cycles.items())


def test_no_import_cycles_between_packages() -> None:
    cycles = package_cycles(graph())
    new = {group: lines for group, lines in cycles.items() if group not in KNOWN_PACKAGE_CYCLES}
    assert not new, describe(new)
    gone = [" <-> ".join(sorted(group)) for group in KNOWN_PACKAGE_CYCLES if group not in cycles]
    assert not gone, f"no longer a cycle, take it out of KNOWN_PACKAGE_CYCLES: {gone}"


def test_the_package_check_finds_a_cycle_planted_in_the_tree() -> None:
    deps = graph()
    assert "simtune.data.stats" in deps and "simtune.evaluation" in deps
    deps["simtune.data.stats"] = deps["simtune.data.stats"] | {"simtune.evaluation"}  # evaluation imports data
    cycles = package_cycles(deps)
    assert "simtune.data.stats -> simtune.evaluation" in cycles[frozenset({"simtune.data", "simtune.evaluation"})]


def test_the_package_check_sees_subpackages_and_spares_parents() -> None:
    deps = {
        "simtune.search.plan.cost": {"simtune.search.space"},  # a subpackage and its parent's module
        "simtune.search.space": {"simtune.search.plan.resources"},
        "simtune.search.plan.resources": set(),
        "simtune.sweep.runner": {"simtune.sweep.jobs.shared"},  # parent -> subpackage -> parent: no cycle
        "simtune.sweep.jobs.shared": {"simtune.sweep.tuner"},
        "simtune.sweep.tuner": set(),
    }
    assert set(package_cycles(deps)) == {frozenset({"simtune.search.plan", "simtune.search.space"})}


def imported_names(path: Path) -> list[str]:
    """Every module name ``path`` imports (``import x.y``, ``from x.y import z``), anywhere in it."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return names


def outside_importers(library: str, home: str) -> list[str]:
    """``module: name`` for every import of ``library`` by a module outside the package ``home``."""
    return [f"{name}: {n}" for name, path in modules().items() if not (name == home or name.startswith(home + "."))
            for n in imported_names(path) if n == library or n.startswith(library + ".")]


def test_only_the_sweep_package_imports_ray() -> None:
    offenders = outside_importers("ray", "simtune.sweep")
    assert not offenders, "\n".join(offenders)


def test_only_the_tracking_package_imports_mlflow() -> None:
    offenders = outside_importers("mlflow", "simtune.tracking")
    assert not offenders, "\n".join(offenders)


# MlflowClient's methods for runs, experiments, artifacts and the model registry: a module outside
# simtune.tracking may hold a client (``store.connect``) and hand it to tracking, never call these.
CLIENT_METHODS = frozenset({
    "create_run", "get_run", "update_run", "delete_run", "restore_run", "search_runs", "get_parent_run",
    "set_tag", "delete_tag", "set_terminated", "get_metric_history",
    "log_batch", "log_param", "log_metric", "log_inputs", "log_outputs", "log_model_params",
    "log_artifact", "log_artifacts", "log_dict", "log_text", "log_figure", "log_image", "log_table",
    "list_artifacts", "download_artifacts",
    "create_experiment", "get_experiment", "get_experiment_by_name", "search_experiments", "delete_experiment",
    "restore_experiment", "rename_experiment", "set_experiment_tag", "delete_experiment_tag",
    "create_registered_model", "get_registered_model", "search_registered_models", "update_registered_model",
    "rename_registered_model", "delete_registered_model", "set_registered_model_tag",
    "delete_registered_model_tag", "set_registered_model_alias", "delete_registered_model_alias",
    "create_model_version", "get_model_version", "update_model_version", "delete_model_version",
    "search_model_versions", "get_latest_versions", "set_model_version_tag", "delete_model_version_tag",
    "get_model_version_by_alias", "get_model_version_download_uri", "copy_model_version",
    "create_logged_model", "get_logged_model", "search_logged_models", "finalize_logged_model",
    "set_logged_model_tags",
})


def client_calls(source: str) -> list[tuple[int, str]]:
    """(line, method) of every call ``<anything>.<client method>(...)`` in ``source``."""
    return [(node.lineno, node.func.attr) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLIENT_METHODS]


def outside_client_calls(sources: dict[str, str], home: str = "simtune.tracking") -> list[str]:
    """``module:line: .method()`` for every MLflow client call of a module (name -> source) outside ``home``."""
    return [f"{name}:{line}: .{method}()" for name, source in sorted(sources.items())
            if not (name == home or name.startswith(home + ".")) for line, method in client_calls(source)]


def test_only_the_tracking_package_calls_the_mlflow_client() -> None:
    offenders = outside_client_calls({name: path.read_text() for name, path in modules().items()})
    assert not offenders, "call a simtune.tracking function instead:\n" + "\n".join(offenders)


def test_the_client_check_finds_a_call_planted_outside_tracking() -> None:
    planted = "def close(client, run_id):\n    client.set_terminated(run_id, 'FINISHED')\n"
    sources = {"simtune.workflows.planted": planted, "simtune.tracking.planted": planted,
               "simtune.trackingish": "self.client.set_tag(run, 'k', 'v')\n"}
    assert outside_client_calls(sources) == ["simtune.trackingish:1: .set_tag()", "simtune.workflows.planted:2: "
                                             ".set_terminated()"]


def test_no_production_module_imports_the_test_support() -> None:
    offenders = [module for module, targets in graph().items() if "simtune.testing" in targets]
    assert not offenders, f"import simtune.testing; hand its hooks in from the caller: {offenders}"


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
