"""Build an LSegNet from option values and load weights from any checkpoint the project reads.

Three checkpoint kinds reach the scripts: ``"official"`` (a lang-seg PyTorch ``.ckpt``, converted on the fly),
``"weights"`` (:func:`modules.weights.save_lseg_checkpoint`: network + build options) and ``"training"``
(``encoding_custom.engine.save_checkpoint``: network, optimizer state, epoch and the training options).
All three end in ``.ckpt``; :func:`checkpoint_kind` tells them apart by content. Every problem with a weights file
is one :class:`modules.weights.WeightsError` line that starts with the file's path.
"""
from typing import Optional, Sequence

from encoding_custom.engine.checkpoint import FORMAT_KEY as TRAINING_FORMAT_KEY  # the format belongs to the engine
from encoding_custom.engine.checkpoint import CheckpointError, load_checkpoint, read_checkpoint

from .config import BACKBONES
from .lseg import TEXT_CACHE_NAME, LSegNet
from .weights import (
    OPTIONS_KEY,
    WeightsError,
    build_lseg_from_checkpoint,
    build_lseg_from_official,
    describe_foreign_checkpoint,
    differing_options,
    init_backbone_from_pretrained,
    is_torch_file,
    load_lseg_checkpoint,
    load_mindspore_checkpoint,
    load_official_checkpoint,
    mindspore_entry_names,
)

OFFICIAL, WEIGHTS, TRAINING = "official", "weights", "training"


def build_lseg(backbone: str, labels: Sequence[str], arch_option: int = 0, block_depth: int = 0,
               activation: str = "lrelu", text_config: str = "ViT-B/32", clip_weights: Optional[str] = None,
               vit_weights: Optional[str] = None) -> LSegNet:
    """Build an LSegNet and initialise its towers from released weights when given.

    Args:
        backbone: a key of :data:`modules.BACKBONES`.
        labels: the network's label list.
        arch_option, block_depth, activation: spatial regularisation block (see :class:`modules.LSegNet`).
        text_config: a key of ``clip_ms.TEXT_CONFIGS``.
        clip_weights: CLIP text-tower ``.ckpt`` from ``python -m clip_ms.convert``, loaded strictly.
        vit_weights: ImageNet ViT (timm ``.pth``/``.npz`` or MindCV ``.ckpt``) for the image backbone.

    Returns:
        the LSegNet.

    Raises:
        ValueError: naming ``--backbone``, ``--text_config`` or ``--clip_weights``.
    """
    import clip_ms

    if backbone not in BACKBONES:
        raise ValueError(f"--backbone: unknown backbone, choose from {sorted(BACKBONES)} (got {backbone!r})")
    if text_config not in clip_ms.TEXT_CONFIGS:
        raise ValueError(f"--text_config: choose from {sorted(clip_ms.TEXT_CONFIGS)} (got {text_config!r})")
    net = LSegNet(backbone, labels=list(labels), arch_option=arch_option, block_depth=block_depth,
                  activation=activation, text_config=text_config)
    if clip_weights:
        load_text_encoder_weights(net, clip_weights)
    if vit_weights:
        init_backbone_from_pretrained(net, vit_weights)
    return net


def load_text_encoder_weights(net: LSegNet, path: str) -> None:
    """Load a CLIP text-tower ``.ckpt`` (``python -m clip_ms.convert``) into ``net.clip_pretrained``, strictly.

    Args:
        net: LSegNet whose text config matches the file.
        path: the text-tower checkpoint; names may carry the ``clip_pretrained.`` prefix or not.

    Raises:
        ValueError: naming ``--clip_weights``, the file and the missing, unexpected or mismatched parameters;
            nothing is assigned then.
    """
    from clip_ms.convert import ConversionError, load_text_tower

    prefix = "clip_pretrained."
    try:
        raw = load_mindspore_checkpoint(path)
    except WeightsError as err:
        raise ValueError(f"--clip_weights: {err}") from None
    tower = {(name[len(prefix):] if name.startswith(prefix) else name): value.asnumpy()
             for name, value in raw.items() if hasattr(value, "asnumpy")}
    try:
        load_text_tower(net.clip_pretrained, tower)
    except ConversionError as err:
        raise ValueError(f"--clip_weights: {path} does not fit --text_config {net.text_config_name}: {err}") from err
    net.invalidate_text_cache()


