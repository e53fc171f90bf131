"""One uploaded picture and one typed label list → a segmentation with its pictures: the web demo's core
(``scripts/demo.py``), free of any UI library so it is tested on its own.

The prediction is the one ``test.py --image`` makes (:func:`encoding_custom.evaluation.evaluator.segment_image`: long
side to ``base_size``, ``crop_size`` windows, labels mapped back to the picture's size), on the picture as displayed
(EXIF orientation applied, 16-bit scaled, :func:`encoding_custom.datasets.transforms.read_rgb`). A picture whose long
side exceeds ``max_side`` is first shrunk to it (bicubic), which bounds what a request costs in memory and in the
pictures sent back; the network sees ``base_size`` either way.
"""
import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from clip_ms.labels import duplicate_label_warnings
from encoding_custom.datasets.transforms import DEFAULT_MEAN, DEFAULT_STD, image_to_array, read_rgb
from encoding_custom.evaluation.evaluator import segment_image
from encoding_custom.visualisation.render import SegmentationPictures, label_shares, render_segmentation
from foundation.labels import parse_labels

DEFAULT_MAX_SIDE = 2048
# Uploads with more pixels are refused before they are decoded (a small, very compressible PNG can hold 13000x13000
# pixels: 0.5 GB as RGB). 40 MP is three 12 MP phone photos.
DEFAULT_MAX_PIXELS = 40_000_000
# 256 labels still fit the 8-bit index PNG; the text tower encodes them in one call.
DEFAULT_MAX_LABELS = 256


class SegmenterInputError(ValueError):
    """A picture or label list the segmenter refuses; the message is one line meant for the person who gave it."""


def typed_labels(text: Optional[str], max_labels: int = DEFAULT_MAX_LABELS,
                 source: str = "labels") -> Tuple[List[str], List[str]]:
    """A typed label list, checked: never read as a file name (a page's visitor must not open the server's files).

    Args:
        text: comma- or newline-separated labels, e.g. ``"cat, grass, sky, other"``.
        max_labels: most labels accepted.
        source: the field's name at the start of each message.

    Returns:
        ``(labels, warnings)``: the labels in order and one message per label that repeats another for CLIP.

    Raises:
        SegmenterInputError: no labels, an empty label (``"a,,b"``), more than ``max_labels``, a label longer than
            CLIP's 77 tokens.
    """
    try:
        labels = parse_labels(text or "", source=source)
        if len(labels) > max_labels:
            raise ValueError(f"{source}: {len(labels)} labels; this demo takes at most {max_labels}")
        warnings = duplicate_label_warnings(labels, source)
    except ValueError as err:
        raise SegmenterInputError(str(err)) from None
    return labels, warnings


