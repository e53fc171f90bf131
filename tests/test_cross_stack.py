"""Checkpoints written on one pinned stack load on the other, both directions: the weights format, the training
format (optimizer state included), same logits. Needs both venvs (``LSEG_STACK=both bash run_tests.sh`` builds
them; CI does)."""
import json
import os
import sys

import mindspore as ms
import numpy as np
import pytest

from tests.mindspore_crashes import run_restarting_a_mindspore_2_0_crash

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "fixtures", "modules", "cross_stack.py")
THIS_STACK = "legacy" if ms.__version__.startswith("2.0.") else "current"
OTHER_STACK = "current" if THIS_STACK == "legacy" else "legacy"
OTHER_PYTHON = os.environ.get("LSEG_OTHER_STACK_PYTHON") or os.path.join(
    REPO, ".venv" if OTHER_STACK == "current" else ".venv-legacy", "bin", "python")

pytestmark = [pytest.mark.both_stacks, pytest.mark.skipif(
    not os.path.exists(OTHER_PYTHON),
    reason=f"no {OTHER_STACK}-stack venv at {OTHER_PYTHON} (LSEG_STACK=both bash run_tests.sh builds both)")]


def _run(python, verb, folder):
    env = {k: v for k, v in os.environ.items() if k not in ("LSEG_NN", "PYTHONPATH")}
    # A MindSpore 2.0 crash is restarted once (tests/mindspore_crashes.py): a legacy read died so once in a CI run.
    mindspore_2_0 = (THIS_STACK if python == sys.executable else OTHER_STACK) == "legacy"
    result = run_restarting_a_mindspore_2_0_crash([python, SCRIPT, verb, str(folder)], mindspore_2_0, cwd=REPO,
                                                  env=env, timeout=600)
    assert result.returncode == 0, f"{python} {verb}:\n{result.crashed_first or ''}{result.stderr[-3000:]}"


def _check_folder(folder, writer_version, reader_stack):
    resumed = json.loads((folder / "resumed.json").read_text())
    # The weights arrive bit for bit; the logits differ only by the two MindSpore builds' float32 kernels
    # (measured: 1.0e-6 x max|logits| for this network, 2.0.0 vs 2.10.0 on CPU).
    assert resumed["weights_max_abs_diff"] == {"weights.ckpt": 0.0, "training.ckpt": 0.0}
    logits = np.load(folder / "logits.npy")
    scale = np.abs(logits).max()
    for name in ("read_weights.npy", "read_training.npy"):
        assert np.abs(np.load(folder / name) - logits).max() <= 1e-5 * scale, name
    assert resumed["epoch"] == 1 and resumed["options"]["written_by"] == writer_version
    assert resumed["moments_max_abs_diff"] == 0.0
    assert resumed["reader"].startswith("2.0.") == (reader_stack == "legacy")


def test_checkpoints_of_this_stack_load_on_the_other(tmp_path):
    _run(sys.executable, "write", tmp_path)
    _run(OTHER_PYTHON, "read", tmp_path)
    _check_folder(tmp_path, ms.__version__, OTHER_STACK)


def test_checkpoints_of_the_other_stack_load_on_this_one(tmp_path):
    _run(OTHER_PYTHON, "write", tmp_path)
    _run(sys.executable, "read", tmp_path)
    writer = "2.0.0" if OTHER_STACK == "legacy" else "2.10.0"
    _check_folder(tmp_path, writer, THIS_STACK)
