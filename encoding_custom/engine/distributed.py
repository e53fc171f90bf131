"""Data-parallel training on MindSpore's own distributed runtime: start-up, rank/world, sharding, metric reduction.

One training script runs unchanged on 1 or N devices:

* :func:`init_distributed` joins the cluster when the process was started by a launcher (``scripts/launch.py``
  dynamic cluster, ``mpirun`` on GPU, a rank table on Ascend) and does nothing otherwise. It switches to
  ``DATA_PARALLEL`` with ``gradients_mean=True``, so ``nn.TrainOneStepCell`` all-reduces (averages) the gradients
  itself; BatchNorm keeps per-device statistics, as in the official DDP run.
* :func:`get_rank` / :func:`get_world_size` / :func:`is_main_process` read MindSpore's communication group and
  answer 0 / 1 / True before (or without) initialisation.
* :func:`shard_for_evaluation` gives each rank its share of an evaluation set: every item exactly once over the
  ranks, no padding. (Training shards come from ``encoding_custom.engine.epoch_indices``: every rank takes every
  ``world_size``-th item of the same epoch-seeded permutation, ``n_items // world_size`` items each.)
* :func:`all_reduce_metric` sums a ``SegmentationMetric``'s pixel counts over ranks exactly, so sharded validation
  gives the figures of a single-device evaluation.
* :func:`broadcast_from_rank0` makes the starting weights identical on every rank;
  :func:`broadcast_batchnorm_statistics` gives every rank rank 0's BN running statistics before evaluating.
* :func:`rank_zero_only` guards code that writes files or prints.

Facts measured here (mindspore 2.0.0, CPU, mccl) that shape this module:

* ``communication.init()`` refuses PyNative in dynamic networking, so we init in GRAPH_MODE and restore the requested
  mode afterwards (PyNative after init still all-reduces).
* The scheduler process (``MS_ROLE=MS_SCHED``) runs the user script too; after ``init()`` it must not train. When it
  then exits, MindSpore's exit handler keeps it alive until every worker has unregistered.
* Ranks are assigned by registration order, not by start order; setting ``MS_NODE_ID`` to differing values broke
  the mccl group set-up, so the launcher learns each process's rank from the line :func:`init_distributed` prints.
* The CPU ``AllReduce`` kernel takes float32/float64 only (no int32/int64), hence the exact integer reduction below.
* MindSpore 2.0's cluster client loses replies that come back fast when every CPU is busy (see
  :func:`cluster_start_affinity`).
"""
import contextlib
import functools
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np

from foundation.platform import CLUSTER_CLIENT_LOSES_FAST_REPLIES

# Printed by every worker once it knows its rank; scripts/launch.py parses it to name ranks in its messages.
RANK_ANNOUNCEMENT = "[distributed] rank {rank} of {world_size} (pid {pid})"

# Exact reduction of integer counts through a float32 AllReduce (the dtype every backend supports): counts are
# split into 12-bit limbs, so a limb summed over up to 4096 ranks stays below 2**24, float32's exact-integer range.
_LIMB_BITS = 12
_LIMBS = 5  # 60 bits: pixel counts of any data set
_MAX_EXACT_RANKS = 2 ** (24 - _LIMB_BITS)

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the data-parallel job.

    Attributes:
        rank: 0-based rank in the world group.
        world_size: number of data-parallel processes.
        distributed: True when ``communication.init()`` has run (even with ``world_size == 1``).
        backend: "mccl" (CPU), "nccl" (GPU), "hccl" (Ascend), or "" on a single device.
    """

    rank: int = 0
    world_size: int = 1
    distributed: bool = False
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one process that writes files and shows progress."""
        return self.rank == 0


def _comm_initialised() -> bool:
    try:
        from mindspore.communication.management import GlobalComm
    except ImportError:  # pragma: no cover - every MindSpore 2.x has it
        return False
    return bool(getattr(GlobalComm, "INITED", False))


def get_rank() -> int:
    """This process's rank in the data-parallel group (0 without ``communication.init()``).

    Returns:
        int in ``[0, get_world_size())``.
    """
    if not _comm_initialised():
        return 0
    from mindspore.communication import get_rank as ms_get_rank
    return int(ms_get_rank())


