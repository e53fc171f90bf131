"""A synthetic plain folder set, learnable by a tiny model, in the layout users point ``--data_path`` at::

    root/images/{train,val}/img_00001.jpg
    root/annotations/{train,val}/img_00001.png   uint8: value k = line k (from 0) of labels.txt, 255 = ignored
    root/labels.txt                              the class names, one per line, UTF-8

As in :mod:`.synthetic` (ADE20K's layout), each image is a textured background class with a few random shapes of
other classes on top, and a small noise patch per image is ``ignore_value`` so the ignore path is exercised. Two
things differ:

* a class's colour and stripe texture depend only on its *name* (a CRC-32 of its UTF-8 bytes seeds them), so a name
  looks the same in every set: a model trained on one set recognises the names it shares with another;
* ``look`` gives a set its own style (brightness, contrast, noise, shape sizes and kinds) on top of those cues, so
  sets made with different looks are different domains; ``look=0`` is :mod:`.synthetic`'s style.

Everything is deterministic: image ``i`` of a split depends only on ``(seed, look, split, i)`` (and the arguments
that say what to draw: names, size, ignore value).
"""
import os
import zlib
from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from encoding_custom.datasets.folder import LABELS_FILE, check_class_names, write_class_names
from encoding_custom.datasets.synthetic import random_shape
from foundation.atomic import atomic_output

IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}
_SPLIT_SEED_OFFSET = {"train": 0, "val": 1}
_LOOK_SEED = 7_919  # keeps the looks' random stream apart from the images' ([seed, look, ...])


class Look(NamedTuple):
    """The overall style of a set: applied to every image, on top of the classes' own colours and stripes."""
    brightness: float  # added to every channel
    contrast: float  # scales the distance from mid-grey
    noise: float  # standard deviation of the per-pixel noise
    shape_scale: Tuple[float, float]  # shape width and height, as fractions of the image's
    shape_kinds: Tuple[int, ...]  # 0 ellipse, 1 rectangle, 2 triangle


def look_style(look: int) -> Look:
    """The style of ``look``: 0 is :mod:`.synthetic`'s; others are drawn from the look number alone.

    The ranges keep each class's colour within about 30 levels of its look-0 colour, so names stay recognisable.
    """
    if look == 0:
        return Look(0.0, 1.0, 6.0, (0.2, 0.6), (0, 1, 2))
    rng = np.random.default_rng([_LOOK_SEED, look])
    smallest = float(rng.uniform(0.1, 0.3))
    kinds = tuple(sorted(int(kind) for kind in rng.choice(3, size=int(rng.integers(1, 4)), replace=False)))
    return Look(brightness=float(rng.uniform(-15, 15)), contrast=float(rng.uniform(0.9, 1.1)),
                noise=float(rng.uniform(2, 14)), shape_scale=(smallest, smallest + float(rng.uniform(0.2, 0.4))),
                shape_kinds=kinds)


