"""Official lang-seg checkpoints into LSegNet, torch-free: the name map, the architecture a file holds, and the
command line that writes our checkpoint.

* :func:`official_state_to_lseg` maps an official Lightning ``state_dict`` onto LSegNet names, strictly.
* :func:`official_build_options` resolves an official checkpoint's architecture options from the user's explicit
  values, its ``hyper_parameters`` and its weights (a value they contradict, or one they cannot tell such as
  ``block_depth``, raises ``WeightsOptionError`` naming the option).
* :func:`build_lseg_from_official` / :func:`load_official_checkpoint`: an official ``.ckpt`` into a new / a built
  LSegNet; :func:`convert_official_checkpoint` also writes our ``.ckpt``.

Command line:

    python -m modules.convert demo_e200.ckpt lseg_vitl16.ckpt
    python -m modules.convert SRC DST --backbone clip_vitb32_384 --arch-option 0
    python -m modules.convert fold0.ckpt lseg_zs_rn101_fold0.ckpt     # a released zero-shot fold checkpoint

Zero-shot checkpoints (lang-seg ``LSegModuleZS``: ``LSegNetZS`` with a ViT, ``LSegRNNetZS`` with ``clip_resnet101``)
convert the same way: the backbone is read from ``hyper_parameters`` or, without them, from the weights (the ViT's
patch embedding, the ResNet's stem width, stage planes and block counts); the ``arch_option``/``block_depth`` those
modules record are ignored, as the official zero-shot networks ignore them.

Options missing from the checkpoint's ``hyper_parameters`` are inferred from its weights; a flag the checkpoint
contradicts is refused (both values named), and ``--arch-option`` / ``--block-depth`` are required when the weights
cannot tell them (the spatial regularisation block without ``hyper_parameters``).
Exit status: 0 written; 1 the source cannot be converted or the destination cannot be written, with one
``python -m modules.convert: error: <file>: <what is wrong>`` line on stderr (missing, unreadable, empty,
truncated, not a torch file, a checkpoint of something else, an option to give, or the missing / unexpected /
shape-mismatched names); 2 a usage error (argparse).
"""
import argparse
import os
import re
import sys
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

import clip_ms
from clip_ms.torch_archive import TorchArchiveError, find_state_dict, load_torch_file
from foundation.checkpoint_file import RECORD_KEYS

from .config import BACKBONES, BackboneConfig, ResNetConfig
from .head import ACTIVATIONS, ARCH_OPTIONS
from .lseg import TEXT_CACHE_NAME, LSegNet, default_labels
from .weights import (
    WeightsError,
    WeightsOptionError,
    assign_arrays,
    command_status,
    describe_foreign_checkpoint,
    differing_options,
    expected_parameters,
    is_torch_file,
    match_strictly,
    mindspore_entry_names,
    mismatch_summary,
    raise_other_options,
    save_lseg_checkpoint,
)

# Official (PyTorch nn.Sequential index) names of the reassembly parts -> ours.
_OFFICIAL_RENAMES: List[Tuple[re.Pattern, str]] = [
    (re.compile(r"^pretrained\.act_postprocess(\d)\.0\.project\.0\."),
     r"pretrained.act_postprocess\1.readout_project."),
    (re.compile(r"^pretrained\.act_postprocess(\d)\.3\."), r"pretrained.act_postprocess\1.to_level_width."),
    (re.compile(r"^pretrained\.act_postprocess(\d)\.4\."), r"pretrained.act_postprocess\1.resample."),
    (re.compile(r"^scratch\.head_block\.depthwise\.depthwise\."), "scratch.head_block.label_conv.conv."),
]


# PyTorch parameter suffix -> MindSpore suffix for LayerNorm (gamma/beta) and Embedding (embedding_table).
_TORCH_TO_MS_SUFFIX = {"weight": ("gamma", "embedding_table"), "bias": ("beta",)}


# Entries of the official state_dict that have no counterpart by design.
_OFFICIAL_IGNORED = (re.compile(r"\.num_batches_tracked$"), re.compile(r"^clip_pretrained\.visual\."),
                     re.compile(r"^clip_pretrained\.logit_scale$"))


# The official lang-seg default (modules/lseg_module.py --activation); the activation has no parameters.
OFFICIAL_DEFAULT_ACTIVATION = "lrelu"