def read_bounded_rgb(path: str, max_side: int = DEFAULT_MAX_SIDE, name: Optional[str] = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, Tuple[int, int]]:
    """An image file as displayed, shrunk so that its long side is at most ``max_side``.

    Args:
        path: the image file.
        max_side: longest side kept, in pixels (>= 1).
        name: the file's name in messages (an upload's own name rather than the server's temporary path).
        max_pixels: files with more pixels are refused from their header, before any decoding.

    Returns:
        ``(rgb uint8 (H, W, 3), (width, height) of the file as displayed)``.

    Raises:
        SegmenterInputError: ``"<name>: ..."`` for a file that is not a readable image or has too many pixels.
    """
    shown = name or path
    try:
        with Image.open(path) as header:
            width, height = header.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        width = height = 0  # read_rgb below says what is wrong with it
    if width * height > max_pixels:
        raise SegmenterInputError(f"{shown}: {width}x{height} is {width * height / 1e6:.0f} megapixels; this demo "
                                  f"takes at most {max_pixels / 1e6:.0f}")
    try:
        rgb = read_rgb(path)
    except ValueError as err:
        message = str(err)
        raise SegmenterInputError(message.replace(path, name) if name else message) from None
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest > max_side:
        size = (max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
    return rgb, (width, height)


@dataclasses.dataclass
class Segmentation:
    """One answer of :class:`ImageSegmenter`.

    Attributes:
        labels: the label list used.
        prediction: (H, W) label indices, the size of ``pictures.mask``.
        pictures: mask, overlay, legend, index map and legend text (:class:`SegmentationPictures`).
        shares: float (N,), each label's fraction of the pixels.
        warnings: messages about the labels (repeats) and the picture (shrunk).
        original_size: ``(width, height)`` of the file as displayed, before shrinking.
    """

    labels: List[str]
    prediction: np.ndarray
    pictures: SegmentationPictures
    shares: np.ndarray
    warnings: List[str]
    original_size: Tuple[int, int]


class ImageSegmenter:
    """Segments pictures with typed labels using one loaded network.

    Text features of a label list are computed once and reused while the list is among the network's recent ones
    (:class:`modules.lseg.LabelFeatureCache`).

    Args:
        network: an LSegNet in eval mode (``network.text_features(labels)``, ``network(images, features) ->
            logits``).
        base_size: long side the picture is resized to for the network (``--base_size``).
        crop_size: network input side (``--crop_size``).
        max_side: uploads with a longer side are shrunk to it first.
        max_labels: most labels per request.
        mean, std: the network's input normalisation.
        label_bucket: the network sees a multiple of this many labels
            (:func:`encoding_custom.evaluation.evaluator.network_forward`): 8 in GRAPH_MODE, so label lists of
            1-8 labels share one compiled forward; 1 in PyNative.
    """

    def __init__(self, network, base_size: int = 520, crop_size: int = 480, max_side: int = DEFAULT_MAX_SIDE,
                 max_labels: int = DEFAULT_MAX_LABELS, mean: Sequence[float] = DEFAULT_MEAN,
                 std: Sequence[float] = DEFAULT_STD, label_bucket: int = 1):
        if min(base_size, crop_size, max_side, max_labels, label_bucket) < 1:
            raise ValueError("base_size, crop_size, max_side, max_labels and label_bucket must be >= 1 (got %d, %d, "
                             "%d, %d, %d)" % (base_size, crop_size, max_side, max_labels, label_bucket))
        self.network = network
        self.base_size, self.crop_size = base_size, crop_size
        self.max_side, self.max_labels = max_side, max_labels
        self.mean, self.std = mean, std
        self.label_bucket = label_bucket

    def segment(self, path: Optional[str], labels_text: Optional[str], name: Optional[str] = None) -> Segmentation:
        """Segment the picture in ``path`` with the labels typed in ``labels_text``.

        Args:
            path: the picture file (None: nothing uploaded).
            labels_text: comma- or newline-separated labels.
            name: the picture's name in messages (default: the file's base name).

        Returns:
            the :class:`Segmentation`.

        Raises:
            SegmenterInputError: no picture, a file that is not a readable image, a label list refused by
                :func:`typed_labels`.
        """
        if not path:
            raise SegmenterInputError("no image: upload or drop a picture first")
        labels, warnings = typed_labels(labels_text, self.max_labels)
        name = name or os.path.basename(path)
        rgb, original_size = read_bounded_rgb(path, self.max_side, name)
        if rgb.shape[:2] != original_size[::-1]:
            warnings.append("%s: %dx%d shrunk to %dx%d (long side at most %d)"
                            % (name, original_size[0], original_size[1], rgb.shape[1], rgb.shape[0], self.max_side))
        prediction = segment_image(self.network, image_to_array(Image.fromarray(rgb), self.mean, self.std), labels,
                                   base_size=self.base_size, crop_size=self.crop_size, mean=self.mean, std=self.std,
                                   label_bucket=self.label_bucket)
        pictures = render_segmentation(rgb, labels, prediction, source=name)
        return Segmentation(labels=labels, prediction=prediction, pictures=pictures,
                            shares=label_shares(prediction, len(labels)), warnings=warnings,
                            original_size=original_size)


__all__ = ["DEFAULT_MAX_SIDE", "DEFAULT_MAX_LABELS", "SegmenterInputError", "typed_labels", "read_bounded_rgb",
           "Segmentation", "ImageSegmenter"]
