"""Pictures of segmentations: palettes, coloured label maps, overlays, legends and label-index maps (PIL only).

Colours: ADE20K class names get the official ADE20K palette; any other label list gets a well-spaced palette
(greedy farthest-point colours in CIELAB, far from black and white). Colour ``i`` depends only on the label list.
Legends are drawn with a TrueType font that covers the labels when one is installed (DejaVu, Noto, ... or what
``fc-match`` finds), and fall back to PIL's bitmap font with the label's index and ``?`` for characters no font
has; the ``_legend.txt`` written beside the PNGs always holds the exact UTF-8 names.
"""
import dataclasses
import functools
import os
import shutil
import subprocess
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from encoding_custom.datasets.transforms import read_rgb
from foundation.atomic import atomic_output
from foundation.labels import ade20k_labels, index_dtype

LEGEND_ROW_PX = 22
LEGEND_FONT_PX = 14

# The 150-colour ADE20K palette, row i = class i (mask value i + 1), as in MMSegmentation's ADE20KDataset
# (open-mmlab/mmsegmentation, mmseg/datasets/ade.py, METAINFO["palette"]). Rows 6 and 48 (road, skyscraper) are
# the same grey there too.
ADE20K_PALETTE = np.array([
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80], [140, 140, 140],
    [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7], [150, 5, 61], [120, 120, 70],
    [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3], [0, 102, 200],
    [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220],
    [255, 9, 92], [112, 9, 255], [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10],
    [7, 255, 255], [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140],
    [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0], [153, 255, 0], [0, 0, 255],
    [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255], [11, 200, 200], [255, 82, 0], [0, 255, 245],
    [0, 61, 255], [0, 255, 112], [0, 255, 133], [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0],
    [0, 143, 255], [51, 255, 0], [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0],
    [0, 255, 153], [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194], [0, 255, 82],
    [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255], [0, 255, 163], [255, 153, 0],
    [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255], [163, 255, 0], [255, 235, 0], [8, 184, 170],
    [133, 0, 255], [0, 255, 92], [184, 0, 255], [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112],
    [92, 255, 0], [0, 224, 255], [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0],
    [255, 0, 163], [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255], [255, 255, 0],
    [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0], [173, 0, 255], [0, 245, 255],
    [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255], [184, 255, 0], [0, 133, 255], [255, 214, 0],
    [25, 194, 194], [102, 255, 0], [92, 0, 255]], dtype=np.uint8)

# Fonts tried for legends, in order (Linux distributions, macOS, Windows); fc-match is asked after these.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf", "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/System/Library/Fonts/PingFang.ttc", "/Library/Fonts/Arial Unicode.ttf", "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/arial.ttf",
)
_UNCOVERED = "?"
# A private-use code point no font maps: what FreeType draws for it is the font's "missing glyph" box.
_MISSING_GLYPH_PROBE = "\U0010fffd"


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float 0..255 sRGB (N, 3) → CIELAB (N, 3) under D65 (L 0..100)."""
    linear = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


@functools.lru_cache(maxsize=1)
def _palette_candidates():
    """The 32 768 colours of a 32-level RGB grid and their CIELAB coordinates: ``(rgb uint8 (M, 3), lab (M, 3))``."""
    levels = np.round(np.linspace(0, 255, 32)).astype(np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    return rgb, _srgb_to_lab(rgb)


_SPACED: List[np.ndarray] = []
_SPACED_DISTANCE: List[np.ndarray] = []  # per candidate: CIELAB distance to the nearest colour chosen so far


def spaced_colours(n: int) -> np.ndarray:
    """``n`` well-spaced RGB colours: each the grid colour farthest (CIELAB ΔE) from black, white and all before it.

    Greedy farthest-point order makes the first colours as far apart as possible and keeps colour ``i`` the same
    whatever ``n`` is; black (ignored pixels) and white (the legend background) are never close. Past the 32 768
    grid colours the sequence repeats.

    Args:
        n: number of colours.

    Returns:
        uint8 (n, 3).
    """
    rgb, lab = _palette_candidates()
    if not _SPACED_DISTANCE:
        anchors = _srgb_to_lab(np.array([[0, 0, 0], [255, 255, 255]]))
        _SPACED_DISTANCE.append(np.min(np.linalg.norm(lab[:, None] - anchors[None], axis=2), axis=1))
    distance = _SPACED_DISTANCE[0]
    while len(_SPACED) < min(n, len(rgb)):
        best = int(np.argmax(distance))
        _SPACED.append(rgb[best])
        np.minimum(distance, np.linalg.norm(lab - lab[best], axis=1), out=distance)
    colours = np.zeros((n, 3), np.uint8)
    if n:
        colours[:] = np.asarray(_SPACED)[np.arange(n) % len(_SPACED)]
    return colours


def ade20k_colour_indices(names: Sequence[str]) -> Optional[List[int]]:
    """ADE20K class index of every name, or None if any name is not an ADE20K class name.

    A name the table holds twice ("screen") takes its classes in table order, so the 150 names in order map to
    0..149.

    Args:
        names: label names.

    Returns:
        list of indices 0..149, or None.
    """
    rows = {}
    for index, name in enumerate(ade20k_labels()):
        rows.setdefault(name, []).append(index)
    if not names or any(name not in rows for name in names):
        return None
    used = {}
    indices = []
    for name in names:
        candidates = rows[name]
        indices.append(candidates[min(used.get(name, 0), len(candidates) - 1)])
        used[name] = used.get(name, 0) + 1
    return indices


def label_colours(n: int, names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The colours of ``n`` labels: the ADE20K palette when every name is an ADE20K class, else well spaced.

    Args:
        n: number of labels.
        names: the label names (``len(names) == n``), or None for the spaced palette.

    Returns:
        uint8 (n, 3); for a given label list colour ``i`` never changes, and without ADE20K names it does not
        depend on ``n`` either.
    """
    if names is not None:
        if len(names) != n:
            raise ValueError(f"label_colours: {n} colours asked for {len(names)} names")
        indices = ade20k_colour_indices(names)
        if indices is not None:
            return ADE20K_PALETTE[indices].copy()
    return spaced_colours(n)