# Our name of the spatial regularisation block's one conv weight (official: scratch.head_block.depthwise.depthwise.*).
HEAD_BLOCK_WEIGHT = "scratch.head_block.label_conv.conv.weight"


_PATCH_EMBED = "pretrained.model.patch_embed.proj.weight"


def strip_lightning_prefix(state: Dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Args: state: official ``state_dict`` (keys ``net.*`` in Lightning checkpoints, or bare).

    Returns: OrderedDict with the leading ``net.`` removed where present.
    """
    return OrderedDict((name[4:] if name.startswith("net.") else name, value) for name, value in state.items())


def official_name_map(official_names: Iterable[str], expected: Dict[str, Tuple[int, ...]],
                      where: str = "<official state_dict>") -> "OrderedDict[str, str]":
    """Our parameter name for every official ``state_dict`` name that has one.

    Drops by design: BN ``num_batches_tracked``, CLIP's image tower ``clip_pretrained.visual.*`` and CLIP's
    ``logit_scale``. Renames the reassembly Sequential indices and torch LayerNorm/Embedding suffixes
    (``weight``/``bias`` -> ``gamma``/``beta``/``embedding_table`` where the network uses those names).

    Args:
        official_names: names with or without the Lightning ``net.`` prefix.
        expected: :func:`expected_parameters` of the target LSegNet.
        where: description for errors.

    Returns:
        OrderedDict official name (as given) -> our name (possibly not in ``expected``: reported later as unexpected).

    Raises:
        WeightsError: two official names map to the same parameter.
    """
    mapping = OrderedDict()
    taken = {}
    for original in official_names:
        name = original[4:] if original.startswith("net.") else original
        if any(pattern.search(name) for pattern in _OFFICIAL_IGNORED):
            continue
        ours = name
        for pattern, replacement in _OFFICIAL_RENAMES:
            ours = pattern.sub(replacement, ours)
        if ours not in expected:
            stem, _, suffix = ours.rpartition(".")
            for candidate in _TORCH_TO_MS_SUFFIX.get(suffix, ()):
                if f"{stem}.{candidate}" in expected:
                    ours = f"{stem}.{candidate}"
                    break
        if ours in taken:
            raise WeightsError(f"{where}: {taken[ours]} and {original} both map to {ours}")
        taken[ours] = original
        mapping[original] = ours
    return mapping


def official_state_to_lseg(state: Dict[str, np.ndarray], expected: Dict[str, Tuple[int, ...]],
                           where: str = "<official state_dict>") -> "OrderedDict[str, np.ndarray]":
    """Map an official lang-seg ``state_dict`` onto LSegNet parameter names, strictly (see :func:`official_name_map`).

    Args:
        state: official names (with or without ``net.``) -> arrays (float16/float32).
        expected: :func:`expected_parameters` of the target LSegNet.
        where: description for errors.

    Returns:
        OrderedDict our name -> float32 array.

    Raises:
        WeightsError: missing / unexpected / shape-mismatched entries.
    """
    mapping = official_name_map(state, expected, where)
    return match_strictly(OrderedDict((ours, state[original]) for original, ours in mapping.items()), expected, where)


def read_official_checkpoint(path: str) -> Tuple[object, "OrderedDict[str, np.ndarray]"]:
    """Read an official lang-seg checkpoint (torch.save zip or legacy pickle), without torch.

    Args:
        path: the file.

    Returns:
        (the loaded checkpoint object, its state_dict: name -> array, names as in the file).

    Raises:
        WeightsError: ``"<path>: ..."``: missing, a directory, unreadable, empty, truncated or damaged, not a torch
            file (a MindSpore checkpoint is named as such), or a torch file holding no LSeg state_dict.
    """
    if os.path.isfile(path) and not is_torch_file(path):
        names = mindspore_entry_names(path)  # raises for what is no MindSpore checkpoint either (empty, text, ...)
        if any(key in names for key in RECORD_KEYS):
            raise WeightsError(f"{path}: already a MindSpore checkpoint of ours, not an official lang-seg PyTorch "
                               "checkpoint; load it as it is")
        raise WeightsError(describe_foreign_checkpoint(path, names))
    if not os.path.isfile(path):
        mindspore_entry_names(path)  # the same "no such file" / "is a directory" message as every other reader
    try:
        checkpoint = load_torch_file(path)
        state = find_state_dict(checkpoint, path=path)
    except TorchArchiveError as error:
        raise WeightsError(str(error)) from None
    names = strip_lightning_prefix(state)
    if not any(name.startswith(("pretrained.", "scratch.")) for name in names):
        raise WeightsError(f"{path}: a PyTorch checkpoint of something else, not lang-seg's LSeg (no pretrained.* or "
                           f"scratch.* entries); its state_dict holds {len(names)} tensors such as "
                           + ", ".join(list(names)[:5]))
    return checkpoint, state


def _hyper_options(checkpoint) -> Dict:
    """Returns: the architecture options recorded in a Lightning checkpoint's ``hyper_parameters`` (maybe none)."""
    hyper = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hyper, dict):
        return {}
    return {key: hyper[key] for key in ("backbone", "arch_option", "block_depth", "activation") if key in hyper}


