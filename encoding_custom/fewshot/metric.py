"""HSNet's few-shot segmentation metric (``fewshot_data/common/evaluation.py`` + ``logger.AverageMeter``), in numpy.

Per episode (a query image with one class), :func:`episode_areas` counts the background (0) and foreground (1)
pixels of the prediction, of the ground truth and of their agreement as ``torch.histc(bins=2, min=0, max=1)``
does: values in ``[0, 0.5)`` go to bin 0, ``[0.5, 1]`` to bin 1, anything else (the ignore value 255, negatives,
NaN) is not counted. With PASCAL's boundary mask, ground-truth boundary pixels become 255 and the prediction is set
to 255 there too, so they count nowhere. Union = prediction + ground truth - intersection.

:class:`FewShotMeter` adds the areas per class id (``index_add``) and reports, over the fold's classes only,

- mIoU = mean over classes of ``foreground intersection / max(foreground union, 1)`` × 100 (a class without
  episodes counts 0);
- FB-IoU = mean over {background, foreground} of ``sum of intersections / sum of unions`` × 100.

The official buffers are float32 (sums above 2**24 pixels round); ours are exact integers, which differs from it by
far less than 1e-5 in the reported percentages.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from encoding_custom.fewshot.splits import BENCHMARK_CLASSES

IGNORE_VALUE = 255


def histc_two_bins(values: np.ndarray) -> np.ndarray:
    """``torch.histc(values, bins=2, min=0, max=1)`` on the last axis.

    Args:
        values: array (..., N) of any real dtype.

    Returns:
        int64 (..., 2): counts of values in ``[0, 0.5)`` and in ``[0.5, 1]``; other values are not counted.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        in_range = (values >= 0) & (values <= 1)
        upper = in_range & (values >= 0.5)
    return np.stack([(in_range & ~upper).sum(axis=-1), upper.sum(axis=-1)], axis=-1).astype(np.int64)


def episode_areas(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Background/foreground intersection and union of each episode (``Evaluator.classify_prediction``).

    Args:
        pred: (B, H, W) predicted labels (0 = background, 1 = the episode's class), any real dtype.
        gt: (B, H, W) ground truth, 0/1.
        ignore: optional (B, H, W) PASCAL boundary mask, 1 = ignored (``query_ignore_idx``); it must not overlap the
            foreground of ``gt``.

    Returns:
        ``(intersection, union)``, each int64 (2, B): row 0 background, row 1 foreground.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(f"pred/gt: expected two (B, H, W) arrays of one shape, got {pred.shape} and {gt.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=np.float64)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore: expected shape {gt.shape}, got {ignore.shape}")
        if np.logical_and(ignore, gt).any():
            raise ValueError("ignore: boundary pixels overlap the ground-truth foreground")
        gt = gt + ignore * IGNORE_VALUE
        pred = np.where(gt == IGNORE_VALUE, IGNORE_VALUE, pred)
    batch = pred.shape[0]
    pred, gt = pred.reshape(batch, -1), gt.reshape(batch, -1)
    agree = np.where(pred == gt, pred, np.nan)  # histc of the agreeing pixels' values; NaN is never counted
    intersection = histc_two_bins(agree).T
    union = histc_two_bins(pred).T + histc_two_bins(gt).T - intersection
    return intersection, union


class FewShotMeter:
    """Accumulates episodes per class id and computes HSNet's mIoU and FB-IoU over a fold's classes.

    Args:
        benchmark: ``"pascal"`` (20 classes), ``"coco"`` (80) or ``"fss"`` (1000).
        class_ids: the classes the figures average over (the fold's test classes, ``dataset.class_ids``).
    """

    def __init__(self, benchmark: str, class_ids: Sequence[int]):
        if benchmark not in BENCHMARK_CLASSES:
            raise ValueError(f"benchmark: expected one of {sorted(BENCHMARK_CLASSES)}, got {benchmark!r}")
        self.benchmark = benchmark
        self.nclass = BENCHMARK_CLASSES[benchmark]
        self.class_ids = self._check_class_ids(np.asarray(list(class_ids)), "class_ids")
        if self.class_ids.size == 0:
            raise ValueError("class_ids: empty")
        self.intersection = np.zeros((2, self.nclass), dtype=np.int64)
        self.union = np.zeros((2, self.nclass), dtype=np.int64)
        self.episodes = 0

    def _check_class_ids(self, class_ids: np.ndarray, name: str) -> np.ndarray:
        if class_ids.ndim != 1 or (class_ids.size and not np.issubdtype(class_ids.dtype, np.integer)):
            raise ValueError(f"{name}: expected a 1-D list of integer class ids, got {class_ids!r}")
        if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= self.nclass):
            raise ValueError(f"{name}: class ids must be in 0..{self.nclass - 1} for {self.benchmark}, "
                             f"got {class_ids.tolist()}")
        return class_ids.astype(np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray, class_ids: Sequence[int],
               ignore: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Add a batch of episodes.

        Args:
            pred: (B, H, W) predicted labels (argmax over the ``['others', class]`` logits).
            gt: (B, H, W) ground truth 0/1 (``query_mask``).
            class_ids: (B,) class id of each episode.
            ignore: optional (B, H, W) boundary mask (PASCAL's ``query_ignore_idx``), see :func:`episode_areas`.

        Returns:
            the batch's ``(intersection, union)``, int64 (2, B).
        """
        class_ids = self._check_class_ids(np.asarray(class_ids).reshape(-1), "class_ids")
        intersection, union = episode_areas(pred, gt, ignore)
        if class_ids.shape[0] != intersection.shape[1]:
            raise ValueError(f"class_ids: expected {intersection.shape[1]} ids (one per episode), "
                             f"got {class_ids.shape[0]}")
        np.add.at(self.intersection, (slice(None), class_ids), intersection)
        np.add.at(self.union, (slice(None), class_ids), union)
        self.episodes += int(class_ids.shape[0])
        return intersection, union

    def class_iou(self) -> np.ndarray:
        """Per-class IoU over the meter's class ids: float64 (2, len(class_ids)), rows background / foreground."""
        union = np.maximum(self.union[:, self.class_ids], 1)
        return self.intersection[:, self.class_ids] / union

    def compute(self) -> Tuple[float, float]:
        """``(mIoU, FB-IoU)`` in percent, as ``AverageMeter.compute_iou`` (FB-IoU is NaN before any pixel)."""
        miou = float(self.class_iou()[1].mean() * 100)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = self.intersection[:, self.class_ids].sum(axis=1) / self.union[:, self.class_ids].sum(axis=1)
        return miou, float(ratios.mean() * 100)