def colour_mask(labels: np.ndarray, n_labels: int, colours: Optional[np.ndarray] = None) -> Image.Image:
    """A coloured picture of a label map.

    Args:
        labels: int (H, W), values in 0..n_labels-1 or negative (ignored).
        n_labels: palette size.
        colours: uint8 (n_labels, 3) palette, e.g. ``label_colours(n, names)`` for the ADE20K palette; None =
            ``label_colours(n_labels)``.

    Returns:
        RGB image (W x H); ignored pixels black.

    Raises:
        ValueError: a label value is >= ``n_labels`` or the palette has the wrong shape.
    """
    colours = label_colours(n_labels) if colours is None else np.asarray(colours, np.uint8)
    if colours.shape != (n_labels, 3):
        raise ValueError(f"colour_mask: palette of shape {colours.shape} for {n_labels} labels")
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= n_labels:
        raise ValueError(f"colour_mask: label value {int(labels.max())} >= the {n_labels} labels")
    palette = np.vstack([colours, np.zeros((1, 3), np.uint8)])
    return Image.fromarray(palette[np.where(labels >= 0, labels, n_labels)])


@functools.lru_cache(maxsize=64)
def _truetype(path: str):
    """The font at ``path`` at legend size, or None if FreeType cannot load it."""
    try:
        return ImageFont.truetype(path, LEGEND_FONT_PX)
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=65536)
def _has_glyph(path: str, char: str) -> bool:
    """Whether the font at ``path`` draws ``char`` with a glyph of its own (not its missing-glyph box)."""
    if char.isspace():
        return True
    font = _truetype(path)
    mask = font.getmask(char)
    missing = font.getmask(_MISSING_GLYPH_PROBE)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def _covers(path: Optional[str], text: str) -> bool:
    """Whether a font (a path; None = PIL's bitmap font, Latin-1 only) can draw every character of ``text``."""
    if path is None:
        return all(ord(char) < 256 for char in text)
    return all(_has_glyph(path, char) for char in text)