def _weights_options(state: Dict[str, np.ndarray]) -> Dict:
    """Returns: what the weights alone tell: ``arch_option`` 0 when there is no block, ``backbone`` by the patch
    embedding's shape (ViT) or the ResNet's stage layout (:func:`resnet_layout`)."""
    names = strip_lightning_prefix(state)
    options = {}
    if not _has_head_block(names):
        options["arch_option"] = 0
    patch = names.get(_PATCH_EMBED)
    if patch is not None:
        width, _, kernel, _ = np.shape(patch)
        for cfg in BACKBONES.values():
            if isinstance(cfg, BackboneConfig) and cfg.width == width and cfg.patch_size == kernel:
                options["backbone"] = cfg.name
                break
    layout = resnet_layout({name: np.shape(value) for name, value in names.items()})
    if layout is not None:
        for cfg in BACKBONES.values():
            if isinstance(cfg, ResNetConfig) and _resnet_layout_of(cfg) == layout:
                options["backbone"] = cfg.name
                break
    return options


def resnet_layout(shapes: Dict[str, Tuple[int, ...]], prefix: str = "pretrained.") -> Optional[Tuple]:
    """The ResNet an official zero-shot state_dict holds, from its names and shapes (no tensor is read).

    Args:
        shapes: name (without ``net.``) -> shape.
        prefix: where the ResNet's ``layer1..4`` live.

    Returns:
        ``(stem_width, planes (4), blocks (4))``, or None when there is no ResNet stem (``<prefix>layer1.0.weight``).
    """
    stem = shapes.get(prefix + "layer1.0.weight")
    if stem is None or len(stem) != 4:
        return None
    planes, blocks = [], []
    for stage_prefix in (prefix + "layer1.4.", prefix + "layer2.", prefix + "layer3.", prefix + "layer4."):
        first = shapes.get(stage_prefix + "0.conv1.weight")
        planes.append(int(first[0]) if first is not None else 0)
        blocks.append(len({name[len(stage_prefix):].split(".")[0] for name in shapes
                           if name.startswith(stage_prefix) and name[len(stage_prefix):].split(".")[0].isdigit()}))
    return int(stem[0]), tuple(planes), tuple(blocks)


def _resnet_layout_of(cfg: ResNetConfig) -> Tuple:
    return cfg.stem_width, tuple(cfg.planes), tuple(cfg.blocks)


def _has_head_block(names: Iterable[str]) -> bool:
    return any(name.startswith("scratch.head_block.") for name in names)


# hyper_parameters that only lang-seg's zero-shot LSegModuleZS records (lsegmentation_module_zs.py --fold/--nshot).
_ZERO_SHOT_HYPER_KEYS = ("fold", "nshot")


def _ignores_head_block(checkpoint, hyper: Dict, weights: Dict, names: Iterable[str]) -> bool:
    """Whether the checkpoint comes from a network that ignores ``arch_option``/``block_depth``: a ResNet backbone
    (LSegRNNetZS) or the zero-shot ViT LSegNetZS (its module records ``fold``/``nshot``), with no block weights."""
    if _has_head_block(names):
        return False
    backbone = hyper.get("backbone", weights.get("backbone"))
    if isinstance(BACKBONES.get(backbone), ResNetConfig):
        return True
    raw_hyper = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    return isinstance(raw_hyper, dict) and any(key in raw_hyper for key in _ZERO_SHOT_HYPER_KEYS)


