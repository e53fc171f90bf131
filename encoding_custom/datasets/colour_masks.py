"""Colour masks to index masks: the common annotation layouts brought to the plain folder set's encoding (value k =
line k of ``labels.txt``, from 0; ``ignore_value``, 255, = ignored).

* Palette PNGs (PIL mode ``"P"``, PASCAL VOC's ``SegmentationClass``) store class indices already (VOC's object
  borders are 255 = ignored): they are kept as they are.
* RGB(A) PNGs with one colour per class (CamVid, LabelMe exports...) need a colour table, one ``R G B name`` line
  per class: row k of the table becomes value k.

No MindSpore import: converting a folder needs numpy and Pillow only.
"""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from encoding_custom.datasets.folder import IMAGE_EXTENSIONS, LABELS_FILE, check_class_names, write_class_names
from foundation.atomic import atomic_link, atomic_output

Colour = Tuple[int, int, int]


def read_colour_table(path: str) -> List[Tuple[Colour, str]]:
    """Read a colour table: one class per line, ``R G B name`` (the name may hold spaces and any UTF-8 text).

    Blank lines and lines starting with ``#`` are skipped; row k of the result becomes mask value k.

    Args:
        path: the table file (UTF-8; a byte-order mark is accepted).

    Returns:
        ``[((r, g, b), name), ...]`` in file order.

    Raises:
        ValueError: one line naming the file and line: a bad or out-of-range number, a missing name, a colour or
            name given twice, or no entries at all.
    """
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    table: List[Tuple[Colour, str]] = []
    by_colour, by_name = {}, {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(maxsplit=3)
        where = f"{path}, line {number}"
        if len(fields) < 4:
            raise ValueError(f"{where}: expected 'R G B name', got {text!r}")
        try:
            colour = tuple(int(field) for field in fields[:3])
        except ValueError:
            raise ValueError(f"{where}: R G B must be whole numbers 0..255, got {' '.join(fields[:3])!r}") from None
        if not all(0 <= value <= 255 for value in colour):
            raise ValueError(f"{where}: R G B must be 0..255, got {colour}")
        name = fields[3].strip()
        if colour in by_colour:
            raise ValueError(f"{where}: colour {colour} is already class {by_colour[colour]!r}")
        if name in by_name:
            raise ValueError(f"{where}: name {name!r} is already the class of colour {by_name[name]}")
        by_colour[colour], by_name[name] = name, colour
        table.append((colour, name))
    if not table:
        raise ValueError(f"{path}: no 'R G B name' entries in it")
    return table


def _packed(rgb: np.ndarray) -> np.ndarray:
    """Each colour of ``rgb`` (..., 3) as one int32 ``r << 16 | g << 8 | b`` (...,), so colours compare as ints."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def convert_mask(path: str, colours: Optional[Sequence[Tuple[Colour, str]]] = None,
                 ignore_value: int = 255) -> np.ndarray:
    """One annotation as an index mask.

    Args:
        path: a mask image: palette (``"P"``) or grey (``"L"``) PNG of class indices, or an RGB(A) colour mask.
        colours: the colour table (:func:`read_colour_table`); None keeps ``"P"``/``"L"`` values as they are. With a
            table, every mode is compared as RGB (alpha is dropped).
        ignore_value: the value of ignored pixels; the table's rows must lie below it.

    Returns:
        uint8 (H, W): the palette indices, or for a table each pixel's row in it.

    Raises:
        ValueError: an RGB mask without a table, an unusable image mode, or (one line naming the file) a colour
            the table lacks, with its pixel count.
    """
    with Image.open(path) as image:
        if colours is None:
            if image.mode not in ("P", "L"):
                raise ValueError(f"{path}: a mode {image.mode} mask needs a colour table (R G B name per class); only "
                                 f"palette ('P') and grey ('L') masks hold class indices")
            return np.array(image, dtype=np.uint8)
        rgb = np.asarray(image.convert("RGB"))
    if len(colours) > ignore_value:
        raise ValueError(f"colours: {len(colours)} classes do not fit below ignore_value {ignore_value}")
    keys = _packed(np.array([colour for colour, _ in colours], dtype=np.int32))
    order = np.argsort(keys)
    sorted_keys = keys[order]
    # One lookup per distinct colour (a mask has few), then spread back to the pixels.
    found, inverse, counts = np.unique(_packed(rgb).ravel(), return_inverse=True, return_counts=True)
    slots = np.minimum(np.searchsorted(sorted_keys, found), len(sorted_keys) - 1)
    known = sorted_keys[slots] == found
    if not known.all():
        missing = np.flatnonzero(~known)
        worst = missing[np.argmax(counts[missing])]
        colour = tuple(int(found[worst]) >> shift & 255 for shift in (16, 8, 0))
        others = f" (and {len(missing) - 1} more unknown colours)" if len(missing) > 1 else ""
        raise ValueError(f"{path}: colour {colour} ({int(counts[worst])} pixels) is not in the colour table{others}")
    return order[slots].astype(np.uint8)[inverse].reshape(rgb.shape[:2])


def convert_folder(source_images: str, source_masks: str, out_root: str, split: str,
                   colours: Optional[Sequence[Tuple[Colour, str]]] = None, names: Optional[Sequence[str]] = None,
                   ignore_value: int = 255) -> int:
    """Turn an image folder and its mask folder into one split of a plain folder set.

    Writes ``out_root/images/<split>/`` (the images under their own names, hard-linked or copied),
    ``out_root/annotations/<split>/<stem>.png`` (grey index masks from :func:`convert_mask`) and
    ``out_root/labels.txt``, each file atomically. Every ``.png`` of ``source_masks`` is converted.

    Args:
        source_images: folder of ``<stem>.jpg|.jpeg|.png`` images.
        source_masks: folder of ``<stem>.png`` masks.
        out_root: the folder set to write (created when missing; the other split may already be there).
        split: ``"train"`` or ``"val"``.
        colours: the colour table of RGB masks (its names become ``labels.txt``); None for palette/grey masks.
        names: the class names of palette/grey masks (value k = ``names[k]``); required without ``colours``.
        ignore_value: the mask value of ignored pixels.

    Returns:
        the number of image/mask pairs written.

    Raises:
        ValueError: a bad argument, a mask without its image, a mask of another size than its image, a mask value
            that is neither a class nor ``ignore_value``, or an existing ``labels.txt`` with other names.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if (colours is None) == (names is None):
        raise ValueError("give names (palette or grey masks) or colours (RGB masks), exactly one of them")
    labels = [name for _, name in colours] if colours is not None else list(names)
    check_class_names(labels, ignore_value, "colours" if colours is not None else "names")
    labels_path = os.path.join(out_root, LABELS_FILE)
    if os.path.isfile(labels_path):
        with open(labels_path, encoding="utf-8-sig") as handle:
            if [line.strip() for line in handle.read().splitlines() if line.strip()] != labels:
                raise ValueError(f"{labels_path} holds other class names than this split's; convert each split "
                                 f"with the same names or colour table")
    images = {}
    for name in sorted(os.listdir(source_images)):
        stem, extension = os.path.splitext(name)
        if extension.lower() in IMAGE_EXTENSIONS:
            if stem in images:
                raise ValueError(f"{source_images}: two images of stem {stem!r}: {images[stem]} and {name}")
            images[stem] = name
    masks = sorted(name for name in os.listdir(source_masks) if name.lower().endswith(".png"))
    if not masks:
        raise ValueError(f"{source_masks}: no .png masks in it")
    # Every pairing is checked before anything is written, so a missing image leaves no half-converted split.
    for name in masks:
        if os.path.splitext(name)[0] not in images:
            raise ValueError(f"{os.path.join(source_masks, name)}: no image of that stem (.jpg, .jpeg or .png) in "
                             f"{source_images}")
    for name in masks:
        stem, mask_path = os.path.splitext(name)[0], os.path.join(source_masks, name)
        image_path = os.path.join(source_images, images[stem])
        mask = convert_mask(mask_path, colours, ignore_value)
        with Image.open(image_path) as image:
            if image.size != (mask.shape[1], mask.shape[0]):
                raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                 f"{image_path} is {image.size[0]}x{image.size[1]}")
        bad = (mask >= len(labels)) & (mask != ignore_value)
        if bad.any():
            value = int(mask[bad].max())
            raise ValueError(f"{mask_path}: mask value {value} ({int((mask == value).sum())} pixels) is no class "
                             f"(0..{len(labels) - 1}) and not ignore_value {ignore_value}")
        atomic_link(image_path, os.path.join(out_root, "images", split, images[stem]))
        with atomic_output(os.path.join(out_root, "annotations", split, stem + ".png")) as temporary:
            Image.fromarray(mask).save(temporary, format="PNG")
    write_class_names(labels_path, labels)
    return len(masks)
