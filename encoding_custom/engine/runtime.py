"""Process set-up shared by training and evaluation: device, execution mode, data-parallel group, CPU threads, seeds."""
import logging
import os
import random
import re
from typing import Dict, Iterable, List, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import log as ms_log

from encoding_custom.engine.distributed import init_distributed, launched_distributed

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
# Names of MindSpore's CPU kernel-pool threads (mindrt's pool, 2.0 and 2.10); the pool starts at the first op.
KERNEL_THREAD_PREFIXES = ("ActorThread_", "KernelThread_")
# "auto" takes the first of the others that this MindSpore build and machine offer, in this order.
DEVICE_TARGETS = ("auto", "Ascend", "GPU", "CPU")


class DeviceUnavailableError(ValueError):
    """The requested device target does not exist here; the message lists the targets that do."""


def _set_device_target(target: str, device_id: Optional[int] = None) -> Optional[Tuple[str, ...]]:
    """Select ``target``; None on success, else the targets this process supports (as MindSpore reports them).

    MindSpore 2.0 and 2.10 both raise ``RuntimeError("Unsupported device target Ascend. This process only supports
    one of the ['CPU']. ...")`` at once when the device plugin or its driver is missing (measured on CPU-only
    machines); the list in that message is the one fact a user needs. Its version checks log 5-7 ERROR/WARNING
    lines about CUDA/CANN paths on the way: muted during the attempt, so that the user reads one line.
    """
    if ms.get_context("device_target") == target and device_id is None:
        # Already the device (MindSpore's default, or a second call in one process): on 2.10 set_device after the
        # first kernel ran raises "The runtime has been initialized", even for the same target.
        return None
    logger = ms_log._get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        if hasattr(ms, "set_device"):  # 2.6+: set_context(device_target=...) is deprecated (warns on 2.10)
            ms.set_device(target, device_id)
        else:
            ms.set_context(device_target=target, **({} if device_id is None else {"device_id": device_id}))
    except RuntimeError as err:
        listed = re.search(r"supports one of the \[([^\]]*)\]", str(err))
        if listed is None:
            first_line = (str(err).strip().splitlines() or ["(no message)"])[0]
            raise DeviceUnavailableError(f"device_target {target!r} cannot be used: {first_line}") from None
        return tuple(name.strip(" '\"") for name in listed.group(1).split(",") if name.strip(" '\""))
    finally:
        logger.setLevel(level)
    return None


def select_device(device_target: str, device_id: Optional[int] = None) -> str:
    """Make ``device_target`` (device ``device_id`` of it, None: the default) MindSpore's device; ``"auto"``: the
    first of Ascend, GPU, CPU that works.

    Returns:
        the selected target.

    Raises:
        DeviceUnavailableError: the target does not exist in this MindSpore build or on this machine, e.g.
            ``device_target 'Ascend' is not available here (mindspore 2.10.0 on this machine offers: CPU)``.
    """
    if device_target not in DEVICE_TARGETS:
        raise DeviceUnavailableError(f"device_target must be one of {DEVICE_TARGETS} (got {device_target!r})")
    first = DEVICE_TARGETS[1] if device_target == "auto" else device_target
    supported = _set_device_target(first, device_id)
    if supported is None:
        return first
    if device_target == "auto":
        for target in DEVICE_TARGETS[1:]:
            if target in supported and _set_device_target(target, device_id) is None:
                return target
    raise DeviceUnavailableError(
        f"device_target {device_target!r} is not available here (mindspore {ms.__version__} on this machine offers: "
        f"{', '.join(supported) or 'nothing'}); pass one of those")


def run_ops_synchronously() -> None:
    """Launch each PyNative op in the calling thread and wait for it (MindSpore's launch-blocking mode).

    MindSpore's asynchronous PyNative pipeline hands every op to other threads; on a CPU those threads compete with
    the kernels for the same cores, which made PyNative forwards up to 5x slower (bench/PERFORMANCE.md, "PyNative on
    the CPU"). On Ascend and GPU the queue overlaps host and device work, so it is set for the CPU only
    (:func:`configure_runtime`).
    """
    launch_blocking = getattr(getattr(ms, "runtime", None), "launch_blocking", None)
    if launch_blocking is not None:  # 2.4+; set_context(pynative_synchronize=...) warns of its removal on 2.10
        launch_blocking()
    else:
        ms.set_context(pynative_synchronize=True)