def official_build_options(path: str, checkpoint, state: Dict[str, np.ndarray], backbone: Optional[str] = None,
                           arch_option: Optional[int] = None, block_depth: Optional[int] = None,
                           activation: Optional[str] = None) -> Dict:
    """The architecture of an official checkpoint, from the user's explicit values, its ``hyper_parameters`` and
    its weights.

    What the weights tell: the backbone (patch embedding shape) and whether the spatial regularisation block exists
    (arch_option 0 or not). They cannot tell arch_option 1 from 2 (the same one shared 3x3 conv), nor block_depth
    (how many times that conv is applied) nor the activation (no parameters), see lang-seg's lseg_blocks.py /
    lseg_net.py. So with the block present and no hyper_parameters, ``arch_option`` and ``block_depth`` must be
    given; the activation defaults to the official ``lrelu``.

    Args:
        path: the checkpoint (for messages).
        checkpoint, state: :func:`read_official_checkpoint`'s result.
        backbone, arch_option, block_depth, activation: the values the user gave explicitly; None = not given.

    Returns:
        dict with ``backbone``, ``arch_option``, ``block_depth``, ``activation``.

    Raises:
        WeightsOptionError: an explicit value the checkpoint contradicts (both values named), a value that cannot
            be told and is not given, or a value that is not one of ours.
    """
    names = strip_lightning_prefix(state)
    hyper, weights = _hyper_options(checkpoint), _weights_options(state)
    if _ignores_head_block(checkpoint, hyper, weights, names):
        # The zero-shot networks (lang-seg lseg_net_zs.py) store arch_option/block_depth but build no block.
        hyper = dict(hyper, arch_option=0, block_depth=0)
    explicit = {key: value for key, value in dict(backbone=backbone, arch_option=arch_option, block_depth=block_depth,
                                                  activation=activation).items() if value is not None}
    has_block = _has_head_block(names)
    if has_block:
        facts = {"arch_option": ("1 or 2", f"its weights hold the spatial regularisation block ({HEAD_BLOCK_WEIGHT}) "
                                           "of arch options 1 and 2")}
    else:
        facts = {"arch_option": (0, f"its weights hold no spatial regularisation block ({HEAD_BLOCK_WEIGHT} absent)")}
    if "backbone" in weights:
        if _PATCH_EMBED in names:
            why = f"{_PATCH_EMBED} has shape {tuple(np.shape(names[_PATCH_EMBED]))}"
        else:
            stem, planes, blocks = resnet_layout({name: np.shape(value) for name, value in names.items()})
            why = f"its ResNet has stem width {stem}, planes {planes} and blocks {blocks}"
        facts["backbone"] = (weights["backbone"], why)
    for key, given in explicit.items():
        if key in facts:
            found, why = facts[key]
            fits = (given in (1, 2)) == has_block if key == "arch_option" else given == found
            if not fits:
                raise WeightsOptionError(path, key, f"{{flag}} {given} was given, but the checkpoint's is {found}: "
                                                    f"{why}")
        if key in hyper and hyper[key] != given:
            raise WeightsOptionError(path, key, f"{{flag}} {given} was given, but the checkpoint's hyper_parameters "
                                                f"say {hyper[key]}")
    options = {**weights, **hyper, **explicit}
    _check_choice(path, options, "backbone", sorted(BACKBONES),
                  "cannot tell {flag}: no hyper_parameters and neither "
                  f"{_PATCH_EMBED} nor a ResNet stem (pretrained.layer1.0.weight) matches one of "
                  f"{sorted(BACKBONES)}; pass {{flag}}")
    _check_choice(path, options, "arch_option", ARCH_OPTIONS,
                  "cannot tell {flag} 1 from 2: the checkpoint has no hyper_parameters and its weights hold the "
                  f"spatial regularisation block ({HEAD_BLOCK_WEIGHT}), which both build with the same parameters; "
                  "pass {flag}")
    if "block_depth" not in options:
        if options["arch_option"] != 0:
            raise WeightsOptionError(path, "block_depth", "{flag} is required: the checkpoint has no hyper_parameters "
                                     f"and how often the block of arch_option {options['arch_option']} is applied "
                                     "leaves no trace in its weights (one shared 3x3 conv); pass the {flag} it was "
                                     "trained with")
        options["block_depth"] = 0
    if not isinstance(options["block_depth"], int) or options["block_depth"] < 0:
        raise WeightsOptionError(path, "block_depth", f"{{flag}} {options['block_depth']!r} is not an integer >= 0")
    options.setdefault("activation", OFFICIAL_DEFAULT_ACTIVATION)
    _check_choice(path, options, "activation", ACTIVATIONS, "")
    return options


