"""The drawing of imports between the rooms of nemo_gym_cli, and the rules it must keep.

    python scripts/imports.py          # prints the drawing (room -> rooms it imports), checks
    python scripts/imports.py --dot    # the same as Graphviz dot

A room is a subpackage (``server``, ``collect``, ...) or a top-level module (``errors``).
Every import counts, wherever it stands (a function-local import is still an arrow), except
under ``if TYPE_CHECKING:``. Rules (exit 1 naming each break):

- the kernel (``server``) and ``collect`` import no implementation (``responses_api_models``,
  ``responses_api_agents``, ``resources_servers``, ``environment_servers``) and not ``commands``;
- no circle between rooms (``cli`` and ``commands`` at the top may import anything below).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nemo_gym_cli"
IMPLEMENTATIONS = ("responses_api_models", "responses_api_agents", "resources_servers", "environment_servers")
NO_IMPLEMENTATIONS = ("server", "collect")


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in IMPLEMENTATIONS:
        return parts[0]
    if parts[0] != "nemo_gym_cli" or len(parts) < 2:
        return None
    return parts[1]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports (outside ``if TYPE_CHECKING:``), absolute."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = room_of(module)
        if source is None:
            continue
        targets = {room_of(m) for m in imports(path, module)}
        edges.setdefault(source, set()).update(t for t in targets if t and t != source)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def main(argv: list[str]) -> int:
    edges = graph()
    if "--dot" in argv:
        print("digraph imports {")
        for source in sorted(edges):
            for target in sorted(edges[source]):
                print(f'  "{source}" -> "{target}";')
        print("}")
    else:
        for source in sorted(edges):
            print(f"{source:12} -> {', '.join(sorted(edges[source])) or '(nothing of ours)'}")
    problems = [
        f"{room} imports {target}"
        for room in NO_IMPLEMENTATIONS
        for target in sorted(edges.get(room, ()))
        if target in IMPLEMENTATIONS or target == "commands"
    ]
    problems += [f"a circle: {' <-> '.join(c)}" for c in cycles(edges)]
    for problem in problems:
        print(f"imports: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
