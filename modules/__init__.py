"""LSeg network for MindSpore: backbones as data, the LSegNet cell (torch-style layers of :mod:`modules.tnn`), and
official-weight import.

Public API: :data:`BACKBONES`, :class:`BackboneConfig` (ViT) / :class:`ResNetConfig` (the zero-shot ResNet-101),
:class:`LSegNet`; weight I/O lives in
:mod:`modules.weights` and the command-line converter in :mod:`modules.convert`.

Example::

    from modules import LSegNet, episode_text_features, zero_shot_labels
    from modules.factory import load_lseg
    net = LSegNet("tiny_vit16", labels=["cat", "other"], text_config="tiny")   # quick start, random weights
    logits = net(images)                       # (B, 2, H, W), H and W multiples of 32
    logits = net(images, net.text_features(["dog", "sky", "other"]))   # a label set for this call only
    zero_shot = LSegNet("tiny_resnet", labels=zero_shot_labels(["cat", "dog"]), text_config="tiny")
    logits = zero_shot(images, episode_text_features(zero_shot.text_features(), class_ids))  # (B, 2, H, W)
    pixels = net.pixel_embeddings(images)      # (B, 64, H/2, W/2), unit norm (512 for the CLIP backbones)

    # python -m modules.convert demo_e200.ckpt lseg_vitl16.ckpt   (official lang-seg checkpoint, no torch)
    net = load_lseg("lseg_vitl16.ckpt").network     # any of our checkpoints or an official one, its own labels
"""
from .config import BACKBONES, BackboneConfig, LevelResample, ResNetConfig, get_backbone_config
from .lseg import LSegNet, episode_text_features, zero_shot_labels

__all__ = ["BACKBONES", "BackboneConfig", "ResNetConfig", "LevelResample", "get_backbone_config", "LSegNet",
           "zero_shot_labels", "episode_text_features"]
