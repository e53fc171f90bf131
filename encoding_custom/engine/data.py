"""Epoch-seeded, rank-sharded batching of a map-style dataset (``__getitem__`` / ``__len__``).

Data order depends only on ``(seed, epoch)``, so a resumed run sees exactly the batches the uninterrupted run saw.
With several devices each rank takes every ``world_size``-th index of the same permutation (the contract of
PyTorch's ``DistributedSampler``).
"""
import multiprocessing
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from encoding_custom.datasets.workers import detach_worker
from encoding_custom.engine.distributed import get_rank, get_world_size


def epoch_indices(n_items: int, epoch: int, seed: int, shuffle: bool = True, rank: Optional[int] = None,
                  world_size: Optional[int] = None) -> np.ndarray:
    """The dataset indices one rank visits in one epoch.

    Args:
        n_items: dataset length.
        epoch: 0-based epoch (mixed into the permutation seed).
        seed: run seed.
        shuffle: permute (training) or keep order (validation).
        rank, world_size: default to MindSpore's communication group (0 / 1 on one device).

    Returns:
        int64 array; every rank gets ``n_items // world_size`` indices (the tail is dropped so ranks stay in step).
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if shuffle:
        order = np.random.RandomState((seed * 1_000_003 + epoch) % (2 ** 32)).permutation(n_items)
    else:
        order = np.arange(n_items)
    per_rank = n_items // world_size
    return order[rank: per_rank * world_size: world_size]


def _load_batch(dataset, indices: Sequence[int]) -> Tuple[np.ndarray, ...]:
    """Stack the samples ``dataset[i]`` of one batch column by column.

    Returns:
        ``(images float32 (B,3,H,W), masks int32 (B,H,W))``, plus one int32 (B, ...) column per further sample field
        (e.g. the class id of a few-shot training pair: ``(image, mask, class_id)``).
    """
    columns: List[List[np.ndarray]] = []
    for index in indices:
        sample = dataset[int(index)]
        if not columns:
            columns = [[] for _ in sample]
        elif len(sample) != len(columns):
            raise ValueError("dataset item %d has %d fields, the batch's first item %d" % (index, len(sample),
                                                                                        len(columns)))
        for column, value in zip(columns, sample):
            column.append(value)
    images = np.stack([np.asarray(image, dtype=np.float32) for image in columns[0]])
    return (images,) + tuple(np.stack([np.asarray(value, dtype=np.int32) for value in column])
                             for column in columns[1:])


_WORKER_DATASET = None


def _worker_init(dataset):
    global _WORKER_DATASET
    _WORKER_DATASET = dataset
    detach_worker()


def _worker_load(indices):
    return _load_batch(_WORKER_DATASET, indices)


class BatchLoader:
    """Iterates ``(images float32 (B,3,H,W), masks int32 (B,H,W))`` numpy batches of one epoch (plus an int32 column
    per further sample field, see :func:`_load_batch`).

    Args:
        dataset: map-style dataset returning ``(image (3,H,W), mask (H,W))`` (or ``(image, mask, class_id)``, ...);
            if it has ``set_epoch(epoch)``
            (per-epoch augmentation seeds) that is called before each epoch.
        batch_size: images per batch; incomplete last batches are dropped when ``drop_last``.
        seed: run seed for the permutation.
        shuffle: permute every epoch.
        workers: 0 loads in this process; N > 0 uses N forked processes (fork: children inherit the dataset
            without pickling it and do not import MindSpore again, as spawned ones would).
        drop_last: drop the incomplete last batch (training) or keep it (validation).
        max_items: use only the first N dataset items (quick runs).
        sampler: optional ``f(epoch) -> indices`` replacing :func:`epoch_indices` (custom sharding).
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, shuffle: bool = True, workers: int = 0,
                 drop_last: bool = True, max_items: Optional[int] = None,
                 sampler: Optional[Callable[[int], Sequence[int]]] = None):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.workers = int(workers)
        self.drop_last = drop_last
        self.n_items = len(dataset) if max_items is None else min(len(dataset), int(max_items))
        self.sampler = sampler

    def batch_indices(self, epoch: int) -> List[np.ndarray]:
        """The index lists of every batch of ``epoch`` for this rank."""
        if self.sampler is not None:
            order = np.asarray(list(self.sampler(epoch)), dtype=np.int64)
        else:
            order = epoch_indices(self.n_items, epoch, self.seed, self.shuffle)
        n_full = len(order) // self.batch_size
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n_full)]
        if not self.drop_last and len(order) % self.batch_size:
            batches.append(order[n_full * self.batch_size:])
        return batches

    def num_batches(self, epoch: int = 0) -> int:
        """Batches per epoch on this rank."""
        return len(self.batch_indices(epoch))

    def iterate(self, epoch: int, skip: int = 0) -> Iterator[Tuple[np.ndarray, ...]]:
        """Yield the batches of ``epoch``, starting after the first ``skip`` ones."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        batches = self.batch_indices(epoch)[skip:]
        if self.workers == 0:
            for indices in batches:
                yield _load_batch(self.dataset, indices)
            return
        context = multiprocessing.get_context("fork")
        with context.Pool(self.workers, initializer=_worker_init, initargs=(self.dataset,)) as pool:
            for batch in pool.imap(_worker_load, batches):
                yield batch
