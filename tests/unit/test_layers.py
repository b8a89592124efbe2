"""The package's layers, and the one direction its imports may run.

A package imports only from packages on lower layers (and from itself); no module
imports another that, through any chain, imports it back. Deferred imports (inside
functions) count: a loop held together by them is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline_lib"

# Bottom first. A package may import from the ones above it in this list.
LAYERS = [
    "core",  # errors, masking, checks, safe SQL, backoff, configuration
    "home",  # the local home folder as a layer of settings
    "records",  # what a record is, each stream's names
    "clients",  # Kafka and Google clients built from settings
    "sources",  # simulator, CSV replay, AlphaVantage, news
    "sinks",  # GCS and BigQuery writers
    "kafka_io",  # producer, consumer and what commits offsets
    "analysis",  # queries, plots, the monitor
    "local",  # the local broker and emulators
    "ops",  # describe a cluster, provision resources
    "lessons",  # drills and lessons for the notebooks
    "labs",  # exercise notebooks' kit, their release and their grader
    "classroom",  # a class on one cluster: students, handouts, the board
    "cli",  # the command line and the headless demo
]
ROOT_FILES = {"__init__.py", "__main__.py"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (deferred too)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("pipeline_lib"):
                    # `from pipeline_lib.x import module` imports that module; names
                    # that are not modules come from pipeline_lib.x itself
                    subs = {f"{node.module}.{a.name}" for a in node.names}
                    targets |= subs & modules.keys()
                    if subs - modules.keys():
                        targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("pipeline_lib"))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> str | None:
    """The layer a module stands on; None for the package's face and ``__main__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_package_root_holds_only_its_face_and_packages():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert files == ROOT_FILES
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)


def test_imports_run_down_the_layers_only():
    against = []
    for source, targets in _imports().items():
        here = _layer(source)
        if here is None:  # the package's face and __main__ may use any layer
            continue
        for target in targets:
            there = _layer(target)
            if there is None:
                against.append(f"{source} -> {target} (the package root)")
            elif LAYERS.index(there) > LAYERS.index(here):
                against.append(f"{source} ({here}) -> {target} ({there}): runs back up")
    assert against == []


def test_no_module_imports_itself_back_through_a_loop():
    graph = _imports()
    loops: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert loops == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_over_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600, path.relative_to(PACKAGE)
