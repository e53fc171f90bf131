"""Test helper (not a test module): the project's layers and every import that crosses them.

Layers, lowest first; a file may import its own layer and those below it, never one above:
``foundation`` -> ``clip_ms`` -> ``modules`` -> ``encoding_custom`` -> the scripts (``options.py``, ``train_custom.py``,
``test.py``, ``prepare_ade20k.py``, ``scripts/``) -> ``bench``. Imports inside functions count too: a lazy import
is still a dependency. Between product modules no import cycle is allowed either.
"""
import ast
import os
from typing import Dict, List, Optional, Set, Tuple

LAYERS = (("foundation",), ("clip_ms",), ("modules",), ("encoding_custom",),
          ("options", "train_custom", "test", "prepare_ade20k", "scripts"), ("bench",))
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
SKIPPED_FOLDERS = {"tests", "docs", "checkpoints", "datasets", "outputs", "logs", "rewritten_network", "__pycache__"}


def product_files(root: str) -> Dict[str, str]:
    """Args: root: the repository. Returns: dotted module name -> path, for every product ``.py`` file."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        relative = os.path.relpath(dirpath, root)
        top = relative.split(os.sep)[0]
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIPPED_FOLDERS]
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            parts = [] if relative == "." else relative.split(os.sep)
            if filename != "__init__.py":
                parts.append(filename[:-3])
            name = ".".join(parts)
            if (top if relative != "." else name.split(".")[0]) in RANK:
                found[name] = os.path.join(dirpath, filename)
    return found


def _imported(node: ast.AST, module: str, is_package: bool, known: Set[str]) -> List[Tuple[str, int]]:
    """The project modules one import statement names, with its line."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = package[:len(package) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
    else:
        return []
    return [(target, node.lineno) for target in targets if target.split(".")[0] in RANK]


def import_edges(root: str) -> List[Tuple[str, str, int]]:
    """Returns: ``(importing module, imported module, line)`` for every import of a project module."""
    files = product_files(root)
    known = set(files)
    edges = []
    for module, path in sorted(files.items()):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        is_package = path.endswith("__init__.py")
        for node in ast.walk(tree):
            for target, line in _imported(node, module, is_package, known):
                if target != module:
                    edges.append((module, target, line))
    return edges


def layer_violations(root: str) -> List[str]:
    """Returns: ``"<file>:<line>: <layer> imports <higher layer> (<module>)"`` for each import against the order."""
    files = product_files(root)
    problems = []
    for source, target, line in import_edges(root):
        source_top, target_top = source.split(".")[0], target.split(".")[0]
        if RANK[target_top] > RANK[source_top]:
            problems.append(f"{os.path.relpath(files[source], root)}:{line}: {source_top} imports {target} "
                            f"from a higher layer")
    return problems


def import_cycles(root: str) -> List[List[str]]:
    """Returns: each import cycle between product modules once, as the modules along it."""
    graph: Dict[str, Set[str]] = {}
    for source, target, _ in import_edges(root):
        graph.setdefault(source, set()).add(target)
    cycles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def first_problem(root: str) -> Optional[str]:
    """Returns: the first violation or cycle as one line, or None."""
    problems = layer_violations(root) + [" -> ".join(cycle) for cycle in import_cycles(root)]
    return problems[0] if problems else None
