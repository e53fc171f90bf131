"""Command-line options shared by train_custom.py and test.py.

One parser carries the official lang-seg option names and defaults (``train_lseg.py`` / ``test_lseg.py``) plus what a
MindSpore user needs (device, graph/pynative mode, AMP level, resume, presets). Every value is validated after
parsing; a wrong value stops with a message that names the option, e.g. ``--crop_size: must be ... (got 100)``.

Presets are named bundles of defaults (``--preset tiny`` for the CPU quick start, ``--preset vitl16_ade20k`` for the
official ViT-L/16 ADE20K recipe). Options given explicitly on the command line always win over the preset.
"""
import argparse
import os
from typing import Dict, List, Optional, Sequence

from modules import tnn

DEVICE_TARGETS = ("Ascend", "GPU", "CPU")
MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
ACTIVATIONS = ("lrelu", "tanh")
DATASETS = ("ade20k",)
# The official multi-scale evaluation scales for ADE20K (test_lseg.py).
OFFICIAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# DPT's reassembly halves the resolution four times after a /16 or /32 patch grid; crops must divide evenly.
CROP_MULTIPLE = 32

PRESETS: Dict[str, Dict[str, object]] = {
    # CPU quick start: tiny ViT, synthetic ADE20K-layout data, small crops, a few epochs (minutes on 2 cores).
    "tiny": dict(
        backbone="tiny_vit16",
        text_config="tiny",
        data_path="datasets/synthetic_ade20k",
        classes="synthetic",
        exp_name="tiny_synthetic",
        device_target="CPU",
        mode="graph",
        batch_size=8,
        base_lr=0.004,  # the official value; measured best of 0.004/0.01/0.04/0.16/0.64 on the synthetic set
        max_epochs=10,
        base_size=128,
        crop_size=96,
        workers=0,
        keep_last=2,
    ),
    # The official train.sh / test.sh settings for LSeg ViT-L/16 on ADE20K.
    "vitl16_ade20k": dict(
        backbone="clip_vitl16_384",
        text_config="ViT-B/32",
        dataset="ade20k",
        data_path="../datasets",
        exp_name="lseg_ade20k_l16",
        batch_size=1,
        accumulate_grad_batches=2,
        base_lr=0.004,
        weight_decay=1e-4,
        momentum=0.9,
        max_epochs=240,
        base_size=520,
        crop_size=480,
    ),
}


class OptionError(ValueError):
    """A command-line value is invalid; the message starts with the option's name."""


def _parse_scales(text: str) -> List[float]:
    """``"official"`` → the official ADE20K scales; ``"0.75,1.0"`` → ``[0.75, 1.0]``."""
    if text.strip().lower() == "official":
        return list(OFFICIAL_SCALES)
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated numbers or 'official', got %r" % text) from None


