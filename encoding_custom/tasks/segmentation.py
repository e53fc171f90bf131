"""Sets of images with index masks: ADE20K (and any set in its layout, such as the synthetic one), the shared part
of the folder sets (:mod:`.folder`); a fixed label list chosen by ``--classes``, pixAcc/mIoU on the val images."""
import os
import time
from typing import List, Optional, Sequence, Tuple

from encoding_custom.datasets.check import default_workers, verify_data
from encoding_custom.datasets.layout import SegmentationLayout, ade20k_layout
from encoding_custom.datasets.segmentation import build_segmentation_set
from encoding_custom.engine import evaluate, network_predictor
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.evaluation.evaluator import MultiScaleEvaluator, network_forward
from encoding_custom.evaluation.metrics import seen_unseen_miou
from encoding_custom.progress import progress_bar
from encoding_custom.tasks.base import Task, make_output_folder
from encoding_custom.tasks.networks import load_network, resolve_classes
from encoding_custom.visualisation.render import colour_mask, label_colours, legend, save_picture
from foundation.atomic import append_text


class SegmentationTask(Task):
    """A set of images with index masks (ADE20K, a folder set): a fixed label list, the data check before training,
    the training validation on centre crops, test.py's ``--eval`` (``--eval_mode``) or coloured val masks.

    A kind says where its files are (:meth:`layout`), which labels it trains (:meth:`label_set`) and which network
    test.py evaluates (:meth:`evaluation_network`).

    Attributes:
        check_cache_name: the data check's cache in the experiment folder (one per set of a multi-set run).
    """

    check_cache_name = "data_check.json"

    def layout(self) -> SegmentationLayout:
        """Returns: the set's layout under ``--data_path``."""
        raise NotImplementedError

    def label_set(self) -> Tuple[List[str], Optional[List[int]]]:
        """Returns: ``(label names, class indices of the set or None for all)`` that ``--classes`` selects."""
        raise NotImplementedError

    def evaluation_network(self):
        """Returns: ``(network, label names, class indices or None, seen labels or None)`` test.py evaluates; the
        seen labels are those it was trained with, when they differ from the evaluated ones."""
        net, labels, indices = load_network(self.args)
        return net, labels, indices, None

    def training_labels(self) -> Tuple[List[str], Optional[List[int]]]:
        labels, self.class_indices = self.label_set()
        return labels, self.class_indices

    def training_sets(self, exp_dir: str, world_size: int, main_process: bool):
        args = self.args
        excluded = {}
        if not args.no_data_check:
            # Every rank checks (the pair lists must agree); each one's share of the CPUs, rank 0 alone speaks.
            report = verify_data(self.layout(), ("train", "val"), skip_bad_samples=args.skip_bad_samples,
                                 cache_path=os.path.join(exp_dir, self.check_cache_name),
                                 workers=max(1, default_workers() // world_size), quiet=not main_process)
            excluded = {split: report.excluded(split) for split in ("train", "val")}
        return (self.dataset("train", "train", self.class_indices, exclude=excluded.get("train")),
                self.dataset("val", "val", self.class_indices, exclude=excluded.get("val")))

    def trainer_parts(self, net, labels: List[str], val_set):
        return SegmentationLoss(ignore_index=-1), dict(nclass=len(labels)), self.args.max_train_images

    def summary(self, labels: List[str], val_set) -> str:
        return "%d labels" % len(labels)

    def evaluate(self, outdir: str) -> None:
        net, labels, indices, seen = self.evaluation_network()
        net.set_train(False)
        make_output_folder(outdir)
        if self.args.eval:
            run_eval(self.args, net, labels, self.dataset("val", self.args.eval_mode, indices), outdir, seen)
        else:
            print("wrote %s" % write_val_masks(self.args, net, labels, self.dataset("val", "testval", indices),
                                               outdir))

    def dataset(self, split: str, mode: str, class_indices: Optional[Sequence[int]],
                exclude: Optional[Sequence[str]] = None):
        """The set from the data options.

        Args:
            split, mode: ``"train"``/``"val"``; ``"train"``/``"val"``/``"testval"``.
            class_indices: classes to keep (renumbered), None for all.
            exclude: file stems to leave out (the data check's bad pairs with ``--skip_bad_samples``).

        Returns:
            the dataset (``encoding_custom.datasets.segmentation.build_segmentation_set``): masks in ``0..K-1``,
            -1 for every ignored pixel.

        Raises:
            encoding_custom.datasets.check.DataError: images without masks or masks without images.
        """
        args = self.args
        return build_segmentation_set(self.layout(), split, mode, base_size=args.base_size,
                                      crop_size=args.crop_size, seed=args.seed, class_indices=class_indices,
                                      ignore_index=-1, exclude=exclude)


class ADE20KTask(SegmentationTask):
    """ADE20K (and a synthetic set in its layout): the 150 classes, or those ``--classes`` names."""

    def layout(self) -> SegmentationLayout:
        return ade20k_layout(self.args.data_path)

    def label_set(self) -> Tuple[List[str], Optional[List[int]]]:
        return resolve_classes(self.args)


def run_eval(args, net, labels: List[str], dataset, outdir: str,
             seen: Optional[Sequence[str]] = None) -> Tuple[float, float]:
    """pixAcc/mIoU on the val split; prints them and appends them with a per-class IoU table to the log.

    Args:
        args: options (``--eval_mode``, ``--scales``, ``--flip``, ``--max_images``, ``--log_file``, ...).
        net: the network, in eval mode, with ``labels``: the names of the dataset's classes.
        dataset: the val split in ``--eval_mode``.
        outdir: folder of the default log.
        seen: the labels the network was trained with, when they are not all of ``labels``: the mIoU of the
            seen and unseen classes and their harmonic mean are reported too.

    Returns:
        ``(pixAcc, mIoU)``.
    """
    if args.eval_mode == "val":
        predict, batch = network_predictor(net), args.test_batch_size
    else:
        evaluator = MultiScaleEvaluator(network_forward(net), nclass=len(labels), scales=args.scales, flip=args.flip,
                                        base_size=args.base_size, crop_size=args.crop_size)
        predict, batch = evaluator.predict, 1  # full images differ in size
    started = time.time()
    metric = evaluate(predict, dataset, len(labels), batch_size=batch, max_items=args.max_images,
                      workers=args.workers, progress=True, desc="eval")
    pix_acc, miou = metric.get()
    summary = ("%s: weights %s, %s mode, scales %s, flip %s, %d images -> pixAcc: %.4f, mIoU: %.4f (%.0f s)"
               % (time.strftime("%Y-%m-%d %H:%M:%S"), args.weights, args.eval_mode, args.scales, args.flip,
                  min(len(dataset), args.max_images or len(dataset)), pix_acc, miou, time.time() - started))
    log_path = args.log_file or os.path.join(outdir, "eval_log.txt")
    table = metric.table(labels)
    headline = "pixAcc: %.4f, mIoU: %.4f" % (pix_acc, miou)
    if seen is not None:
        split = seen_unseen_miou(metric, labels, seen)
        table += "\n" + split.describe()
        headline += ", " + split.headline()
    print(table)
    print(headline, flush=True)  # shown before the log write can fail
    append_text(log_path, summary + "\n" + table + "\n\n")
    print("log: %s" % log_path)
    return pix_acc, miou


def write_val_masks(args, net, labels, dataset, outdir: str) -> str:
    """Coloured predictions of the val images (testval mode, ``--scales``/``--flip``) and a legend.

    Args:
        args: options; net / labels: as :func:`run_eval`; dataset: the val split in testval mode; outdir: parent
            of the ``masks`` folder.

    Returns:
        the folder written (``<outdir>/masks``).
    """
    evaluator = MultiScaleEvaluator(network_forward(net), nclass=len(labels), scales=args.scales, flip=args.flip,
                                    base_size=args.base_size, crop_size=args.crop_size)
    folder = os.path.join(outdir, "masks")
    os.makedirs(folder, exist_ok=True)
    colours = label_colours(len(labels), labels)  # the official ADE20K palette for ADE20K names
    count = min(len(dataset), args.max_images or len(dataset))
    with progress_bar(total=count, desc="masks") as bar:
        for index in range(count):
            image, _ = dataset[index]
            prediction = evaluator.predict(image[None])[0]
            stem = os.path.splitext(os.path.basename(dataset.images[index]))[0]
            save_picture(colour_mask(prediction, len(labels), colours), os.path.join(folder, stem + ".png"))
            bar.update(1)
    save_picture(legend(labels, colours=colours), os.path.join(folder, "legend.png"))
    return folder
