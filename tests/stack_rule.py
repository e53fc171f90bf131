"""Test helper (not a test module): which test modules the legacy stack must run.

Most of the suite exercises code whose behaviour cannot depend on the stack (parsing, file formats, numpy data code,
messages); running it twice only costs CI time. What *can* differ between the two pinned stacks (Python 3.9 +
MindSpore 2.0.0 + msadapter against Python 3.11 + MindSpore 2.10.0) is marked ``both_stacks`` and is all the legacy
suite runs (``run_tests.sh``: ``-m "both_stacks and not slow"``):

* the torch-style layer and its msadapter delegation, the networks built on it and their official parity;
* checkpoints across stacks, GRAPH_MODE training, resume and AMP (compiled graphs are MindSpore's own);
* the launchers and the cluster start, loader worker processes, MindIR export;
* the set-up and the environment, and the Pillow each stack pins.

The rule that keeps this honest: a test module that builds or trains a network (it imports a network, layer,
training, export or script entry point, uses ``nn.TrainOneStepCell`` and the like, defines a ``Cell``/``tnn.Module``,
or starts a script) must either be marked ``both_stacks`` as a whole (``pytestmark``) or say why its unmarked tests
are the same on both stacks in a module-level ``STACK_INDEPENDENT = "..."`` (it may still mark single tests
``both_stacks``).
"""
import ast
import os
from typing import Iterable, List

MARKER = "both_stacks"
DECLARATION = "STACK_INDEPENDENT"
# Names whose import means the module builds or trains a network: the layer, the networks and their builders, the
# training engine's steps, the script entry points, the test fixtures that are networks or start trainings.
NETWORK_MODULES = ("modules", "train_custom", "test", "toys", "toy_train", "launchers", "support", "bench.run",
                   "training_runs")
NETWORK_NAMES = frozenset({
    "AccumulatingTrainStep", "CLIPTextEncoder", "ChannelLabeller", "EpisodeForward", "ImageSegmenter", "LSegNet",
    "MultiScaleEvaluator", "OwnLabelsForward", "Trainer", "TrainOneStepCell", "WithLossCell", "build_lseg", "load_lseg",
    "load_text_tower", "segment_image", "tnn",
})
# Modules a test starts with ``python -m`` that build a network; any ``*.py`` string counts too (train_custom.py,
# test.py, the fixture scripts): starting a script is how tests run work in other processes.
NETWORK_COMMANDS = frozenset({
    "bench", "scripts.demo", "modules.export", "modules.convert", "clip_ms.convert", "train_custom",
})
CELL_BASES = frozenset({"Cell", "Module"})


def _imports(tree: ast.Module) -> Iterable[str]:
    """Every dotted module name and imported name in the module (``from a.b import c`` gives a.b, a.b.c and c)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"
                yield alias.name


def builds_network(tree: ast.Module) -> bool:
    """True when the parsed test module builds or trains a network (see the module docstring)."""
    for name in _imports(tree):
        if name in NETWORK_NAMES or any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES):
            return True
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if base_name in CELL_BASES:
                    return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value in NETWORK_COMMANDS or node.value.endswith(".py")):
            return True
        if isinstance(node, ast.Attribute) and node.attr in NETWORK_NAMES:
            return True
    return False


def _marks_module(tree: ast.Module) -> bool:
    """True when a module-level ``pytestmark`` (one mark or a list) contains ``pytest.mark.both_stacks``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            for value in values:
                if isinstance(value, ast.Call):
                    value = value.func
                if isinstance(value, ast.Attribute) and value.attr == MARKER:
                    return True
    return False


def _declared_reason(tree: ast.Module) -> str:
    """The module-level ``STACK_INDEPENDENT`` string, or '' when there is none."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == DECLARATION for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value.strip()
    return ""


def rule_violations(paths: Iterable[str]) -> List[str]:
    """One line per test module that breaks the rule (empty when every module keeps it).

    Args:
        paths: test module files (``test_*.py``).

    Returns:
        ``"<file>: <what is wrong>"`` lines.
    """
    problems = []
    for path in sorted(paths):
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        name = os.path.basename(path)
        marked, reason = _marks_module(tree), _declared_reason(tree)
        if marked and reason:
            problems.append(f"{name}: marked {MARKER} as a whole and declared {DECLARATION}: choose one")
        elif builds_network(tree) and not marked and len(reason) < 20:
            problems.append(f"{name}: builds or trains a network but is neither marked "
                            f"`pytestmark = pytest.mark.{MARKER}` nor declares {DECLARATION} = \"<why the two "
                            f"stacks cannot differ here>\" (20+ characters)")
    return problems
