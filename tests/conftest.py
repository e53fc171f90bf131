"""Shared pytest set-up: CPU, PyNative by default, deterministic seeds, repo on sys.path."""
import os
import random
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mindspore as ms  # noqa: E402

from encoding_custom.engine import prepare_cpu_process  # noqa: E402
from encoding_custom.progress import set_progress  # noqa: E402
from modules import tnn  # noqa: E402,F401  (before any op: it caps oneDNN's ISA on MindSpore 2.7+, see modules.tnn)

ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
prepare_cpu_process()  # as configure_runtime does on the CPU


@pytest.fixture(autouse=True)
def _seed_and_restore_mode():
    """Every test starts seeded, in PyNative and with progress bars on; a test that switches to GRAPH_MODE, or runs
    a script in-process with --no-progress (a process-wide switch), is undone."""
    random.seed(0)
    np.random.seed(0)
    ms.set_seed(0)
    yield
    if ms.get_context("mode") != ms.PYNATIVE_MODE:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    set_progress(True)


@pytest.fixture
def graph_mode():
    """Run the test body in GRAPH_MODE (restored afterwards by the autouse fixture)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
