"""ADE20K (and any set in its folder layout, such as the synthetic one): a fixed label list chosen by ``--classes``,
pixAcc/mIoU on the val images."""
import os
import time
from typing import List, Optional, Sequence, Tuple

from encoding_custom.datasets.ade20k import build_ade20k
from encoding_custom.datasets.check import default_workers, verify_data
from encoding_custom.engine import evaluate, network_predictor
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.evaluation.evaluator import MultiScaleEvaluator, network_forward
from encoding_custom.progress import progress_bar
from encoding_custom.tasks.base import Task, make_output_folder
from encoding_custom.tasks.networks import load_network, resolve_classes
from encoding_custom.visualisation.render import colour_mask, label_colours, legend, save_picture
from foundation.atomic import append_text


class ADE20KTask(Task):
    """ADE20K semantic segmentation: the labels ``--classes`` names, the data check before training, the training
    validation on centre crops, test.py's ``--eval`` (``--eval_mode``) or coloured val masks."""

    def training_labels(self) -> Tuple[List[str], Optional[List[int]]]:
        labels, self.class_indices = resolve_classes(self.args)
        return labels, self.class_indices

    def training_sets(self, exp_dir: str, world_size: int, main_process: bool):
        args = self.args
        excluded = {}
        if not args.no_data_check:
            # Every rank checks (the pair lists must agree); each one's share of the CPUs, rank 0 alone speaks.
            report = verify_data(args.data_path, ("train", "val"), skip_bad_samples=args.skip_bad_samples,
                                 cache_path=os.path.join(exp_dir, "data_check.json"),
                                 workers=max(1, default_workers() // world_size), quiet=not main_process)
            excluded = {split: report.excluded(split) for split in ("train", "val")}
        return (make_dataset(args, "train", "train", self.class_indices, exclude=excluded.get("train")),
                make_dataset(args, "val", "val", self.class_indices, exclude=excluded.get("val")))

    def trainer_parts(self, net, labels: List[str], val_set):
        return SegmentationLoss(ignore_index=self.args.ignore_index), dict(nclass=len(labels)), \
            self.args.max_train_images

    def summary(self, labels: List[str], val_set) -> str:
        return "%d labels" % len(labels)

    def evaluate(self, outdir: str) -> None:
        net, labels, indices = load_network(self.args)
        net.set_train(False)
        make_output_folder(outdir)
        if self.args.eval:
            run_eval(self.args, net, labels, indices, outdir)
        else:
            print("wrote %s" % write_val_masks(self.args, net, labels, indices, outdir))


def make_dataset(args, split: str, mode: str, class_indices: Optional[Sequence[int]],
                 exclude: Optional[Sequence[str]] = None):
    """ADE20K from the data options.

    Args:
        args: parsed options (data path, sizes, seed, ignore index).
        split, mode: ``"train"``/``"val"``; ``"train"``/``"val"``/``"testval"``.
        class_indices: ADE20K classes to keep (renumbered), None for all.
        exclude: file stems to leave out (the data check's bad pairs with ``--skip_bad_samples``).

    Returns:
        the dataset (``encoding_custom.datasets.ade20k.build_ade20k``).

    Raises:
        encoding_custom.datasets.check.DataError: images without masks or masks without images.
    """
    return build_ade20k(args.data_path, split, mode, base_size=args.base_size, crop_size=args.crop_size,
                        seed=args.seed, class_indices=class_indices, ignore_index=args.ignore_index,
                        exclude=exclude)


def run_eval(args, net, labels: List[str], indices, outdir: str) -> Tuple[float, float]:
    """pixAcc/mIoU on the val split; prints them and appends them with a per-class IoU table to the log.

    Args:
        args: options (``--eval_mode``, ``--scales``, ``--flip``, ``--max_images``, ``--log_file``, ...).
        net: the network, in eval mode; labels / indices: its label names and their ADE20K class indices.
        outdir: folder of the default log.

    Returns:
        ``(pixAcc, mIoU)``.
    """
    dataset = make_dataset(args, "val", args.eval_mode, indices)
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
    print(metric.table(labels))
    print("pixAcc: %.4f, mIoU: %.4f" % (pix_acc, miou), flush=True)  # shown before the log write can fail
    append_text(log_path, summary + "\n" + metric.table(labels) + "\n\n")
    print("log: %s" % log_path)
    return pix_acc, miou


def write_val_masks(args, net, labels, indices, outdir: str) -> str:
    """Coloured predictions of the val images (testval mode, ``--scales``/``--flip``) and a legend.

    Args:
        args: options; net / labels / indices: as :func:`run_eval`; outdir: parent of the ``masks`` folder.

    Returns:
        the folder written (``<outdir>/masks``).
    """
    dataset = make_dataset(args, "val", "testval", indices)
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
