"""Weight I/O for LSegNet, torch-free: official lang-seg checkpoints, our MindSpore checkpoints, ViT init.

* :func:`official_state_to_lseg` maps an official Lightning ``state_dict`` onto LSegNet names, strictly.
* :func:`official_build_options` resolves an official checkpoint's architecture options from the user's explicit
  values, its ``hyper_parameters`` and its weights (a value they contradict, or one they cannot tell such as
  ``block_depth``, raises :class:`WeightsOptionError` naming the option).
* :func:`build_lseg_from_official` / :func:`load_official_checkpoint`: an official ``.ckpt`` into a new / a built
  LSegNet; :func:`convert_official_checkpoint` also writes our ``.ckpt``.
* :func:`save_lseg_checkpoint` / :func:`load_lseg_checkpoint` / :func:`build_lseg_from_checkpoint`: our format
  (a MindSpore checkpoint plus a JSON string entry ``lseg_build_options``; loading into a network built with other
  options fails with the differing options named).
* :func:`init_backbone_from_pretrained`: initialise the ViT from timm ``.pth`` / ``.npz`` (timm-named or the
  original JAX/big_vision layout) or a MindCV ``.ckpt``, resizing the position embedding when needed; a ResNet
  backbone from torchvision's ``.pth`` (:func:`init_resnet_from_torchvision`).

Every load path calls ``net.text_weights_changed()`` so cached text features are never stale. Every error about a
file is one :class:`WeightsError` line that starts with the file's path and says what is wrong with it (missing,
unreadable, empty, truncated, not a checkpoint, a checkpoint of something else, or the mismatching options and
names).
"""
import json
import os
import re
import zipfile
import zlib
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor

import clip_ms
from clip_ms.torch_archive import TorchArchiveError, find_state_dict, load_torch_file, torch_file_format
from encoding_custom.atomic import atomic_output
from encoding_custom.engine.checkpoint import FORMAT_KEY as TRAINING_FORMAT_KEY
from encoding_custom.engine.checkpoint import (
    CheckpointError,
    cannot_read_message,
    checkpoint_entry_names,
    load_raw_checkpoint,
)

from .backbone import resize_pos_embed
from .config import BACKBONES, BackboneConfig, ResNetConfig
from .head import ACTIVATIONS, ARCH_OPTIONS
from .lseg import TEXT_CACHE_NAME, LSegNet, default_labels

OPTIONS_KEY = "lseg_build_options"
FORMAT_VERSION = 1
# The options that fix a network's parameter layout (LSegNet.build_options), with the defaults of files that lack one.
BUILD_DEFAULTS = {"backbone": "clip_vitl16_384", "arch_option": 0, "block_depth": 0, "activation": "lrelu",
                  "text_config": "ViT-B/32"}

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


class WeightsError(ValueError):
    """A weights file is unreadable or does not fit the network; the message starts with the file's path and says
    what is wrong (with the offending options and entries)."""


class WeightsOptionError(WeightsError):
    """An architecture option that an official checkpoint cannot tell, or that contradicts it.

    Args:
        path: the checkpoint.
        option: the option's name (``"backbone"``, ``"arch_option"``, ``"block_depth"``, ``"activation"``,
            ``"text_config"``).
        template: what is wrong, with ``{flag}`` where the option is named.

    ``str(error)`` names the option as ``option``; scripts call :meth:`describe` with their own spelling.
    """

    def __init__(self, path: str, option: str, template: str):
        self.path, self.option, self.template = path, option, template
        super().__init__(self.describe(option))

    def describe(self, flag: str) -> str:
        """Args: flag: how the caller spells the option (e.g. ``"--block_depth"``). Returns: the one-line message."""
        return f"{self.path}: " + self.template.replace("{flag}", flag)


class RecordedOptionConflict(WeightsOptionError):
    """An option given explicitly that differs from what one of our checkpoints records.

    Args:
        path: the checkpoint.
        option: the option's name.
        given, recorded: the two values.
    """

    def __init__(self, path: str, option: str, given, recorded):
        self.given, self.recorded = given, recorded
        super().__init__(path, option, "")

    def describe(self, flag: str) -> str:
        """Args: flag: how the caller spells the option. Returns: the one-line message."""
        return (f"{flag}: {self.given!r} given, but {self.path} was trained with {self.recorded!r}; drop the option "
                "to use the checkpoint's")


