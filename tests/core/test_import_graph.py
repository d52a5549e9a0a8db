"""The import graph of ``umr``: no cycle between its modules, and no RAG framework inside the core.

Imports are read with ``ast`` (nothing is executed).  The graph of module-level imports (those at the top
of a module, including inside module-level ``if`` / ``try`` blocks, but not inside functions, classes or
``if TYPE_CHECKING:`` blocks) must have no cycle at all.  The command line, the store and the document
pipeline are held to more: no cycle through them even counting imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
FRAMEWORKS = ("langchain", "langchain_core", "langchain_umr", "llama_index")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((CORE / "umr").rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def imported_names(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Absolute names of what ``node`` imports: ``from X import Y`` gives ``X`` and ``X.Y`` (a module
    when ``Y`` is a submodule; the caller keeps only names of modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(*, lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the ``umr`` modules it imports (module-level imports; every import with ``lazy``)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = (
            [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if lazy else module_level_imports(tree)
        )
        for node in nodes:
            graph[name].update(t for t in imported_names(name, path, node) if t in mods and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other (directly or around a loop), Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


STRICT = ("umr.cli", "umr.store", "umr.documents", "umr.distributed", "umr.evaluation", "umr.train.cli")


def test_the_graph_sees_real_edges() -> None:
    graph = import_graph()
    assert len(graph) > 30
    assert "umr.store.collection" in graph["umr.store.chroma"]  # relative ``from .collection import ...``
    assert "umr.documents.names" in graph["umr.documents.records"]
    assert "umr.cli.common" in graph["umr.cli.index"]


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["umr.documents.names"] = graph["umr.documents.names"] | {"umr.documents.records"}
    assert find_cycle(graph) == ["umr.documents.names", "umr.documents.records", "umr.documents.names"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_umr() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_through_cli_store_documents_even_with_lazy_imports() -> None:
    graph = import_graph(lazy=True)
    assert "umr.store.chroma" in graph["umr.store.info"]  # a function-level import is seen
    tangled = [
        sorted(group) for group in strongly_connected(graph)
        if any(m == p or m.startswith(p + ".") for m in group for p in STRICT)
    ]
    assert tangled == []
    planted = {**graph, "umr.cli.common": graph["umr.cli.common"] | {"umr.cli.train"}}
    assert {"umr.cli.common", "umr.cli.train"} in strongly_connected(planted)


def test_core_imports_no_rag_framework() -> None:
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # every import, at any level
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            if roots & set(FRAMEWORKS):
                offenders.append(f"{name}:{node.lineno} imports {sorted(roots)}")
    assert offenders == []
