"""The harness self-test case (``selftest/*`` variants, used by tests/test_bench_harness.py only)."""
import os
import signal
import time
from typing import Dict

import numpy as np

from bench.cases.variant import CaseContext
from bench.timing import measure


def case_selftest(ctx: CaseContext) -> Dict[str, object]:
    """Touches ``params["setup_mib"]`` MiB during set-up and frees them, then ``params["timed_mib"]`` MiB inside every
    timed call, sleeping ``params["sleep_s"]``; or fails on purpose with ``params["fail"]``; or dies of SIGSEGV with
    ``params["crash_marker"]`` (a path) while that file does not exist yet (creating it first), so a second run of
    the variant goes through.

    Returns: timing.
    """
    if ctx.params.get("fail"):
        raise RuntimeError("selftest failure requested")
    marker = ctx.params.get("crash_marker")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGSEGV)
    setup_block = np.ones(int(ctx.params.get("setup_mib", 0)) * 2**18, dtype=np.float32)  # touched pages count
    del setup_block

    def run_once():
        block = np.ones(int(ctx.params.get("timed_mib", 0)) * 2**18, dtype=np.float32)
        time.sleep(float(ctx.params.get("sleep_s", 0.01)))
        del block

    return {"timing": measure(run_once, ctx.warmup, ctx.repeats)}