def build_parser() -> argparse.ArgumentParser:
    """The one argument parser for training and testing.

    Returns:
        an ``argparse.ArgumentParser``; use :func:`parse_options` to parse *and* validate.
    """
    p = argparse.ArgumentParser(
        description="LSeg (language-driven semantic segmentation) on MindSpore: training and evaluation",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("preset and device")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="named bundle of defaults; explicit options override it")
    g.add_argument("--device_target", choices=DEVICE_TARGETS, default="Ascend", help="MindSpore device")
    g.add_argument("--device_id", type=int, default=None, help="device index (single-device runs)")
    g.add_argument("--mode", choices=MODES, default="graph", help="MindSpore execution mode")
    g.add_argument("--amp_level", choices=AMP_LEVELS, default="O0",
                   help="mixed precision level; above O0 training uses dynamic loss scaling")
    g.add_argument("--seed", type=int, default=1, help="random seed (data order, augmentation, init)")

    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="clip_vitl16_384", help="image encoder (modules.BACKBONES key)")
    g.add_argument("--text_config", default="ViT-B/32", help="CLIP text tower (clip_ms.TEXT_CONFIGS key)")
    g.add_argument("--arch_option", type=int, default=0, help="spatial regularisation block: 0 none, 1 or 2")
    g.add_argument("--block_depth", type=int, default=0, help="how many regularisation blocks")
    g.add_argument("--activation", choices=ACTIVATIONS, default="lrelu", help="activation inside the blocks")
    g.add_argument("--weights", default=None,
                   help="weights to start from / test: our .ckpt or an official lang-seg .ckpt (converted)")
    g.add_argument("--clip_weights", default=None, help="CLIP text tower .ckpt (from python -m clip_ms.convert)")
    g.add_argument("--vit_weights", default=None, help="ViT initialisation: timm .pth/.npz or MindCV .ckpt")
    # Accepted so that the official command lines run unchanged; our network always has the wide head and no
    # scale-invariance layers, which is what the released ADE20K model uses.
    g.add_argument("--widehead", action="store_true", help="accepted for compatibility (always on)")
    g.add_argument("--widehead_hr", action="store_true", help="accepted for compatibility (ignored)")
    g.add_argument("--no-scaleinv", dest="scale_inv", action="store_false",
                   help="accepted for compatibility (scale-invariance layers are never built)")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="ade20k", help="dataset")
    g.add_argument("--data_path", "--data-path", dest="data_path", default="../datasets",
                   help="folder holding ADEChallengeData2016/")
    g.add_argument("--base_size", "--base-size", dest="base_size", type=int, default=520, help="base image size")
    g.add_argument("--crop_size", "--crop-size", dest="crop_size", type=int, default=480, help="crop size")
    g.add_argument("--ignore_index", type=int, default=-1, help="mask value ignored by loss and metrics")
    g.add_argument("--classes", default="all",
                   help="label set: 'all' (150 ADE20K classes), 'synthetic' (the classes of a synthetic set) "
                        "or comma-separated ADE20K class names; other pixels are ignored")
    g.add_argument("--workers", type=int, default=4, help="data loading processes (0 = in the main process)")

    g = p.add_argument_group("training")
    g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=16,
                   help="images per step per device")
    g.add_argument("--base_lr", type=float, default=0.004,
                   help="learning rate at batch 16; the used lr is base_lr / 16 * batch_size")
    g.add_argument("--weight_decay", type=float, default=1e-4, help="SGD weight decay")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--max_epochs", type=int, default=240, help="training epochs")
    g.add_argument("--accumulate_grad_batches", type=int, default=1,
                   help="micro-batches whose gradients are summed (averaged) per optimizer step")
    g.add_argument("--exp_name", default="lseg", help="experiment name: checkpoints/<exp_name>/")
    g.add_argument("--checkpoint_dir", default="checkpoints", help="parent folder of experiment folders")
    g.add_argument("--keep_last", type=int, default=3, help="how many epoch checkpoints to keep (plus best)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in an experiment folder that already holds a run (deletes its checkpoints)")
    g.add_argument("--resume", nargs="?", const="last", default=None,
                   help="continue a run: a .ckpt path, or no value for checkpoints/<exp_name>/last.ckpt")
    g.add_argument("--max_train_images", type=int, default=None, help="use only the first N training images")
    g.add_argument("--max_val_images", type=int, default=None, help="validate on the first N val images")

    g = p.add_argument_group("testing")
    g.add_argument("--eval", action="store_true", help="report pixAcc/mIoU on the val split")
    g.add_argument("--scales", type=_parse_scales, default=[1.0],
                   help="evaluation scales, e.g. 0.75,1.0,1.25, or 'official'")
    g.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    g.add_argument("--test_batch_size", type=int, default=1, help="images per evaluation step")
    g.add_argument("--image", nargs="+", default=None, help="segment these image files (with --labels)")
    g.add_argument("--labels", default=None,
                   help='labels for --image: "cat,grass,sky,other" or a text file (one label per line)')
    g.add_argument("--outdir", default=None, help="where test.py writes pictures and logs")
    g.add_argument("--log_file", default=None, help="evaluation log (default: <outdir>/eval_log.txt)")
    return p


def _check(cond: bool, option: str, message: str, value) -> None:
    if not cond:
        raise OptionError("%s: %s (got %r)" % (option, message, value))


