"""Evaluate LSeg (pixAcc/mIoU), write coloured masks of the val images, or segment any image with any labels.

    python test.py --weights checkpoints/tiny_synthetic/best.ckpt --eval --device_target CPU
    python test.py --weights demo_e200.ckpt --eval --scales official --flip          # official PyTorch weights
    python test.py --weights W.ckpt --image cat.jpg --labels "cat,grass,sky,other"  # any labels
    python test.py --dataset pascal --fold all --weights checkpoints/pascal_fold{fold}.ckpt   # zero-shot, 4 folds

``--weights`` takes a train_custom.py checkpoint (architecture and label set read from it), a ``modules.weights``
checkpoint, or an official lang-seg PyTorch ``.ckpt`` (converted on the fly, no torch needed).

``--eval`` uses ``--eval_mode testval`` (full images, official multi-scale machinery; ``--scales``/``--flip``) or
``--eval_mode val`` (the centre crops the training validation uses: reproduces the figures in metrics.jsonl).
``--dataset pascal|coco|fss --fold K --nshot 0`` runs the fold's zero-shot test episodes by HSNet's protocol (as the
official ``test_lseg_zs.py``) and prints ``Fold K, 0-shot ==> mIoU xx.xx  FB-IoU xx.xx``; ``--fold all`` runs every fold
(``{fold}`` in ``--weights`` names each fold's checkpoint) and prints their mean, as the paper's table does.
Outputs go to ``--outdir`` (default ``outputs/<exp_name>/``): ``eval_log.txt`` (appended, with a per-class IoU
table), ``masks/`` (val predictions), ``<image>_mask.png`` / ``_index.png`` / ``_overlay.png`` / ``_legend.png`` /
``_legend.txt`` for ``--image`` (same-named inputs get their folder in the name), ``zero_shot_log.txt`` (appended: one
line per fold and the per-class IoU). Exit status: 0 done, 2 bad option
or input (one line naming it).
"""
import copy
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from encoding_custom.data_check import DataError, probe_sample_file
from encoding_custom.engine import CheckpointError, evaluate, network_predictor
from encoding_custom.evaluator import MultiScaleEvaluator, network_forward, segment_image
from encoding_custom.fewshot import BENCHMARKS, benchmark_labels
from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE
from encoding_custom.labels import ade20k_labels, read_labels_argument
from encoding_custom.transforms import read_image
from encoding_custom.visualize import colour_mask, label_colours, legend, save_segmentation
from encoding_custom.zero_shot import evaluate_episodes
from modules.factory import OFFICIAL, TRAINING, WEIGHTS, load_lseg
from modules.weights import WeightsError, WeightsOptionError
from options import (
    RECORDED_NETWORK_OPTIONS,
    OptionError,
    build_network,
    check_benchmark_files,
    configure_context,
    explicit_architecture,
    fold_weights,
    make_dataset,
    make_episodes,
    parse_options,
    recorded_option_conflicts,
    resolve_classes,
    selected_folds,
)


def parse_test_options(argv: Optional[Sequence[str]] = None):
    """test.py's options (``options.parse_options(purpose="test")``), validated (exits 2 naming the option)."""
    return parse_options(argv, purpose="test")


# ------------------------------------------------------------------------------------------------------- network
def apply_recorded_architecture(args, recorded: Dict, weights: str) -> None:
    """Take the network options a checkpoint records; an explicit option that says otherwise is an error.

    Args:
        args: this run's options (updated in place).
        recorded: the checkpoint's options record.
        weights: the checkpoint's path (for the message).

    Raises:
        OptionError: e.g. ``--backbone: 'clip_vitb32_384' given, but W.ckpt was trained with 'tiny_vit16'``.
    """
    for key, given, stored in recorded_option_conflicts(args, recorded):
        if key in args.explicit:
            raise OptionError("--%s: %r given, but %s was trained with %r; drop the option to use the "
                              "checkpoint's" % (key, given, weights, stored))
    for key in RECORDED_NETWORK_OPTIONS:
        if key in recorded:
            setattr(args, key, recorded[key])


