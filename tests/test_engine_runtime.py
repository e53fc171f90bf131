"""encoding_custom.engine.configure_runtime: mode, device and seeds of a process (single device here)."""
import random

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import configure_runtime, get_world_size

pytestmark = pytest.mark.both_stacks


def test_sets_the_mode_and_seeds_every_generator():
    draws = []
    for _ in range(2):
        configure_runtime("CPU", "pynative", seed=11)
        assert ms.get_context("mode") == ms.PYNATIVE_MODE and ms.get_context("device_target") == "CPU"
        draws.append((random.random(), np.random.rand(), ms.get_seed()))
    assert draws[0] == draws[1] and draws[0][2] == 11
    configure_runtime("CPU", "graph", seed=12)
    assert ms.get_context("mode") == ms.GRAPH_MODE and ms.get_seed() == 12
    assert get_world_size() == 1  # no launcher environment: one process, no collective group


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="'eager'"):
        configure_runtime("CPU", "eager")
