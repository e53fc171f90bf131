"""Command-line options shared by train_custom.py and test.py.

One parser carries the official lang-seg option names and defaults (``train_lseg.py`` / ``test_lseg.py``) plus what a
MindSpore user needs (device, graph/pynative mode, AMP level, resume, presets). Every value is validated after
parsing; a wrong value stops with a message that names the option, e.g. ``--crop_size: must be ... (got 100)``.

Recipes are YAML files of defaults: ``--config FILE``, or ``--preset NAME`` for ``configs/NAME.yaml`` (``tiny`` for
the CPU quick start, ``vitl16_ade20k`` for the official ViT-L/16 ADE20K recipe, the zero-shot ones). Options given
explicitly on the command line always win over the file; a key that is no option, or a value its option's type or
choices refuse, stops with one line naming the file and the key.

Each script sees only its options: ``build_parser("train")`` for train_custom.py, ``build_parser("test")`` for
test.py; the shared groups (device, model, data) are in both. Choice lists come from the library that implements
them (backbones: ``modules.BACKBONES``, text towers: ``clip_ms.TEXT_CONFIGS``, activations: ``modules.head``, data
sets: ``encoding_custom.tasks``). Turning options into networks and data sets is ``encoding_custom.tasks``' job.
"""
import argparse
import difflib
import math
import os
import sys
from collections.abc import Mapping
from typing import Dict, Iterator, List, Optional, Sequence

import yaml

from clip_ms.prompts import templates_from_options
from clip_ms.text_encoder import TEXT_CONFIGS
from encoding_custom.engine.runtime import DEVICE_TARGETS
from encoding_custom.evaluation.evaluator import OFFICIAL_SCALES
from encoding_custom.fewshot import BENCHMARKS, FOLDS_PER_BENCHMARK
from encoding_custom.tasks import COMBINABLE, OptionError, check_multi_set_options, dataset_kinds
from encoding_custom.tasks.benchmark import FOLD_PLACEHOLDER, fold_weights, selected_folds
from modules import tnn
from modules.config import BACKBONES
from modules.head import ACTIVATIONS
from modules.lseg import RECOMPUTE_LEVELS

PURPOSES = ("train", "test")
MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
AMP_DTYPES = ("float16", "bfloat16")
# DPT's reassembly halves the resolution four times after a /16 or /32 patch grid; crops must divide evenly.
CROP_MULTIPLE = 32
# test.py --eval: full images with the official machinery, or the centre crops training validation uses.
EVAL_MODES = ("testval", "val")

