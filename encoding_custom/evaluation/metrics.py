"""Segmentation metrics with PyTorch-Encoding's definitions (``encoding/utils/metrics.py``), in numpy.

Definitions (targets use -1 for ignored pixels; classes are 0 .. nclass-1):

* ``pixAcc = correct / labelled`` summed over the whole set, where labelled pixels have ``target >= 0`` and
  correct ones also have ``pred == target``.
* Per class ``c``, over the whole set and over labelled pixels only: ``inter_c = #(pred == c and target == c)``,
  ``union_c = #(pred == c) + #(target == c) - inter_c``; ``IoU_c = inter_c / (eps + union_c)`` with
  ``eps = np.spacing(1)``.
* **mIoU = mean of IoU_c over all ``nclass`` classes** (a class absent from both predictions and targets counts
  as 0, exactly like PyTorch-Encoding and lang-seg's reported numbers).
* ``miou_present`` = mean of IoU_c over the classes with ``union_c > 0`` (what MMSegmentation reports; equal to
  mIoU when every class occurs, as on the full ADE20K validation set).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from foundation.labels import display_columns, padded


def to_numpy(array) -> np.ndarray:
    """numpy view of a numpy array, MindSpore tensor or nested list (shared by the evaluator and engine)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "asnumpy"):
        return array.asnumpy()
    if hasattr(array, "numpy"):
        return array.numpy()
    return np.asarray(array)


def _as_labels(pred, target: np.ndarray) -> np.ndarray:
    """Class indices from either labels (same shape as target) or scores (B, C, H, W) → argmax over C."""
    pred = to_numpy(pred)
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(axis=1 if pred.ndim == 4 else 0)
    if pred.shape != target.shape:
        raise ValueError(f"SegmentationMetric.update: prediction shape {pred.shape} does not match target shape "
                         f"{target.shape}")
    return pred.astype(np.int64)


def pixel_accuracy_counts(pred_labels: np.ndarray, target: np.ndarray):
    """Correct and labelled pixel counts of one batch (PyTorch-Encoding ``batch_pix_accuracy``).

    Args:
        pred_labels: int array of predicted classes, any shape.
        target: int array of the same shape, -1 (or any negative) = ignored.

    Returns:
        ``(correct, labelled)`` ints.
    """
    labelled = target >= 0
    return int(np.count_nonzero((pred_labels == target) & labelled)), int(np.count_nonzero(labelled))


def intersection_union_counts(pred_labels: np.ndarray, target: np.ndarray, nclass: int):
    """Per-class intersection and union pixel counts of one batch (PyTorch-Encoding ``batch_intersection_union``).

    Only labelled pixels (target >= 0) count; predictions or targets outside ``[0, nclass)`` fall in no class.

    Args:
        pred_labels: int array of predicted classes.
        target: int array of the same shape, negative = ignored.
        nclass: number of classes.

    Returns:
        ``(intersection (nclass,), union (nclass,))`` int64 arrays.
    """
    labelled = target >= 0
    pred = pred_labels[labelled]
    true = target[labelled]

    def counts(values):
        inside = (values >= 0) & (values < nclass)
        return np.bincount(values[inside], minlength=nclass)[:nclass].astype(np.int64)

    area_inter = counts(pred[pred == true])
    area_pred = counts(pred)
    area_true = counts(true)
    return area_inter, area_pred + area_true - area_inter


