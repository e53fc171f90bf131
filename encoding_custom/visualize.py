"""Pictures of segmentations: a fixed palette, coloured label maps, overlays and legends (PIL only)."""
import os
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

LEGEND_ROW_PX = 22
LEGEND_CHAR_PX = 8  # PIL's default bitmap font is about this wide per character


def label_colours(n: int) -> np.ndarray:
    """``n`` distinct RGB colours: the PASCAL VOC bit-interleaving palette, skipping its black.

    Args:
        n: number of labels.

    Returns:
        uint8 (n, 3); colour ``i`` is the same whatever ``n`` is.
    """
    colours = np.zeros((n, 3), np.uint8)
    for i in range(n):
        code, r, g, b = i + 1, 0, 0, 0
        for bit in range(8):
            r |= ((code >> 0) & 1) << (7 - bit)
            g |= ((code >> 1) & 1) << (7 - bit)
            b |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        colours[i] = (r, g, b)
    return colours


def colour_mask(labels: np.ndarray, n_labels: int) -> Image.Image:
    """Args: labels int (H, W), values in 0..n_labels-1 or negative (ignored); n_labels: palette size.

    Returns: RGB image (W x H) with :func:`label_colours`; ignored pixels black.
    """
    palette = np.vstack([label_colours(n_labels), np.zeros((1, 3), np.uint8)])
    return Image.fromarray(palette[np.where(labels >= 0, labels, n_labels)])


def legend(names: Sequence[str], present: Optional[Sequence[int]] = None) -> Image.Image:
    """A legend: one colour box and name per label; labels not in ``present`` are marked "(not found)".

    Args:
        names: label names, in palette order.
        present: indices found in a prediction (None: do not mark any).

    Returns:
        RGB image, one row of ``LEGEND_ROW_PX`` per label.
    """
    colours = label_colours(len(names))
    width = 24 + LEGEND_CHAR_PX * max(len(n) for n in names) + 90
    image = Image.new("RGB", (width, LEGEND_ROW_PX * len(names) + 8), "white")
    draw = ImageDraw.Draw(image)
    found = set(range(len(names))) if present is None else set(present)
    for i, name in enumerate(names):
        y = 4 + i * LEGEND_ROW_PX
        draw.rectangle([6, y + 2, 22, y + 18], fill=tuple(int(c) for c in colours[i]), outline=(0, 0, 0))
        draw.text((30, y + 4), name + ("" if i in found else "  (not found)"), fill=(0, 0, 0))
    return image


def save_segmentation(image_path: str, labels: Sequence[str], prediction: np.ndarray, outdir: str) -> List[str]:
    """Write ``<stem>_mask.png``, ``<stem>_overlay.png`` (50 % blend on the image) and ``<stem>_legend.png``.

    Args:
        image_path: the segmented image (read again for the overlay; its stem names the outputs).
        labels: label names of the prediction.
        prediction: int (H, W) indices into ``labels``, the image's size.
        outdir: existing output folder.

    Returns:
        the three paths written.
    """
    stem = os.path.splitext(os.path.basename(image_path))[0]
    mask = colour_mask(prediction, len(labels))
    with Image.open(image_path) as original:
        overlay = Image.blend(original.convert("RGB"), mask, 0.5)
    outputs = [os.path.join(outdir, f"{stem}_{kind}.png") for kind in ("mask", "overlay", "legend")]
    mask.save(outputs[0])
    overlay.save(outputs[1])
    legend(labels, sorted(set(np.unique(prediction).tolist()))).save(outputs[2])
    return outputs


__all__ = ["label_colours", "colour_mask", "legend", "save_segmentation"]