def _check_choice(path: str, options: Dict, key: str, choices, cannot_tell: str) -> None:
    """Raise the WeightsOptionError for an option neither given nor found (``cannot_tell``) or not a choice."""
    if key not in options:
        raise WeightsOptionError(path, key, cannot_tell)
    if options[key] not in choices:
        raise WeightsOptionError(path, key, f"{{flag}} {options[key]!r} is none of {choices}")


def infer_text_config_name(state: Dict[str, np.ndarray], where: str) -> str:
    """Find the ``clip_ms.TEXT_CONFIGS`` entry whose shapes match the checkpoint's CLIP text tower.

    Args:
        state: official state_dict.
        where: file name for errors.

    Returns:
        the config key (e.g. ``"ViT-B/32"``).

    Raises:
        WeightsError: no text tower or no matching config.
    """
    names = strip_lightning_prefix(state)
    try:
        width = np.shape(names["clip_pretrained.ln_final.weight"])[0]
        vocab = np.shape(names["clip_pretrained.token_embedding.weight"])[0]
        context = np.shape(names["clip_pretrained.positional_embedding"])[0]
        embed_dim = np.shape(names["clip_pretrained.text_projection"])[1]
    except KeyError as error:
        raise WeightsError(f"{where}: no CLIP text tower ({error.args[0]} missing)") from None
    layers = len({m.group(1) for n in names for m in [re.match(r"clip_pretrained\.transformer\.resblocks\.(\d+)\.", n)]
                  if m})
    for key, cfg in clip_ms.TEXT_CONFIGS.items():
        if (cfg.width, cfg.vocab_size, cfg.context_length, cfg.embed_dim, cfg.layers) == \
                (width, vocab, context, embed_dim, layers):
            return key
    raise WeightsError(f"{where}: CLIP text tower width {width}, vocab {vocab}, context {context}, embed_dim "
                       f"{embed_dim}, layers {layers} matches none of clip_ms.TEXT_CONFIGS "
                       f"{sorted(clip_ms.TEXT_CONFIGS)}")


def _official_text_config(path: str, state: Dict[str, np.ndarray], text_config: Optional[str]) -> str:
    """Returns: the explicit ``text_config`` (checked) or the one inferred from the CLIP text tower's shapes."""
    if text_config is not None and text_config not in clip_ms.TEXT_CONFIGS:
        raise WeightsOptionError(path, "text_config",
                                 f"{{flag}} {text_config!r} is none of {sorted(clip_ms.TEXT_CONFIGS)}")
    return text_config or infer_text_config_name(state, path)


def build_lseg_from_official(path: str, labels: Optional[List[str]] = None, backbone: Optional[str] = None,
                             arch_option: Optional[int] = None, block_depth: Optional[int] = None,
                             activation: Optional[str] = None, text_config: Optional[str] = None):
    """Build the LSegNet an official lang-seg ``.ckpt`` (or bare state_dict file) needs and load it, strictly.

    Args:
        path: official checkpoint (torch.save zip or legacy pickle; float16 or float32).
        labels: label list of the network (default ADE20K).
        backbone, arch_option, block_depth, activation, text_config: the values the user gave explicitly
            (None = read from the checkpoint, see :func:`official_build_options`).

    Returns:
        the loaded LSegNet.

    Raises:
        WeightsError: unreadable file or any missing/unexpected/mismatched entry;
            WeightsOptionError: an option the checkpoint contradicts or cannot tell (``block_depth``).
    """
    checkpoint, state = read_official_checkpoint(path)
    options = official_build_options(path, checkpoint, state, backbone=backbone, arch_option=arch_option,
                                     block_depth=block_depth, activation=activation)
    net = LSegNet(options["backbone"], labels=labels, arch_option=int(options["arch_option"]),
                  block_depth=int(options["block_depth"]), activation=options["activation"],
                  text_config=_official_text_config(path, state, text_config), encode_labels=False,
                  initialise=False)
    assign_arrays(net, official_state_to_lseg(state, expected_parameters(net), where=path))  # every one, strictly
    net.text_weights_changed()
    return net