def get_world_size() -> int:
    """Number of data-parallel processes (1 without ``communication.init()``).

    Returns:
        int >= 1.
    """
    if not _comm_initialised():
        return 1
    from mindspore.communication import get_group_size
    return int(get_group_size())


def is_main_process() -> bool:
    """True on rank 0, the only process that writes checkpoints, logs and plots and shows progress bars.

    Returns:
        bool.
    """
    return get_rank() == 0


def is_distributed() -> bool:
    """True when this process belongs to an initialised communication group with more than one member.

    Returns:
        bool.
    """
    return _comm_initialised() and get_world_size() > 1


def launched_distributed(environ: Optional[dict] = None) -> bool:
    """Whether a launcher started this process as part of a multi-process job.

    Recognised: the dynamic cluster (``MS_ROLE`` set, as by ``scripts/launch.py``), OpenMPI's ``mpirun``
    (``OMPI_COMM_WORLD_SIZE``), and an Ascend rank table (``RANK_TABLE_FILE`` or ``MINDSPORE_HCCL_CONFIG_PATH`` with
    ``RANK_SIZE`` > 1).

    Args:
        environ: environment mapping to inspect; ``os.environ`` by default.

    Returns:
        bool.

    Raises:
        ValueError: ``RANK_SIZE`` is not an integer while a rank table is set.
    """
    env = os.environ if environ is None else environ
    if env.get("MS_ROLE"):
        return True
    if env.get("OMPI_COMM_WORLD_SIZE"):
        return True
    has_rank_table = bool(env.get("RANK_TABLE_FILE") or env.get("MINDSPORE_HCCL_CONFIG_PATH"))
    if not has_rank_table:
        return False
    try:
        return int(env.get("RANK_SIZE") or 1) > 1
    except ValueError:
        raise ValueError(f"environment variable RANK_SIZE must be an integer, got {env.get('RANK_SIZE')!r}") from None


def init_distributed(device_target: str = "CPU", mode: Optional[int] = None,
                     announce: bool = True) -> DistributedContext:
    """Join the data-parallel job if a launcher started this process; a no-op on a single device.

    Under a launcher: sets GRAPH_MODE and ``device_target`` (and ``device_id`` from ``DEVICE_ID`` on Ascend/GPU), calls
    ``mindspore.communication.init()``, exits the process right away if it is the dynamic-cluster scheduler, then
    sets ``DATA_PARALLEL`` with ``gradients_mean=True`` and restores ``mode``. On MindSpore 2.0 ``init()`` runs
    inside :func:`cluster_start_affinity` (scheduler and workers on disjoint CPUs). Build the network and the
    ``TrainOneStepCell`` *after* this call: the cell decides at construction whether to all-reduce gradients.

    Args:
        device_target: "CPU", "GPU" or "Ascend".
        mode: ``mindspore.GRAPH_MODE`` or ``mindspore.PYNATIVE_MODE`` to run in after init; ``None`` keeps the
            mode that was set before the call.
        announce: print :data:`RANK_ANNOUNCEMENT` (the launcher reads it to name ranks in its messages).

    Returns:
        :class:`DistributedContext` of this process.

    Raises:
        ValueError: ``device_target`` is not one of CPU/GPU/Ascend.
        RuntimeError: from MindSpore when the cluster cannot be formed (scheduler unreachable, wrong port...).
    """
    import mindspore as ms

    if device_target not in ("CPU", "GPU", "Ascend"):
        raise ValueError(f"init_distributed: device_target must be CPU, GPU or Ascend, got {device_target!r}")
    requested_mode = ms.get_context("mode") if mode is None else mode
    if not launched_distributed():
        ms.set_context(mode=requested_mode)
        _use_device(ms, device_target)
        return DistributedContext()

    from mindspore.communication import init
    from mindspore.context import ParallelMode

    # Dynamic networking rejects PyNative at init time ("PyNative mode is not supported in dynamic networking").
    ms.set_context(mode=ms.GRAPH_MODE)
    _use_device(ms, device_target)
    if device_target in ("Ascend", "GPU") and os.environ.get("DEVICE_ID"):
        ms.set_context(device_id=int(os.environ["DEVICE_ID"]))
    with cluster_start_affinity(os.environ.get("MS_ROLE", ""), enabled=CLUSTER_CLIENT_LOSES_FAST_REPLIES):
        init()
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        # The scheduler only brokers the cluster; MindSpore's exit handler keeps it up until the workers are done.
        sys.exit(0)

    rank, world_size = get_rank(), get_world_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=world_size)
    ms.set_context(mode=requested_mode)
    backend = {"CPU": "mccl", "GPU": "nccl", "Ascend": "hccl"}[device_target]
    if announce:
        print(RANK_ANNOUNCEMENT.format(rank=rank, world_size=world_size, pid=os.getpid()), flush=True)
    return DistributedContext(rank=rank, world_size=world_size, distributed=True, backend=backend)


