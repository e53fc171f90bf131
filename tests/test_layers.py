"""The layers import one way (foundation -> clip_ms -> modules -> encoding_custom -> the scripts -> bench) and no
product module imports itself back through others (tests/layers.py reads every import statement)."""
import os
import shutil

from tests.layers import first_problem, import_cycles, layer_violations, product_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK_INDEPENDENT = "reads the import statements of the source files as text; no product code runs"


def _copy_of_the_tree(tmp_path) -> str:
    root = str(tmp_path / "tree")
    for path in product_files(REPO).values():
        target = os.path.join(root, os.path.relpath(path, REPO))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(path, target)
    return root


def _append(root: str, relative: str, text: str) -> None:
    with open(os.path.join(root, relative), "a", encoding="utf-8") as handle:
        handle.write(text)


def test_every_import_goes_down_and_nothing_imports_itself_back():
    assert len(product_files(REPO)) > 60  # the walk found the packages, not an empty tree
    assert layer_violations(REPO) == []
    assert import_cycles(REPO) == []


def test_a_planted_reverse_import_is_named_with_its_file_and_line(tmp_path):
    root = _copy_of_the_tree(tmp_path)
    assert first_problem(root) is None
    # Inside a function, as lazy imports are written: still a dependency.
    late_import = "\n\ndef _late():\n    from modules import tnn\n    return tnn\n"
    _append(root, os.path.join("foundation", "atomic.py"), late_import)
    problems = layer_violations(root)
    assert len(problems) == 1
    assert problems[0].startswith(os.path.join("foundation", "atomic.py") + ":")
    assert "foundation imports modules.tnn from a higher layer" in problems[0]


def test_a_relative_import_of_a_higher_package_is_caught_too(tmp_path):
    root = _copy_of_the_tree(tmp_path)
    _append(root, os.path.join("clip_ms", "labels.py"), "\nfrom ..modules import config  # noqa\n")
    assert any("clip_ms imports modules.config" in problem for problem in layer_violations(root))


def test_a_planted_cycle_inside_a_layer_is_found(tmp_path):
    root = _copy_of_the_tree(tmp_path)
    _append(root, os.path.join("modules", "config.py"), "\nimport modules.factory  # noqa\n")
    assert layer_violations(root) == []  # same layer: only the cycle is wrong
    cycles = import_cycles(root)
    assert cycles and all(cycle[0] == cycle[-1] for cycle in cycles)
    assert any("modules.config" in cycle and "modules.factory" in cycle for cycle in cycles)