# The recipe files: --preset NAME is --config configs/NAME.yaml. Found next to this file, so a script started from
# another folder finds them too.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
CONFIG_SUFFIX = ".yaml"
# Which file is read is the command line's choice, never a file's (no chains of files to follow).
_CHOOSE_CONFIG = ("config", "preset")


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line starting with the file (and the key at fault)."""


def preset_names() -> List[str]:
    """The recipes in ``configs/``: ``tiny``, ``vitl16_ade20k``, ... (sorted file names without ``.yaml``)."""
    try:
        names = os.listdir(CONFIG_DIR)
    except OSError:
        return []
    return sorted(name[:-len(CONFIG_SUFFIX)] for name in names if name.endswith(CONFIG_SUFFIX))


def preset_path(name: str) -> str:
    """The file of the recipe ``name``: ``<repository>/configs/<name>.yaml``."""
    return os.path.join(CONFIG_DIR, name + CONFIG_SUFFIX)


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
    g = p.add_argument_group("recipe and device")
    recipe = g.add_mutually_exclusive_group()
    recipe.add_argument("--config", default=None, metavar="FILE",
                        help="YAML file of option defaults (keys are option names without --, e.g. 'base_lr: 0.004'); "
                             "explicit options override it")
    recipe.add_argument("--preset", choices=preset_names(), default=None,
                        help="a recipe of configs/: --preset NAME is --config configs/NAME.yaml")
    g.add_argument("--device_target", choices=DEVICE_TARGETS, default="auto",
                   help="MindSpore device; auto = the first of Ascend, GPU, CPU this machine offers")
    g.add_argument("--device_id", type=int, default=None, help="device index (single-device runs)")
    g.add_argument("--mode", choices=MODES, default=None,
                   help="MindSpore execution mode (default: graph; pynative for test.py --image)")
    g.add_argument("--seed", type=int, default=1, help="random seed (data order, augmentation, init)")
    g.add_argument("--no-progress", "--no_progress", dest="no_progress", action="store_true",
                   help="no progress bars (in a file or pipe they are already one line per 5 %%)")

    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default="clip_vitl16_384", metavar="NAME",
                   help="image encoder: %s" % ", ".join(sorted(BACKBONES)))
    g.add_argument("--text_config", choices=sorted(TEXT_CONFIGS), default="ViT-B/32", metavar="NAME",
                   help="CLIP text tower: %s" % ", ".join(sorted(TEXT_CONFIGS)))
    g.add_argument("--arch_option", type=int, default=0, help="spatial regularisation block: 0 none, 1 or 2")
    g.add_argument("--block_depth", type=int, default=0, help="how many regularisation blocks")
    g.add_argument("--activation", choices=ACTIVATIONS, default="lrelu", help="activation inside the blocks")
    g.add_argument("--weights", default=None,
                   help="weights to start from / test, with their architecture unless given: our .ckpt or an "
                        "official lang-seg .ckpt (converted)")
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
    prompt = g.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, metavar="TEMPLATE",
                        help='the text each label is encoded as, {} standing for the label, e.g. "a photo of a {}."; '
                             "default the bare label (official); recorded in checkpoints, which test.py, the demo "
                             "and the export then use")
    prompt.add_argument("--prompts", default=None, metavar="FILE",
                        help="several templates, one per line: each label's text features are averaged over them "
                             "(CLIP's prompt ensemble)")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="ade20k", metavar="KIND",
                   help="ade20k; folder (your own data: labels.txt, images/ and annotations/, see README.md); a "
                        "zero-shot benchmark in HSNet's layout: %s; or several ade20k/folder sets trained together, "
                        "comma-separated (ade20k,folder)" % ", ".join(BENCHMARKS))
    g.add_argument("--data_path", "--data-path", dest="data_path", default="../datasets",
                   help="folder holding ADEChallengeData2016/ (ade20k), VOC2012/ (pascal), COCO2014/ (coco) or "
                        "FSS-1000/ (fss); for folder, the set's own folder (holding labels.txt); for several sets, "
                        "their folders comma-separated in the same order")
    g.add_argument("--fold", default="0",
                   help="zero-shot benchmarks: the fold whose classes are held out (pascal/coco 0-3, fss 0)"
                        + ("" if purpose == "train" else "; 'all' tests every fold and prints their mean"))
    g.add_argument("--base_size", "--base-size", dest="base_size", type=int, default=520,
                   help="base image size (long side before cropping; --image: long side the model sees)")
    g.add_argument("--crop_size", "--crop-size", dest="crop_size", type=int, default=480,
                   help="crop size (training crops, sliding-window size)")
    g.add_argument("--ignore_index", type=int, default=None,
                   help="folder sets: the mask value of ignored pixels (default 255); ADE20K always ignores its "
                        "unlabelled 0 and the zero-shot benchmarks keep HSNet's rules: there the official "
                        "--ignore_index -1/255 is accepted without effect")
    g.add_argument("--reduce_zero_label", action="store_true",
                   help="folder sets: mask value 0 means unlabelled and line k of labels.txt is stored as k + 1 (as "
                        "MMSegmentation's option of that name)")
    g.add_argument("--classes", default="all",
                   help="label set: 'all' (the set's classes: 150 for ADE20K, labels.txt for a folder set), "
                        "'synthetic' (the classes of a synthetic ADE20K set) or comma-separated class names of the "
                        "set; other pixels are ignored")
    g.add_argument("--workers", type=int, default=4, help="data loading processes (0 = in the main process)")
    g.add_argument("--exp_name", default="lseg",
                   help="experiment name: checkpoints/<exp_name>/ (training), outputs/<exp_name>/ (testing)")

    if purpose == "train":
        g = p.add_argument_group("training")
        g.add_argument("--amp_level", choices=AMP_LEVELS, default="O0",
                       help="mixed precision level; above O0 training uses dynamic loss scaling")
        g.add_argument("--amp_dtype", choices=AMP_DTYPES, default="float16",
                       help="the low float type of --amp_level O1-O3: float16, or bfloat16 (Ascend; MindSpore 2.3+)")
        g.add_argument("--recompute", choices=RECOMPUTE_LEVELS, default="none",
                       help="activations recomputed in the backward pass instead of kept, for training memory (graph "
                            "mode): 'backbone' = each ViT block / ResNet bottleneck; same gradients, a slower step "
                            "(bench/PERFORMANCE.md)")
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
        g.add_argument("--image", nargs="+", default=None,
                       help="segment these image files, or every picture in these folders (with --labels)")
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
    kinds = dataset_kinds(args.dataset)
    args.dataset = ",".join(kinds)
    if len(kinds) > 1:
        check_multi_set_options(kinds, args.data_path.split(","), COMBINABLE)
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
            _check(os.path.isfile(path) or os.path.isdir(path), "--image", "file not found", path)
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
    if getattr(args, "amp_dtype", "float16") != "float16":
        _check(amp_level != "O0", "--amp_dtype", "is the type of --amp_level O1/O2/O3: give one of those too",
               args.amp_dtype)
    if getattr(args, "recompute", "none") != "none":
        _check(args.mode == "graph", "--recompute", "works in graph mode only: add --mode graph", args.recompute)
    try:
        args.prompt_templates = templates_from_options(args.prompt, args.prompts)
    except ValueError as err:
        raise OptionError(str(err)) from err
    if for_training:
        for folder in args.data_path.split(",") if len(kinds) > 1 else [args.data_path]:
            _check(os.path.isdir(folder), "--data_path", "folder not found", folder)
        _check(args.dataset not in BENCHMARKS or not args.weights or FOLD_PLACEHOLDER not in args.weights,
               "--weights", "trains one fold: name one file (no %s)" % FOLD_PLACEHOLDER, args.weights)
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


def _option_actions() -> Dict[str, argparse.Action]:
    """Every option a config file may set, by destination, over both scripts: one recipe serves train_custom.py and
    test.py, each taking the keys that are its options."""
    actions: Dict[str, argparse.Action] = {}
    for purpose in PURPOSES:
        for action in build_parser(purpose)._actions:
            if action.option_strings and action.dest not in _CHOOSE_CONFIG + ("help",):
                actions.setdefault(action.dest, action)
    return actions


def _convert(action: argparse.Action, value):
    """One value of a config file as its option holds it; raises ValueError saying what is wrong."""
    if action.nargs == 0:  # on/off flags (store_true / store_false) hold the boolean itself
        if not isinstance(value, bool):
            raise ValueError("expected true or false, got %r" % (value,))
        return value
    if value is None:
        if action.default is None:  # options whose default is "not set" (--weights, --stop_after_epoch, ...)
            return None
        raise ValueError("expected a value, got null")
    if action.nargs in ("+", "*"):
        return [_convert_one(action, item) for item in (value if isinstance(value, list) else [value])]
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value):
    # Booleans are refused where a word is expected: YAML reads an unquoted yes/no/on/off as true/false.
    if isinstance(value, bool):
        raise ValueError("expected a value, got %s (YAML reads an unquoted true/false/yes/no/on/off as a boolean; "
                         "quote it if it is a word)" % str(value).lower())
    if not isinstance(value, (str, int, float)):
        raise ValueError("expected a single value, got %r" % (value,))
    # Through the option's own type as the command line's text, so an int option refuses 2.5.
    try:
        converted = action.type(str(value)) if action.type is not None else str(value)
    except argparse.ArgumentTypeError as err:
        raise ValueError(str(err)) from None
    except (TypeError, ValueError):
        raise ValueError("invalid %s value: %r" % (getattr(action.type, "__name__", "option"), value)) from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError("invalid choice: %r (choose from %s)" % (converted, ", ".join(map(str, action.choices))))
    return converted


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    return problem if mark is None else "%s (line %d, column %d)" % (problem, mark.line + 1, mark.column + 1)


def load_config(path: str) -> Dict[str, object]:
    """Read one config file: ``option: value`` lines, keys named like the options' destinations (``base_lr``).

    Keys may be options of either script (a recipe serves both; each script takes its own). Every value goes
    through its option's ``type`` and ``choices`` as if given on the command line; on/off flags take true/false,
    options that take several values a list, options whose default is unset also null.

    Args:
        path: the YAML file.

    Returns:
        ``{destination: value}`` with the values converted as the parser would.

    Raises:
        ConfigError: one line ``"<path>: <key>: what is wrong"`` (``"<path>: ..."`` for an unreadable file, invalid
            YAML or a document that is not a mapping).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ConfigError("%s: cannot read it: %s" % (path, err.strerror or err)) from None
    except UnicodeDecodeError as err:
        raise ConfigError("%s: cannot read it: not UTF-8 text (%s)" % (path, err.reason)) from None
    try:
        # safe_load keeps the last of two equal keys; the node tree shows the repetition, almost always a mistake.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError("%s: not valid YAML: %s" % (path, _yaml_problem(err))) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("%s: expected 'option: value' lines, got a YAML %s" % (path, type(data).__name__))
    seen = set()
    for key_node, _ in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # not an option name: refused below
        if key_node.value in seen:
            raise ConfigError("%s: %s: given twice (again on line %d)" % (path, key_node.value,
                                                                          key_node.start_mark.line + 1))
        seen.add(key_node.value)
    actions = _option_actions()
    values: Dict[str, object] = {}
    for key, value in data.items():
        if key in _CHOOSE_CONFIG:
            raise ConfigError("%s: %s: a config file cannot name another config or preset; give --%s on the command "
                              "line instead" % (path, key, key))
        if not isinstance(key, str) or key not in actions:
            guess = difflib.get_close_matches(str(key).lstrip("-").replace("-", "_"), list(actions), n=1)
            raise ConfigError("%s: %s: unknown option (%s)" % (
                path, key, "did you mean %s?" % guess[0] if guess else "keys are option names without --"))
        try:
            values[key] = _convert(actions[key], value)
        except ValueError as err:
            raise ConfigError("%s: %s: %s" % (path, key, err)) from None
    return values