def load_network(args) -> Tuple[object, List[str], Optional[List[int]]]:
    """Build the network the weights need and load them (``modules.factory.load_lseg``: any checkpoint kind).

    Returns:
        ``(network, label names, ADE20K class indices or None)``: our checkpoints record their architecture and
        label set (older training checkpoints only their ``--classes``, resolved here against the data set);
        official weights are the 150-class ADE20K model.

    Raises:
        OptionError, WeightsError: a bad option or weights file, named in the message.
    """
    if args.weights is None:
        print("test.py: warning: no --weights, evaluating a randomly initialised network", file=sys.stderr)
        labels, indices = resolve_classes(args)
        return build_network(args, labels), labels, indices
    text_config = args.text_config if "text_config" in args.explicit else None
    try:
        loaded = load_lseg(args.weights, text_config=text_config, **explicit_architecture(args))
    except WeightsOptionError as err:
        raise OptionError(err.describe("--" + err.option)) from err
    if loaded.kind == OFFICIAL:
        return loaded.network, ade20k_labels(), None
    apply_recorded_architecture(args, loaded.record, args.weights)
    args.recorded = loaded.record
    if loaded.labels is not None:
        labels, indices = loaded.labels, loaded.class_indices
        if indices is None and loaded.kind == WEIGHTS:  # a weights file records names: its ADE20K classes, if all
            names = ade20k_labels()
            if labels != names and set(labels) <= set(names):
                indices = [names.index(name) for name in labels]
    elif loaded.kind == TRAINING:  # written before checkpoints recorded their label names
        data_path = args.data_path if "data_path" in args.explicit else loaded.record.get("data_path", args.data_path)
        labels, indices = resolve_classes(args, data_path)
    else:
        labels, indices = ade20k_labels(), None
    loaded.network.set_labels(labels)
    return loaded.network, labels, indices


# -------------------------------------------------------------------------------------------------------- inputs
def labels_option(text: str) -> List[str]:
    """``--labels``: a label file or a comma-separated list, checked before any network runs (warnings printed).

    Raises:
        OptionError: naming ``--labels``: a path-like value naming no file, an empty or too long label, ...
    """
    try:
        labels, warnings = read_labels_argument(text, source="--labels")
    except ValueError as err:
        raise OptionError(str(err)) from err
    for warning in warnings:
        print("test.py: warning: %s" % warning, file=sys.stderr)
    return labels


def check_image(path: str) -> None:
    """Prove that an ``--image`` file decodes (a reduced-scale decode); raises OptionError naming it if not."""
    try:
        probe_sample_file(path)
    except DataError as err:
        raise OptionError("--image: %s" % err) from err


def load_image(path: str):
    """``--image`` file as a normalised float32 (3, H, W); raises OptionError naming it if unreadable."""
    try:
        return read_image(path)
    except ValueError as err:
        raise OptionError("--image: %s" % err) from err


def output_stems(paths: Sequence[str]) -> List[str]:
    """One distinct output name per ``--image``: the file's stem, with as many parent folders as it takes to tell
    equal stems apart (``a/cat.jpg`` → ``a_cat``, ``b/cat.jpg`` → ``b_cat``); what folders cannot tell apart (a file
    given twice, ``cat.jpg`` beside ``cat.png``) gets the first free ``_2``, ``_3``.

    Args:
        paths: the ``--image`` values, in order.

    Returns:
        one name per path, all different.
    """
    parts = [os.path.normpath(os.path.abspath(path)).split(os.sep) for path in paths]
    stems = [os.path.splitext(p[-1])[0] for p in parts]
    for depth in range(2, max(len(p) for p in parts) + 1):
        clashing = {stem for stem in stems if stems.count(stem) > 1}
        if not clashing:
            break
        folders = {tuple(p[:-1]) for p, stem in zip(parts, stems) if stem in clashing}
        if len(folders) == 1:
            break  # the clashing files share their folder: no parent name separates them
        stems = ["_".join(p[-depth:-1] + [os.path.splitext(p[-1])[0]]).lstrip("_") if stem in clashing else stem
                 for stem, p in zip(stems, parts)]
    used: set = set()
    unique = []
    for stem in stems:
        name, copy = stem, 1
        while name in used or (name != stem and name in stems):  # "cat_2" may be another input's own stem
            copy += 1
            name = "%s_%d" % (stem, copy)
        used.add(name)
        unique.append(name)
    return unique


# ---------------------------------------------------------------------------------------------------------- main
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
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(summary + "\n" + metric.table(labels) + "\n\n")
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
    for index in tqdm(range(count), desc="masks"):
        image, _ = dataset[index]
        prediction = evaluator.predict(image[None])[0]
        stem = os.path.splitext(os.path.basename(dataset.images[index]))[0]
        colour_mask(prediction, len(labels), colours).save(os.path.join(folder, stem + ".png"))
    legend(labels, colours=colours).save(os.path.join(folder, "legend.png"))
    return folder


def trained_fold_warning(args, record: Dict, fold: str) -> Optional[str]:
    """A warning when a checkpoint trained on a zero-shot fold is tested on another fold of the same benchmark (whose
    test classes it then saw in training), or None."""
    if record.get("dataset") == args.dataset and str(record.get("fold", fold)) != str(fold):
        return ("test.py: warning: %s was trained on %s fold %s; fold %s's test classes were among its training "
                "classes, so this is not a zero-shot figure" % (fold_weights(args, fold), args.dataset,
                                                                 record.get("fold"), fold))
    return None