class SegmentationMetric:
    """Accumulates pixAcc and IoU over a data set (definitions in the module docstring).

    Args:
        nclass: number of classes.
    """

    def __init__(self, nclass: int):
        self.nclass = nclass
        self.reset()

    def reset(self):
        """Forget everything accumulated so far."""
        self.total_correct = 0
        self.total_label = 0
        self.total_inter = np.zeros(self.nclass, dtype=np.int64)
        self.total_union = np.zeros(self.nclass, dtype=np.int64)

    def update(self, pred, target):
        """Add one batch.

        Note the argument order: predictions first (PyTorch-Encoding's own ``update(labels, preds)`` is the
        reverse). Negative predicted labels are rejected, which catches swapped arguments.

        Args:
            pred: predicted labels with the target's shape, or scores (B, C, H, W) (argmax over C is taken), as
                numpy or MindSpore tensors; or a list of such (e.g. testval images of different sizes).
            target: int labels (B, H, W) (or (H, W)), -1 = ignored; or a list matching ``pred``.
        """
        if isinstance(pred, (list, tuple)):
            if not isinstance(target, (list, tuple)) or len(target) != len(pred):
                raise ValueError("SegmentationMetric.update: a list of predictions needs a list of targets of the "
                                 "same length")
            for one_pred, one_target in zip(pred, target):
                self.update(one_pred, one_target)
            return
        target = to_numpy(target).astype(np.int64)
        labels = _as_labels(pred, target)
        if labels.size and labels.min() < 0:
            raise ValueError("SegmentationMetric.update: negative predicted labels; the order is update(pred, "
                             "target) with -1 (ignore) only in the target")
        correct, labelled = pixel_accuracy_counts(labels, target)
        inter, union = intersection_union_counts(labels, target, self.nclass)
        self.total_correct += correct
        self.total_label += labelled
        self.total_inter += inter
        self.total_union += union

    def per_class_iou(self) -> np.ndarray:
        """IoU of every class, ``inter / (eps + union)`` (0 for classes never seen nor predicted).

        Returns:
            float64 array (nclass,).
        """
        return self.total_inter / (np.spacing(1) + self.total_union)

    def pixel_accuracy(self) -> float:
        """correct / labelled pixels so far (0 before any labelled pixel)."""
        return float(self.total_correct / (np.spacing(1) + self.total_label))

    def miou_present(self) -> float:
        """Mean IoU over the classes with a non-empty union (MMSegmentation's figure); nan if none."""
        present = self.total_union > 0
        if not present.any():
            return float("nan")
        return float(self.per_class_iou()[present].mean())

    def get(self):
        """The official figures.

        Returns:
            ``(pixAcc, mIoU)`` floats, mIoU averaged over all ``nclass`` classes.
        """
        return self.pixel_accuracy(), float(self.per_class_iou().mean())

    def get_all(self):
        """Raw totals, as lang-seg's test script reads them.

        Returns:
            ``(total_correct, total_label, total_inter (nclass,), total_union (nclass,))``.
        """
        return self.total_correct, self.total_label, self.total_inter.copy(), self.total_union.copy()

    def table(self, class_names: Optional[Sequence[str]] = None) -> str:
        """Per-class IoU table plus the summary figures, for logs.

        Args:
            class_names: names of the classes (default: their indices).

        Returns:
            multi-line string.
        """
        names = list(class_names) if class_names is not None else [str(index) for index in range(self.nclass)]
        if len(names) != self.nclass:
            raise ValueError(f"SegmentationMetric.table: {len(names)} class names for {self.nclass} classes")
        iou = self.per_class_iou()
        width = max(display_columns(name) for name in names + ["class"])
        lines = [f"{padded('class', width)}  {'IoU':>7}  {'union px':>10}"]
        for name, value, union in zip(names, iou, self.total_union):
            lines.append(f"{padded(name, width)}  {value:7.4f}  {union:10d}")
        pix_acc, miou = self.get()
        lines.append(f"pixAcc {pix_acc:.4f}  mIoU (all {self.nclass} classes) {miou:.4f}  "
                     f"mIoU (classes present: {int((self.total_union > 0).sum())}) {self.miou_present():.4f}")
        return "\n".join(lines)


@dataclass
class SeenUnseenMIoU:
    """The mIoU of the classes a network was trained with and of the others (open-vocabulary transfer).

    Attributes:
        seen, unseen: the class names of each group, in the set's order.
        seen_miou, unseen_miou: the mean IoU over each group (nan for an empty group).
        harmonic: their harmonic mean, as the open-vocabulary segmentation literature reports it (hIoU).
    """
    seen: List[str]
    unseen: List[str]
    seen_miou: float
    unseen_miou: float
    harmonic: float

    def headline(self) -> str:
        """One line: the three figures."""
        return "mIoU seen %.4f, unseen %.4f, harmonic %.4f" % (self.seen_miou, self.unseen_miou, self.harmonic)

    def describe(self) -> str:
        """The figures and which classes are in which group, for the log."""
        return "%s\nseen (%d): %s\nunseen (%d): %s" % (self.headline(), len(self.seen), ", ".join(self.seen),
                                                        len(self.unseen), ", ".join(self.unseen))


def seen_unseen_miou(metric: SegmentationMetric, class_names: Sequence[str],
                     seen_names: Sequence[str]) -> SeenUnseenMIoU:
    """Split a set's mIoU into the classes a network was trained with and the others.

    Args:
        metric: the filled metric of the set (its ``nclass`` = ``len(class_names)``).
        class_names: the set's class names.
        seen_names: the labels the network was trained with (names compared exactly).

    Returns:
        :class:`SeenUnseenMIoU`; each group's mean counts an absent class as 0, as the overall mIoU does.
    """
    iou = metric.per_class_iou()
    trained = set(seen_names)
    is_seen = np.array([name in trained for name in class_names], dtype=bool)

    def mean(mask: np.ndarray) -> float:
        return float(iou[mask].mean()) if mask.any() else float("nan")

    seen, unseen = mean(is_seen), mean(~is_seen)
    if np.isnan(seen) or np.isnan(unseen):
        harmonic = float("nan")
    else:
        harmonic = 2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0
    return SeenUnseenMIoU([name for name, flag in zip(class_names, is_seen) if flag],
                          [name for name, flag in zip(class_names, is_seen) if not flag], seen, unseen,
                          float(harmonic))