def _use_device(ms, device_target: str) -> None:
    """Select ``device_target`` unless it already is (runtime.select_device usually did it; asking again with
    ``set_context(device_target=...)`` logs a deprecation warning on 2.10)."""
    if ms.get_context("device_target") != device_target:
        ms.set_context(device_target=device_target)


def cluster_cpu_split(allowed_cpus, role: str) -> Optional[set]:
    """The CPUs a dynamic-cluster process may use while the cluster forms: the scheduler gets the highest allowed
    CPU alone, every worker all the others.

    Args:
        allowed_cpus: CPU numbers this process may run on (``os.sched_getaffinity(0)``).
        role: ``MS_ROLE`` of the process (``MS_SCHED``, ``MS_WORKER``, ...).

    Returns:
        set of CPU numbers, or None when fewer than 2 CPUs are allowed (nothing to split).
    """
    cpus = set(allowed_cpus)
    if len(cpus) < 2:
        return None
    scheduler_cpu = max(cpus)
    return {scheduler_cpu} if role == "MS_SCHED" else cpus - {scheduler_cpu}


@contextlib.contextmanager
def cluster_start_affinity(role: str, enabled: bool = True):
    """Keep the scheduler and the workers on disjoint CPUs while ``communication.init()`` forms the cluster.

    Why: before 2.10 MindSpore's cluster client sends a request and only then clears the slot its reply lands in
    (``foundation.platform.CLUSTER_CLIENT_LOSES_FAST_REPLIES``). When every core is busy, the scheduler, woken by the
    request on the worker's own core, can answer inside that window and the reply is erased: the start hangs or
    fails. A scheduler that cannot run on a worker's CPU cannot preempt the worker there (bench/PERFORMANCE.md,
    "Cluster start under load", has the measurements).

    The affinity of the calling thread is narrowed for the block; the threads MindSpore starts inside it (the rpc
    event loops, the heartbeat thread that keeps sending requests for the whole run, the collective's TCP threads)
    inherit it and keep it, and the calling thread gets its CPUs back afterwards, so compute threads created later
    use every CPU. The scheduler keeps its single CPU (it only brokers the cluster and exits).

    Args:
        role: ``MS_ROLE`` of this process.
        enabled: False makes this a no-op (MindSpore versions without the lost-reply bug).

    Yields:
        the CPU set used inside the block, or None when nothing was changed (disabled, no affinity API, < 2 CPUs).
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpus = cluster_cpu_split(allowed, role)
    if cpus is None:
        yield None
        return
    os.sched_setaffinity(0, cpus)
    try:
        yield cpus
    finally:
        if role != "MS_SCHED":
            os.sched_setaffinity(0, allowed)


def rank_zero_only(function: Callable[..., T]) -> Callable[..., Optional[T]]:
    """Decorator: run ``function`` on rank 0 only; other ranks get ``None`` without calling it.

    Args:
        function: typically something that writes files or prints.

    Returns:
        The wrapped function.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if is_main_process():
            return function(*args, **kwargs)
        return None
    return wrapper


def shard_for_evaluation(n_items: int, rank: Optional[int] = None, world_size: Optional[int] = None) -> np.ndarray:
    """This rank's share of an evaluation set: ``rank, rank + W, rank + 2W, ...`` with no padding and no drop.

    Over all ranks every index appears exactly once, so summed metric counts equal a single-device evaluation.
    Ranks may get one item more or less than each other (fine: evaluation has no collective per batch).

    Args:
        n_items: dataset length.
        rank, world_size: default to :func:`get_rank` / :func:`get_world_size`.

    Returns:
        int64 array of dataset indices in increasing order.
    """
    rank = get_rank() if rank is None else int(rank)
    world_size = get_world_size() if world_size is None else int(world_size)
    _check_rank(rank, world_size)
    return np.arange(rank, int(n_items), world_size, dtype=np.int64)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of size {world_size}")