@functools.lru_cache(maxsize=256)
def _fc_match(chars: str) -> Optional[str]:
    """The font file fontconfig proposes for ``chars`` (None without ``fc-match`` or on any failure).

    Args:
        chars: the characters to cover, sorted and distinct (the cache key: one process per character set).

    Returns:
        a font file path, or None.
    """
    program = shutil.which("fc-match")
    if program is None or not chars:
        return None
    charset = " ".join("%x" % ord(char) for char in chars)
    try:
        found = subprocess.run([program, "-f", "%{file}", ":charset=" + charset], capture_output=True, text=True,
                               timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return found or None


def find_legend_font(names: Sequence[str], candidates: Sequence[str] = FONT_CANDIDATES,
                     use_fc_match: bool = True) -> Optional[str]:
    """The installed font that can draw the most labels completely (the first such candidate on ties).

    Args:
        names: label names.
        candidates: font files to try, in order.
        use_fc_match: also ask fontconfig (a subprocess, only when some character is in no candidate) for a font
            covering the characters the candidates lack.

    Returns:
        a font file path, or None when no TrueType font loads (PIL's bitmap font is used then).
    """
    paths = [p for p in candidates if os.path.isfile(p) and _truetype(p) is not None]
    missing = sorted({char for name in names for char in name if not any(_has_glyph(p, char) for p in paths)})
    if use_fc_match and missing:
        proposed = _fc_match("".join(missing))
        if proposed and proposed not in paths and os.path.isfile(proposed) and _truetype(proposed) is not None:
            paths.append(proposed)
    best, best_count = None, -1
    for path in paths:
        count = sum(_covers(path, name) for name in names)
        if count > best_count:
            best, best_count = path, count
    return best


def _drawable(name: str, font_path: Optional[str]) -> str:
    """``name`` with every character the font cannot draw replaced by ``?``."""
    if font_path is None:
        return "".join(char if ord(char) < 256 else _UNCOVERED for char in name)
    return "".join(char if _has_glyph(font_path, char) else _UNCOVERED for char in name)


def legend(names: Sequence[str], present: Optional[Sequence[int]] = None, colours: Optional[np.ndarray] = None,
           font_candidates: Sequence[str] = FONT_CANDIDATES, use_fc_match: bool = True) -> Image.Image:
    """A legend: one colour box, index and name per label; labels not in ``present`` are marked "(not found)".

    Args:
        names: label names, in palette order.
        present: indices found in a prediction (None: do not mark any).
        colours: uint8 (len(names), 3); None = ``label_colours(len(names))`` (as :func:`colour_mask`'s default).
        font_candidates, use_fc_match: where to look for a font (see :func:`find_legend_font`).

    Returns:
        RGB image, one row of ``LEGEND_ROW_PX`` per label; never fails on characters no font has (they are drawn
        as ``?``; the index before each name points to the exact name in the legend text file).
    """
    colours = label_colours(len(names)) if colours is None else np.asarray(colours, np.uint8)
    font_path = find_legend_font(names, font_candidates, use_fc_match)
    font = ImageFont.load_default() if font_path is None else _truetype(font_path)
    found = set(range(len(names))) if present is None else set(present)
    texts = ["%d  %s%s" % (i, _drawable(name, font_path), "" if i in found else "  (not found)")
             for i, name in enumerate(names)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # Sized for every label marked, so the legends of one label list all have the same size.
    width = 30 + int(max(measure.textlength("%d  %s  (not found)" % (i, _drawable(name, font_path)), font=font)
                         for i, name in enumerate(names))) + 12
    image = Image.new("RGB", (width, LEGEND_ROW_PX * len(names) + 8), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(texts):
        y = 4 + i * LEGEND_ROW_PX
        draw.rectangle([6, y + 2, 22, y + 18], fill=tuple(int(c) for c in colours[i]), outline=(0, 0, 0))
        draw.text((30, y + 2 if font_path else y + 4), text, fill=(0, 0, 0), font=font)
    return image


def label_shares(prediction: np.ndarray, n_labels: int) -> np.ndarray:
    """Fraction of the pixels of a label map that each label takes.

    Args:
        prediction: int (H, W) indices into ``n_labels`` labels.
        n_labels: number of labels.

    Returns:
        float64 (n_labels,), summing to 1 (all zeros for an empty map).
    """
    prediction = np.asarray(prediction)
    counts = np.bincount(prediction.ravel(), minlength=n_labels)[:n_labels]
    return counts / max(1, int(prediction.size))


def legend_table(names: Sequence[str], colours: np.ndarray, prediction: np.ndarray) -> str:
    """The legend as UTF-8 text for people and programs: ``index<TAB>label<TAB>#rrggbb<TAB>pixel share``.

    Args:
        names: label names.
        colours: uint8 (len(names), 3).
        prediction: int (H, W) indices into ``names``.

    Returns:
        a header line and one line per label, each ending in a newline.
    """
    shares = label_shares(prediction, len(names))
    lines = ["index\tlabel\tcolour\tpixels"]
    for i, name in enumerate(names):
        lines.append("%d\t%s\t%s\t%.4f" % (i, name, hex_colour(colours[i]), shares[i]))
    return "\n".join(lines) + "\n"


def hex_colour(rgb: Sequence[int]) -> str:
    """Args: rgb: three 0..255 values. Returns: ``"#rrggbb"``."""
    return "#%02x%02x%02x" % tuple(int(c) for c in rgb)


@dataclasses.dataclass
class SegmentationPictures:
    """What a segmentation looks like, in memory (:func:`render_segmentation`).

    Attributes:
        mask: the coloured label map (RGB, the image's size).
        overlay: the image and the mask blended 50 %.
        legend: colour box, index and name per label; labels not in the map marked "(not found)".
        index: label indices as pixel values (mode ``L`` up to 256 labels, else 16-bit ``I;16``).
        table: the legend as UTF-8 text (:func:`legend_table`).
        colours: uint8 (N, 3), the colour of each label.
    """

    mask: Image.Image
    overlay: Image.Image
    legend: Image.Image
    index: Image.Image
    table: str
    colours: np.ndarray


def render_segmentation(rgb: np.ndarray, labels: Sequence[str], prediction: np.ndarray,
                        source: str = "image") -> SegmentationPictures:
    """Pictures of a label map over the image it was predicted for.

    Colours come from ``label_colours(len(labels), labels)`` (the ADE20K palette for ADE20K class names).

    Args:
        rgb: uint8 (H, W, 3), the segmented image as displayed.
        labels: label names of the prediction (at most 65536).
        prediction: int (H, W) indices into ``labels``.
        source: the image's name in messages (its path).

    Returns:
        the :class:`SegmentationPictures`.

    Raises:
        ValueError: more labels than a 16-bit index holds, a prediction whose size is not the image's, or indices
            outside the labels.
    """
    if len(labels) > 65536:
        raise ValueError(f"render_segmentation: {len(labels)} labels do not fit a 16-bit index PNG")
    prediction = np.asarray(prediction)
    if rgb.shape[:2] != prediction.shape:
        raise ValueError(f"render_segmentation: prediction of shape {prediction.shape} for {source} of "
                         f"{rgb.shape[1]}x{rgb.shape[0]} pixels (expected (H, W) = {rgb.shape[:2]})")
    if prediction.size and (int(prediction.min()) < 0 or int(prediction.max()) >= len(labels)):
        raise ValueError(f"render_segmentation: prediction values {int(prediction.min())}..{int(prediction.max())} "
                         f"outside 0..{len(labels) - 1} (the {len(labels)} labels)")
    colours = label_colours(len(labels), labels)
    mask = colour_mask(prediction, len(labels), colours)
    return SegmentationPictures(
        mask=mask, overlay=Image.blend(Image.fromarray(rgb), mask, 0.5),
        legend=legend(labels, sorted(set(np.unique(prediction).tolist())), colours),
        index=Image.fromarray(prediction.astype(index_dtype(len(labels)))),
        table=legend_table(labels, colours, prediction), colours=colours)


def save_segmentation(image_path: str, labels: Sequence[str], prediction: np.ndarray, outdir: str,
                      stem: Optional[str] = None) -> List[str]:
    """Write ``<stem>_mask.png``, ``_overlay.png`` (50 % blend), ``_legend.png``, ``_index.png`` and ``_legend.txt``
    (:func:`render_segmentation`'s pictures).

    ``_index.png`` holds the label index of every pixel (label order; 8-bit up to 256 labels, else 16-bit) for
    programs; ``_legend.txt`` the exact UTF-8 names with their colours (see :func:`legend_table`).

    Args:
        image_path: the segmented image (read again for the overlay, in its displayed EXIF orientation).
        labels: label names of the prediction.
        prediction: int (H, W) indices into ``labels``, the image's size.
        outdir: existing output folder.
        stem: output name prefix; None = the image's file name without extension.

    Returns:
        the five paths written, in the order above.

    Raises:
        ValueError: the prediction does not match the image's size or holds indices outside the labels; the
            image cannot be read (naming it).
    """
    stem = os.path.splitext(os.path.basename(image_path))[0] if stem is None else stem
    pictures = render_segmentation(read_rgb(image_path), labels, prediction, source=image_path)
    outputs = [os.path.join(outdir, f"{stem}_{kind}") for kind in
               ("mask.png", "overlay.png", "legend.png", "index.png", "legend.txt")]
    for picture, path in zip((pictures.mask, pictures.overlay, pictures.legend, pictures.index), outputs):
        save_picture(picture, path)
    with atomic_output(outputs[4]) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(pictures.table)
    return outputs


def save_picture(picture: Image.Image, path: str) -> None:
    """Write ``picture`` whole or not at all (``foundation.atomic.atomic_output``; the format follows ``path``'s
    extension)."""
    with atomic_output(path) as temporary:
        picture.save(temporary)


__all__ = ["ADE20K_PALETTE", "label_colours", "spaced_colours", "colour_mask", "find_legend_font", "legend",
           "label_shares", "legend_table", "hex_colour", "SegmentationPictures", "render_segmentation",
           "save_segmentation", "save_picture"]
