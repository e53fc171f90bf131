"""Image facts: the input normalisations the image backbones were trained with (``(mean, std)`` per channel of RGB
in [0, 1]) and the file suffixes taken as pictures.

``"vit"``: mean = std = 0.5, the official ViT LSeg transforms; ``"imagenet"``: torchvision's ImageNet statistics, the
official zero-shot ResNet-101 path. Each backbone names its own (``modules.config``); the data pipelines apply it.
"""
from typing import Dict, Tuple

Triple = Tuple[float, float, float]
NORMALISATIONS: Dict[str, Tuple[Triple, Triple]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# What ``test.py --image FOLDER`` takes from a folder (Pillow reads them all).
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

__all__ = ["NORMALISATIONS", "PICTURE_SUFFIXES"]