def run_zero_shot(args, outdir: str) -> List[Tuple[float, float]]:
    """HSNet's zero-shot test of every selected fold (``--fold K`` or ``all``), each with its ``--weights``.

    Prints ``Fold K, 0-shot ==> mIoU xx.xx  FB-IoU xx.xx`` per fold (and the mean over folds for ``--fold all``) and
    appends them with the per-class foreground IoU to ``zero_shot_log.txt`` (or ``--log_file``).

    Returns:
        ``[(mIoU, FB-IoU)]`` in percent, one per fold.
    """
    names = benchmark_labels(args.dataset)
    check_benchmark_files(args)  # a wrong --data_path is said before any network is built
    if args.flip or list(args.scales) != [1.0]:
        print("test.py: note: --scales/--flip are not used by the zero-shot protocol (one scale, as the official "
              "test_lseg_zs.py)", file=sys.stderr)
    if args.crop_size != HSNET_IMAGE_SIZE:
        print("test.py: note: episodes at %d x %d px (--crop_size); the official protocol uses %d"
              % (args.crop_size, args.crop_size, HSNET_IMAGE_SIZE), file=sys.stderr)
    log_path = args.log_file or os.path.join(outdir, "zero_shot_log.txt")
    results = []
    for fold in selected_folds(args):
        fold_args = copy.copy(args)
        fold_args.weights = fold_weights(args, fold)
        net, _, _ = load_network(fold_args)
        net.set_train(False)
        warning = trained_fold_warning(args, getattr(fold_args, "recorded", {}), fold)
        if warning:
            print(warning, file=sys.stderr)
        episodes = make_episodes(args, fold, net.cfg.normalisation)
        started = time.time()
        meter = evaluate_episodes(net, episodes, names, batch_size=args.test_batch_size,
                                  max_episodes=args.max_images, progress=True, desc="%s fold %s" % (args.dataset, fold))
        miou, fb_iou = meter.compute()
        if meter.episodes < len(episodes):
            print("test.py: note: --max_images: %d of the fold's %d episodes, %d of its %d classes; the others count "
                  "as IoU 0 in the mIoU (HSNet averages over all the fold's classes)"
                  % (meter.episodes, len(episodes), len(meter.classes_seen), len(episodes.class_ids)), file=sys.stderr)
        line = "Fold %s, %d-shot ==> mIoU %5.2f  FB-IoU %5.2f" % (fold, args.nshot, miou, fb_iou)
        print(line, flush=True)
        per_class = ", ".join("%s %.2f" % (names[class_id], 100 * iou)
                              for class_id, iou in zip(meter.class_ids, meter.class_iou()[1]))
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write("%s: %s, weights %s, %s fold %s, %d episodes at %d px (%.0f s)\n  foreground IoU: %s\n"
                         % (time.strftime("%Y-%m-%d %H:%M:%S"), line, fold_args.weights, args.dataset, fold,
                            meter.episodes, args.crop_size, time.time() - started, per_class))
        results.append((miou, fb_iou))
    if len(results) > 1:
        line = "Mean of folds %s, %d-shot ==> mIoU %5.2f  FB-IoU %5.2f" % (
            ",".join(selected_folds(args)), args.nshot, sum(r[0] for r in results) / len(results),
            sum(r[1] for r in results) / len(results))
        print(line, flush=True)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    print("log: %s" % log_path)
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Args: argv: the arguments (default ``sys.argv[1:]``). Returns: the exit status (0 ok, 2 bad option or
    input, 130 interrupted)."""
    args = parse_test_options(argv)
    outdir = args.outdir or os.path.join("outputs", args.exp_name)
    try:
        configure_context(args)
        image_labels = labels_option(args.labels) if args.image else None
        for path in args.image or []:
            check_image(path)  # every input decodes before the first is segmented; each is read when its turn comes
        zero_shot = args.dataset in BENCHMARKS and not args.image
        if not zero_shot:
            net, labels, indices = load_network(args)
            net.set_train(False)
        try:
            os.makedirs(outdir, exist_ok=True)
        except OSError as err:
            raise OptionError("--outdir: cannot create %s (%s)" % (outdir, err.strerror or err)) from err
        if zero_shot:
            run_zero_shot(args, outdir)
        elif args.image:
            for path, stem in zip(args.image, output_stems(args.image)):
                image = load_image(path)
                try:
                    prediction = segment_image(net, image, image_labels, base_size=args.base_size,
                                               crop_size=args.crop_size)
                    written = save_segmentation(path, image_labels, prediction, outdir, stem=stem)
                except ValueError as err:  # segment_image / save_segmentation name the input that does not fit
                    raise OptionError("--image %s: %s" % (path, err)) from err
                for output in written:
                    print("wrote %s" % output)
        elif args.eval:
            run_eval(args, net, labels, indices, outdir)
        else:
            print("wrote %s" % write_val_masks(args, net, labels, indices, outdir))
    except (OptionError, WeightsError, CheckpointError, DataError, FileNotFoundError) as err:
        print("test.py: error: %s" % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was written stays (each output is complete), the rest is not done
        print("\ntest.py: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