# ---------------------------------------------------------------------------------------------- helpers
def expected_parameters(net) -> "OrderedDict[str, Tuple[int, ...]]":
    """Args: net: an LSegNet (or any Cell).

    Returns: OrderedDict name -> shape of every parameter except the text cache.
    """
    return OrderedDict((name, tuple(p.shape)) for name, p in net.parameters_and_names() if name != TEXT_CACHE_NAME)


def _listing(title: str, names: Iterable[str], limit: int = 25) -> str:
    """Args: title: category; names: entries; limit: how many to show.

    Returns: ``"title (N): a, b, ... and M more"``, or ``""`` when there are none.
    """
    names = list(names)
    if not names:
        return ""
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"{title} ({len(names)}): " + ", ".join(names[:limit]) + more


def match_strictly(source: Dict[str, np.ndarray], expected: Dict[str, Tuple[int, ...]], where: str,
                   ignore_unexpected=()) -> "OrderedDict[str, np.ndarray]":
    """Check that ``source`` provides exactly the ``expected`` names and shapes; cast floats to float32.

    Args:
        source: name -> array (already in our naming).
        expected: name -> shape of the target network.
        where: file name / description for the error message.
        ignore_unexpected: regex patterns of source names that may be dropped silently.

    Returns:
        OrderedDict name -> float32 array in ``expected`` order.

    Raises:
        WeightsError: listing missing, unexpected and shape-mismatched names.
    """
    shapes = {name: tuple(np.shape(value)) for name, value in source.items()
              if name in expected or not any(re.search(pattern, name) for pattern in ignore_unexpected)}
    _report_mismatch(shapes, expected, where)
    out = OrderedDict()
    for name in expected:
        value = np.asarray(source[name])
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(f"{where}: {name} has dtype {value.dtype}, expected a floating-point tensor")
        out[name] = value.astype(np.float32)
    return out


def mismatch_summary(shapes: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]]) -> str:
    """One line listing the missing, unexpected and shape-mismatched names.

    Args:
        shapes: name -> shape found in the checkpoint (our naming).
        expected: name -> shape of the network.

    Returns:
        ``"missing (N): ...; unexpected (N): ...; shape mismatch (N): name: checkpoint (..) vs network (..)"``, or
        ``""`` when names and shapes all match.
    """
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes if name not in expected]
    mismatched = [f"{name}: checkpoint {shapes[name]} vs network {expected[name]}"
                  for name in expected if name in shapes and shapes[name] != tuple(expected[name])]
    parts = (_listing("missing", missing), _listing("unexpected", unexpected), _listing("shape mismatch", mismatched))
    return "; ".join(part for part in parts if part)


def _report_mismatch(shapes: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]], where: str) -> None:
    """Raise WeightsError listing missing, unexpected and shape-mismatched names (no-op when all match)."""
    summary = mismatch_summary(shapes, expected)
    if summary:
        raise WeightsError(f"{where}: checkpoint does not match the network: {summary}")


def differing_options(found: Dict, wanted: Dict) -> List[str]:
    """Args: found: the checkpoint's options; wanted: the network's. Returns: ``"key: checkpoint A vs network B"``."""
    return [f"{key}: checkpoint {found[key]!r} vs network {value!r}" for key, value in wanted.items()
            if key in found and found[key] != value]


def _raise_other_options(path: str, differing: List[str], summary: str) -> None:
    """Raise the WeightsError for a checkpoint of a network built with other options (no-op when none differ)."""
    if differing:
        names = f"; its parameters: {summary}" if summary else " (the parameter names and shapes are the same)"
        raise WeightsError(f"{path}: checkpoint of a network built with other options: " + "; ".join(differing)
                           + names)


