"""The architecture is checked, not hoped for (README "Architecture").

- import-linter's contracts (pyproject.toml [tool.importlinter]): layers import downwards only, the
  device side never imports TensorFlow (not even through another edgetl module), no cycle between
  the modules of any package. CI runs ``lint-imports`` too, beside ruff.
- No import cycle between ANY two edgetl modules, function-local imports included.
- A function-local import of an edgetl module says why it is local (a comment on its line or the line
  above): they exist to keep ``edgetl --help`` fast and TensorFlow out of the device side, nothing else.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "edgetl"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check below could fail: two modules that import each other are reported."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyclepkg import b  # local, still an import\n")
    (pkg / "b.py").write_text("from cyclepkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyclepkg", cache_dir=None)) == [["cyclepkg.a", "cyclepkg.b"]]


def test_no_import_cycle_anywhere_in_edgetl():
    graph = grimp.build_graph("edgetl", cache_dir=None)
    assert len(graph.modules) > 40
    assert _cycles(graph) == []


def test_import_linter_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def _local_edgetl_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, has a reason comment) for each import of an edgetl module inside a function."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.level == 0 and (inner.module or "").split(".")[0] == "edgetl":
                module = inner.module
            elif isinstance(inner, ast.Import) and any(a.name.split(".")[0] == "edgetl" for a in inner.names):
                module = inner.names[0].name
            else:
                continue
            line = lines[inner.lineno - 1]
            above = lines[inner.lineno - 2].strip() if inner.lineno > 1 else ""
            # a comment on the import, on the line above, or on the first import of a run of local imports
            reasoned = "#" in line or above.startswith("#")
            k = inner.lineno - 2
            while not reasoned and k >= 0 and lines[k].strip().startswith(("from ", "import ")):
                reasoned = "#" in lines[k] or (k > 0 and lines[k - 1].strip().startswith("#"))
                k -= 1
            found.append((inner.lineno, module, reasoned))
    return found


@pytest.mark.parametrize("layer", ["core", "data", "runtime", "device", "bench", "package", "ml", "export", "pipeline", "cli"])
def test_function_local_imports_of_edgetl_say_why(layer):
    missing = [
        f"{path.relative_to(REPO_ROOT)}:{line} ({module})"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, module, reasoned in _local_edgetl_imports(path)
        if not reasoned
    ]
    assert not missing, "function-local imports of edgetl modules without a reason comment: " + ", ".join(missing)
