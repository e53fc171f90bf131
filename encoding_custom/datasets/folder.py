"""Your own data: a plain folder set, read with the same dataset, transforms and data check as ADE20K.

Layout (``--dataset folder --data_path D``)::

    D/labels.txt                          one class name per line, UTF-8; line k (from 0) is mask value k
    D/images/train/<stem>.jpg|.jpeg|.png  training images
    D/annotations/train/<stem>.png        their index masks (single channel); 255 = ignored (--ignore_index)
    D/images/val/...   D/annotations/val/...

With ``--reduce_zero_label`` (MMSegmentation's option of that name) value 0 means unlabelled and line k of
``labels.txt`` is stored as k + 1, as ADE20K stores its classes. Names are free text: they become the network's
labels, so a name ADE20K also has means the same thing to a network trained on ADE20K.

No MindSpore import: the check runs before any framework work.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from encoding_custom.datasets.check import BadSampleError, DataError, check_mask, read_sample_file
from encoding_custom.datasets.layout import SegmentationLayout, list_pairs
from encoding_custom.progress import progress_bar
from foundation.atomic import atomic_output
from foundation.labels import display_columns, padded, read_text_lines

LABELS_FILE = "labels.txt"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_IGNORE_VALUE = 255
SPLITS = ("train", "val")
_LARGEST_MASK_VALUE = 65535  # 16-bit masks are the deepest single-channel PNGs PIL reads as class maps


class FolderSetError(DataError):
    """A folder set's label file or layout is unusable; the message is one line naming the file or option."""


def read_class_names(path: str) -> List[str]:
    """The class names of a ``labels.txt``: one per line, in mask-value order.

    Args:
        path: the file (UTF-8; a byte-order mark is accepted; blank lines at the very end are ignored).

    Returns:
        the names, stripped of surrounding spaces.

    Raises:
        FolderSetError: the file is missing, not UTF-8 text, holds no name, has a blank line before the last name
            (it would shift every later class by one) or names a class twice; the message names the file and line.
    """
    try:
        lines = read_text_lines(path, path, "label file not found (one class name per line; see README.md, 'Your "
                                            "own data')")
    except ValueError as error:
        raise FolderSetError(str(error)) from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise FolderSetError(f"{path}: no class names in it (one name per line: line k is mask value k)")
    seen = {}
    for number, name in enumerate(names, start=1):
        if not name:
            raise FolderSetError(f"{path}: line {number} is blank; every line before the last name is a class "
                                 f"(line k is mask value k - 1), so a blank one would shift the later classes")
        if name in seen:
            raise FolderSetError(f"{path}: line {number} repeats {name!r} of line {seen[name]}; two classes need "
                                 f"two names")
        seen[name] = number
    return names


def check_class_names(names: Sequence[str], ignore_value: int, argument: str) -> None:
    """Raise ValueError (naming ``argument``) unless ``names`` can be the lines of a ``labels.txt`` whose mask
    values ``0..len(names) - 1`` all lie below ``ignore_value`` (1..255, a uint8 mask value)."""
    if not 1 <= ignore_value <= 255:
        raise ValueError(f"ignore_value must be a uint8 mask value 1..255, got {ignore_value}")
    if not names:
        raise ValueError(f"{argument}: no class names")
    if len(names) > ignore_value:
        raise ValueError(f"{argument}: {len(names)} classes do not fit below ignore_value {ignore_value} "
                         f"(class k is mask value k)")
    seen = set()
    for number, name in enumerate(names):
        # A label file is read line by line with surrounding spaces stripped: anything else would not round-trip.
        if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"{argument}: class {number} {name!r} is not a one-line name without surrounding "
                             f"spaces")
        if name in seen:
            raise ValueError(f"{argument}: class {number} repeats the name {name!r}")
        seen.add(name)


