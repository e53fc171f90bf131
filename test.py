"""Evaluate LSeg (pixAcc/mIoU), write coloured masks of the val images, or segment any image with any labels.

    python test.py --weights checkpoints/tiny_synthetic/best.ckpt --eval --device_target CPU
    python test.py --weights demo_e200.ckpt --eval --scales official --flip          # official PyTorch weights
    python test.py --weights W.ckpt --image cat.jpg --labels "cat,grass,sky,other"  # any labels

``--weights`` takes a train_custom.py checkpoint (architecture and label set read from it), a ``modules.weights``
checkpoint, or an official lang-seg PyTorch ``.ckpt`` (converted on the fly, no torch needed).

``--eval`` uses ``--eval_mode testval`` (full images, official multi-scale machinery; ``--scales``/``--flip``) or
``--eval_mode val`` (the centre crops the training validation uses: reproduces the figures in metrics.jsonl).
Outputs go to ``--outdir`` (default ``outputs/<exp_name>/``): ``eval_log.txt`` (appended, with a per-class IoU
table), ``masks/`` (val predictions), ``<image>_mask.png`` / ``_overlay.png`` / ``_legend.png`` for ``--image``.
"""
import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

from options import OptionError, build_parser, validate_options
from train_custom import build_network, configure_context, make_dataset, resolve_classes

# Architecture options a train_custom.py checkpoint records; they override the command line when loading it.
ARCH_OPTIONS = ("backbone", "text_config", "arch_option", "block_depth", "activation", "classes")


def parse_test_options(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The shared parser plus test-only options, validated (exits 2 naming the option)."""
    parser = build_parser()
    parser.add_argument("--eval_mode", choices=("testval", "val"), default="testval",
                        help="testval: full images (official); val: centre crops as in training validation")
    parser.add_argument("--max_images", type=int, default=None, help="only the first N val images")
    from options import PRESETS
    first, _ = parser.parse_known_args(argv)
    if first.preset is not None:
        parser.set_defaults(**PRESETS[first.preset])
    args = parser.parse_args(argv)
    try:
        validate_options(args)
        if args.max_images is not None and args.max_images < 1:
            raise OptionError("--max_images: must be >= 1 (got %r)" % args.max_images)
    except OptionError as err:
        parser.error(str(err))
    args.explicit = {a.lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])
                     if a.startswith("--")}
    return args


# ------------------------------------------------------------------------------------------------------- network
def load_network(args) -> Tuple[object, List[str], Optional[List[int]]]:
    """Build the network the weights need and load them.

    Returns:
        ``(network, label names, ADE20K class indices or None)``; with a training checkpoint the architecture and
        the class set come from the checkpoint.
    """
    from modules.factory import OFFICIAL, TRAINING, checkpoint_kind, load_network_weights

    if args.weights is None:
        print("test.py: warning: no --weights, evaluating a randomly initialised network", file=sys.stderr)
        labels, indices = resolve_classes(args)
        return build_network(args, labels), labels, indices
    kind = checkpoint_kind(args.weights)
    if kind == TRAINING:
        from encoding_custom.engine import read_checkpoint
        stored = read_checkpoint(args.weights)[2]["options"]
        for key in ARCH_OPTIONS:
            if key in stored:
                setattr(args, key, stored[key])
        data_path = args.data_path if "data_path" in args.explicit else stored.get("data_path", args.data_path)
        labels, indices = resolve_classes(args, data_path)
        net = build_network(args, labels)
        load_network_weights(net, args.weights)
        return net, labels, indices
    if kind == OFFICIAL:
        import tempfile

        from modules.weights import convert_official_checkpoint
        with tempfile.TemporaryDirectory() as folder:
            net = convert_official_checkpoint(args.weights, os.path.join(folder, "converted.ckpt"))
    else:
        from modules.weights import build_lseg_from_checkpoint
        net = build_lseg_from_checkpoint(args.weights)
    from encoding_custom.labels import ade20k_labels

    return net, ade20k_labels(), None  # released LSeg weights are the 150-class ADE20K model


# -------------------------------------------------------------------------------------------------------- inputs
def read_labels_argument(text: str) -> List[str]:
    """``--labels``: a label file path or a comma-separated list. Raises OptionError when empty."""
    from encoding_custom.labels import parse_labels, read_label_file

    try:
        labels = read_label_file(text) if os.path.isfile(text) else parse_labels(text, source="--labels")
    except ValueError as err:
        message = str(err) if str(err).startswith("--labels") else "--labels: %s" % err
        raise OptionError("%s (got %r)" % (message, text)) from err
    if not labels:
        raise OptionError("--labels: no label given (got %r)" % text)
    return labels


def load_image(path: str):
    """``--image`` file as a normalised float32 (3, H, W); raises OptionError naming it if unreadable."""
    from encoding_custom.transforms import read_image

    try:
        return read_image(path)
    except ValueError as err:
        raise OptionError("--image: %s" % err) from err


# ---------------------------------------------------------------------------------------------------------- main
def run_eval(args, net, labels: List[str], indices, outdir: str) -> Tuple[float, float]:
    """pixAcc/mIoU on the val split; prints them and appends them with a per-class IoU table to the log."""
    from encoding_custom.engine import evaluate, network_predictor
    from encoding_custom.evaluator import MultiScaleEvaluator, network_forward

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
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(summary + "\n" + metric.table(labels) + "\n\n")
    print(metric.table(labels))
    print("pixAcc: %.4f, mIoU: %.4f" % (pix_acc, miou))
    print("log: %s" % log_path)
    return pix_acc, miou


def write_val_masks(args, net, labels, indices, outdir: str) -> str:
    """Coloured predictions of the val images (testval mode, single pass per ``--scales``) into ``outdir/masks``."""
    from tqdm import tqdm

    from encoding_custom.evaluator import MultiScaleEvaluator, network_forward
    from encoding_custom.visualize import colour_mask, legend

    dataset = make_dataset(args, "val", "testval", indices)
    evaluator = MultiScaleEvaluator(network_forward(net), nclass=len(labels), scales=args.scales, flip=args.flip,
                                    base_size=args.base_size, crop_size=args.crop_size)
    folder = os.path.join(outdir, "masks")
    os.makedirs(folder, exist_ok=True)
    count = min(len(dataset), args.max_images or len(dataset))
    for index in tqdm(range(count), desc="masks"):
        image, _ = dataset[index]
        prediction = evaluator.predict(image[None])[0]
        stem = os.path.splitext(os.path.basename(dataset.images[index]))[0]
        colour_mask(prediction, len(labels)).save(os.path.join(folder, stem + ".png"))
    legend(labels).save(os.path.join(folder, "legend.png"))
    return folder


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Returns the process exit status (0 ok, 2 bad option or input)."""
    args = parse_test_options(argv)
    outdir = args.outdir or os.path.join("outputs", args.exp_name)
    os.makedirs(outdir, exist_ok=True)
    try:
        configure_context(args)
        image_labels = read_labels_argument(args.labels) if args.image else None
        images = [(path, load_image(path)) for path in args.image] if args.image else []
        net, labels, indices = load_network(args)
        net.set_train(False)
        if images:
            from encoding_custom.evaluator import segment_image
            from encoding_custom.visualize import save_segmentation
            for path, image in images:
                prediction = segment_image(net, image, image_labels)
                for written in save_segmentation(path, image_labels, prediction, outdir):
                    print("wrote %s" % written)
        elif args.eval:
            run_eval(args, net, labels, indices, outdir)
        else:
            print("wrote %s" % write_val_masks(args, net, labels, indices, outdir))
    except OptionError as err:
        print("test.py: error: %s" % err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
