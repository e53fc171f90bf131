"""Joint image/mask transforms with PyTorch-Encoding's semantics (``encoding/datasets/base.py``), framework-free.

Images and masks are PIL images until the final conversion. Randomness comes from an explicit ``random.Random``
so that a sample's augmentation depends only on the seed given to it (see :mod:`encoding_custom.datasets.segmentation`).

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

from foundation.images import NORMALISATIONS

# ADE20K LSeg runs the ViT normalisation.
DEFAULT_MEAN, DEFAULT_STD = NORMALISATIONS["vit"]


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


def _normalise_channels(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel into a (3, H, W) array, with no (H, W, 3) float temporary.

    Args:
        rgb: uint8 (H, W, 3).
        mean, std: per-channel normalisation of the 0..1 values.

    Returns:
        float32 (3, H, W); the same float32 operations in the same order as a whole-array computation, so the
        values are bit-identical to it while the peak memory is one float32 image (not four: a 12 MP photo's
        float copy is 145 MB).
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    out = np.empty((3,) + rgb.shape[:2], dtype=np.float32)
    for channel in range(3):
        np.multiply(rgb[:, :, channel], np.float32(1.0 / 255.0), out=out[channel])
        out[channel] -= mean[channel]
        out[channel] /= std[channel]
    return out


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
    return _normalise_channels(np.asarray(image, dtype=np.uint8), mean, std)


# Largest value of the integer pixel modes PIL opens 16-bit files as ("I" is how Pillow < 10 opens 16-bit PNGs).
SIXTEEN_BIT_MAX = 65535
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(ValueError):
    """An image file that cannot be used; the message names the file and what is wrong with it."""


def _high_depth_to_uint8(image: Image.Image, path: str) -> np.ndarray:
    """A 16-bit, 32-bit integer or float grey image as uint8 (H, W), scaled by the RANGE of its pixel type.

    PIL's own ``convert("RGB")`` clips these modes at 255 (a 16-bit PNG becomes 99 % white). Scaling by the
    type's range (65535 for 16-bit, 0..1 for float) keeps what a viewer shows: a dark 16-bit photo stays dark,
    where scaling by the actual maximum would stretch its contrast and make every image look alike.

    Args:
        image: PIL image of mode ``I;16*``, ``I`` or ``F``.
        path: file name for error messages.

    Returns:
        uint8 (H, W).

    Raises:
        ImageReadError: naming ``path``: 32-bit integer values outside 0..65535, float values outside 0..1 or not
            finite (no range to scale by; convert the file to 8 or 16 bits).
    """
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > SIXTEEN_BIT_MAX:
            raise ImageReadError(f"cannot read {path}: {image.mode} pixels span {low}..{high}, outside the 16-bit "
                             f"range 0..{SIXTEEN_BIT_MAX}; convert it to an 8- or 16-bit image")
        scale = 255.0 / SIXTEEN_BIT_MAX
    else:
        finite = np.isfinite(values)
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
        if not finite.all() or low < 0.0 or high > 1.0:
            raise ImageReadError(f"cannot read {path}: float pixels must be finite and in 0..1 (found "
                             f"{low:g}..{high:g}{', and NaN/inf' if not finite.all() else ''}); convert it to an "
                             "8- or 16-bit image")
        scale = 255.0
    scaled = values.astype(np.float32) * np.float32(scale)
    scaled += np.float32(0.5)  # round to nearest
    return scaled.astype(np.uint8)


def read_rgb(path: str) -> np.ndarray:
    """Read any image file as the RGB picture a viewer displays.

    EXIF orientation is applied (phone photos are stored sideways with an orientation tag); 16-bit, 32-bit and
    float images are scaled by their type's range (see :func:`_high_depth_to_uint8`); every other mode (grey,
    palette, RGBA, CMYK, 1-bit, GIF's first frame) goes through PIL's ``convert("RGB")`` (alpha is dropped).

    Args:
        path: image file.

    Returns:
        uint8 (H, W, 3).

    Raises:
        ImageReadError: (a ValueError) naming ``path`` when it is missing, not a readable image, too large for PIL's
            decompression-bomb limit, or of a pixel range it cannot scale.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
                return np.repeat(_high_depth_to_uint8(image, path)[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"cannot read {path}: {err}") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports some corrupt headers as SyntaxError
        raise ImageReadError(f"cannot read {path} as an image ({err})") from err


def read_image(path: str, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD) -> np.ndarray:
    """Read any image file as the network's input: :func:`read_rgb`, then normalised like :func:`image_to_array`.

    High-bit-depth images are quantised to 8 bits first: the networks are trained on 8-bit JPEGs, and the mask
    then matches the overlay drawn from the same pixels.

    Args:
        path: image file.
        mean, std: normalisation.

    Returns:
        float32 array (3, H, W), in the displayed (EXIF) orientation.

    Raises:
        ValueError: naming ``path`` when it is missing or not a readable image (see :func:`read_rgb`).
    """
    return _normalise_channels(read_rgb(path), mean, std)


def mask_to_array(mask: Image.Image) -> np.ndarray:
    """ADE20K mask → int32 (H, W) class indices: value - 1, so unlabelled (0) becomes -1 (ignored).

    Args:
        mask: single-channel PIL mask with values 0..150.

    Returns:
        int32 array (H, W) with values -1..149.
    """
    return np.asarray(mask, dtype=np.int32) - 1
