"""The layout shows the architecture: no import cycle between recall's folders (lazy and TYPE_CHECKING
imports included), and each module under the size the style guide sets."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "recall"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def folder_of(module: str) -> str:
    """The unit a cycle is checked between: recall.<folder>, or recall.<module> at the top level."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports(path: Path) -> set[str]:
    """Every recall module `path` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "recall" or name.startswith("recall.")}


def folder_graph() -> dict[str, set[str]]:
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = folder_of(module_name(path))
        targets = {folder_of(name) for name in imports(path) if name in known and name != "recall"}
        graph.setdefault(source, set()).update(t for t in targets if t != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_recall_folders_import_each_other_without_cycles() -> None:
    cycle = find_cycle(folder_graph())
    assert cycle is None, "import cycle between recall's folders: " + " -> ".join(cycle or [])


def test_only_the_command_line_imports_the_command_line_and_the_repl() -> None:
    # The two front ends sit on top: the library (EditMemory, eval, backends) never imports them.
    allowed = {"recall.cli": {"recall.__main__", "recall.repl"}, "recall.repl": {"recall.cli"}}
    for source, targets in folder_graph().items():
        for front, importers in allowed.items():
            assert front not in targets or source in importers, f"{source} imports {front}"


def test_no_module_is_far_over_the_size_budget() -> None:
    # STYLE.md: files under ~400 lines (the facade, recall/memory.py, under 250).
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert sizes["recall.memory"] <= 250
    assert {name: n for name, n in sizes.items() if n > 420} == {}


def test_building_the_command_line_loads_no_model_library() -> None:
    """`recall --help` (every command's parser) must not import torch or transformers: they took ~6 s."""
    script = (
        "import sys; from recall.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
