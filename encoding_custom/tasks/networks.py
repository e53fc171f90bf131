"""The network of a run, from its options: built from the architecture options, or loaded from ``--weights`` (any
checkpoint kind, through ``modules.factory.load_lseg``, the one loader) with the architecture and labels the file
records."""
import argparse
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from encoding_custom.datasets.classes import resolve_classes as resolve_label_set
from encoding_custom.tasks.base import OptionError
from foundation.labels import ade20k_labels
from modules.factory import OFFICIAL, ArgumentError, build_lseg, load_lseg
from modules.weights import WeightsError, WeightsOptionError


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
                          backbone_weights=getattr(args, "backbone_weights", None), prompts=args.prompt_templates)
    except ArgumentError as err:  # unknown backbone/text config, text weights that do not fit
        raise OptionError(err.describe("--" + err.argument)) from err
    except WeightsError as err:  # --backbone_weights: the message starts with the file
        raise OptionError(str(err)) from err


# The options a checkpoint of ours records that decide which network it holds (and, for ``classes``, its labels).
RECORDED_NETWORK_OPTIONS = ("backbone", "text_config", "arch_option", "block_depth", "activation", "classes")


# What else a resumed run must share with the run it continues: the data it trains on (a zero-shot fold decides the
# label list and which classes are never seen).
RESUMED_RUN_OPTIONS = RECORDED_NETWORK_OPTIONS + ("dataset", "fold", "prompt_templates")


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


def _load_weights(args, labels: Optional[Sequence[str]] = None):
    """``load_lseg(args.weights)`` with the architecture options given explicitly; their errors as OptionError."""
    text_config = args.text_config if "text_config" in args.explicit else None
    try:
        return load_lseg(args.weights, labels=labels, text_config=text_config, **explicit_architecture(args))
    except WeightsOptionError as err:
        raise OptionError(err.describe("--" + err.option)) from err


def training_network(args, labels: Sequence[str], resuming: bool):
    """The network a training run starts from.

    Args:
        args: this run's options; with ``--weights`` (and not resuming), its architecture options are set to the
            loaded network's (a run records what it trains).
        labels: the training label list.
        resuming: the weights come from ``--resume`` later, so the network is only built.

    Returns:
        an LSegNet: built from the architecture options, or ``--weights`` loaded (any checkpoint kind, its
        architecture unless given explicitly).

    Raises:
        OptionError, WeightsError: a bad option or weights file, named in the message.
    """
    if args.weights is None or resuming:
        return build_network(args, labels)
    network = _load_weights(args, labels).network
    for key, value in network.build_options().items():
        setattr(args, key, value)
    take_prompts(args, network)
    return network


def take_prompts(args, network) -> None:
    """``--prompt`` / ``--prompts`` when given, else the prompts the network's file recorded: set on both."""
    if {"prompt", "prompts"} & set(args.explicit):
        if network.prompts != args.prompt_templates:
            network.set_prompts(args.prompt_templates)
    else:
        args.prompt_templates = list(network.prompts)


# The image sizes a run of train_custom.py records, which an evaluation takes as its defaults.
TRAINED_SIZE_OPTIONS = ("base_size", "crop_size")


def trained_sizes(args, recorded: Dict) -> Dict[str, int]:
    """The sizes a checkpoint was trained at that differ from this run's, where the run did not choose them (not on
    the command line, no config file or preset).

    Args:
        args: this run's options; recorded: the checkpoint's options record.

    Returns:
        ``{option: trained value}``, empty when the sizes agree or were chosen.
    """
    if getattr(args, "config", None) is not None:
        return {}
    return {key: int(recorded[key]) for key in TRAINED_SIZE_OPTIONS
            if key in recorded and key not in args.explicit and getattr(args, key) != recorded[key]}


def load_network(args, sizes_from_checkpoint: bool = True) -> Tuple[object, List[str], Optional[List[int]]]:
    """Build the network the weights need and load them (``modules.factory.load_lseg``: any checkpoint kind).

    Args:
        args: this run's options (updated with the checkpoint's architecture, and its training sizes where the
            run did not choose them and ``sizes_from_checkpoint``).
        sizes_from_checkpoint: False for a benchmark, whose protocol fixes the size: a note then says how to
            evaluate at the training size instead.

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
    loaded = _load_weights(args)
    take_prompts(args, loaded.network)
    if loaded.kind == OFFICIAL:
        return loaded.network, ade20k_labels(), None
    apply_recorded_architecture(args, loaded.record, args.weights)
    args.recorded = loaded.record
    sizes = trained_sizes(args, loaded.record)
    flags = " ".join("--%s %d" % item for item in sizes.items())
    if sizes and sizes_from_checkpoint:
        for key, value in sizes.items():
            setattr(args, key, value)
        print("test.py: note: %s was trained at %s: evaluating at those sizes (give the options to choose others)"
              % (args.weights, flags), file=sys.stderr)
    elif sizes:
        print("test.py: note: %s was trained at %s; the benchmark protocol evaluates at --crop_size %d: add %s to "
              "evaluate at the training size" % (args.weights, flags, args.crop_size, flags), file=sys.stderr)
    run_record = "classes" in loaded.record  # written by train_custom.py, not by save_lseg_checkpoint
    if loaded.labels is not None:
        labels, indices = loaded.labels, loaded.class_indices
        if indices is None and not run_record:  # a weights file records names: its ADE20K classes, if all
            names = ade20k_labels()
            if labels != names and set(labels) <= set(names):
                indices = [names.index(name) for name in labels]
    elif run_record:  # written before checkpoints recorded their label names
        data_path = args.data_path if "data_path" in args.explicit else loaded.record.get("data_path", args.data_path)
        labels, indices = resolve_classes(args, data_path)
    else:
        labels, indices = ade20k_labels(), None
    loaded.network.set_labels(labels)
    return loaded.network, labels, indices
