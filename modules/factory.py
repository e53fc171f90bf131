"""Build an LSegNet from option values and load weights from any checkpoint the project reads.

Three checkpoint kinds reach the scripts: ``"official"`` (a lang-seg PyTorch ``.ckpt``, converted on the fly),
``"weights"`` (:func:`modules.weights.save_lseg_checkpoint`: network + build options) and ``"training"``
(``encoding_custom.engine.save_checkpoint``: network, optimizer state, epoch and the training options).
All three end in ``.ckpt``; :func:`checkpoint_kind` tells them apart by content.
"""
import os
import tempfile
from typing import Optional, Sequence

import mindspore as ms

from .config import BACKBONES
from .lseg import LSegNet
from .weights import convert_official_checkpoint, init_backbone_from_pretrained, load_lseg_checkpoint

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
    tower = {(name[len(prefix):] if name.startswith(prefix) else name): value.asnumpy()
             for name, value in ms.load_checkpoint(path).items()}
    try:
        load_text_tower(net.clip_pretrained, tower)
    except ConversionError as err:
        raise ValueError(f"--clip_weights: {path} does not fit --text_config {net.text_config_name}: {err}") from err
    net.invalidate_text_cache()


def is_torch_file(path: str) -> bool:
    """True for files written by ``torch.save`` (zip archive or legacy pickle), i.e. official checkpoints."""
    from clip_ms.torch_archive import torch_file_format

    return torch_file_format(path) is not None


def checkpoint_kind(path: str) -> str:
    """Returns: ``"official"``, ``"training"`` or ``"weights"`` for the checkpoint at ``path`` (by content)."""
    if is_torch_file(path):
        return OFFICIAL
    from encoding_custom.engine.checkpoint import FORMAT_KEY  # the training format belongs to the engine

    return TRAINING if FORMAT_KEY in ms.load_checkpoint(path) else WEIGHTS


def load_network_weights(net: LSegNet, path: str) -> None:
    """Load network weights from any supported checkpoint into an already built ``net``, strictly.

    Args:
        net: LSegNet built with the checkpoint's architecture options and label count.
        path: a training ``.ckpt``, a ``modules.weights`` ``.ckpt`` or an official PyTorch ``.ckpt``.

    Raises:
        modules.weights.WeightsError / encoding_custom.engine.CheckpointError: missing, unexpected or
            mismatched parameters, listed.
    """
    kind = checkpoint_kind(path)
    if kind == TRAINING:
        from encoding_custom.engine import load_checkpoint

        load_checkpoint(path, net, strict=True)
        net.invalidate_text_cache()
    elif kind == WEIGHTS:
        load_lseg_checkpoint(net, path)
    else:
        with tempfile.TemporaryDirectory() as folder:
            converted = os.path.join(folder, "converted.ckpt")
            convert_official_checkpoint(path, converted, backbone=net.cfg.name)
            load_lseg_checkpoint(net, converted)


__all__ = ["build_lseg", "load_text_encoder_weights", "is_torch_file", "checkpoint_kind", "load_network_weights",
           "OFFICIAL", "WEIGHTS", "TRAINING"]
