"""encoding_custom.engine.configure_runtime: mode, device, CPU threads and seeds of a process (single device here)."""
import json
import os
import random
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import configure_runtime, get_world_size

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def test_kernel_thread_cpus_binds_only_a_pool_of_one_thread_per_cpu():
    from encoding_custom.engine.runtime import kernel_thread_cpus

    pool = [("KernelThread_0", 12), ("ActorThread_0", 11)]
    assert kernel_thread_cpus(pool, {5, 3}) == {11: 3, 12: 5}  # names in order onto CPUs in order
    assert kernel_thread_cpus(pool, {0, 1, 2, 3}) == {}  # a smaller pool would crowd the first CPUs
    assert kernel_thread_cpus(pool + [("KernelThread_1", 13)], {0, 1}) == {}
    assert kernel_thread_cpus([], set()) == {}


@pytest.fixture
def unbound_kernel_threads():
    """The kernel pool's threads free to run on every allowed CPU (conftest bound them), re-bound afterwards."""
    from encoding_custom.engine.runtime import _kernel_threads, bind_kernel_threads

    allowed = os.sched_getaffinity(0)
    for _, tid in _kernel_threads():
        os.sched_setaffinity(tid, allowed)
    yield allowed
    bind_kernel_threads()


def _pool_affinities():
    """``[(name, CPUs)]`` of the kernel pool's threads (names repeat: a graph with an ``aot`` kernel adds an actor
    thread of the same name)."""
    from encoding_custom.engine.runtime import _kernel_threads

    return [(name, os.sched_getaffinity(tid)) for name, tid in _kernel_threads()]


_BIND_AT_START = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from modules import tnn
from encoding_custom.engine import configure_runtime
from encoding_custom.engine.runtime import _kernel_threads
configure_runtime("CPU", "pynative")
print(json.dumps({"pool": [sorted(os.sched_getaffinity(tid)) for _, tid in _kernel_threads()],
                  "caller": sorted(os.sched_getaffinity(0))}))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread affinity is a Linux API")
def test_configure_runtime_binds_each_kernel_thread_to_a_cpu_of_its_own():
    """In a fresh process, as a run starts: this one's pool may have grown with the graphs other tests compiled."""
    out = subprocess.run([sys.executable, "-c", _BIND_AT_START, REPO], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    state = json.loads(out.strip().splitlines()[-1])
    pool, allowed = [set(cpus) for cpus in state["pool"]], set(state["caller"])
    assert pool, "MindSpore's kernel pool threads were not found by name"
    if len(pool) == len(allowed):
        assert all(len(cpus) == 1 for cpus in pool) and set().union(*pool) == allowed, pool
    else:  # a pool not sized one thread per CPU stays free
        assert all(cpus == allowed for cpus in pool), pool
    assert allowed == os.sched_getaffinity(0)  # the calling thread is never bound


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread affinity is a Linux API")
def test_a_data_parallel_process_leaves_its_kernel_threads_free(unbound_kernel_threads, monkeypatch):
    from encoding_custom.engine import prepare_cpu_process, runtime

    monkeypatch.setattr(runtime, "launched_distributed", lambda *args, **kwargs: True)
    assert prepare_cpu_process() == {}
    assert all(cpus == unbound_kernel_threads for _, cpus in _pool_affinities())