# ---------------------------------------------------------------------------------------------- reading files
def mindspore_entry_names(path: str) -> List[str]:
    """Args: path: a MindSpore ``.ckpt``. Returns: its entry names (no tensor is read).

    Raises: WeightsError ``"<path>: ..."``: missing, a directory, empty, truncated, damaged, not a MindSpore checkpoint.
    """
    try:
        return checkpoint_entry_names(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None


def load_mindspore_checkpoint(path: str) -> Dict:
    """``mindspore.load_checkpoint`` behind a structural check, so a bad file is one WeightsError line (the
    message of ``encoding_custom.engine.checkpoint.load_raw_checkpoint``).

    Args:
        path: a MindSpore ``.ckpt``.

    Returns:
        name -> Parameter (strings for text entries), as ``mindspore.load_checkpoint``.

    Raises:
        WeightsError: ``"<path>: ..."`` missing, a directory, unreadable, empty, truncated, damaged, not a MindSpore
            checkpoint.
    """
    try:
        return load_raw_checkpoint(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None


def is_torch_file(path: str) -> bool:
    """Whether ``path`` is an existing file written by ``torch.save`` (zip archive or legacy pickle), by its first
    bytes, i.e. an official checkpoint or a timm ``.pth``.

    Args:
        path: any path (False for a missing file or a directory).

    Returns:
        True for a torch file.

    Raises:
        WeightsError: ``"<path>: cannot read (<reason>)"``.
    """
    if not os.path.isfile(path):
        return False
    try:
        return torch_file_format(path) is not None
    except TorchArchiveError as error:
        raise WeightsError(str(error)) from None


def describe_foreign_checkpoint(path: str, names: List[str]) -> str:
    """Args: path: a MindSpore checkpoint that is none of ours; names: its entries.

    Returns: the one-line message saying so, with a few of its entry names.
    """
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} entries)" if len(names) > 5 else "")
    return (f"{path}: a MindSpore checkpoint of something else, not an LSegNet checkpoint (no '{OPTIONS_KEY}' entry "
            f"of modules.weights nor '{TRAINING_FORMAT_KEY}' of training); its entries: {shown}")


def _assign(net, arrays: Dict[str, np.ndarray]) -> None:
    params = dict(net.parameters_and_names())
    for name, value in arrays.items():
        params[name].set_data(Tensor(value, dtype=params[name].dtype))


# ---------------------------------------------------------------------------------------------- official
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


def check_official_layout(official_shapes: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]],
                          where: str = "<official layout>") -> None:
    """Check names and shapes only (no tensor data), e.g. against a recorded official key list.

    Args:
        official_shapes: official name -> shape.
        expected: :func:`expected_parameters` of the target LSegNet.
        where: description for errors.

    Raises:
        WeightsError: missing / unexpected / shape-mismatched entries.
    """
    mapping = official_name_map(official_shapes, expected, where)
    shapes = {ours: tuple(official_shapes[original]) for original, ours in mapping.items()}
    _report_mismatch(shapes, expected, where)


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
        if OPTIONS_KEY in names or TRAINING_FORMAT_KEY in names:
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
    if "backbone" not in options:
        raise WeightsOptionError(path, "backbone", "cannot tell {flag}: no hyper_parameters and neither "
                                 f"{_PATCH_EMBED} nor a ResNet stem (pretrained.layer1.0.weight) matches one of "
                                 f"{sorted(BACKBONES)}; pass {{flag}}")
    if options["backbone"] not in BACKBONES:
        raise WeightsOptionError(path, "backbone", f"{{flag}} {options['backbone']!r} is none of {sorted(BACKBONES)}")
    if "arch_option" not in options:
        raise WeightsOptionError(path, "arch_option", "cannot tell {flag} 1 from 2: the checkpoint has no "
                                 f"hyper_parameters and its weights hold the spatial regularisation block "
                                 f"({HEAD_BLOCK_WEIGHT}), which both build with the same parameters; pass {{flag}}")
    if options["arch_option"] not in ARCH_OPTIONS:
        raise WeightsOptionError(path, "arch_option", f"{{flag}} {options['arch_option']!r} is none of {ARCH_OPTIONS}")
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
    if options["activation"] not in ACTIVATIONS:
        raise WeightsOptionError(path, "activation", f"{{flag}} {options['activation']!r} is none of {ACTIVATIONS}")
    return options


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
                  text_config=_official_text_config(path, state, text_config), encode_labels=False)
    _assign(net, official_state_to_lseg(state, expected_parameters(net), where=path))
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
    _raise_other_options(path, differing_options(options, net.build_options()), mismatch_summary(shapes, expected))
    _assign(net, official_state_to_lseg(state, expected, where=path))
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