def checkpoint_kind(path: str) -> str:
    """What a weights file is, by content (MindSpore files by their entry names, no tensor is read).

    Args:
        path: the file.

    Returns:
        ``"official"`` (a torch file), ``"training"`` or ``"weights"``.

    Raises:
        WeightsError: ``"<path>: ..."``: missing, a directory, unreadable, empty, truncated, damaged, not a
            checkpoint, or a MindSpore checkpoint of something else (with a few of its entry names).
    """
    if is_torch_file(path):
        return OFFICIAL
    names = mindspore_entry_names(path)
    if TRAINING_FORMAT_KEY in names:
        return TRAINING
    if OPTIONS_KEY in names:
        return WEIGHTS
    raise WeightsError(describe_foreign_checkpoint(path, names))


def load_network_weights(net: LSegNet, path: str, backbone: Optional[str] = None, arch_option: Optional[int] = None,
                         block_depth: Optional[int] = None, activation: Optional[str] = None) -> None:
    """Load network weights from any supported checkpoint into an already built ``net``, strictly.

    Args:
        net: LSegNet built with the checkpoint's architecture options and label count.
        path: a training ``.ckpt``, a ``modules.weights`` ``.ckpt`` or an official PyTorch ``.ckpt``.
        backbone, arch_option, block_depth, activation: the values the user gave explicitly (None = not given).
            Official checkpoints need them when their weights cannot tell (``block_depth`` of arch_option 1/2
            without ``hyper_parameters``) and refuse values they contradict; the other kinds record their options.

    Raises:
        modules.weights.WeightsError: ``"<path>: ..."``: an unreadable or foreign file, a network built with other
            options than the checkpoint's (named), or missing, unexpected or mismatched parameters (listed);
            :class:`modules.weights.WeightsOptionError` (a subclass) for an option to give or correct.
    """
    kind = checkpoint_kind(path)
    if kind == TRAINING:
        try:
            stored = load_checkpoint(path, net, strict=True)["options"]
        except CheckpointError as err:
            differing = [] if "does not match" not in str(err) else \
                differing_options(read_checkpoint(path)[2]["options"], net.build_options())
            if differing:  # name the options first: they explain the parameter mismatch
                raise WeightsError(f"{path}: training checkpoint of a network built with other options: "
                                   + "; ".join(differing) + "; so it " + str(err)[len(path) + 2:]) from None
            raise WeightsError(str(err)) from None
        net.invalidate_text_cache()
        # Options without parameters (arch_option 1 vs 2, block_depth, activation) pass the strict name check.
        differing = differing_options(stored, net.build_options())
        if differing:
            raise WeightsError(f"{path}: training checkpoint of a network built with other options: "
                               + "; ".join(differing))
    elif kind == WEIGHTS:
        load_lseg_checkpoint(net, path)
    else:
        load_official_checkpoint(net, path, backbone=backbone, arch_option=arch_option, block_depth=block_depth,
                                 activation=activation)


__all__ = ["build_lseg", "load_text_encoder_weights", "is_torch_file", "checkpoint_kind", "load_network_weights",
           "OFFICIAL", "WEIGHTS", "TRAINING"]


def build_lseg_from_any_checkpoint(path: str, labels: Sequence[str]) -> LSegNet:
    """The network any of our three checkpoint kinds holds, built from what the file records and loaded strictly.

    Args:
        path: a training, ``modules.weights`` or official checkpoint.
        labels: the label list to give the network (a file's own label set is not needed for that).

    Returns:
        the loaded LSegNet.

    Raises:
        modules.weights.WeightsError: ``"<path>: ..."`` (see :func:`checkpoint_kind` and :func:`load_network_weights`).
    """
    kind = checkpoint_kind(path)
    if kind == OFFICIAL:
        return build_lseg_from_official(path, labels=list(labels))
    if kind == WEIGHTS:
        return build_lseg_from_checkpoint(path, labels=list(labels))
    try:
        stored, _, meta = read_checkpoint(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None
    options = meta["options"]
    # The strict load compares the text cache too, whose rows are the training label set's: build with as many
    # labels, load, then switch to the wanted ones (encoded by the loaded text tower).
    trained_labels = int(stored[TEXT_CACHE_NAME].shape[0]) if TEXT_CACHE_NAME in stored else len(labels)
    net = build_lseg(options.get("backbone", "clip_vitl16_384"), ["label %d" % i for i in range(trained_labels)],
                     arch_option=options.get("arch_option", 0), block_depth=options.get("block_depth", 0),
                     activation=options.get("activation", "lrelu"), text_config=options.get("text_config", "ViT-B/32"))
    load_network_weights(net, path)
    net.set_labels(list(labels))
    return net