def kernel_thread_cpus(threads: Iterable[Tuple[str, int]], allowed_cpus: Iterable[int]) -> Dict[int, int]:
    """The CPU each kernel-pool thread is bound to: the threads in name order onto the allowed CPUs in number order,
    or nothing when the pool does not have exactly one thread per allowed CPU.

    Only a pool of one thread per CPU is bound: a smaller pool (MindSpore caps its default size) would be crowded
    onto the first CPUs while the others stay idle.

    Args:
        threads: ``(name, thread id)`` of the pool's threads.
        allowed_cpus: the CPUs this process may run on.

    Returns:
        ``{thread id: CPU}``, empty when the counts differ.
    """
    threads = sorted(threads)
    cpus = sorted(allowed_cpus)
    if not threads or len(threads) != len(cpus):
        return {}
    return {tid: cpu for (_, tid), cpu in zip(threads, cpus)}


def _kernel_threads() -> List[Tuple[str, int]]:
    """``(name, thread id)`` of MindSpore's kernel-pool threads in this process (Linux ``/proc``)."""
    task_dir = "/proc/self/task"
    found = []
    for tid in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, tid, "comm"), encoding="utf-8") as handle:
                name = handle.read().strip()
        except OSError:  # the thread ended while being listed
            continue
        if name.startswith(KERNEL_THREAD_PREFIXES):
            found.append((name, int(tid)))
    return found


def bind_kernel_threads() -> Dict[int, int]:
    """Bind each thread of MindSpore's CPU kernel pool to a CPU of its own (Linux; one pool thread per allowed CPU).

    Why: a kernel called from a thread outside the pool (Python's, in PyNative) is split over the pool's threads
    while the caller spins on ``sched_yield`` until they finish, so a pool of one thread per CPU shares the CPUs
    with the spinning caller and the scheduler moves its threads around. Bound, ViT-L/16's PyNative forward on
    2 CPUs took 5.6-5.9 s instead of 7.0-7.4 s (MindSpore 2.0: 5.7-5.9 s instead of 7.0 s), its PyNative training
    step 28.4 s instead of 34-38 s; compiled runs were unchanged (bench/PERFORMANCE.md, "PyNative on the CPU").

    Returns:
        ``{thread id: CPU}`` of the threads bound; empty when nothing was (no affinity API, a pool not sized one per
        CPU, or the system refused).
    """
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return {}
    (ms.Tensor(np.zeros(2, np.float32)) + 1).asnumpy()  # the pool starts with the first op
    binding = kernel_thread_cpus(_kernel_threads(), os.sched_getaffinity(0))
    try:
        for tid, cpu in binding.items():
            os.sched_setaffinity(tid, {cpu})
    except OSError:  # a sandbox that forbids affinity changes: the run goes on unbound
        return {}
    return binding


def prepare_cpu_process() -> Dict[int, int]:
    """What a process on the CPU sets before its work: PyNative ops launched synchronously
    (:func:`run_ops_synchronously`) and, unless it is one process of a data-parallel job (they would all bind their
    threads to the same CPUs), the kernel threads bound (:func:`bind_kernel_threads`). Thread settings of
    ``mindspore.set_context`` must come first: the kernel pool starts here.

    Returns:
        the binding of :func:`bind_kernel_threads` (``{thread id: CPU}``; empty when nothing was bound).
    """
    run_ops_synchronously()
    return {} if launched_distributed() else bind_kernel_threads()


def configure_runtime(device_target: str, mode: str, device_id: Optional[int] = None, seed: int = 0) -> str:
    """Set MindSpore's device and execution mode (on the CPU: PyNative ops synchronous, and the kernel threads bound
    to CPUs in a single process), join a data-parallel job if a launcher started this process, and seed ``random``,
    numpy and MindSpore.

    Args:
        device_target: ``"auto"``, ``"Ascend"``, ``"GPU"`` or ``"CPU"`` (:func:`select_device`).
        mode: ``"graph"`` or ``"pynative"``.
        device_id: device to use on this host (None: MindSpore's default or the launcher's ``DEVICE_ID``).
        seed: seed of all three generators (equal on every rank, so every rank builds the same initial weights).

    Returns:
        the device target in use.

    Raises:
        ValueError: an unknown mode; DeviceUnavailableError: a device this machine does not have.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)} (got {mode!r})")
    target = select_device(device_target, device_id)
    ms.set_context(mode=MODES[mode])
    if target == "CPU":
        prepare_cpu_process()
    init_distributed(target, mode=MODES[mode])
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    return target


__all__ = ["DEVICE_TARGETS", "DeviceUnavailableError", "bind_kernel_threads", "configure_runtime", "kernel_thread_cpus",
           "prepare_cpu_process", "run_ops_synchronously", "select_device"]