def validate_options(args: argparse.Namespace, for_training: bool = False) -> argparse.Namespace:
    """Check every value; raise naming the option that is wrong.

    Args:
        args: parsed options.
        for_training: also require what training needs (an existing data folder unless synthetic data is
            generated elsewhere; a resumable checkpoint when ``--resume`` is given).

    Returns:
        ``args`` itself.

    Raises:
        OptionError: the first invalid value, message ``"--option: what is wrong (got value)"``.
    """
    _check(args.batch_size >= 1, "--batch_size", "must be >= 1", args.batch_size)
    _check(args.test_batch_size >= 1, "--test_batch_size", "must be >= 1", args.test_batch_size)
    _check(args.base_lr > 0, "--base_lr", "must be > 0", args.base_lr)
    _check(args.weight_decay >= 0, "--weight_decay", "must be >= 0", args.weight_decay)
    _check(0 <= args.momentum < 1, "--momentum", "must be in [0, 1)", args.momentum)
    _check(args.max_epochs >= 1, "--max_epochs", "must be >= 1", args.max_epochs)
    _check(args.accumulate_grad_batches >= 1, "--accumulate_grad_batches", "must be >= 1",
           args.accumulate_grad_batches)
    _check(args.arch_option in (0, 1, 2), "--arch_option", "must be 0, 1 or 2", args.arch_option)
    _check(args.block_depth >= 0, "--block_depth", "must be >= 0", args.block_depth)
    _check(args.crop_size > 0 and args.crop_size % CROP_MULTIPLE == 0, "--crop_size",
           "must be a positive multiple of %d" % CROP_MULTIPLE, args.crop_size)
    _check(args.base_size >= args.crop_size, "--base_size", "must be >= --crop_size (%d)" % args.crop_size,
           args.base_size)
    _check(args.workers >= 0, "--workers", "must be >= 0", args.workers)
    _check(args.keep_last >= 1, "--keep_last", "must be >= 1", args.keep_last)
    _check(args.device_id is None or args.device_id >= 0, "--device_id", "must be >= 0", args.device_id)
    _check(bool(args.exp_name) and os.sep not in args.exp_name and args.exp_name not in (".", ".."),
           "--exp_name", "must be a plain folder name", args.exp_name)
    _check(bool(args.scales) and all(s > 0 for s in args.scales), "--scales", "must be positive numbers",
           args.scales)
    for name in ("max_train_images", "max_val_images"):
        value = getattr(args, name)
        _check(value is None or value >= 1, "--" + name, "must be >= 1", value)
    _check(bool(args.backbone), "--backbone", "must not be empty", args.backbone)
    for name in ("weights", "clip_weights", "vit_weights"):
        value = getattr(args, name)
        _check(value is None or os.path.isfile(value), "--" + name, "file not found", value)
    if args.image is not None:
        for path in args.image:
            _check(os.path.isfile(path), "--image", "file not found", path)
        _check(args.labels is not None and args.labels.strip() != "", "--labels",
               "is required with --image and must name at least one label", args.labels)
    if args.amp_level != "O0" and args.device_target == "CPU":
        # Measured with mindspore 2.0.0: TrainOneStepWithLossScaleCell detects overflow with the NPU/GPU
        # float-status ops (NPUClearFloatStatusV2 / FloatStatus), which have no CPU kernel.
        raise OptionError("--amp_level: %s needs Ascend or GPU (the loss-scale overflow check has no CPU kernel); "
                          "use O0 with --device_target CPU (got %r)" % (args.amp_level, args.amp_level))
    if args.amp_level != "O0" and args.mode == "graph" and args.amp_level not in tnn.GRAPH_AMP_LEVELS:
        # Only the msadapter layer (legacy stack, LSEG_NN=msadapter) has such levels: see modules.tnn.
        raise OptionError("--amp_level: %s does not compile in graph mode with the %s layer; use --amp_level %s, "
                          "LSEG_NN=native, or --mode pynative (got %r)"
                          % (args.amp_level, tnn.BACKEND, "/".join(tnn.GRAPH_AMP_LEVELS), args.amp_level))
    if for_training:
        _check(os.path.isdir(args.data_path), "--data_path", "folder not found", args.data_path)
        if args.resume is not None and args.resume != "last":
            _check(os.path.isfile(args.resume), "--resume", "checkpoint file not found", args.resume)
    return args


def experiment_dir(args: argparse.Namespace) -> str:
    """``<checkpoint_dir>/<exp_name>``: where training writes checkpoints, metrics and curves."""
    return os.path.join(args.checkpoint_dir, args.exp_name)


def resolve_resume_path(args: argparse.Namespace) -> Optional[str]:
    """The checkpoint ``--resume`` points at, or None without ``--resume``.

    Raises:
        OptionError: ``--resume`` without a value but ``<experiment>/last.ckpt`` does not exist.
    """
    if args.resume is None:
        return None
    if args.resume == "last":
        path = os.path.join(experiment_dir(args), "last.ckpt")
        _check(os.path.isfile(path), "--resume", "no last.ckpt in %s to resume from" % experiment_dir(args), path)
        return path
    return args.resume


def parse_options(argv: Optional[Sequence[str]] = None, for_training: bool = False) -> argparse.Namespace:
    """Parse, apply the preset, validate.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        for_training: see :func:`validate_options`.

    Returns:
        the validated ``argparse.Namespace``.

    Exits (status 2, usage on stderr) on an unknown option or an invalid value, naming the option.
    """
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.preset is not None:
        parser.set_defaults(**PRESETS[first.preset])
    args = parser.parse_args(argv)
    try:
        validate_options(args, for_training=for_training)
    except OptionError as err:
        parser.error(str(err))
    return args


def effective_lr(base_lr: float, batch_size: int, world_size: int = 1) -> float:
    """The official scaling rule ``base_lr / 16 * batch_size``, with the batch taken over all devices.

    Gradient accumulation does not enter: the official code scales by ``batch_size`` alone (its train.sh runs
    ``--batch_size 1 --accumulate_grad_batches 2`` at ``0.004 / 16``).

    Args:
        base_lr: ``--base_lr``.
        batch_size: ``--batch_size`` (per device).
        world_size: number of data-parallel devices.

    Returns:
        the learning rate of the backbone group (the head group uses 10x).
    """
    return base_lr / 16.0 * batch_size * world_size
