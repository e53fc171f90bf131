"""Command-line options shared by train_custom.py and test.py.

One parser carries the official lang-seg option names and defaults (``train_lseg.py`` / ``test_lseg.py``) plus what a
MindSpore user needs (device, graph/pynative mode, AMP level, resume, presets). Every value is validated after
parsing; a wrong value stops with a message that names the option, e.g. ``--crop_size: must be ... (got 100)``.

Presets are named bundles of defaults (``--preset tiny`` for the CPU quick start, ``--preset vitl16_ade20k`` for the
official ViT-L/16 ADE20K recipe). Options given explicitly on the command line always win over the preset.

Each script sees only its options: ``build_parser("train")`` for train_custom.py, ``build_parser("test")`` for
test.py; the shared groups (device, model, data) are in both. Choice lists come from the library that implements
them (backbones: ``modules.BACKBONES``, text towers: ``clip_ms.TEXT_CONFIGS``, activations: ``modules.head``).
"""
import argparse
import math
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from clip_ms.text_encoder import TEXT_CONFIGS
from encoding_custom.datasets import build_ade20k
from encoding_custom.engine.runtime import DEVICE_TARGETS, DeviceUnavailableError, configure_runtime
from encoding_custom.fewshot import BENCHMARKS, FOLDS_PER_BENCHMARK, fold_class_ids, make_fewshot_dataset
from encoding_custom.fewshot.layout import check_fewshot_layout
from encoding_custom.fewshot.training import FoldTrainingSet
from encoding_custom.labels import resolve_classes as resolve_label_set
from modules import tnn
from modules.config import BACKBONES, get_backbone_config
from modules.factory import ArgumentError, build_lseg
from modules.head import ACTIVATIONS
from modules.weights import WeightsError

PURPOSES = ("train", "test")
MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
# ADE20K (semantic segmentation with a fixed label set) and the zero-shot benchmarks (HSNet's protocol).
DATASETS = ("ade20k",) + tuple(BENCHMARKS)
FOLD_PLACEHOLDER = "{fold}"  # in --exp_name / --weights: replaced by the fold
# The official multi-scale evaluation scales for ADE20K (test_lseg.py).
OFFICIAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# DPT's reassembly halves the resolution four times after a /16 or /32 patch grid; crops must divide evenly.
CROP_MULTIPLE = 32
# test.py --eval: full images with the official machinery, or the centre crops training validation uses.
EVAL_MODES = ("testval", "val")

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
    # Zero-shot CPU quick start: tiny ResNet, synthetic PASCAL-5i-layout data (python -m scripts.prepare_fewshot
    # pascal --synthetic), fold 0; test.py --preset tiny_zeroshot --weights checkpoints/tiny_zeroshot_fold0/last.ckpt.
    "tiny_zeroshot": dict(
        backbone="tiny_resnet",
        text_config="tiny",
        dataset="pascal",
        data_path="datasets/synthetic_pascal5i",
        fold="0",
        exp_name="tiny_zeroshot_fold{fold}",
        device_target="CPU",
        mode="graph",
        batch_size=8,
        base_lr=0.01,  # measured on the synthetic fold 0, held-out mIoU after 10 epochs: 0.004 25, 0.01 39
        max_epochs=10,
        base_size=64,
        crop_size=64,
        workers=0,
        keep_last=2,
        max_val_images=200,
    ),
}


def zero_shot_preset(benchmark: str, backbone: str) -> Dict[str, object]:
    """The official zero-shot training recipe of ``LSegmentationModuleZS`` for one benchmark and backbone.

    SGD momentum 0.9, weight decay 1e-4, 10x lr on the head, poly 0.9 over the official default of 200 epochs
    (``utils.get_default_argument_parser``), which its ``validation_epoch_end`` cuts after 4 epochs on PASCAL and COCO
    (``--stop_after_epoch 4``; FSS-1000 runs the 200). Its batch is 20 one-shot episodes, i.e. 40 images (support +
    query), at lr 0.004 / 16 x 20 = 0.005: here ``--batch_size 40 --base_lr 0.002`` gives the same images and lr.
    """
    short = {"clip_resnet101": "rn101", "clip_vitl16_384": "vitl16"}[backbone]
    return dict(backbone=backbone, text_config="ViT-B/32", dataset=benchmark, data_path="../datasets", fold="0",
                exp_name="lseg_zs_%s_%s_fold{fold}" % (short, benchmark), batch_size=40, base_lr=0.002,
                weight_decay=1e-4, momentum=0.9, max_epochs=200,
                stop_after_epoch=None if benchmark == "fss" else 4, base_size=480, crop_size=480)


