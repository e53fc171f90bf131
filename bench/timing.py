"""Warm-up + repetition timing and the summary statistics reported for every case."""
import math
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

from bench.machine import process_peak_rss_mib, reset_peak_rss

# Peak RSS of this process per phase: set-up (imports, build, data), warm-up (incl. GRAPH_MODE compilation), timed.
# Filled by measure(), read by bench.case.
PEAK_RSS_PHASES: Dict[str, Optional[float]] = {"setup_peak_rss_mib": None, "warmup_peak_rss_mib": None,
                                                "timed_peak_rss_mib": None}


def summarize(samples_s: Sequence[float]) -> Dict[str, float]:
    """Summary statistics of repeated timings.

    Args:
        samples_s: wall-clock durations in seconds, one per repetition (at least one).

    Returns:
        dict with ``n``, ``median_s``, ``min_s``, ``max_s``, ``q1_s``, ``q3_s`` (quartiles by linear interpolation,
        so the inter-quartile range is ``q3_s - q1_s``), ``mean_s`` and ``stdev_s`` (0 for a single sample).

    Raises:
        ValueError: if ``samples_s`` is empty.
    """
    values = sorted(float(v) for v in samples_s)
    if not values:
        raise ValueError("summarize() needs at least one timing sample, got none")
    return {
        "n": len(values),
        "median_s": statistics.median(values),
        "min_s": values[0],
        "max_s": values[-1],
        "q1_s": _quantile(values, 0.25),
        "q3_s": _quantile(values, 0.75),
        "mean_s": statistics.fmean(values),
        "stdev_s": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _quantile(sorted_values: List[float], q: float) -> float:
    """Quantile ``q`` in [0, 1] of already sorted values, linear interpolation between closest ranks."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure(run_once: Callable[[], object], warmup: int, repeats: int) -> Dict[str, object]:
    """Time ``run_once`` after ``warmup`` untimed calls.

    ``run_once`` must block until its work is finished (e.g. call ``.asnumpy()`` on its outputs): MindSpore may
    return before a kernel completes, and an unsynchronised timing would measure only the dispatch.

    Args:
        run_once: the work to time, called ``warmup + repeats`` times with no arguments.
        warmup: untimed calls first (graph compilation, allocator and cache warm-up); each is still timed separately
            and reported as ``warmup_s`` because the first call's cost (GRAPH_MODE compile) is itself informative.
        repeats: timed calls (>= 1).

    Returns:
        :func:`summarize` of the timed calls plus ``samples_s`` (list of floats) and ``warmup_s`` (list of floats).

    Side effect: the first call in a process records the peak RSS so far as the set-up peak and resets the
    kernel's peak counter (VmHWM); the warm-up and the timed calls are then recorded (and reset) separately in
    :data:`PEAK_RSS_PHASES` (the maximum over all calls of ``measure`` in the process).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if PEAK_RSS_PHASES["setup_peak_rss_mib"] is None:
        PEAK_RSS_PHASES["setup_peak_rss_mib"] = process_peak_rss_mib()
        reset_peak_rss()
    warmup_times = []
    for _ in range(max(0, warmup)):
        start = time.perf_counter()
        run_once()
        warmup_times.append(time.perf_counter() - start)
    if warmup > 0:
        _record_peak("warmup_peak_rss_mib")
        reset_peak_rss()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_once()
        samples.append(time.perf_counter() - start)
    _record_peak("timed_peak_rss_mib")
    result: Dict[str, object] = dict(summarize(samples))
    result["samples_s"] = samples
    result["warmup_s"] = warmup_times
    return result


def wait_until_computed(value) -> None:
    """Block until a MindSpore tensor, or every tensor of a tuple/list, is computed.

    MindSpore may return before its kernels finish, so a timed call must wait for its result. Reading back one
    element (a slice, which depends on the whole output) waits without also timing a host copy of the whole tensor.

    Args:
        value: a tensor (anything with ``asnumpy``), a tuple/list of them, or anything else (ignored).
    """
    if isinstance(value, (tuple, list)):
        for item in value:
            wait_until_computed(item)
    elif hasattr(value, "asnumpy"):
        if len(value.shape) == 0:
            value.asnumpy()
        else:
            value[tuple([0] * (len(value.shape) - 1) + [slice(0, 1)])].asnumpy()


def _record_peak(phase: str) -> None:
    """Fold the current VmHWM into ``PEAK_RSS_PHASES[phase]`` (maximum over calls)."""
    peak = process_peak_rss_mib()
    if peak is not None:
        PEAK_RSS_PHASES[phase] = max(peak, PEAK_RSS_PHASES[phase] or 0.0)
