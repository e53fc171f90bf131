"""Pictures for the synthetic few-shot sets: each class a textured shape of its own, so a tiny model can learn them.

(Not ``encoding_custom.datasets.synthetic``'s stripes: importing that module pulls in the CLIP tokenizer.)
"""
import os
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from encoding_custom.fewshot.splits import SYNTHETIC_SPLITS_FOLDER

# Texture id of a boundary ring (PASCAL's 255); class value v uses texture CLASS_TEXTURE_BASE + v.
BOUNDARY_TEXTURE = 1000
CLASS_TEXTURE_BASE = 500


def synthetic_splits_dir(root: str, splits_dir: Optional[str] = None, **image_counts: int) -> str:
    """Where a synthetic writer puts its split lists, after checking its image counts.

    Args:
        root: the data root written.
        splits_dir: an explicit folder; None = ``<root>/fewshot_splits``, where the data sets find it by ``root``.
        **image_counts: the writer's image counts by argument name (``n_train=60, n_val=40``), each ``>= 0``.

    Returns:
        the splits folder (not created).
    """
    if any(count < 0 for count in image_counts.values()):
        raise ValueError(f"{'/'.join(image_counts)}: expected >= 0, got {', '.join(map(str, image_counts.values()))}")
    return splits_dir or os.path.join(root, SYNTHETIC_SPLITS_FOLDER)


def checker_texture(texture_id: int, height: int, width: int, phase: int) -> np.ndarray:
    """A texture's full frame: its own colour in a checkerboard of its own cell size.

    Args:
        texture_id: which texture (the same id always gives the same colour and cell size).
        height: frame height.
        width: frame width.
        phase: shift of the checkerboard in pixels.

    Returns:
        float32 (height, width, 3), values in [24, 225].
    """
    rng = np.random.default_rng(7919 * texture_id + 13)
    colour = rng.uniform(30, 225, size=3).astype(np.float32)
    cell = int(rng.integers(3, 9))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((yy + phase) // cell + (xx + phase) // cell) % 2).astype(np.float32)
    return colour[None, None, :] * (0.8 + 0.2 * checker[..., None])


def synthetic_objects_sample(rng: np.random.Generator, first_class: int, nclass: int,
                             size: Tuple[int, int], max_objects: int, boundary_value: int = 0,
                             boundary_width: int = 0, first_on_top: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """One picture of random boxes and ellipses, each class with its own texture, and its class-valued mask.

    Args:
        rng: the picture's random source.
        first_class: 0-based class of the first object (so that a caller can make every class occur).
        nclass: classes to draw the other objects from (mask values ``1..nclass``).
        size: ``(min_side, max_side)`` of the random width and height.
        max_objects: at most this many objects (at least one).
        boundary_value: mask value of the ring around each object (PASCAL: 255); unused when
            ``boundary_width`` is 0.
        boundary_width: width in pixels of that ring (0 = no ring).
        first_on_top: draw the first object last, so no other object hides it and ``first_class`` always occurs
            (False: drawn first, as the PASCAL generator always did; its committed fixture depends on it).

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))``, mask 0 = background, ``c + 1`` = class ``c``.
    """
    width, height = (int(rng.integers(size[0], size[1] + 1)) for _ in range(2))
    mask_image = Image.new("L", (width, height), color=0)
    draw = ImageDraw.Draw(mask_image)
    classes = [first_class] + [int(rng.integers(nclass)) for _ in range(int(rng.integers(0, max_objects)))]
    if first_on_top:
        classes = classes[1:] + classes[:1]
    for class_id in classes:
        box_w, box_h = int(rng.uniform(0.3, 0.6) * width), int(rng.uniform(0.3, 0.6) * height)
        x0, y0 = int(rng.integers(0, width - box_w)), int(rng.integers(0, height - box_h))
        box = [x0, y0, x0 + box_w, y0 + box_h]
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        if boundary_width:
            shape(box, fill=class_id + 1, outline=boundary_value, width=boundary_width)
        else:
            shape(box, fill=class_id + 1)
    mask = np.asarray(mask_image, dtype=np.uint8)
    image = np.empty((height, width, 3), np.float32)
    for value in np.unique(mask):
        region = mask == value
        is_ring = boundary_width and value == boundary_value
        texture_id = BOUNDARY_TEXTURE if is_ring else CLASS_TEXTURE_BASE + int(value)
        image[region] = checker_texture(texture_id, height, width, int(rng.integers(16)))[region]
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask
