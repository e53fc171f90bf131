"""Several data sets trained as one (``--dataset ade20k,folder``): one label list, the union of theirs, and every
sample tagged with its set so that its loss sees its own set's labels only.

The union keeps each name once, in order of first appearance: a name two sets share (``sky``) is one label, trained
by both. Samples are ``(image, mask, set index)`` with the mask renumbered into the union (-1 stays ignored); the
training forward turns the set index into a mask over the union (``encoding_custom.tasks.multi_set``).

No MindSpore import.
"""
import bisect
from typing import List, Sequence, Tuple

import numpy as np


def union_labels(label_sets: Sequence[Sequence[str]]) -> Tuple[List[str], List[List[int]]]:
    """Args: label_sets: each set's label names.

    Returns:
        ``(union, positions)``: every name once in order of first appearance, and per set the union index of each of
        its labels.
    """
    union: List[str] = []
    index_of = {}
    positions = []
    for names in label_sets:
        for name in names:
            if name not in index_of:
                index_of[name] = len(union)
                union.append(name)
        positions.append([index_of[name] for name in names])
    return union, positions


def own_label_mask(positions: Sequence[Sequence[int]], n_labels: int) -> np.ndarray:
    """Args: positions: per set the union indices of its labels; n_labels: the union's size.

    Returns:
        float32 (n_sets, n_labels): 1 where a label is the set's own, else 0.
    """
    mask = np.zeros((len(positions), n_labels), np.float32)
    for row, own in enumerate(positions):
        mask[row, own] = 1.0
    return mask


class UnionSet:
    """The training samples of several sets, one after the other, with masks in the union's label indices.

    Args:
        datasets: each set's dataset (``(image, mask in its own indices or -1)``; keys an index or ``(epoch,
            index)``).
        positions: per set the union index of each of its labels (:func:`union_labels`).

    Keys, ``set_epoch`` and lengths behave as for one dataset; an item is ``(image, mask int32 (H, W) in union
    indices or -1, set index int32)``.
    """

    def __init__(self, datasets: Sequence, positions: Sequence[Sequence[int]]):
        if len(datasets) != len(positions):
            raise ValueError("UnionSet: %d data sets but %d label lists" % (len(datasets), len(positions)))
        self.datasets = list(datasets)
        self.starts = np.cumsum([0] + [len(dataset) for dataset in self.datasets]).tolist()
        # one extra slot at the end, addressed by -1: ignored pixels stay ignored
        self.lookups = [np.asarray(list(own) + [-1], np.int32) for own in positions]

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to every set (per-epoch augmentation)."""
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, index: int) -> Tuple[int, int]:
        """Args: index: a position in the union. Returns: ``(set index, position within that set)``."""
        if not 0 <= index < len(self):
            raise IndexError("UnionSet: index %d outside 0..%d" % (index, len(self) - 1))
        part = bisect.bisect_right(self.starts, index) - 1
        return part, index - self.starts[part]

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (None, key)
        part, inner = self.locate(int(index))
        image, mask = self.datasets[part][inner if epoch is None else (epoch, inner)]
        mask = np.asarray(mask)
        return image, self.lookups[part][np.where(mask < 0, -1, mask)], np.int32(part)
