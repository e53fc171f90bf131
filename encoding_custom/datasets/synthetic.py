"""A synthetic data set in ADE20K's exact on-disk layout, learnable by a tiny model.

Each image is a textured background class with a few random shapes (ellipses, rectangles, triangles) of other
classes on top. Every class has its own colour and stripe texture (orientation and period), so a small network
can learn to segment it within minutes on a CPU. A few pixels per image are left unlabelled (mask value 0, noise
texture) so the ignore path is exercised. Masks use ADE20K's values (1..150 = class index + 1, 0 = unlabelled).

Everything is deterministic for a seed: image ``i`` of a split depends only on ``(seed, split, i)``.
"""
import json
import os
import shutil
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from foundation.labels import ade20k_labels

from encoding_custom.datasets.layout import BASE_DIR, SYNTHETIC_MARKER, split_folders

# ADE20K mask values (1-based) used by default: visually distinct, common classes.
# wall, sky, floor, tree, grass, person, car, water
DEFAULT_CLASS_VALUES = (1, 3, 4, 5, 10, 13, 21, 22)

_SPLIT_PREFIX = {"train": "ADE_train_", "val": "ADE_val_"}
_SPLIT_SEED_OFFSET = {"train": 0, "val": 1}


def class_appearance(class_value: int) -> Tuple[np.ndarray, float, float]:
    """The fixed colour and stripe texture of an ADE20K class value in synthetic images.

    Args:
        class_value: mask value 1..150.

    Returns:
        ``(rgb float (3,) in 0..255, stripe angle in radians, stripe period in pixels)``; the same for every seed
        so that training and validation sets agree.
    """
    rng = np.random.default_rng(10_007 * class_value)
    colour = rng.uniform(30, 225, size=3)
    angle = float(rng.uniform(0, np.pi))
    period = float(rng.uniform(5, 14))
    return colour, angle, period


def _texture(class_value: int, height: int, width: int, phase: float) -> np.ndarray:
    """Full-frame texture of one class: its colour modulated by its stripes. float32 (H, W, 3)."""
    colour, angle, period = class_appearance(class_value)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return colour[None, None, :] * (0.75 + 0.25 * stripes[..., None])


