"""hsmfs's modules import each other without a cycle: each layer is built before the
ones that use it (fs and members on resident, resident on stager and removals, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import hsmfs

PACKAGE = Path(hsmfs.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """The hsmfs modules that ``path`` imports at module level, TYPE_CHECKING imports
    included: a type-only back-pointer is still a circle in the design."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    body = ast.parse(path.read_text()).body
    for node in list(body):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body.extend(node.body)
    for node in body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hsmfs")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("hsmfs"):
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def test_hsmfs_has_no_import_cycle() -> None:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {dep for dep in imports_of(path, name) if dep in modules and dep != name}
        for name, path in modules.items()
    }
    # A package imports its own submodules on purpose (re-exports): not a cycle.
    for name in graph:
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}

    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)
