"""Build an LSegNet from argument values, and build-and-load one from any checkpoint the project reads.

Two formats reach the scripts: official lang-seg PyTorch ``.ckpt`` files (converted on the fly) and ours
(``foundation.checkpoint_file``: parameters + one JSON record of the build options and label names, + optimizer
state in a training file; older training files lack the label names). :func:`checkpoint_kind` tells
``"official"``, ``"weights"`` and ``"training"`` apart by content. :func:`load_lseg` is the one entry
that builds the network a file holds and loads it, reading its tensors once. Every problem with a weights file is one
:class:`modules.weights.WeightsError` line that starts with the file's path; a bad argument value is an
:class:`ArgumentError` naming the argument (scripts map it to their flag).
"""
import dataclasses
from typing import Dict, List, Optional, Sequence

import clip_ms
from clip_ms.convert import ConversionError, load_text_tower
from clip_ms.prompts import RAW_LABEL
from foundation.checkpoint_file import (
    RECORD_KEYS,
    RECORDED_CLASS_INDICES_KEY,
    RECORDED_LABELS_KEY,
    RECORDED_PROMPTS_KEY,
    is_resumable,
)

from .config import BACKBONES, ArgumentError
from .convert import build_lseg_from_official
from .lseg import LSegNet, default_labels
from .pretrained import init_backbone_from_pretrained
from .weights import (
    WeightsError,
    assign_checkpoint_arrays,
    describe_foreign_checkpoint,
    is_torch_file,
    load_mindspore_checkpoint,
    mindspore_entry_names,
    read_lseg_checkpoint,
    recorded_build_options,
)

OFFICIAL, WEIGHTS, TRAINING = "official", "weights", "training"


def build_lseg(backbone: str, labels: Sequence[str], arch_option: int = 0, block_depth: int = 0,
               activation: str = "lrelu", text_config: str = "ViT-B/32", clip_weights: Optional[str] = None,
               vit_weights: Optional[str] = None, backbone_weights: Optional[str] = None,
               prompts: Sequence[str] = RAW_LABEL) -> LSegNet:
    """Build an LSegNet and initialise its towers from released weights when given; the labels are encoded once,
    with the final text weights.

    Args:
        backbone: a key of :data:`modules.BACKBONES`.
        labels: the network's label list.
        arch_option, block_depth, activation: spatial regularisation block (see :class:`modules.LSegNet`).
        text_config: a key of ``clip_ms.TEXT_CONFIGS``.
        clip_weights: CLIP text-tower ``.ckpt`` from ``python -m clip_ms.convert``, loaded strictly.
        backbone_weights: ImageNet weights of the image backbone: a timm ``.pth``/``.npz`` or MindCV ``.ckpt`` for
            a ViT, torchvision's ``.pth`` for a ResNet (``resnet101-63fe2227.pth``,
            :data:`modules.pretrained.TORCHVISION_RESNET101_URL`).
        vit_weights: the older name of ``backbone_weights`` (kept for existing callers); giving both is an error.
        prompts: the prompt templates labels are encoded through (``clip_ms.prompts``; default the bare label).

    Returns:
        the LSegNet, its label features encoded (ready for a compiled training step).

    Raises:
        ArgumentError: naming ``backbone``, ``text_config`` or ``clip_weights``; WeightsError: ``"<path>: ..."``
            for backbone weights that cannot be read or do not fit; ArgumentError naming ``arch_option`` for a ResNet
            backbone with a spatial regularisation block.
    """
    if backbone not in BACKBONES:
        raise ArgumentError("backbone", f"unknown backbone, choose from {sorted(BACKBONES)} (got {backbone!r})")
    if vit_weights and backbone_weights and vit_weights != backbone_weights:
        raise ArgumentError("backbone_weights", f"given as {backbone_weights!r} and as vit_weights {vit_weights!r}; "
                                                "give one")
    backbone_weights = backbone_weights or vit_weights
    if text_config not in clip_ms.TEXT_CONFIGS:
        raise ArgumentError("text_config", f"choose from {sorted(clip_ms.TEXT_CONFIGS)} (got {text_config!r})")
    net = LSegNet(backbone, labels=list(labels), arch_option=arch_option, block_depth=block_depth,
                  activation=activation, text_config=text_config, encode_labels=False, prompts=prompts)
    if clip_weights:
        load_text_encoder_weights(net, clip_weights)
    if backbone_weights:
        init_backbone_from_pretrained(net, backbone_weights)
    net.sync_text_features()
    return net