def random_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, value: int,
                 scale: Tuple[float, float] = (0.2, 0.6), kinds: Sequence[int] = (0, 1, 2)) -> None:
    """Draw one filled shape of ``value`` at a random place and size.

    Args:
        draw: the mask's drawing context; rng: the image's generator; width, height: the image size.
        value: the mask value drawn.
        scale: the shape's width and height are drawn from this fraction of the image's.
        kinds: the shapes allowed: 0 ellipse, 1 rectangle, 2 triangle.
    """
    shape_w = max(2, int(rng.uniform(*scale) * width))
    shape_h = max(2, int(rng.uniform(*scale) * height))
    x0 = int(rng.integers(-shape_w // 4, max(1, width - shape_w // 2)))
    y0 = int(rng.integers(-shape_h // 4, max(1, height - shape_h // 2)))
    box = [x0, y0, x0 + shape_w, y0 + shape_h]
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == 0:
        draw.ellipse(box, fill=value)
    elif kind == 1:
        draw.rectangle(box, fill=value)
    else:
        draw.polygon([(x0, y0 + shape_h), (x0 + shape_w // 2, y0), (x0 + shape_w, y0 + shape_h)], fill=value)


def synthetic_sample(seed: int, split: str, index: int, size: Tuple[int, int] = (96, 160),
                     class_values: Sequence[int] = DEFAULT_CLASS_VALUES, max_shapes: int = 4):
    """Make one synthetic image and its ADE20K-style mask in memory.

    Args:
        seed: data set seed.
        split: ``"train"`` or ``"val"`` (the two splits draw different images).
        index: image index within the split (0-based).
        size: ``(min_side, max_side)``: width and height are drawn independently and uniformly in this range.
        class_values: ADE20K mask values (1..150) that may appear; the first few are most frequent as background.
        max_shapes: at most this many foreground shapes (at least one).

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))`` with mask values in ``{0} ∪ class_values``.
    """
    rng = np.random.default_rng([seed, _SPLIT_SEED_OFFSET[split], index])
    width = int(rng.integers(size[0], size[1] + 1))
    height = int(rng.integers(size[0], size[1] + 1))
    values = list(class_values)
    background = values[int(rng.integers(len(values)))]
    mask_image = Image.new("L", (width, height), color=background)
    draw = ImageDraw.Draw(mask_image)
    # Shapes take other classes than the background so that every image shows at least two classes.
    foreground = [value for value in values if value != background] or values
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        random_shape(draw, rng, width, height, foreground[int(rng.integers(len(foreground)))])
    # A small unlabelled patch (value 0), like ADE20K's unannotated pixels.
    if rng.random() < 0.7:
        radius = int(rng.uniform(0.04, 0.1) * min(width, height)) + 1
        cx, cy = int(rng.integers(width)), int(rng.integers(height))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=0)
    mask = np.asarray(mask_image, dtype=np.uint8)

    image = np.empty((height, width, 3), dtype=np.float32)
    for value in np.unique(mask):
        region = mask == value
        if value == 0:
            image[region] = rng.uniform(0, 255, size=(int(region.sum()), 3))
        else:
            image[region] = _texture(int(value), height, width, phase=float(rng.uniform(0, 2 * np.pi)))[region]
    # Mild global brightness change and pixel noise so the task is not a colour lookup table.
    image = image * rng.uniform(0.85, 1.15) + rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic_ade20k(root: str, n_train: int, n_val: int, seed: int = 0, size: Tuple[int, int] = (96, 160),
                           class_values: Optional[Sequence[int]] = None, jpeg_quality: int = 92) -> Dict:
    """Write a synthetic set in ADE20K's exact layout under ``root/ADEChallengeData2016``.

    Files: ``images/{training,validation}/ADE_{train,val}_%08d.jpg`` (numbered from 1 like ADE20K) and
    ``annotations/.../<same stem>.png`` (uint8, 0 = unlabelled, class ``k`` of the 150 = ``k + 1``), plus
    ``SYNTHETIC.json`` stating the counts and classes (the layout check then expects these counts). A previous
    synthetic set at the same place is replaced; a folder without the marker (real ADE20K) is never touched.

    Args:
        root: data root (the folder that will contain ``ADEChallengeData2016``).
        n_train: number of training images.
        n_val: number of validation images.
        seed: the same seed gives byte-identical files.
        size: ``(min_side, max_side)`` of the random image sizes, e.g. ``(96, 160)`` for the quick start or
            ``(512, 683)`` for ADE20K-like sizes.
        class_values: ADE20K mask values to use (default: 8 classes, :data:`DEFAULT_CLASS_VALUES`).
        jpeg_quality: JPEG quality of the images.

    Returns:
        the metadata dict written to ``SYNTHETIC.json`` (``n_train``, ``n_val``, ``seed``, ``size``,
        ``class_values``, ``class_names``).

    Raises:
        ValueError: for negative counts or class values outside 1..150.
        FileExistsError: if ``root/ADEChallengeData2016`` exists and is not a synthetic set.
    """
    if n_train < 0 or n_val < 0:
        raise ValueError(f"synthetic set sizes must be >= 0, got n_train={n_train}, n_val={n_val}")
    values = list(DEFAULT_CLASS_VALUES if class_values is None else class_values)
    bad = [value for value in values if not 1 <= int(value) <= 150]
    if bad or not values:
        raise ValueError(f"class_values must be ADE20K mask values 1..150, got {values}")
    names = ade20k_labels()
    base = os.path.join(root, BASE_DIR)
    if os.path.lexists(base):
        if not os.path.isfile(os.path.join(base, SYNTHETIC_MARKER)):
            raise FileExistsError(f"{base} exists and is not a synthetic set (no {SYNTHETIC_MARKER}); refusing to "
                                  "mix synthetic images into it. Choose another --root.")
        shutil.rmtree(base)  # a previous synthetic set: replace it so the stated counts hold
    for split, count in (("train", n_train), ("val", n_val)):
        image_folder, mask_folder = split_folders(root, split)
        os.makedirs(image_folder, exist_ok=True)
        os.makedirs(mask_folder, exist_ok=True)
        for index in range(count):
            image, mask = synthetic_sample(seed, split, index, size=size, class_values=values)
            stem = f"{_SPLIT_PREFIX[split]}{index + 1:08d}"
            Image.fromarray(image).save(os.path.join(image_folder, stem + ".jpg"), quality=jpeg_quality)
            Image.fromarray(mask).save(os.path.join(mask_folder, stem + ".png"))
    info = {"n_train": n_train, "n_val": n_val, "seed": seed, "size": list(size),
            "class_values": values, "class_names": [names[value - 1] for value in values]}
    with open(os.path.join(root, BASE_DIR, SYNTHETIC_MARKER), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=1)
    return info