def write_class_names(path: str, names: Sequence[str]) -> None:
    """Write ``names`` as a ``labels.txt``: UTF-8, one per line in order, ending in a newline (atomically)."""
    with atomic_output(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("".join(name + "\n" for name in names))


def folder_labels(root: str) -> List[str]:
    """Args: root: the set's folder. Returns: its class names (:func:`read_class_names` of ``root/labels.txt``)."""
    return read_class_names(os.path.join(os.path.expanduser(root), LABELS_FILE))


def folder_layout(root: str, ignore_value: Optional[int] = None, reduce_zero_label: bool = False,
                  labels: Optional[List[str]] = None) -> SegmentationLayout:
    """The layout of the folder set at ``root``.

    Args:
        root: the set's folder (holding ``labels.txt``, ``images/`` and ``annotations/``).
        ignore_value: the mask value of ignored pixels (``--ignore_index``); None: 255.
        reduce_zero_label: mask value 0 is unlabelled and class k is stored as k + 1.
        labels: the names, when already read (default: ``root/labels.txt``).

    Returns:
        a :class:`SegmentationLayout` with one class per name.

    Raises:
        FolderSetError: a bad ``labels.txt`` (see :func:`read_class_names`), or an ignore value that is a class's
            value or no mask value at all (naming ``--ignore_index``).
    """
    root = os.path.abspath(os.path.expanduser(root))
    names = folder_labels(root) if labels is None else labels
    ignore = DEFAULT_IGNORE_VALUE if ignore_value is None else int(ignore_value)
    highest = len(names) if reduce_zero_label else len(names) - 1
    if not highest < ignore <= _LARGEST_MASK_VALUE:
        if 0 <= ignore <= highest:
            what = ("value 0 means unlabelled with --reduce_zero_label" if reduce_zero_label and ignore == 0 else
                    f"the mask value of class {names[ignore - int(reduce_zero_label)]!r} "
                    f"(line {ignore + 1 - int(reduce_zero_label)} of {os.path.join(root, LABELS_FILE)})")
            raise FolderSetError(f"--ignore_index: {ignore} is {what}; choose a value above {highest}")
        raise FolderSetError(f"--ignore_index: a folder set's ignored value is a mask value {highest + 1}.."
                             f"{_LARGEST_MASK_VALUE} (got {ignore})")
    return SegmentationLayout(os.path.basename(root) or root, root,
                              image_dirs=tuple((split, os.path.join("images", split)) for split in SPLITS),
                              mask_dirs=tuple((split, os.path.join("annotations", split)) for split in SPLITS),
                              image_extensions=IMAGE_EXTENSIONS, num_class=len(names),
                              zero_is_unlabelled=reduce_zero_label, ignore_value=ignore, class_source=LABELS_FILE)


@dataclass
class ClassStatistics:
    """How much of each class a folder set holds, per split (``prepare_folder.py check``).

    Attributes:
        names: the class names.
        pixels: split -> int64 (K,) labelled pixels per class.
        images: split -> int64 (K,) images in which each class occurs.
        ignored: split -> pixels ignored (the ignore value, and 0 with ``reduce_zero_label``).
        n_images: split -> masks counted (the pairs whose mask passed the check).
    """
    names: List[str]
    pixels: Dict[str, np.ndarray] = field(default_factory=dict)
    images: Dict[str, np.ndarray] = field(default_factory=dict)
    ignored: Dict[str, int] = field(default_factory=dict)
    n_images: Dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        """Per class and split: the share of labelled pixels and the images; then the classes a split lacks."""
        splits = list(self.pixels)
        width = max(display_columns(name) for name in self.names + ["class"])
        header = padded("class", width) + "".join(f"  {split + ' pixels':>13}  {split + ' images':>13}"
                                                  for split in splits)
        lines = [header]
        shares = {split: self.pixels[split] / max(1, int(self.pixels[split].sum())) for split in splits}
        for k, name in enumerate(self.names):
            lines.append(padded(name, width) + "".join(f"  {100 * shares[split][k]:12.2f}%  {self.images[split][k]:13d}"
                                                      for split in splits))
        for split in splits:
            total = int(self.pixels[split].sum()) + self.ignored[split]
            lines.append(f"{split}: {self.n_images[split]} masks, {100 * self.ignored[split] / max(1, total):.2f}% "
                         f"of the pixels ignored")
            missing = [name for k, name in enumerate(self.names) if self.images[split][k] == 0]
            if missing:
                lines.append(f"{split}: no pixel of {len(missing)} class(es): {', '.join(missing)}")
        return "\n".join(lines)


def class_statistics(layout: SegmentationLayout, names: Sequence[str], splits: Sequence[str] = SPLITS,
                     progress: bool = True) -> ClassStatistics:
    """Count every class's pixels and images over the masks of some splits (masks that fail the check are left
    out: the data check names them).

    Args:
        layout: the set's layout (:func:`folder_layout`); names: its class names.
        splits: the splits counted.
        progress: a tqdm bar on stderr.

    Returns:
        :class:`ClassStatistics`.
    """
    stats = ClassStatistics(list(names))
    for split in splits:
        pixels = np.zeros(layout.num_class + 1, np.int64)  # slot 0: ignored, in the shared encoding
        images = np.zeros(layout.num_class + 1, np.int64)
        pairs = list_pairs(layout, split)[0]
        counted = 0
        with progress_bar(total=len(pairs), desc=f"counting {split}", unit="mask", disable=not progress) as bar:
            for _, mask_path in pairs:
                bar.update(1)
                try:
                    mask = read_sample_file(mask_path, None, "unreadable_mask")
                    check_mask(mask, mask_path, layout)
                except BadSampleError:
                    continue
                counts = np.bincount(np.asarray(layout.encode_mask(mask), np.int64).ravel(),
                                     minlength=layout.num_class + 1)
                pixels += counts
                images += counts > 0
                counted += 1
        stats.pixels[split], stats.images[split] = pixels[1:], images[1:]
        stats.ignored[split], stats.n_images[split] = int(pixels[0]), counted
    return stats