def _all_reduce_sum_float(values: np.ndarray) -> np.ndarray:
    """Sum a float32 array over the world group (eager AllReduce; works in GRAPH_MODE and PyNative)."""
    import mindspore as ms
    from mindspore import ops
    reduced = ops.AllReduce(op=ops.ReduceOp.SUM)(ms.Tensor(np.ascontiguousarray(values, dtype=np.float32)))
    return reduced.asnumpy()


def all_reduce_counts(counts) -> np.ndarray:
    """Exact sum of non-negative integer counts over all ranks (identity on a single device).

    Every rank must call it, with arrays of the same shape, the same number of times (it is a collective).

    Args:
        counts: int array-like of any shape, values in ``[0, 2**60)``.

    Returns:
        int64 array of the same shape: the element-wise sum over ranks.

    Raises:
        ValueError: negative or too large counts, or more ranks than the exact float32 limb sum allows.
    """
    values = np.asarray(counts)
    if values.dtype.kind not in "iub":
        raise ValueError(f"all_reduce_counts: integer counts expected, got dtype {values.dtype}")
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= 2 ** (_LIMB_BITS * _LIMBS)):
        raise ValueError("all_reduce_counts: counts must lie in [0, 2**60)")
    if not is_distributed():
        return values.copy()
    if get_world_size() > _MAX_EXACT_RANKS:
        raise ValueError(f"all_reduce_counts: at most {_MAX_EXACT_RANKS} ranks are summed exactly")
    mask = (1 << _LIMB_BITS) - 1
    limbs = np.stack([(values >> (_LIMB_BITS * i)) & mask for i in range(_LIMBS)])
    summed = np.rint(_all_reduce_sum_float(limbs.astype(np.float32))).astype(np.int64)
    total = np.zeros_like(values)
    for i in range(_LIMBS):
        total += summed[i] << (_LIMB_BITS * i)
    return total


# The count attributes of encoding_custom.evaluation.metrics.SegmentationMetric (PyTorch-Encoding's names).
METRIC_COUNT_ATTRIBUTES: Sequence[str] = ("total_correct", "total_label", "total_inter", "total_union")


def all_reduce_metric(metric, attributes: Sequence[str] = METRIC_COUNT_ATTRIBUTES):
    """Replace a metric's per-rank pixel counts by their sum over ranks, in place (a collective: call on every rank).

    After it, ``metric.get()`` on any rank gives the figures of one device evaluating the union of the shards.

    Args:
        metric: object with integer (scalar or array) count attributes, e.g. ``SegmentationMetric``.
        attributes: names of those attributes.

    Returns:
        the same ``metric``.

    Raises:
        AttributeError: naming the missing attribute.
    """
    for name in attributes:
        if not hasattr(metric, name):
            raise AttributeError(f"all_reduce_metric: {type(metric).__name__} has no count attribute {name!r}")
    # One collective for all counts: fewer round trips, and every rank issues the same sequence.
    parts = [np.atleast_1d(np.asarray(getattr(metric, name))) for name in attributes]
    summed = all_reduce_counts(np.concatenate([p.astype(np.int64).ravel() for p in parts]))
    offset = 0
    for name, part in zip(attributes, parts):
        chunk = summed[offset:offset + part.size]
        offset += part.size
        original = getattr(metric, name)
        if np.ndim(original) == 0:
            setattr(metric, name, int(chunk[0]))
        else:
            setattr(metric, name, chunk.reshape(np.shape(original)).astype(np.asarray(original).dtype))
    return metric


_BROADCAST_CHUNK_ELEMENTS = 16 * 1024 * 1024  # 64 MiB of float32 per collective