# ---------------------------------------------------------------------------------------------- our format
def save_lseg_checkpoint(net, path: str, extra: Optional[Dict] = None, labels: Optional[List[str]] = None) -> None:
    """Save every LSegNet parameter (not the text cache) plus its build options, atomically.

    Args:
        net: LSegNet.
        path: destination ``.ckpt``.
        extra: optional JSON-serialisable metadata stored with the options (e.g. epoch).
        labels: the label set the weights were trained for, recorded for loaders (None: not recorded, they fall
            back to the 150 ADE20K names); not ``net.labels``, which may be any list set for a prediction.
    """
    if not path.endswith(".ckpt"):
        raise WeightsError(f"{path}: a MindSpore checkpoint's name must end in .ckpt (mindspore.load_checkpoint "
                           "refuses other names)")
    options = dict(net.build_options(), format_version=FORMAT_VERSION)
    if labels is not None:
        options["labels"] = [str(label) for label in labels]
    if extra:
        options["extra"] = extra
    params = [{"name": name, "data": Tensor(p.asnumpy())} for name, p in net.parameters_and_names()
              if name != TEXT_CACHE_NAME]
    with atomic_output(path, suffix=".ckpt") as temporary:
        ms.save_checkpoint(params, temporary, append_dict={OPTIONS_KEY: json.dumps(options, sort_keys=True)})


def read_lseg_checkpoint(path: str) -> Tuple[Dict, "OrderedDict[str, np.ndarray]"]:
    """Args: path: our ``.ckpt``.

    Returns: (build options dict, OrderedDict name -> array).

    Raises: WeightsError ``"<path>: ..."``: missing, unreadable, or not an LSegNet checkpoint of ours (says what
    it is instead).
    """
    if is_torch_file(path):
        raise WeightsError(f"{path}: a PyTorch file (an official lang-seg checkpoint?), not our MindSpore .ckpt; "
                           "convert it with `python -m modules.convert`")
    names = mindspore_entry_names(path)
    if OPTIONS_KEY not in names:
        if TRAINING_FORMAT_KEY in names:
            raise WeightsError(f"{path}: a training checkpoint (train_custom.py), not an LSegNet weights checkpoint "
                               "of modules.weights; load it with modules.factory.load_network_weights")
        raise WeightsError(describe_foreign_checkpoint(path, names))
    raw = load_mindspore_checkpoint(path)
    try:
        options = json.loads(str(raw.pop(OPTIONS_KEY)))
    except ValueError as error:
        raise WeightsError(f"{path}: damaged '{OPTIONS_KEY}' entry ({error})") from None
    arrays = OrderedDict((name, value.asnumpy()) for name, value in raw.items()
                         if isinstance(value, (Parameter, Tensor)))
    return options, arrays


def load_lseg_checkpoint(net, path: str) -> Dict:
    """Load our checkpoint into ``net`` strictly; refuses a network built with other options.

    Args:
        net: LSegNet.
        path: our ``.ckpt``.

    Returns:
        the stored options (including ``extra`` metadata if any).

    Raises:
        WeightsError: naming each option that differs (and the parameter names that differ with it), or the
            missing/unexpected/mismatched parameters.
    """
    options, arrays = read_lseg_checkpoint(path)
    assign_checkpoint_arrays(net, path, options, arrays)
    return options


def assign_checkpoint_arrays(net, path: str, recorded: Dict, arrays: Dict[str, np.ndarray]) -> None:
    """Load the parameter arrays read from one of our files into ``net``, strictly.

    Args:
        net: LSegNet.
        path: the file (for messages).
        recorded: the build options the file records (missing ones are :data:`BUILD_DEFAULTS`).
        arrays: name -> array of every parameter but the text cache.

    Raises:
        WeightsError: naming each build option that differs from ``net``'s (and the parameter names that differ
            with it), or the missing/unexpected/mismatched parameters; nothing is assigned then.
    """
    expected = expected_parameters(net)
    shapes = {name: tuple(np.shape(value)) for name, value in arrays.items()}
    stored = {key: recorded.get(key, BUILD_DEFAULTS.get(key)) for key in net.build_options()}
    _raise_other_options(path, differing_options(stored, net.build_options()), mismatch_summary(shapes, expected))
    _assign(net, match_strictly(arrays, expected, path))
    net.text_weights_changed()


def recorded_build_options(path: str, recorded: Dict, explicit: Dict) -> Dict:
    """The build options one of our files records, checked against the values a caller gave explicitly.

    Args:
        path: the file (for messages).
        recorded: what it records (missing options take :data:`BUILD_DEFAULTS`: files of older versions).
        explicit: option -> value the caller gave (those not given are absent or None).

    Returns:
        every option of :data:`BUILD_DEFAULTS` with the file's value.

    Raises:
        RecordedOptionConflict: an explicit value that differs from the file's (``.option`` names it).
    """
    options = {key: recorded.get(key, default) for key, default in BUILD_DEFAULTS.items()}
    for key, given in explicit.items():
        if given is not None and key in options and given != options[key]:
            raise RecordedOptionConflict(path, key, given, options[key])
    return options