def load_official_checkpoint(net, path: str, backbone: Optional[str] = None, arch_option: Optional[int] = None,
                             block_depth: Optional[int] = None, activation: Optional[str] = None) -> Dict:
    """Load an official lang-seg ``.ckpt`` into an already built ``net``, strictly, without a temporary file.

    Args:
        net: LSegNet built with the checkpoint's architecture.
        path: official checkpoint.
        backbone, arch_option, block_depth, activation: the values the user gave explicitly (None = not given).

    Returns:
        the checkpoint's options (:func:`official_build_options` plus ``text_config``).

    Raises:
        WeightsOptionError: an option the checkpoint contradicts or cannot tell; WeightsError: the network was
            built with other options (named, with the mismatching parameter names) or the parameters do not fit.
    """
    checkpoint, state = read_official_checkpoint(path)
    options = official_build_options(path, checkpoint, state, backbone=backbone, arch_option=arch_option,
                                     block_depth=block_depth, activation=activation)
    options["text_config"] = _official_text_config(path, state, None)
    expected = expected_parameters(net)
    mapping = official_name_map(state, expected, path)
    shapes = {ours: tuple(np.shape(state[original])) for original, ours in mapping.items()}
    raise_other_options(path, differing_options(options, net.build_options()), mismatch_summary(shapes, expected))
    assign_arrays(net, official_state_to_lseg(state, expected, where=path))
    net.text_weights_changed()
    return options


def convert_official_checkpoint(src: str, dst: str, backbone: Optional[str] = None,
                                arch_option: Optional[int] = None, block_depth: Optional[int] = None,
                                activation: Optional[str] = None, text_config: Optional[str] = None,
                                labels: Optional[List[str]] = None):
    """Convert an official lang-seg Lightning ``.ckpt`` (or a bare state_dict file) into our MindSpore ``.ckpt``.

    Options not given are read from the checkpoint's ``hyper_parameters`` or inferred from its weights
    (:func:`official_build_options`: ``block_depth`` is required when neither tells it).

    Args:
        src: official checkpoint (torch.save zip or legacy pickle; float16 or float32).
        dst: our checkpoint to write (atomically).
        backbone, arch_option, block_depth, activation, text_config: the user's explicit values (None = infer).
        labels: label list of the built network (default ADE20K; does not affect the file).

    Returns:
        the LSegNet built and loaded with the converted weights.

    Raises:
        WeightsError: unreadable file or any missing/unexpected/mismatched entry; WeightsOptionError: an option
            the checkpoint contradicts or cannot tell.
    """
    net = build_lseg_from_official(src, labels=labels if labels is not None else ["other"], backbone=backbone,
                                   arch_option=arch_option, block_depth=block_depth, activation=activation,
                                   text_config=text_config)
    save_lseg_checkpoint(net, dst)
    if labels is None:
        net.set_labels(default_labels())
    return net


# ---------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m modules.convert``."""
    parser = argparse.ArgumentParser(prog="python -m modules.convert",
                                     description="Convert an official lang-seg .ckpt into an LSegNet MindSpore .ckpt")
    parser.add_argument("src", help="official PyTorch-Lightning checkpoint (or a bare state_dict file)")
    parser.add_argument("dst", help="MindSpore checkpoint to write")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None)
    parser.add_argument("--arch-option", type=int, choices=(0, 1, 2), default=None)
    parser.add_argument("--block-depth", type=int, default=None)
    parser.add_argument("--activation", choices=("lrelu", "tanh", "relu"), default=None)
    parser.add_argument("--text-config", default=None, help="clip_ms.TEXT_CONFIGS key (default: inferred)")
    return parser


def main(argv=None) -> int:
    """Args: argv: argument list (default sys.argv[1:]). Returns: process exit status (0 written, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def convert() -> int:
        net = convert_official_checkpoint(args.src, args.dst, backbone=args.backbone, arch_option=args.arch_option,
                                          block_depth=args.block_depth, activation=args.activation,
                                          text_config=args.text_config, labels=["other"])
        count = sum(int(np.prod(p.shape)) for p in net.get_parameters() if p.name != TEXT_CACHE_NAME)
        print(f"wrote {args.dst}: {net.build_options()} ({count} parameters)")
        return 0

    # Reading src raises WeightsError; an OSError comes from writing dst.
    return command_status(parser.prog, convert, 2, spell=lambda option: "--" + option.replace("_", "-"),
                          writing=args.dst)

if __name__ == "__main__":
    sys.exit(main())