def broadcast_from_rank0(network, select: Optional[Callable[[object], bool]] = None) -> int:
    """Give every rank rank 0's parameter values (all Parameters by default, trainable or not).

    Data parallelism needs identical starting weights; seeding every rank alike usually gives them, this makes it
    certain (random inits, weights loaded from a file present on rank 0 only...). Implemented as an all-reduce of
    "rank 0's value, zeros elsewhere" (exact: ``x + 0 = x``), which every backend supports, in chunks of 64 MiB.
    A no-op on a single device. A collective: call it on every rank, with the same network structure.

    Args:
        network: Cell / ``modules.tnn`` Module whose parameters are overwritten in place.
        select: optional ``f(parameter) -> bool`` choosing which parameters to broadcast (same on every rank).

    Returns:
        number of parameters broadcast (0 on a single device).

    Raises:
        ValueError: an integer parameter holds negative values (integers go through :func:`all_reduce_counts`).
    """
    if not is_distributed():
        return 0
    import mindspore as ms
    is_root = get_rank() == 0
    params = [p for p in network.get_parameters() if select is None or select(p)]
    floats = [p for p in params if np.issubdtype(p.asnumpy().dtype, np.floating)]
    integers = [p for p in params if not np.issubdtype(p.asnumpy().dtype, np.floating)]
    # Pack float parameters into large float32 buffers: one collective per chunk instead of one per tensor.
    chunk: list = []
    chunk_elements = 0

    def flush():
        if not chunk:
            return
        values = [p.asnumpy().astype(np.float32).ravel() for p in chunk]
        packed = np.concatenate(values) if is_root else np.zeros(sum(v.size for v in values), np.float32)
        reduced = _all_reduce_sum_float(packed)
        offset = 0
        for param in chunk:
            size = int(np.prod(param.shape, dtype=np.int64))
            value = reduced[offset:offset + size].reshape(param.shape).astype(param.asnumpy().dtype)
            param.set_data(ms.Tensor(value))
            offset += size

    for param in floats:
        size = int(np.prod(param.shape, dtype=np.int64))
        if chunk and chunk_elements + size > _BROADCAST_CHUNK_ELEMENTS:
            flush()
            chunk, chunk_elements = [], 0
        chunk.append(param)
        chunk_elements += size
    flush()
    for param in integers:
        value = param.asnumpy()
        if value.size and value.min() < 0:
            raise ValueError(f"broadcast_from_rank0: integer parameter {param.name} holds negative values")
        reduced = all_reduce_counts(value if is_root else np.zeros_like(value))
        param.set_data(ms.Tensor(reduced.astype(value.dtype)))
    return len(params)


# Names of BatchNorm running statistics: PyTorch (modules.tnn, msadapter) and MindSpore spellings.
BATCHNORM_STATISTICS_SUFFIXES: Sequence[str] = ("running_mean", "running_var", "num_batches_tracked",
                                                "moving_mean", "moving_variance")


def is_batchnorm_statistic(param) -> bool:
    """True for a BatchNorm running mean/variance (or batch counter) Parameter, judged by its name.

    Args:
        param: a Parameter.

    Returns:
        bool.
    """
    return str(param.name).endswith(tuple(BATCHNORM_STATISTICS_SUFFIXES))


def broadcast_batchnorm_statistics(network) -> int:
    """Give every rank rank 0's BatchNorm running statistics; call it on every rank before a sharded evaluation.

    Training normalises with per-device batch statistics, so each rank's running mean/variance drift apart, while
    the trainable weights stay identical (averaged gradients). PyTorch DDP, which the official run used, broadcasts
    rank 0's buffers at every forward; doing it before evaluating makes every rank evaluate rank 0's model — the one
    rank 0 saves — so the all-reduced figures equal a single-device evaluation of the checkpoint.

    Args:
        network: Cell / ``modules.tnn`` Module.

    Returns:
        number of parameters broadcast (0 on a single device).
    """
    return broadcast_from_rank0(network, select=is_batchnorm_statistic)


def global_batch_size(per_device_batch_size: int, world_size: Optional[int] = None) -> int:
    """Images per optimizer step over all devices (before gradient accumulation).

    Args:
        per_device_batch_size: ``--batch_size``, images per device.
        world_size: defaults to :func:`get_world_size`.

    Returns:
        ``per_device_batch_size * world_size``.
    """
    world_size = get_world_size() if world_size is None else int(world_size)
    return int(per_device_batch_size) * world_size
