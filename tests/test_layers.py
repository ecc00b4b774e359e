"""The layout as rules that can fail (issue 22): the import contracts in pyproject.toml
(``[tool.importlinter]``: hive's shared ground imports no process, the processes import
each other only through hive, routing does no I/O) hold, and no module of ours is in an
import circle — type-only imports included, since they tie the files as much for a
reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hive", "coordinator", "gateway", "node_agent", "ollama_emulator")


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def circles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One import circle per set of modules in it, each as the chain that closes it."""
    found: dict[frozenset[str], tuple[str, ...]] = {}
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                found.setdefault(frozenset(back), (module, *back))
    return list(found.values())


def test_no_module_of_ours_is_in_an_import_circle() -> None:
    graph = grimp.build_graph(*PACKAGES)
    assert circles(graph) == []


def test_the_circle_finder_finds_one() -> None:
    """The check above can fail: a graph with a circle in it is reported."""
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert [set(c) for c in circles(graph)] == [{"pkg.a", "pkg.b", "pkg.c"}]