def name_appearance(name: str) -> Tuple[np.ndarray, float, float]:
    """The fixed colour and stripe texture of class ``name`` in every synthetic folder set.

    Returns:
        ``(rgb float (3,) in 30..225, stripe angle in radians, stripe period in pixels)``.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    return rng.uniform(30, 225, size=3), float(rng.uniform(0, np.pi)), float(rng.uniform(5, 14))


def _texture(name: str, height: int, width: int, phase: float) -> np.ndarray:
    """Full-frame texture of one class: its colour modulated by its stripes. float32 (H, W, 3)."""
    colour, angle, period = name_appearance(name)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return colour[None, None, :] * (0.75 + 0.25 * stripes[..., None])


def folder_sample(names: Sequence[str], seed: int, look: int, split: str, index: int,
                  size: Tuple[int, int] = (96, 160), ignore_value: int = 255, max_shapes: int = 4):
    """Make one synthetic image and its index mask in memory.

    Args:
        names: the set's class names (mask value k = ``names[k]``).
        seed: data set seed; look: the set's style (:func:`look_style`).
        split: ``"train"`` or ``"val"`` (the two splits draw different images).
        index: image index within the split (0-based). The background class is ``names[index % len(names)]``,
            so any ``len(names)`` consecutive images show every class.
        size: ``(min_side, max_side)``: width and height are drawn independently and uniformly in this range.
        ignore_value: the mask value of the noise patch.
        max_shapes: at most this many foreground shapes (at least one).

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))`` with mask values in ``0..len(names) - 1`` and
        ``ignore_value``.
    """
    style = look_style(look)
    rng = np.random.default_rng([seed, look, _SPLIT_SEED_OFFSET[split], index])
    width = int(rng.integers(size[0], size[1] + 1))
    height = int(rng.integers(size[0], size[1] + 1))
    background = index % len(names)
    mask_image = Image.new("L", (width, height), color=background)
    draw = ImageDraw.Draw(mask_image)
    # Shapes take other classes than the background so that every image shows at least two classes.
    foreground = [value for value in range(len(names)) if value != background] or [background]
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        random_shape(draw, rng, width, height, foreground[int(rng.integers(len(foreground)))], style.shape_scale,
                     style.shape_kinds)
    radius = int(rng.uniform(0.04, 0.1) * min(width, height)) + 1
    cx, cy = int(rng.integers(width)), int(rng.integers(height))
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=ignore_value)
    mask = np.asarray(mask_image, dtype=np.uint8)

    image = np.empty((height, width, 3), dtype=np.float32)
    for value in np.unique(mask):
        region = mask == value
        if value == ignore_value:
            image[region] = rng.uniform(0, 255, size=(int(region.sum()), 3))
        else:
            image[region] = _texture(names[value], height, width, phase=float(rng.uniform(0, 2 * np.pi)))[region]
    image = (image - 128) * style.contrast + 128 + style.brightness
    # Mild per-image brightness change and pixel noise so the task is not a colour lookup table.
    image = image * rng.uniform(0.85, 1.15) + rng.normal(0, style.noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic_folder(root: str, names: Sequence[str], n_train: int, n_val: int, seed: int = 0,
                           size: Tuple[int, int] = (96, 160), look: int = 0, ignore_value: int = 255,
                           image_format: str = "jpg") -> Dict:
    """Write a synthetic plain folder set at ``root``: ``images/``, ``annotations/`` and ``labels.txt``.

    Stems are ``img_00001``, ``img_00002``, ... (from 1) in each split; every file is written atomically.

    Args:
        root: the set's folder; created when missing, refused when it holds anything (stale images of an
            earlier, larger set would otherwise join this one).
        names: the class names, in mask-value order (any UTF-8 text on one line).
        n_train: number of training images (>= 1); n_val: number of validation images (>= 1).
        seed: the same arguments give byte-identical files.
        size: ``(min_side, max_side)`` of the random image sizes.
        look: the set's style (:func:`look_style`); sets with different looks share class appearances only.
        ignore_value: mask value of the ignored pixels (above every class value, at most 255).
        image_format: ``"jpg"``, ``"jpeg"`` (JPEG, quality 92) or ``"png"``; also the images' file ending.

    Returns:
        ``{"root", "labels", "n_train", "n_val", "seed", "look"}``.

    Raises:
        ValueError: naming the bad argument.
        FileExistsError: ``root`` is a file or a folder that is not empty.
    """
    names = list(names)
    check_class_names(names, ignore_value, "names")
    for argument, value in (("n_train", n_train), ("n_val", n_val)):
        if value < 1:
            raise ValueError(f"{argument} must be >= 1, got {value}")
    for argument, value in (("seed", seed), ("look", look)):
        if value < 0:
            raise ValueError(f"{argument} must be >= 0, got {value}")
    if not 8 <= size[0] <= size[1]:
        raise ValueError(f"size must be (min_side, max_side) with 8 <= min_side <= max_side, got {size}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise FileExistsError(f"{root} exists and is not an empty folder; choose a new folder for the set")
    for split, count in (("train", n_train), ("val", n_val)):
        for index in range(count):
            image, mask = folder_sample(names, seed, look, split, index, size=size, ignore_value=ignore_value)
            stem = f"img_{index + 1:05d}"
            with atomic_output(os.path.join(root, "images", split, f"{stem}.{image_format}")) as temporary:
                Image.fromarray(image).save(temporary, format=IMAGE_FORMATS[image_format], quality=92)
            with atomic_output(os.path.join(root, "annotations", split, f"{stem}.png")) as temporary:
                Image.fromarray(mask).save(temporary, format="PNG")
    write_class_names(os.path.join(root, LABELS_FILE), names)
    return {"root": root, "labels": names, "n_train": n_train, "n_val": n_val, "seed": seed, "look": look}
