"""The rule that chooses what the legacy stack runs (tests/stack_rule.py) holds for every test module, and the rule
itself catches a module that trains a network without saying whether the stacks can differ there."""
import glob
import os
import textwrap

from stack_rule import builds_network, rule_violations

STACK_INDEPENDENT = "reads source files only; no MindSpore call"

HERE = os.path.dirname(os.path.abspath(__file__))

UNMARKED_TRAINER = """
    import numpy as np
    from mindspore import nn

    from encoding_custom.engine import Trainer


    class Net(nn.Cell):
        def construct(self, x):
            return x


    def test_trains():
        assert Trainer is not None and Net() is not None
"""


def _write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_every_test_module_keeps_the_rule():
    assert rule_violations(glob.glob(os.path.join(HERE, "test_*.py"))) == []


def test_an_unmarked_module_that_trains_a_network_breaks_the_rule(tmp_path):
    path = _write(tmp_path, "test_planted.py", UNMARKED_TRAINER)
    problems = rule_violations([path])
    assert len(problems) == 1 and problems[0].startswith("test_planted.py: builds or trains a network")


def test_a_mark_or_a_reason_keeps_the_rule_and_both_break_it(tmp_path):
    marked = _write(tmp_path, "test_marked.py",
                    "import pytest\npytestmark = [pytest.mark.both_stacks]\n" + textwrap.dedent(UNMARKED_TRAINER))
    reasoned = _write(tmp_path, "test_reasoned.py",
                      'STACK_INDEPENDENT = "only file names are compared here"\n' + textwrap.dedent(UNMARKED_TRAINER))
    too_short = _write(tmp_path, "test_short.py", 'STACK_INDEPENDENT = "same"\n' + textwrap.dedent(UNMARKED_TRAINER))
    skip_only = _write(tmp_path, "test_skip_only.py",
                       "import pytest\npytestmark = pytest.mark.skipif(True, reason='x')\nimport train_custom\n")
    both = _write(tmp_path, "test_both.py", 'import pytest\npytestmark = pytest.mark.both_stacks\n'
                  'STACK_INDEPENDENT = "only file names are compared here"\n')
    assert rule_violations([marked, reasoned]) == []
    assert [p.split(":")[0] for p in rule_violations([too_short, both, skip_only])] == [
        "test_both.py", "test_short.py", "test_skip_only.py"]


def test_what_counts_as_building_a_network():
    import ast

    def builds(source):
        return builds_network(ast.parse(textwrap.dedent(source)))

    assert builds("from modules.factory import build_lseg")
    assert builds("from modules import tnn")
    assert builds("import train_custom")
    assert builds("import subprocess\nsubprocess.run(['python', 'train_custom.py'])")
    assert builds("import mindspore.nn as nn\nclass N(nn.Cell):\n    pass")
    assert builds("from mindspore import nn\nstep = nn.TrainOneStepCell(None, None)")
    assert builds("import os\nSCRIPT = os.path.join('fixtures', 'cross_stack.py')")
    assert not builds("from foundation.labels import ade20k_labels\nimport numpy as np")
    assert not builds("from clip_ms.tokenizer import tokenize")
