"""What every few-shot benchmark shares: the episode record and HSNet's image and mask resizing.

HSNet's ``FSSDataset`` resizes every image to ``img_size × img_size`` with torchvision's ``Resize`` (PIL bilinear on
a PIL image), then ``ToTensor`` + ``Normalize`` with mean = std = 0.5 (ViT backbones) or ImageNet's mean/std
(``imagenet_norm=True``, the ResNet-101 path of ``test_lseg_zs.py``). Masks are resized to the image's size with
``F.interpolate(mode='nearest')``, whose source index is ``min(floor(dst * (in / out)), in - 1)`` computed in
float32 (:func:`nearest_source_indices` reproduces it, including its exact cases ``out == in`` and ``out == 2 in``).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..transforms import image_to_array

HSNET_IMAGE_SIZE = 480
NORMALISATIONS: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class FewShotEpisode:
    """One episode: a query image and its class, and ``shot`` support images of the same class (none for 0-shot).

    Attributes:
        query_img: float32 (3, S, S) normalised image.
        query_mask: float32 (S, S), 1 = the episode's class, 0 = anything else.
        query_name: the query's name as the split lists it.
        class_id: 0-based class id within the benchmark.
        query_ignore_idx: float32 (S, S) PASCAL boundary mask (1 = ignored) or None for the other benchmarks.
        org_query_imsize: the query image's original ``(width, height)``.
        support_imgs: float32 (shot, 3, S, S).
        support_masks: float32 (shot, S, S).
        support_names: the support images' names.
        support_ignore_idxs: float32 (shot, S, S) or None.
    """

    query_img: np.ndarray
    query_mask: np.ndarray
    query_name: str
    class_id: int
    query_ignore_idx: Optional[np.ndarray] = None
    org_query_imsize: Tuple[int, int] = (0, 0)
    support_imgs: Optional[np.ndarray] = None
    support_masks: Optional[np.ndarray] = None
    support_names: List[str] = field(default_factory=list)
    support_ignore_idxs: Optional[np.ndarray] = None


def check_normalisation(normalisation: str) -> Tuple[Sequence[float], Sequence[float]]:
    """``(mean, std)`` of a normalisation name: ``vit`` (0.5/0.5) or ``imagenet`` (the ResNet-101 path)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation: expected one of {sorted(NORMALISATIONS)}, got {normalisation!r}")
    return NORMALISATIONS[normalisation]


def resize_normalise(image: Image.Image, size: int, normalisation: str = "vit") -> np.ndarray:
    """HSNet's image transform: ``Resize((size, size))`` (PIL bilinear), ``ToTensor``, ``Normalize``.

    Args:
        image: PIL image (converted to RGB if it is not).
        size: output side in pixels.
        normalisation: ``vit`` or ``imagenet``.

    Returns:
        float32 (3, size, size).
    """
    mean, std = check_normalisation(normalisation)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image_to_array(image.resize((size, size), Image.BILINEAR), mean, std)


def nearest_source_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output index of torch's ``F.interpolate(mode='nearest')`` along one axis.

    Args:
        in_size: input length.
        out_size: output length.

    Returns:
        int64 (out_size,).
    """
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), in_size - 1)


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (H, W) mask resized as ``F.interpolate(mask[None, None].float(), (height, width), mode='nearest')``.

    Returns:
        float32 (height, width).
    """
    mask = np.asarray(mask)
    rows = nearest_source_indices(mask.shape[0], height)
    cols = nearest_source_indices(mask.shape[1], width)
    return mask[rows[:, None], cols[None, :]].astype(np.float32)
