"""Joint image/mask transforms with PyTorch-Encoding's semantics (``encoding/datasets/base.py``), framework-free.

Images and masks are PIL images until the final conversion. Randomness comes from an explicit ``random.Random``
so that a sample's augmentation depends only on the seed given to it (see :mod:`encoding_custom.datasets`).

Train (``train_sync_transform``), in this order:
  1. horizontal flip with probability 0.5;
  2. rescale so the LONG side is ``randint(int(0.5 * base), int(2.0 * base))`` (inclusive), the short side
     ``int(short * long_new / long + 0.5)``; image bicubic, mask nearest;
  3. if the short side is below the crop, pad right/bottom to the crop size (image 0 = black, mask 0 which
     becomes -1 = ignore after the shift);
  4. random ``crop x crop`` window (``x1 = randint(0, w - crop)``, ``y1 = randint(0, h - crop)``).
Val (``val_sync_transform``): SHORT side to the crop size (long side ``int(long * crop / short)``), image bicubic,
mask nearest, then the centre ``crop x crop`` window (offset ``int(round((size - crop) / 2))``).
Finally image → float32 (3, H, W) ``(x / 255 - mean) / std``; mask → int32 ``value - 1`` (0 = unlabelled → -1).
"""
import random
from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


def train_sync_transform(image: Image.Image, mask: Image.Image, base_size: int, crop_size: int,
                         rng: random.Random) -> Tuple[Image.Image, Image.Image]:
    """Random flip, long-side rescale, pad and crop applied identically to image and mask.

    Args:
        image: RGB PIL image (W, H).
        mask: single-channel PIL mask of the same size (raw ADE20K values, 0 = unlabelled).
        base_size: the long side is drawn uniformly from ``[int(0.5 * base_size), int(2.0 * base_size)]``.
        crop_size: side of the square output.
        rng: source of randomness (consumed in the official order: flip, size, x1, y1).

    Returns:
        ``(image, mask)`` PIL images of size ``(crop_size, crop_size)``; padded mask pixels are 0.
    """
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
    width, height = image.size
    long_size = rng.randint(int(base_size * 0.5), int(base_size * 2.0))
    if height > width:
        out_h, out_w = long_size, int(1.0 * width * long_size / height + 0.5)
        short_size = out_w
    else:
        out_w, out_h = long_size, int(1.0 * height * long_size / width + 0.5)
        short_size = out_h
    image = image.resize((out_w, out_h), Image.BICUBIC)
    mask = mask.resize((out_w, out_h), Image.NEAREST)
    if short_size < crop_size:
        pad_h = crop_size - out_h if out_h < crop_size else 0
        pad_w = crop_size - out_w if out_w < crop_size else 0
        image = ImageOps.expand(image, border=(0, 0, pad_w, pad_h), fill=0)
        mask = ImageOps.expand(mask, border=(0, 0, pad_w, pad_h), fill=0)
    width, height = image.size
    x1 = rng.randint(0, width - crop_size)
    y1 = rng.randint(0, height - crop_size)
    box = (x1, y1, x1 + crop_size, y1 + crop_size)
    return image.crop(box), mask.crop(box)


def val_sync_transform(image: Image.Image, mask: Image.Image, crop_size: int) -> Tuple[Image.Image, Image.Image]:
    """Short side to ``crop_size`` (image bicubic, mask nearest) then the centre square crop.

    Args:
        image: RGB PIL image.
        mask: PIL mask of the same size.
        crop_size: output side.

    Returns:
        ``(image, mask)`` PIL images of size ``(crop_size, crop_size)``.
    """
    width, height = image.size
    if width > height:
        out_h = crop_size
        out_w = int(1.0 * width * out_h / height)
    else:
        out_w = crop_size
        out_h = int(1.0 * height * out_w / width)
    image = image.resize((out_w, out_h), Image.BICUBIC)
    mask = mask.resize((out_w, out_h), Image.NEAREST)
    x1 = int(round((out_w - crop_size) / 2.0))
    y1 = int(round((out_h - crop_size) / 2.0))
    box = (x1, y1, x1 + crop_size, y1 + crop_size)
    return image.crop(box), mask.crop(box)


def image_to_array(image: Image.Image, mean: Sequence[float] = DEFAULT_MEAN,
                   std: Sequence[float] = DEFAULT_STD) -> np.ndarray:
    """ToTensor + Normalize: RGB PIL image → float32 (3, H, W) ``(x / 255 - mean) / std``.

    Args:
        image: RGB PIL image.
        mean: per-channel mean (of the 0..1 values).
        std: per-channel standard deviation.

    Returns:
        float32 array (3, H, W).
    """
    array = np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def read_image(path: str, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD) -> np.ndarray:
    """Read any image file PIL opens as the network's input: RGB, then :func:`image_to_array`.

    Args:
        path: image file.
        mean, std: normalisation.

    Returns:
        float32 array (3, H, W).

    Raises:
        ValueError: naming ``path`` when it is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            return image_to_array(image.convert("RGB"), mean, std)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as an image ({err})") from err


def mask_to_array(mask: Image.Image) -> np.ndarray:
    """ADE20K mask → int32 (H, W) class indices: value - 1, so unlabelled (0) becomes -1 (ignored).

    Args:
        mask: single-channel PIL mask with values 0..150.

    Returns:
        int32 array (H, W) with values -1..149.
    """
    return np.asarray(mask, dtype=np.int32) - 1
