"""Several data sets in one run: ``--dataset ade20k,folder --data_path ../datasets,/data/mine`` (kinds and folders
paired in order, any number of ADE20K and folder sets).

The network's labels are the union of the sets' (``encoding_custom.datasets.multi_set``); batches mix the sets, and
each image is scored against its own set's labels only (:class:`OwnLabelsForward`), so a set's images never train
another set's names as negatives. Validation runs per set, over its own labels, and reports each set's pixAcc/mIoU
(``mIoU/<set>``) and their means (``pixAcc``, ``mIoU``: what picks the best checkpoint). The checkpoint records the
union and every set's labels (``set_labels``).
"""
import copy
import os
from typing import Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from encoding_custom.datasets.multi_set import UnionSet, own_label_mask, union_labels
from encoding_custom.engine import evaluate
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.evaluation.evaluator import network_forward
from encoding_custom.tasks.base import OptionError, Task

# Added to the logits of the labels an image's set does not have: exp() of it is 0 in float32 and float16 alike, so
# those labels take no part in the softmax, the loss or its gradient (and it stays finite under float16 AMP).
OUTSIDE_LOGIT = -1.0e4


class OwnLabelsForward(nn.Cell):
    """The training forward of a multi-set run: ``(images, set indices) → logits (B, N, H, W)`` over the union of
    labels, every label outside the image's own set at :data:`OUTSIDE_LOGIT`.

    Args:
        net: an ``LSegNet`` whose labels are the union (its Parameters are this cell's: no prefix is added).
        own_mask: float32 (n_sets, N): 1 where a label is the set's own (``own_label_mask``).

    Inputs:
        inputs: tuple ``(images float32 (B, 3, H, W), set indices int32 (B,))``.
    """

    def __init__(self, net, own_mask: np.ndarray):
        super().__init__(auto_prefix=False)
        self.net = net
        self.outside = ms.Tensor((1.0 - own_mask) * OUTSIDE_LOGIT, ms.float32)

    def construct(self, inputs):
        images, set_indices = inputs
        logits = self.net(images)
        outside = ops.expand_dims(ops.expand_dims(ops.gather(self.outside, set_indices, 0), -1), -1)
        return logits + outside.astype(logits.dtype)


def per_set_validator(parts: Sequence[Tuple[str, object, List[int]]], batch_size: int,
                      max_images: Optional[int], workers: int):
    """A ``Trainer(validator=...)`` that validates every set over its own labels.

    Args:
        parts: per set ``(name, val dataset with masks in its own indices, union index of each of its labels)``.
        batch_size, max_images, workers: as the single-set validation (``max_images`` per set).

    Returns:
        ``f(network, stop) → {"pixAcc", "mIoU" (means over the sets), "pixAcc/<set>", "mIoU/<set>", ...}`` or None
        when stopped.
    """
    def validate(network, stop=None) -> Optional[Dict[str, float]]:
        forward = network_forward(network)
        figures = {}
        for name, dataset, own in parts:
            def predict(images, own=own):
                return np.argmax(forward(images)[:, own], axis=1)  # the set's own labels only
            metric = evaluate(predict, dataset, len(own), batch_size=batch_size, max_items=max_images,
                              workers=workers, stop=stop)
            if metric is None:
                return None
            figures["pixAcc/" + name], figures["mIoU/" + name] = (float(value) for value in metric.get())
        names = [name for name, _, _ in parts]
        means = {key: float(np.mean([figures[key + "/" + name] for name in names])) for key in ("pixAcc", "mIoU")}
        return dict(means, **figures)
    return validate


def set_names(kinds: Sequence[str], paths: Sequence[str]) -> List[str]:
    """Names of the sets in metrics and messages: ``ade20k``, a folder set's folder name; made unique."""
    names = []
    for kind, path in zip(kinds, paths):
        name = os.path.basename(os.path.normpath(path)) if kind == "folder" else kind
        names.append(name if name not in names else "%s#%d" % (name, len(names) + 1))
    return names


class MultiSetTask(Task):
    """Several ADE20K / folder sets trained together (see the module docstring).

    Args:
        args: the run's options (``--dataset`` and ``--data_path`` comma-separated and paired).
        kinds: the registry of single-set tasks (``encoding_custom.tasks.TASKS``).
    """

    def __init__(self, args, kinds: Dict[str, type]):
        super().__init__(args)
        self.kinds = args.dataset.split(",")
        paths = args.data_path.split(",")
        self.names = set_names(self.kinds, paths)
        self.parts = []
        for number, (kind, path) in enumerate(zip(self.kinds, paths)):
            part_args = copy.copy(args)
            part_args.dataset, part_args.data_path = kind, path
            part = kinds[kind](part_args)
            part.check_cache_name = "data_check_%d.json" % number  # each set's rule and files apart
            self.parts.append(part)

    def training_labels(self) -> Tuple[List[str], Optional[List[int]]]:
        label_sets = [part.training_labels()[0] for part in self.parts]
        labels, self.positions = union_labels(label_sets)
        self.args.set_labels = [[name, names] for name, names in zip(self.names, label_sets)]
        return labels, None

    def training_sets(self, exp_dir: str, world_size: int, main_process: bool):
        pairs = [part.training_sets(exp_dir, world_size, main_process) for part in self.parts]
        self.val_parts = [(name, val, own) for name, (_, val), own in zip(self.names, pairs, self.positions)]
        return (UnionSet([train for train, _ in pairs], self.positions),
                UnionSet([val for _, val in pairs], self.positions))

    def trainer_parts(self, net, labels: List[str], val_set):
        args = self.args
        validator = per_set_validator(self.val_parts, args.batch_size, args.max_val_images, args.workers)
        forward = OwnLabelsForward(net, own_label_mask(self.positions, len(labels)))
        return SegmentationLoss(ignore_index=-1), dict(train_network=forward, validator=validator), \
            args.max_train_images

    def summary(self, labels: List[str], val_set) -> str:
        sizes = ", ".join("%s %d" % (name, len(own)) for name, own in zip(self.names, self.positions))
        return "%d labels from %d sets: %s" % (len(labels), len(self.parts), sizes)

    def evaluate(self, outdir: str) -> None:
        for name, part in zip(self.names, self.parts):
            print("== %s (%s) ==" % (name, part.args.data_path), flush=True)
            part.evaluate(outdir)


def check_multi_set_options(kinds: Sequence[str], paths: Sequence[str], allowed: Sequence[str]) -> None:
    """Raises OptionError unless several sets are ADE20K/folder sets, each with its folder."""
    refused = [kind for kind in kinds if kind not in allowed]
    if refused:
        raise OptionError("--dataset: several data sets train together when each is one of %s; %s trains alone "
                          "(got %r)" % (", ".join(allowed), ", ".join(refused), ",".join(kinds)))
    if len(paths) != len(kinds):
        raise OptionError("--data_path: one folder per data set, paired in order: %d sets need %d comma-separated "
                          "folders (got %r)" % (len(kinds), len(kinds), ",".join(paths)))