for _name, _benchmark, _backbone in (("zs_rn101_pascal", "pascal", "clip_resnet101"),
                                     ("zs_rn101_coco", "coco", "clip_resnet101"),
                                     ("zs_rn101_fss", "fss", "clip_resnet101"),
                                     ("zs_vitl16_fss", "fss", "clip_vitl16_384")):
    PRESETS[_name] = zero_shot_preset(_benchmark, _backbone)
del _name, _benchmark, _backbone


class OptionError(ValueError):
    """A command-line value is invalid; the message starts with the option's name."""


def finite_float(text: str) -> float:
    """argparse type: a finite number (``inf``/``nan`` would train to a non-finite checkpoint and exit 0).

    Args:
        text: the option value.

    Returns:
        the number.

    Raises:
        argparse.ArgumentTypeError: not a number, or not finite (argparse names the option).
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, got %r" % text) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be a finite number, got %r" % text)
    return value


def _parse_scales(text: str) -> List[float]:
    """``"official"`` → the official ADE20K scales; ``"0.75,1.0"`` → ``[0.75, 1.0]``."""
    if text.strip().lower() == "official":
        return list(OFFICIAL_SCALES)
    try:
        return [finite_float(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError("expected comma-separated finite numbers or 'official', got %r"
                                         % text) from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` only for options that take a value and have one (not for on/off flags)."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line plus a pointer to ``--help`` (not the 25-line usage)."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n(%s --help lists every option)\n" % (self.prog, message, self.prog))


def build_parser(purpose: str = "train") -> argparse.ArgumentParser:
    """The argument parser of one script.

    Args:
        purpose: ``"train"`` (train_custom.py: shared + training options) or ``"test"`` (test.py: shared + testing
            options).

    Returns:
        an ``argparse.ArgumentParser``; use :func:`parse_options` to parse *and* validate.
    """
    if purpose not in PURPOSES:
        raise ValueError("purpose must be one of %s (got %r)" % (PURPOSES, purpose))
    p = _Parser(
        prog="train_custom.py" if purpose == "train" else "test.py",
        description=("Train LSeg (language-driven semantic segmentation) on MindSpore" if purpose == "train" else
                     "Evaluate LSeg (pixAcc/mIoU) or segment images with any labels, on MindSpore"),
        formatter_class=_HelpFormatter,
    )
    g = p.add_argument_group("preset and device")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="named bundle of defaults; explicit options override it")
    g.add_argument("--device_target", choices=DEVICE_TARGETS, default="auto",
                   help="MindSpore device; auto = the first of Ascend, GPU, CPU this machine offers")
    g.add_argument("--device_id", type=int, default=None, help="device index (single-device runs)")
    g.add_argument("--mode", choices=MODES, default="graph", help="MindSpore execution mode")
    g.add_argument("--seed", type=int, default=1, help="random seed (data order, augmentation, init)")

    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default="clip_vitl16_384", metavar="NAME",
                   help="image encoder: %s" % ", ".join(sorted(BACKBONES)))
    g.add_argument("--text_config", choices=sorted(TEXT_CONFIGS), default="ViT-B/32", metavar="NAME",
                   help="CLIP text tower: %s" % ", ".join(sorted(TEXT_CONFIGS)))
    g.add_argument("--arch_option", type=int, default=0, help="spatial regularisation block: 0 none, 1 or 2")
    g.add_argument("--block_depth", type=int, default=0, help="how many regularisation blocks")
    g.add_argument("--activation", choices=ACTIVATIONS, default="lrelu", help="activation inside the blocks")
    g.add_argument("--weights", default=None,
                   help="weights to start from / test: our .ckpt or an official lang-seg .ckpt (converted)")
    g.add_argument("--clip_weights", default=None, help="CLIP text tower .ckpt (from python -m clip_ms.convert)")
    g.add_argument("--backbone_weights", "--vit_weights", dest="backbone_weights", default=None,
                   help="ImageNet initialisation of the image backbone: timm .pth/.npz or MindCV .ckpt (ViT), "
                        "torchvision .pth (ResNet-101); --vit_weights is its older name")
    # Accepted so that the official command lines run unchanged; our network always has the wide head and no
    # scale-invariance layers, which is what the released ADE20K model uses.
    g.add_argument("--widehead", action="store_true",
                   help="official flag, accepted and without effect: the head is always the wide one")
    g.add_argument("--widehead_hr", action="store_true", help="official flag, accepted and ignored")
    g.add_argument("--module", default=None,
                   help="official flag (test_lseg_zs.py's --module clipseg_DPT_test_v2), accepted and ignored")
    g.add_argument("--no-scaleinv", dest="scale_inv", action="store_false",
                   help="official flag, accepted and without effect: scale-invariance layers are never built")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="ade20k",
                   help="ade20k, or a zero-shot benchmark in HSNet's layout: %s" % ", ".join(BENCHMARKS))
    g.add_argument("--data_path", "--data-path", dest="data_path", default="../datasets",
                   help="folder holding ADEChallengeData2016/ (ade20k), VOC2012/ (pascal), COCO2014/ (coco) or "
                        "FSS-1000/ (fss)")
    g.add_argument("--fold", default="0",
                   help="zero-shot benchmarks: the fold whose classes are held out (pascal/coco 0-3, fss 0)"
                        + ("" if purpose == "train" else "; 'all' tests every fold and prints their mean"))
    g.add_argument("--base_size", "--base-size", dest="base_size", type=int, default=520,
                   help="base image size (long side before cropping; --image: long side the model sees)")
    g.add_argument("--crop_size", "--crop-size", dest="crop_size", type=int, default=480,
                   help="crop size (training crops, sliding-window size)")
    g.add_argument("--ignore_index", type=int, default=-1,
                   help="mask value ignored by loss and metrics (ADE20K; the zero-shot benchmarks keep HSNet's rules "
                        "and accept the official --ignore_index 255 without effect)")
    g.add_argument("--classes", default="all",
                   help="label set: 'all' (150 ADE20K classes), 'synthetic' (the classes of a synthetic set) "
                        "or comma-separated ADE20K class names; other pixels are ignored")
    g.add_argument("--workers", type=int, default=4, help="data loading processes (0 = in the main process)")
    g.add_argument("--exp_name", default="lseg",
                   help="experiment name: checkpoints/<exp_name>/ (training), outputs/<exp_name>/ (testing)")

    if purpose == "train":
        g = p.add_argument_group("training")
        g.add_argument("--amp_level", choices=AMP_LEVELS, default="O0",
                       help="mixed precision level; above O0 training uses dynamic loss scaling")
        g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=16,
                       help="images per step per device")
        g.add_argument("--base_lr", type=finite_float, default=0.004,
                       help="learning rate at batch 16; the used lr is base_lr / 16 * batch_size")
        g.add_argument("--weight_decay", type=finite_float, default=1e-4, help="SGD weight decay")
        g.add_argument("--momentum", type=finite_float, default=0.9, help="SGD momentum")
        g.add_argument("--max_epochs", type=int, default=240, help="training epochs (the poly lr schedule's length)")
        g.add_argument("--stop_after_epoch", type=int, default=None,
                       help="end the run after this epoch although the lr schedule runs over --max_epochs (the "
                            "official zero-shot module stops PASCAL/COCO after 4 of 200); --resume continues it")
        g.add_argument("--accumulate_grad_batches", type=int, default=1,
                       help="micro-batches whose gradients are summed (averaged) per optimizer step")
        g.add_argument("--checkpoint_dir", default="checkpoints", help="parent folder of experiment folders")
        g.add_argument("--keep_last", type=int, default=3, help="how many epoch checkpoints to keep (plus best)")
        g.add_argument("--overwrite", action="store_true",
                       help="start afresh in an experiment folder that already holds a run (deletes its checkpoints)")
        g.add_argument("--resume", nargs="?", const="last", default=None,
                       help="continue a run: a .ckpt path, or no value for checkpoints/<exp_name>/last.ckpt")
        g.add_argument("--max_train_images", type=int, default=None,
                       help="use only the first N training images (a zero-shot fold: N of its episodes chosen at "
                            "random, i.e. 2N images)")
        g.add_argument("--max_val_images", type=int, default=None, help="validate on the first N val images")
        g.add_argument("--skip_bad_samples", action="store_true",
                       help="leave out the image/mask pairs the data check finds bad (listed in a warning) instead "
                            "of stopping")
        g.add_argument("--no_data_check", action="store_true",
                       help="skip the check of every training/val pair before training (a bad file then stops "
                            "training when it is read)")
    else:
        g = p.add_argument_group("testing")
        g.add_argument("--eval", action="store_true", help="report pixAcc/mIoU on the val split")
        g.add_argument("--eval_mode", choices=EVAL_MODES, default="testval",
                       help="testval: full images (official); val: centre crops as in training validation")
        g.add_argument("--scales", type=_parse_scales, default=[1.0],
                       help="evaluation scales, e.g. 0.75,1.0,1.25, or 'official'")
        g.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
        g.add_argument("--test_batch_size", type=int, default=1, help="images per evaluation step")
        g.add_argument("--max_images", type=int, default=None, help="only the first N val images")
        g.add_argument("--image", nargs="+", default=None, help="segment these image files (with --labels)")
        g.add_argument("--labels", default=None,
                       help='labels for --image: "cat,grass,sky,other" or a text file (one label per line)')
        g.add_argument("--nshot", type=int, default=0,
                       help="zero-shot benchmarks: support images per episode; LSeg uses none, so only 0")
        g.add_argument("--outdir", default=None, help="where test.py writes pictures and logs")
        g.add_argument("--log_file", default=None, help="evaluation log (default: <outdir>/eval_log.txt)")
    return p


def _check(cond: bool, option: str, message: str, value) -> None:
    if not cond:
        raise OptionError("%s: %s (got %r)" % (option, message, value))


# Lower bounds of the integer options, checked when the parsed namespace has them (each script has its own set).
_AT_LEAST = {"batch_size": 1, "test_batch_size": 1, "max_epochs": 1, "stop_after_epoch": 1,
             "accumulate_grad_batches": 1, "workers": 0, "keep_last": 1, "block_depth": 0, "device_id": 0,
             "max_train_images": 1, "max_val_images": 1, "max_images": 1}


def validate_options(args: argparse.Namespace, for_training: bool = False) -> argparse.Namespace:
    """Check every value the namespace holds; raise naming the option that is wrong.

    Args:
        args: parsed options (of either script: options the namespace lacks are not checked).
        for_training: also require what training needs (an existing data folder; a resumable checkpoint when
            ``--resume`` is given).

    Returns:
        ``args`` itself.

    Raises:
        OptionError: the first invalid value, message ``"--option: what is wrong (got value)"``.
    """
    for name, lowest in _AT_LEAST.items():
        value = getattr(args, name, None)
        _check(value is None or value >= lowest, "--" + name, "must be >= %d" % lowest, value)
    if hasattr(args, "base_lr"):
        _check(args.base_lr > 0, "--base_lr", "must be > 0", args.base_lr)
        _check(args.weight_decay >= 0, "--weight_decay", "must be >= 0", args.weight_decay)
        _check(0 <= args.momentum < 1, "--momentum", "must be in [0, 1)", args.momentum)
    _check(args.arch_option in (0, 1, 2), "--arch_option", "must be 0, 1 or 2", args.arch_option)
    _check(args.crop_size > 0 and args.crop_size % CROP_MULTIPLE == 0, "--crop_size",
           "must be a positive multiple of %d" % CROP_MULTIPLE, args.crop_size)
    _check(args.base_size >= args.crop_size, "--base_size", "must be >= --crop_size (%d)" % args.crop_size,
           args.base_size)
    if args.dataset in BENCHMARKS:
        folds = [str(fold) for fold in range(FOLDS_PER_BENCHMARK[args.dataset])]
        allowed = folds + (["all"] if not for_training and not hasattr(args, "base_lr") else [])
        _check(args.fold in allowed, "--fold", "must be one of %s for %s" % (", ".join(allowed), args.dataset),
               args.fold)
        if len(selected_folds(args)) > 1 and args.weights and FOLD_PLACEHOLDER not in args.weights:
            _check(False, "--weights", "--fold all needs %s in the path (one checkpoint per fold: each fold's test "
                   "classes are another fold's training classes)" % FOLD_PLACEHOLDER, args.weights)
    elif args.fold != "0":
        _check(False, "--fold", "applies to the zero-shot benchmarks (%s), not to %s" % (", ".join(BENCHMARKS),
                                                                                        args.dataset), args.fold)
    _check(args.dataset not in BENCHMARKS or (args.arch_option == 0 and args.block_depth == 0), "--arch_option",
           "the zero-shot networks (official LSegNetZS / LSegRNNetZS) have no spatial regularisation block: use 0 "
           "(and --block_depth 0)", (args.arch_option, args.block_depth))
    _check(getattr(args, "nshot", 0) == 0, "--nshot",
           "LSeg segments from the class name alone (zero-shot): only 0 is supported", getattr(args, "nshot", 0))
    _check(bool(args.exp_name) and os.sep not in args.exp_name and args.exp_name not in (".", ".."),
           "--exp_name", "must be a plain folder name", args.exp_name)
    if hasattr(args, "scales"):
        _check(bool(args.scales) and all(s > 0 for s in args.scales), "--scales", "must be positive numbers",
               args.scales)
    for name in ("weights", "clip_weights", "backbone_weights"):
        value = getattr(args, name)
        paths = [value] if value is None or name != "weights" else [fold_weights(args, fold)
                                                                    for fold in selected_folds(args)]
        for path in paths:
            _check(path is None or os.path.isfile(path), "--" + name,
                   "is a folder, not a file" if path and os.path.isdir(path) else "file not found", path)
    if getattr(args, "image", None) is not None:
        for path in args.image:
            _check(os.path.isfile(path), "--image", "file not found", path)
        _check(args.labels is not None and args.labels.strip() != "", "--labels",
               "is required with --image and must name at least one label", args.labels)
        _check(not args.eval, "--eval", "evaluates the val split; --image segments files: give one of them", True)
    elif getattr(args, "labels", None) is not None:
        _check(False, "--labels", "labels the --image files; give --image too (--eval uses --classes)", args.labels)
    log_file = getattr(args, "log_file", None)
    if log_file is not None:
        folder = os.path.dirname(os.path.abspath(log_file))
        _check(os.path.isdir(folder) and not os.path.isdir(log_file), "--log_file",
               "must be a file in an existing folder", log_file)
    amp_level = getattr(args, "amp_level", "O0")
    if amp_level != "O0" and args.mode == "graph" and amp_level not in tnn.GRAPH_AMP_LEVELS:
        # Only the msadapter layer (legacy stack, LSEG_NN=msadapter) has such levels: see modules.tnn.
        raise OptionError("--amp_level: %s does not compile in graph mode with the %s layer; use --amp_level %s, "
                          "LSEG_NN=native, or --mode pynative (got %r)"
                          % (amp_level, tnn.BACKEND, "/".join(tnn.GRAPH_AMP_LEVELS), amp_level))
    if for_training:
        _check(os.path.isdir(args.data_path), "--data_path", "folder not found", args.data_path)
        _check(args.dataset not in BENCHMARKS or not args.weights or FOLD_PLACEHOLDER not in args.weights,
               "--weights", "trains one fold: name one file (no %s)" % FOLD_PLACEHOLDER, args.weights)
        if args.resume is not None and args.resume != "last":
            _check(os.path.isfile(args.resume), "--resume", "checkpoint file not found", args.resume)
    return args


def selected_folds(args: argparse.Namespace) -> List[str]:
    """The folds a run covers: ``--fold`` itself, or every fold of the benchmark for ``--fold all``.

    Returns:
        fold names (``["0"]`` for ADE20K, which has none).
    """
    if args.dataset in BENCHMARKS and args.fold == "all":
        return [str(fold) for fold in range(FOLDS_PER_BENCHMARK[args.dataset])]
    return [args.fold]


def fold_weights(args: argparse.Namespace, fold: str) -> Optional[str]:
    """``--weights`` of one fold: ``{fold}`` in the path is replaced by it (``pascal_fold{fold}.ckpt``)."""
    return None if args.weights is None else args.weights.replace(FOLD_PLACEHOLDER, str(fold))


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


def explicit_options(purpose: str, argv: Sequence[str]) -> set:
    """The options given on a command line.

    Parsed by a fresh parser of ``purpose`` with every default suppressed, so abbreviations and ``--opt=value``
    count too and a preset's defaults do not.

    Args:
        purpose: ``"train"`` or ``"test"``.
        argv: the arguments.

    Returns:
        their destinations, e.g. ``{"backbone", "data_path"}``.
    """
    parser = build_parser(purpose)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given, _ = parser.parse_known_args(argv)
    return set(vars(given))


def parse_options(argv: Optional[Sequence[str]] = None, purpose: str = "train",
                  for_training: bool = False) -> argparse.Namespace:
    """Parse, apply the preset, validate.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        purpose: ``"train"`` or ``"test"``: which script's options (:func:`build_parser`).
        for_training: see :func:`validate_options` (train_custom.py passes True).

    Returns:
        the validated ``argparse.Namespace``; ``args.explicit`` is the set of options given on the command line
        (they win over a preset and must agree with a checkpoint's recorded architecture).

    Exits (status 2, one line on stderr naming the option) on an unknown option or an invalid value.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(purpose)
    first, _ = parser.parse_known_args(argv)
    if first.preset is not None:
        known = {action.dest for action in parser._actions}
        parser.set_defaults(**{k: v for k, v in PRESETS[first.preset].items() if k in known})
    args = parser.parse_args(argv)
    try:
        validate_options(args, for_training=for_training)
    except OptionError as err:
        parser.error(str(err))
    args.explicit = explicit_options(purpose, argv)
    args.exp_name = args.exp_name.replace(FOLD_PLACEHOLDER, args.fold)
    return args


# ------------------------------------------------------------------------------------------ options -> library
# The glue between parsed options and the libraries, for both scripts: libraries speak of arguments and raise
# their own errors; these name the option.
def configure_context(args: argparse.Namespace) -> None:
    """Device, mode, data-parallel group and seeds from the options (``encoding_custom.engine.configure_runtime``).

    Args:
        args: parsed options; ``args.device_target`` becomes the device in use (``auto`` resolved).

    Raises:
        OptionError: naming ``--device_target`` (not on this machine).
    """
    try:
        args.device_target = configure_runtime(args.device_target, args.mode, device_id=args.device_id,
                                               seed=args.seed)
    except DeviceUnavailableError as err:
        raise OptionError("--" + str(err)) from err


def resolve_classes(args, data_path: Optional[str] = None) -> Tuple[List[str], Optional[List[int]]]:
    """``--classes`` resolved against a data folder.

    Args:
        args: parsed options.
        data_path: folder to resolve ``synthetic`` against (default ``args.data_path``).

    Returns:
        ``(label names, ADE20K class indices or None)``.

    Raises:
        OptionError: naming ``--classes``.
    """
    try:
        return resolve_label_set(args.classes, data_path or args.data_path, source="--classes")
    except ValueError as err:
        raise OptionError(str(err)) from err


def build_network(args, labels: Sequence[str]):
    """The network the architecture options describe.

    Args:
        args: parsed options (backbone, text tower, block, ``--clip_weights`` / ``--backbone_weights``).
        labels: its label list.

    Returns:
        an LSegNet with the CLIP text tower / ViT initialisation loaded when given.

    Raises:
        OptionError: an unknown backbone or text tower, or weights that do not fit (named in the message).
    """
    try:
        return build_lseg(args.backbone, labels, arch_option=args.arch_option, block_depth=args.block_depth,
                          activation=args.activation, text_config=args.text_config,
                          clip_weights=getattr(args, "clip_weights", None),
                          backbone_weights=getattr(args, "backbone_weights", None))
    except ArgumentError as err:  # unknown backbone/text config, text weights that do not fit
        raise OptionError(err.describe("--" + err.argument)) from err
    except WeightsError as err:  # --backbone_weights: the message starts with the file
        raise OptionError(str(err)) from err


# The options a checkpoint of ours records that decide which network it holds (and, for ``classes``, its labels).
RECORDED_NETWORK_OPTIONS = ("backbone", "text_config", "arch_option", "block_depth", "activation", "classes")
# What else a resumed run must share with the run it continues: the data it trains on (a zero-shot fold decides the
# label list and which classes are never seen).
RESUMED_RUN_OPTIONS = RECORDED_NETWORK_OPTIONS + ("dataset", "fold")
# Those of them the weight loaders check against a file (the others are read from it or do not apply).
CHECKED_ARCHITECTURE_OPTIONS = ("backbone", "arch_option", "block_depth", "activation")


def explicit_architecture(args: argparse.Namespace) -> Dict[str, object]:
    """The architecture options given on the command line, for the weight loaders to check against the file.

    Args:
        args: options from :func:`parse_options` (``args.explicit`` set).

    Returns:
        ``{name: value}`` for each of :data:`CHECKED_ARCHITECTURE_OPTIONS` given explicitly.
    """
    return {key: getattr(args, key) for key in CHECKED_ARCHITECTURE_OPTIONS if key in args.explicit}


def recorded_option_conflicts(args: argparse.Namespace, recorded: Dict,
                              names: Sequence[str] = RECORDED_NETWORK_OPTIONS) -> List[Tuple[str, object, object]]:
    """The network options whose value in ``args`` differs from what a checkpoint recorded.

    Args:
        args: options of this run.
        recorded: the checkpoint's options record (:func:`options_record` of the run that wrote it).
        names: the options compared (default :data:`RECORDED_NETWORK_OPTIONS`; a resumed run adds
            :data:`RESUMED_RUN_OPTIONS`).

    Returns:
        ``[(name, this run's value, recorded value)]`` over ``names`` present in both.
    """
    return [(key, getattr(args, key), recorded[key]) for key in names
            if key in recorded and hasattr(args, key) and getattr(args, key) != recorded[key]]


def make_dataset(args, split: str, mode: str, class_indices: Optional[Sequence[int]],
                 exclude: Optional[Sequence[str]] = None):
    """ADE20K from the data options.

    Args:
        args: parsed options (data path, sizes, seed, ignore index).
        split, mode: ``"train"``/``"val"``; ``"train"``/``"val"``/``"testval"``.
        class_indices: ADE20K classes to keep (renumbered), None for all.
        exclude: file stems to leave out (the data check's bad pairs with ``--skip_bad_samples``).

    Returns:
        the dataset (``encoding_custom.datasets.build_ade20k``).

    Raises:
        encoding_custom.data_check.DataError: images without masks or masks without images.
    """
    return build_ade20k(args.data_path, split, mode, base_size=args.base_size, crop_size=args.crop_size,
                        seed=args.seed, class_indices=class_indices, ignore_index=args.ignore_index,
                        exclude=exclude)


def backbone_normalisation(backbone) -> str:
    """The image normalisation a backbone was trained with: ``"vit"`` (mean = std = 0.5) or ``"imagenet"``
    (the ResNet-101 of the zero-shot networks), from ``modules.config``."""
    return get_backbone_config(backbone).normalisation


def make_episodes(args, fold: str, normalisation: str, split: str = "test"):
    """The episodes of one fold of ``--dataset``: ``test`` (HSNet's 1000 test episodes; FSS-1000's test classes) or
    ``val`` (the training validation: the same unseen classes for PASCAL/COCO, FSS-1000's val classes), resized to
    ``--crop_size`` (480 officially) with the backbone's normalisation.

    Raises:
        encoding_custom.fewshot.FewShotDataError: missing folders or files, named.
    """
    return make_fewshot_dataset(args.dataset, args.data_path, int(fold), split, shot=0, img_size=args.crop_size,
                                normalisation=normalisation)


def check_benchmark_files(args) -> None:
    """Every image and mask the split lists of ``--dataset`` name is on disk under ``--data_path`` (a file that is
    missing would otherwise stop a run when it is first read, maybe hours in).

    Raises:
        OptionError: naming ``--data_path``, the first problem and the command that lists them all.
    """
    report = check_fewshot_layout(args.data_path, args.dataset)
    if not report.ok:
        skip = ", --no_data_check skips this check" if hasattr(args, "no_data_check") else ""
        raise OptionError("--data_path: the %s files under %s are incomplete (%d problem(s)), first: %s; "
                          "`python -m scripts.prepare_fewshot %s --root %s --check` lists them%s"
                          % (args.dataset, args.data_path, len(report.problems), report.problems[0], args.dataset,
                             args.data_path, skip))


def make_fold_training_set(args, normalisation: str) -> FoldTrainingSet:
    """The training episodes of ``--fold`` (its training classes only; its test classes' pixels ignored), seeded by
    ``--seed``, ``--max_train_images`` of them at most."""
    fold = int(args.fold)
    train_split = make_fewshot_dataset(args.dataset, args.data_path, fold, "trn", shot=1, img_size=args.crop_size,
                                       normalisation=normalisation)
    return FoldTrainingSet(train_split, fold_class_ids(args.dataset, fold, "test"), seed=args.seed,
                           max_episodes=args.max_train_images)


def options_record(args) -> dict:
    """Args: parsed options. Returns: their JSON-serialisable values, stored in every checkpoint (test.py rebuilds
    the network from them, ``--resume`` checks them)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}


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
