"""LSeg network for MindSpore/MSAdapter: backbones as data, the LSegNet cell, and official-weight import.

Public API: :data:`BACKBONES`, :class:`BackboneConfig`, :class:`LSegNet`; weight I/O lives in
:mod:`modules.weights` and the command-line converter in :mod:`modules.convert`.
"""
from .config import BACKBONES, BackboneConfig, LevelResample, get_backbone_config
from .lseg import LSegNet

__all__ = ["BACKBONES", "BackboneConfig", "LevelResample", "get_backbone_config", "LSegNet"]