def build_lseg_from_checkpoint(path: str, labels: Optional[List[str]] = None):
    """Build an LSegNet with the options stored in our checkpoint and load it (the file is read once).

    Args:
        path: our ``.ckpt``.
        labels: label list (default: the ones the file records, else ADE20K).

    Returns:
        the loaded LSegNet.
    """
    options, arrays = read_lseg_checkpoint(path)
    build = recorded_build_options(path, options, {})
    net = LSegNet(build["backbone"], labels=labels or options.get("labels"), arch_option=build["arch_option"],
                  block_depth=build["block_depth"], activation=build["activation"], text_config=build["text_config"],
                  encode_labels=False)
    assign_checkpoint_arrays(net, path, options, arrays)
    return net


# ---------------------------------------------------------------------------------------------- ViT init
def _jax_vit_to_timm(npz: Dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Map the original JAX/big_vision ViT ``.npz`` layout (what timm's ``_load_weights`` reads) to timm names."""
    out = OrderedDict()
    kernel = npz["embedding/kernel"]  # (kh, kw, in, out) -> (out, in, kh, kw)
    out["patch_embed.proj.weight"] = kernel.transpose(3, 2, 0, 1)
    out["patch_embed.proj.bias"] = npz["embedding/bias"]
    out["cls_token"] = npz["cls"]
    out["pos_embed"] = npz["Transformer/posembed_input/pos_embedding"]
    out["norm.weight"] = npz["Transformer/encoder_norm/scale"]
    out["norm.bias"] = npz["Transformer/encoder_norm/bias"]
    if "head/kernel" in npz:
        out["head.weight"] = npz["head/kernel"].T
        out["head.bias"] = npz["head/bias"]
    index = 0
    while f"Transformer/encoderblock_{index}/LayerNorm_0/scale" in npz:
        src = f"Transformer/encoderblock_{index}/"
        dst = f"blocks.{index}."
        attn = src + "MultiHeadDotProductAttention_1/"
        out[dst + "norm1.weight"] = npz[src + "LayerNorm_0/scale"]
        out[dst + "norm1.bias"] = npz[src + "LayerNorm_0/bias"]
        out[dst + "norm2.weight"] = npz[src + "LayerNorm_2/scale"]
        out[dst + "norm2.bias"] = npz[src + "LayerNorm_2/bias"]
        qkv_w = [npz[attn + f"{part}/kernel"].reshape(npz[attn + f"{part}/kernel"].shape[0], -1).T
                 for part in ("query", "key", "value")]
        out[dst + "attn.qkv.weight"] = np.concatenate(qkv_w, axis=0)
        out[dst + "attn.qkv.bias"] = np.concatenate([npz[attn + f"{part}/bias"].reshape(-1)
                                                     for part in ("query", "key", "value")])
        out_kernel = npz[attn + "out/kernel"]  # (heads, head_dim, C)
        out[dst + "attn.proj.weight"] = out_kernel.reshape(-1, out_kernel.shape[-1]).T
        out[dst + "attn.proj.bias"] = npz[attn + "out/bias"]
        for fc, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            out[dst + f"mlp.{fc}.weight"] = npz[src + f"MlpBlock_3/{dense}/kernel"].T
            out[dst + f"mlp.{fc}.bias"] = npz[src + f"MlpBlock_3/{dense}/bias"]
        index += 1
    return out


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array of a numpy ``.npz`` archive (no pickled objects).

    Args:
        path: an existing file.

    Returns:
        name -> array.

    Raises:
        WeightsError: ``"<path>: cannot read (<reason>)"`` or ``"<path>: not a readable .npz (<numpy's error>)"``
            for pickled data, an empty, truncated or damaged archive, a single ``.npy`` array.
    """
    try:
        empty = os.path.getsize(path) == 0  # numpy 1.23 calls an empty file pickled data, 1.26 raises EOFError
        loaded = None if empty else np.load(path)  # allow_pickle=False: weights never need code to load
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
    except OSError as error:
        raise WeightsError(cannot_read_message(path, error)) from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # numpy's and zipfile's wording
        first_line = (str(error).splitlines() or [""])[0]
        raise WeightsError(f"{path}: not a readable .npz ({type(error).__name__}: {first_line})") from None
    what = "empty file, 0 bytes" if empty else f"a single .npy array of shape {np.shape(loaded)}, not an archive"
    raise WeightsError(f"{path}: not a readable .npz ({what})")


def _torch_state_dict(path: str) -> "OrderedDict[str, np.ndarray]":
    """The state_dict a ``torch.save`` file holds (bare or wrapped), read without torch; ``WeightsError`` if not."""
    try:
        return find_state_dict(load_torch_file(path), path=path)
    except TorchArchiveError as error:
        raise WeightsError(str(error)) from None


def _read_vit_source(path: str) -> "OrderedDict[str, np.ndarray]":
    """Read a ViT checkpoint into MindCV-style names without the ``pretrained.model.`` prefix."""
    if not os.path.isfile(path):
        mindspore_entry_names(path)  # "no such file" / "is a directory"
    if path.endswith(".ckpt"):
        raw = load_mindspore_checkpoint(path)
        state = OrderedDict((name, value.asnumpy()) for name, value in raw.items() if isinstance(value, Tensor))
        for prefix in ("pretrained.model.", "network.", "model."):
            if state and all(name.startswith(prefix) for name in state):
                state = OrderedDict((name[len(prefix):], value) for name, value in state.items())
        # MindCV names the classifier "head.classifier" in some releases; ours is "head".
        return OrderedDict((name.replace("head.classifier.", "head."), value) for name, value in state.items())
    if path.endswith(".npz"):
        arrays = _read_npz(path)
        try:
            state = _jax_vit_to_timm(arrays) if "embedding/kernel" in arrays else OrderedDict(arrays)
        except KeyError as error:
            raise WeightsError(f"{path}: an original JAX ViT .npz (embedding/kernel) without its "
                               f"{error.args[0]} array") from None
    else:
        state = _torch_state_dict(path)
    renamed = OrderedDict()
    for name, value in state.items():
        mindcv_name = re.sub(r"((?:^|\.)norm\d?)\.bias$", r"\1.beta", name)
        renamed[re.sub(r"((?:^|\.)norm\d?)\.weight$", r"\1.gamma", mindcv_name)] = value
    return renamed


# torchvision's ImageNet weights of the zero-shot ResNet-101 (ResNet101_Weights.IMAGENET1K_V1, what the official
# models.resnet101(pretrained=True) downloads; torchvision 0.28 models/resnet.py).
TORCHVISION_RESNET101_URL = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
# torchvision ResNet state_dict names -> ours under pretrained. (lang-seg _make_resnet_backbone's Sequential).
_TORCHVISION_RESNET_RENAMES = ((re.compile(r"^conv1\."), "layer1.0."), (re.compile(r"^bn1\."), "layer1.1."),
                               (re.compile(r"^layer1\."), "layer1.4."))
# Entries of a torchvision ResNet file LSeg has no counterpart for: the classifier and BN's step counters.
_TORCHVISION_RESNET_IGNORED = (r"^fc\.", r"\.num_batches_tracked$")


def init_resnet_from_torchvision(net, path: str) -> List[str]:
    """Initialise ``net.pretrained`` (a :class:`modules.resnet.ResNetBackbone`) from a torchvision ResNet ``.pth``.

    The file is torchvision's ``state_dict`` (e.g. ``resnet101-63fe2227.pth`` from :data:`TORCHVISION_RESNET101_URL`),
    read without torch. ``conv1``/``bn1``/``layer1`` map to ``pretrained.layer1.0/1/4``, ``layer2..4`` keep their
    names; ``fc.*`` and ``num_batches_tracked`` are ignored. Fusion and head stay as built.

    Args:
        net: LSegNet with a ResNet backbone.
        path: the ``.pth`` (a Lightning-style ``{"state_dict": ...}`` wrapper is accepted too).

    Returns:
        the list of our parameter names that were loaded.

    Raises:
        WeightsError: ``"<path>: ..."``: unreadable/not a torch file, or every missing, unexpected and mis-shaped
            entry named; nothing is assigned then.
    """
    if not os.path.isfile(path):
        mindspore_entry_names(path)  # "no such file" / "is a directory"
    state = _torch_state_dict(path)
    renamed = OrderedDict()
    for name, value in state.items():
        ours = torchvision_resnet_name(name)
        if ours is not None:
            renamed[ours] = value
    expected = OrderedDict((name, shape) for name, shape in expected_parameters(net).items()
                           if name.startswith("pretrained."))
    # Reported in torchvision's names (what the file holds).
    arrays = match_strictly(OrderedDict((_torchvision_display_name(name), value) for name, value in renamed.items()),
                            OrderedDict((_torchvision_display_name(name), shape) for name, shape in expected.items()),
                            path)
    _assign(net, OrderedDict((ours, value) for ours, value in zip(expected, arrays.values())))
    return list(expected)


def torchvision_resnet_name(name: str) -> Optional[str]:
    """Our parameter name of one torchvision ResNet ``state_dict`` entry.

    Args:
        name: e.g. ``conv1.weight``, ``bn1.running_var``, ``layer1.0.downsample.1.weight``, ``layer3.5.conv2.weight``
            (a DataParallel ``module.`` prefix is dropped).

    Returns:
        ``pretrained.layer1.0.weight``, ``pretrained.layer1.1.running_var``, ``pretrained.layer1.4.0.downsample.1
        .weight``, ``pretrained.layer3.5.conv2.weight``; None for what LSeg has no counterpart for (``fc.*``,
        ``*.num_batches_tracked``).
    """
    name = name[len("module."):] if name.startswith("module.") else name
    if any(re.search(pattern, name) for pattern in _TORCHVISION_RESNET_IGNORED):
        return None
    for pattern, replacement in _TORCHVISION_RESNET_RENAMES:
        if pattern.match(name):  # the first rule only: conv1. -> layer1.0. must not then become layer1.4.0.
            return "pretrained." + pattern.sub(replacement, name)
    return "pretrained." + name


def _torchvision_display_name(ours: str) -> str:
    """Inverse of :func:`torchvision_resnet_name` for messages: ``pretrained.layer1.4.0.x`` -> ``layer1.0.x``."""
    name = ours[len("pretrained."):] if ours.startswith("pretrained.") else ours
    for prefix, torchvision_prefix in (("layer1.0.", "conv1."), ("layer1.1.", "bn1."), ("layer1.4.", "layer1.")):
        if name.startswith(prefix):
            return torchvision_prefix + name[len(prefix):]
    return name


def init_backbone_from_pretrained(net, path: str, skip_head: bool = True) -> List[str]:
    """Initialise the image backbone from ImageNet weights; reassembly/fusion stay as built.

    ViT (``net.pretrained.model``): timm ``.pth`` (e.g. ``vit_large_patch16_384``), ``.npz`` (timm-named arrays or
    the original JAX layout) and MindCV ``.ckpt``; the position embedding is resized bilinearly when its grid
    differs. ResNet backbones: a torchvision ``.pth`` (:func:`init_resnet_from_torchvision`).

    Args:
        net: LSegNet.
        path: checkpoint file.
        skip_head: do not require/load the ImageNet classifier (``head.*`` / ``fc.*``), which LSeg never uses.

    Returns:
        the list of our parameter names that were loaded.

    Raises:
        WeightsError: ``"<path>: ..."``: an unreadable, empty, truncated or damaged file (a ``.npz`` with pickled
            data too), or missing/unexpected/mismatched ViT entries (other than the head when skipped).
    """
    if isinstance(net.cfg, ResNetConfig):
        return init_resnet_from_torchvision(net, path)
    state = _read_vit_source(path)
    prefix = "pretrained.model."
    expected = OrderedDict((name[len(prefix):], shape) for name, shape in expected_parameters(net).items()
                           if name.startswith(prefix))
    if skip_head:
        expected = OrderedDict((n, s) for n, s in expected.items() if not n.startswith("head."))
        state = OrderedDict((n, v) for n, v in state.items() if not n.startswith("head."))
    if "pos_embed" in state and "pos_embed" in expected and tuple(state["pos_embed"].shape) != expected["pos_embed"]:
        grid = net.cfg.grid_size
        source = Tensor(np.asarray(state["pos_embed"], np.float32))
        state["pos_embed"] = resize_pos_embed(source, grid, grid).asnumpy()
    ignore = (r"^fc_norm\.", r"^pre_logits\.")
    arrays = match_strictly(state, expected, path, ignore_unexpected=ignore)
    _assign(net, OrderedDict((prefix + name, value) for name, value in arrays.items()))
    return [prefix + name for name in arrays]