def load_text_encoder_weights(net: LSegNet, path: str) -> None:
    """Load a CLIP text-tower ``.ckpt`` (``python -m clip_ms.convert``) into ``net.clip_pretrained``, strictly.

    Args:
        net: LSegNet whose text config matches the file.
        path: the text-tower checkpoint; names may carry the ``clip_pretrained.`` prefix or not.

    Raises:
        ArgumentError: naming ``clip_weights``, the file and the missing, unexpected or mismatched parameters;
            nothing is assigned then.
    """
    prefix = "clip_pretrained."
    try:
        raw = load_mindspore_checkpoint(path)
    except WeightsError as err:
        raise ArgumentError("clip_weights", str(err)) from None
    tower = {(name[len(prefix):] if name.startswith(prefix) else name): value.asnumpy()
             for name, value in raw.items() if hasattr(value, "asnumpy")}
    try:
        load_text_tower(net.clip_pretrained, tower)
    except ConversionError as err:
        raise ArgumentError("clip_weights", f"{path} does not fit the text tower {net.text_config_name}: "
                                            f"{err}") from err
    net.text_weights_changed()


def checkpoint_kind(path: str) -> str:
    """What a weights file is, by content (MindSpore files by their entry names, no tensor is read).

    Args:
        path: the file.

    Returns:
        ``"official"`` (a torch file), ``"training"`` (ours, with optimizer state) or ``"weights"`` (ours, without).

    Raises:
        WeightsError: ``"<path>: ..."``: missing, a directory, unreadable, empty, truncated, damaged, not a
            checkpoint, or a MindSpore checkpoint of something else (with a few of its entry names).
    """
    if is_torch_file(path):
        return OFFICIAL
    names = mindspore_entry_names(path)
    if not any(key in names for key in RECORD_KEYS):
        raise WeightsError(describe_foreign_checkpoint(path, names))
    return TRAINING if is_resumable(names) else WEIGHTS


@dataclasses.dataclass
class LoadedLSeg:
    """What :func:`load_lseg` built from a file.

    Attributes:
        network: the LSegNet, loaded strictly; its labels encoded with the loaded text weights.
        kind: :data:`OFFICIAL`, :data:`WEIGHTS` or :data:`TRAINING`.
        labels: the label names the file records; None for an official file (the 150 ADE20K classes) and for files
            written before the names were recorded (a training run's ``--classes`` is then in ``record``).
        class_indices: the ADE20K class index of each label, when a training file records them.
        record: a training file's options record, a weights file's stored options, or an official file's resolved
            architecture.
    """

    network: LSegNet
    kind: str
    labels: Optional[List[str]]
    class_indices: Optional[List[int]]
    record: Dict


def load_lseg(path: str, labels: Optional[Sequence[str]] = None, backbone: Optional[str] = None,
              arch_option: Optional[int] = None, block_depth: Optional[int] = None, activation: Optional[str] = None,
              text_config: Optional[str] = None) -> LoadedLSeg:
    """Build the network any of our checkpoint kinds holds and load it strictly; its tensors are read once.

    Args:
        path: a training, ``modules.weights`` or official checkpoint.
        labels: the label list to give the network; None = the file's own (else the 150 ADE20K names).
        backbone, arch_option, block_depth, activation, text_config: values the caller gave explicitly (None = not
            given): an official file needs those its weights cannot tell; our files record them all, and a value
            that differs from the record is refused.

    Returns:
        the :class:`LoadedLSeg`.

    Raises:
        modules.weights.WeightsError: ``"<path>: ..."`` (an unreadable, foreign or damaged file, parameters that do
            not fit); :class:`modules.weights.WeightsOptionError` (a subclass, ``.option`` names the argument) for a
            value to give or to drop.
    """
    explicit = dict(backbone=backbone, arch_option=arch_option, block_depth=block_depth, activation=activation)
    kind = checkpoint_kind(path)
    if kind == OFFICIAL:
        net = build_lseg_from_official(path, labels=None if labels is None else list(labels),
                                       text_config=text_config, **explicit)
        return LoadedLSeg(net, kind, None, None, net.build_options())
    record, arrays, _ = read_lseg_checkpoint(path)
    stored_labels = record.get(RECORDED_LABELS_KEY)
    build = recorded_build_options(path, record, dict(explicit, text_config=text_config))
    chosen = list(labels) if labels is not None else (stored_labels or default_labels())
    net = LSegNet(build["backbone"], labels=chosen, arch_option=int(build["arch_option"]),
                  block_depth=int(build["block_depth"]), activation=build["activation"],
                  text_config=build["text_config"], encode_labels=False, initialise=False,
                  prompts=record.get(RECORDED_PROMPTS_KEY) or RAW_LABEL)
    assign_checkpoint_arrays(net, path, record, arrays)  # every parameter, strictly
    return LoadedLSeg(net, kind, stored_labels, record.get(RECORDED_CLASS_INDICES_KEY), record)


__all__ = ["ArgumentError", "build_lseg", "load_text_encoder_weights", "is_torch_file", "checkpoint_kind",
           "LoadedLSeg", "load_lseg", "OFFICIAL", "WEIGHTS", "TRAINING"]
