"""The package's import structure: modules, the longest chain of relative imports, function-level
relative imports, and the largest files. `python tests/benchmarks/import_graph.py [REPO_ROOT]`."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path


def module_graph(package: Path) -> tuple[dict[str, set[str]], dict[str, Path], int]:
    """Module -> modules it imports relatively; module -> file; count of relative imports inside functions."""
    files = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        files[name] = path
    graph, inside_functions = {}, 0
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        package_name = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package_name.split(".")[: len(package_name.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                imported |= {
                    c for c in (target, *(f"{target}.{a.name}" for a in node.names)) if c in files and c != name
                }
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            inside_functions += sum(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(function))
        graph[name] = imported
    return graph, files, inside_functions


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    graph, files, inside_functions = module_graph(root / "gmp_tl_hf")

    @functools.cache
    def depth(name: str, seen: frozenset = frozenset()) -> int:
        return 1 + max((depth(d, seen | {name}) for d in graph[name] if d not in seen), default=0)

    deepest = max(graph, key=depth)
    sizes = sorted(((len(path.read_text().splitlines()), name) for name, path in files.items()), reverse=True)[:5]
    print(f"modules: {len(files)}")
    print(f"longest relative-import chain: {depth(deepest)} modules (from {deepest})")
    print(f"relative imports inside functions: {inside_functions}")
    print("largest files: " + ", ".join(f"{name.removeprefix('gmp_tl_hf.')} {lines}" for lines, name in sizes))


if __name__ == "__main__":
    main()