class _Presets(Mapping):
    """``PRESETS[name]``: the option values of ``configs/<name>.yaml``, read when asked for."""

    def __getitem__(self, name: str) -> Dict[str, object]:
        if name not in preset_names():
            raise KeyError(name)
        return load_config(preset_path(name))

    def __iter__(self) -> Iterator[str]:
        return iter(preset_names())

    def __len__(self) -> int:
        return len(preset_names())


PRESETS = _Presets()


def default_mode(args: argparse.Namespace) -> str:
    """``--mode`` when nothing sets it: PyNative for test.py ``--image``, GRAPH_MODE for everything else.

    Why: ``--image`` segments a few photos, two 480x480 windows each at the default sizes. On 2 CPU cores the
    compiled ViT-L/16 forward's first call takes 11.5 s against PyNative's 6.3 s, and each later window 5.4 s
    against 5.75 s, so PyNative is the faster up to about 16 windows (8 photos), with 0.9 GiB less memory
    (bench/PERFORMANCE.md, "The demo's forward").
    Training and ``--eval`` run many batches of one shape, where the compile pays.
    """
    return "pynative" if getattr(args, "image", None) else "graph"


def parse_options(argv: Optional[Sequence[str]] = None, purpose: str = "train",
                  for_training: bool = False) -> argparse.Namespace:
    """Parse, apply the config file (``--config FILE`` or ``--preset NAME``), validate.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
        purpose: ``"train"`` or ``"test"``: which script's options (:func:`build_parser`).
        for_training: see :func:`validate_options` (train_custom.py passes True).

    Returns:
        the validated ``argparse.Namespace``; ``args.explicit`` is the set of options given on the command line
        (they win over the config file and must agree with a checkpoint's recorded architecture); ``args.config`` is
        the absolute path of the config file used (a preset's too), or None.

    Exits (status 2, one line on stderr naming the option, or the file and key) on an unknown option, an invalid
    value or a config file that cannot be used.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(purpose)
    first, _ = parser.parse_known_args(argv)
    config = preset_path(first.preset) if first.preset is not None else first.config
    values: Dict[str, object] = {}
    if config is not None:
        try:
            values = load_config(config)
        except ConfigError as err:
            parser.error(str(err))
        known = {action.dest for action in parser._actions}
        parser.set_defaults(**{k: v for k, v in values.items() if k in known})
    args = parser.parse_args(argv)
    if args.mode is None:  # neither the command line nor the config file chose
        args.mode = default_mode(args)
    explicit = explicit_options(purpose, argv)
    try:
        validate_options(args, for_training=for_training)
    except OptionError as err:
        option, _, reason = str(err).partition(": ")
        if option[2:] in values and option[2:] not in explicit:  # the file's value is wrong: name file and key
            parser.error("%s: %s: %s" % (config, option[2:], reason))
        parser.error(str(err))
    args.explicit = explicit
    args.config = None if config is None else os.path.abspath(config)
    args.exp_name = args.exp_name.replace(FOLD_PLACEHOLDER, args.fold)
    return args


def options_record(args) -> dict:
    """Args: parsed options. Returns: their JSON-serialisable values, stored in every checkpoint (test.py rebuilds
    the network from them, ``--resume`` checks them): the resolved value of every option, plus ``config`` (the
    file the defaults came from, or None) and ``preset``."""
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
