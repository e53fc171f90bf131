"""Where a segmentation set keeps its files (:class:`SegmentationLayout`), ADE20K's layout and a checker for it.

No MindSpore import: ``prepare_ade20k.py`` uses this before any framework is needed. The plain folder sets are
:mod:`encoding_custom.datasets.folder`.

Layout (relative to the data root, ``../datasets`` by default)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg      (20210 images)
    ADEChallengeData2016/images/validation/ADE_val_00000001.jpg      (2000 images)
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png (one per image, uint8 0..150, 0 = unlabelled)
    ADEChallengeData2016/annotations/validation/ADE_val_00000001.png

A synthetic set written by :mod:`encoding_custom.datasets.synthetic` adds ``ADEChallengeData2016/SYNTHETIC.json`` stating
its own image counts, which then replace the official ones.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

BASE_DIR = "ADEChallengeData2016"
SPLIT_DIRS = {"train": "training", "val": "validation"}
OFFICIAL_COUNTS = {"train": 20210, "val": 2000}
ADE20K_NUM_CLASSES = 150
SYNTHETIC_MARKER = "SYNTHETIC.json"


def dataset_dir(root: str) -> str:
    """``root/ADEChallengeData2016``; ``root`` may also already be that folder.

    Args:
        root: the data root (``--root``) or the ``ADEChallengeData2016`` folder itself.

    Returns:
        path of the ``ADEChallengeData2016`` folder (not checked for existence).
    """
    root = os.path.expanduser(root)
    if os.path.basename(os.path.normpath(root)) == BASE_DIR:
        return root
    return os.path.join(root, BASE_DIR)


@dataclass(frozen=True)
class SegmentationLayout:
    """Where a semantic segmentation set keeps its files, and what its mask values mean.

    Every set is read through one of these: ADE20K (:func:`ade20k_layout`) and the plain folder sets
    (``encoding_custom.datasets.folder.folder_layout``). After loading, every mask is brought to one encoding,
    ADE20K's ("0 = ignored, class k = k + 1", :meth:`encode_mask`), which the transforms and the dataset share.

    Attributes:
        name: the set as printed (``"ADE20K"``, the folder's name).
        folder: the set's folder; messages show paths relative to it.
        image_dirs / mask_dirs: split -> folder, relative to ``folder``.
        image_extensions: the image file endings of the set (lower case, with the dot).
        num_class: number of classes.
        zero_is_unlabelled: mask value 0 = unlabelled and class k is stored as k + 1 (ADE20K; MMSegmentation's
            ``reduce_zero_label``); else class k is stored as k.
        ignore_value: the mask value of ignored pixels besides that, or None.
        class_source: the file that lists the classes, for messages (None: the set's documentation).
    """
    name: str
    folder: str
    image_dirs: Tuple[Tuple[str, str], ...]
    mask_dirs: Tuple[Tuple[str, str], ...]
    image_extensions: Tuple[str, ...]
    num_class: int
    zero_is_unlabelled: bool
    ignore_value: Optional[int]
    class_source: Optional[str] = None

    def folders(self, split: str) -> Tuple[str, str]:
        """Returns: ``(image folder, mask folder)`` of ``split`` (``"train"`` or ``"val"``)."""
        images, masks = dict(self.image_dirs), dict(self.mask_dirs)
        if split not in images:
            raise ValueError(f"unknown {self.name} split {split!r}; expected one of {sorted(images)}")
        return os.path.join(self.folder, images[split]), os.path.join(self.folder, masks[split])

    @property
    def highest_value(self) -> int:
        """The largest mask value that is a class."""
        return self.num_class if self.zero_is_unlabelled else self.num_class - 1

    def value_rule(self) -> str:
        """The allowed mask values, as messages state them."""
        if self.class_source and self.zero_is_unlabelled:
            rule = f"0..{self.num_class} (0 = unlabelled, value k = line k of {self.class_source})"
        elif self.class_source:
            rule = f"0..{self.num_class - 1} (value k = line k + 1 of {self.class_source})"
        else:  # ADE20K's own encoding
            rule = f"0..{self.num_class} (0 = unlabelled, class k = k + 1)"
        return rule if self.ignore_value is None else f"{rule} or {self.ignore_value} (ignored)"

    def outside_values(self, values: np.ndarray) -> np.ndarray:
        """Args: values: mask values (any shape). Returns: bool array, True where a value is not allowed."""
        outside = (values < 0) | (values > self.highest_value)
        return outside & (values != self.ignore_value) if self.ignore_value is not None else outside

    @property
    def cache_key(self) -> str:
        """What a data check's result depends on besides the files."""
        return f"{self.num_class}/{int(self.zero_is_unlabelled)}/{self.ignore_value}"

    def encode_mask(self, mask: Image.Image) -> Image.Image:
        """A checked mask in the shared encoding: 0 = ignored, class k = k + 1 (mode L, or I past 254 classes)."""
        if self.zero_is_unlabelled and self.ignore_value is None:
            return mask
        values = np.asarray(mask).astype(np.int32)
        encoded = values if self.zero_is_unlabelled else values + 1
        if self.ignore_value is not None:
            encoded = np.where(values == self.ignore_value, 0, encoded)
        if self.num_class < 255:
            return Image.fromarray(encoded.astype(np.uint8), mode="L")
        return Image.fromarray(encoded, mode="I")


def ade20k_layout(root: str) -> SegmentationLayout:
    """Args: root: the data root or the ``ADEChallengeData2016`` folder. Returns: ADE20K's layout."""
    return SegmentationLayout(
        "ADE20K", dataset_dir(root), image_dirs=tuple((split, os.path.join("images", sub))
                                                      for split, sub in SPLIT_DIRS.items()),
        mask_dirs=tuple((split, os.path.join("annotations", sub)) for split, sub in SPLIT_DIRS.items()),
        image_extensions=(".jpg",), num_class=ADE20K_NUM_CLASSES, zero_is_unlabelled=True, ignore_value=None)


def as_layout(source: Union[str, SegmentationLayout]) -> SegmentationLayout:
    """A layout itself, or ADE20K's under a data root (the short form every ADE20K caller uses)."""
    return source if isinstance(source, SegmentationLayout) else ade20k_layout(source)


def split_folders(source: Union[str, SegmentationLayout], split: str):
    """Image and annotation folders of one split.

    Args:
        source: a layout, or the ADE20K data root (see :func:`dataset_dir`).
        split: ``"train"`` or ``"val"``.

    Returns:
        ``(image_folder, mask_folder)`` paths.
    """
    return as_layout(source).folders(split)


def expected_counts(root: str) -> Dict[str, int]:
    """Image counts the layout must have: the synthetic set's own, else the official 20210/2000.

    Args:
        root: the data root.

    Returns:
        ``{"train": n, "val": n}``.
    """
    marker = os.path.join(dataset_dir(root), SYNTHETIC_MARKER)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            info = json.load(handle)
        return {"train": int(info["n_train"]), "val": int(info["n_val"])}
    return dict(OFFICIAL_COUNTS)


def _files_by_stem(folder: str, extensions: Sequence[str]) -> Dict[str, str]:
    """``{stem: path}`` of the files in ``folder`` with one of the endings (empty when the folder is missing).

    Hidden files are not samples: macOS leaves ``._name.jpg`` metadata beside copied pictures, and a killed atomic
    writer its ``.name.tmp…`` file.
    """
    if not os.path.isdir(folder):
        return {}
    return {os.path.splitext(name)[0]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(tuple(extensions)) and not name.startswith(".")}


def list_pairs(source: Union[str, SegmentationLayout], split: str):
    """Sorted (image, mask) path pairs of a split; files without their partner are reported, not paired.

    Args:
        source: a layout, or the ADE20K data root.
        split: ``"train"`` or ``"val"``.

    Returns:
        ``(pairs, images_without_mask, masks_without_image)``: a list of ``(image_path, mask_path)`` and two
        sorted lists of the files that lack their partner.

    Raises:
        FileNotFoundError: naming the image folder if it does not exist.
    """
    layout = as_layout(source)
    image_folder, mask_folder = layout.folders(split)
    if not os.path.isdir(image_folder):
        hint = (f"run prepare_ade20k.py, or pass the folder that contains {BASE_DIR}/ as the data root"
                if layout.name == "ADE20K" else "see README.md, 'Your own data', for the layout")
        raise FileNotFoundError(f"{layout.name} image folder not found: {image_folder} ({hint})")
    images = _files_by_stem(image_folder, layout.image_extensions)
    masks = _files_by_stem(mask_folder, (".png",))
    pairs = [(images[stem], masks[stem]) for stem in sorted(images) if stem in masks]
    images_without_mask = [images[stem] for stem in sorted(images) if stem not in masks]
    masks_without_image = [masks[stem] for stem in sorted(masks) if stem not in images]
    return pairs, images_without_mask, masks_without_image


@dataclass
class SplitCount:
    """Complete entries of one split against what the layout asks for.

    Attributes:
        found: complete image/mask pairs (FSS: pairs in the listed categories).
        expected: how many there should be (FSS: ``10 ×`` listed categories, the official count; informative only).
        unit: what is counted, for printing.
    """
    found: int = 0
    expected: int = 0
    unit: str = "image/mask pairs"


@dataclass
class LayoutReport:
    """What a layout check found (:func:`check_layout` for ADE20K, ``fewshot.layout.check_fewshot_layout`` for the
    zero-shot benchmarks).

    Attributes:
        name: the data set as printed (``"ADE20K"``, ``"pascal"``, ...).
        root: the folder checked.
        counts: per split, the complete entries found and expected.
        problems: human-readable problems, naming the first few files (empty when the layout is complete).
        synthetic: whether the set is a synthetic one.
        detail: more of the heading, e.g. the split lists used.
    """
    name: str
    root: str
    counts: Dict[str, SplitCount] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    synthetic: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when every split is complete."""
        return not self.problems

    @property
    def expected(self) -> Dict[str, int]:
        """Entries expected per split."""
        return {split: count.expected for split, count in self.counts.items()}

    def summary(self) -> str:
        """One line per split plus the problems, for printing."""
        heading = f"{'synthetic ' if self.synthetic else ''}{self.name} layout at {self.root}"
        lines = [heading + (f" {self.detail}" if self.detail else "") + ":"]
        for split, count in self.counts.items():
            lines.append(f"  {split}: {count.found} {count.unit} (expected {count.expected})")
        lines += ["  PROBLEM: " + problem for problem in self.problems]
        lines.append("  layout OK" if self.ok else "  layout INCOMPLETE")
        return "\n".join(lines)


def check_layout(root: str, expected: Optional[Dict[str, int]] = None, max_listed: int = 5) -> LayoutReport:
    """Check that ADE20K is complete on disk: every image has its mask and the counts are right.

    Args:
        root: the data root (containing ``ADEChallengeData2016``) or that folder itself.
        expected: pairs expected per split; default :func:`expected_counts` (20210/2000, or the synthetic set's).
        max_listed: how many missing files to name per split in the problems.

    Returns:
        a :class:`LayoutReport`; ``report.ok`` is False with named problems when anything is missing.
    """
    base = dataset_dir(root)
    report = LayoutReport("ADE20K", base, synthetic=os.path.isfile(os.path.join(base, SYNTHETIC_MARKER)))
    if not os.path.isdir(base):
        wanted = dict(OFFICIAL_COUNTS) if expected is None else dict(expected)
        report.counts = {split: SplitCount(0, want) for split, want in wanted.items()}
        report.problems.append(f"{base} does not exist")
        return report
    wanted = expected_counts(root) if expected is None else dict(expected)
    for split, want in wanted.items():
        report.counts[split] = SplitCount(0, want)
        try:
            pairs, images_without_mask, masks_without_image = list_pairs(root, split)
        except FileNotFoundError as error:
            report.problems.append(str(error))
            continue
        report.counts[split].found = len(pairs)
        image_folder, mask_folder = split_folders(root, split)
        if images_without_mask:  # named by the missing file, which is what the user must supply
            named = ", ".join(os.path.join(mask_folder, os.path.splitext(os.path.basename(path))[0] + ".png")
                              for path in images_without_mask[:max_listed])
            report.problems.append(f"{split}: {len(images_without_mask)} image(s) have no mask, e.g. {named}")
        if masks_without_image:
            named = ", ".join(os.path.join(image_folder, os.path.splitext(os.path.basename(path))[0] + ".jpg")
                              for path in masks_without_image[:max_listed])
            report.problems.append(f"{split}: {len(masks_without_image)} mask(s) have no image, e.g. {named}")
        if len(pairs) != want:
            report.problems.append(f"{split}: {len(pairs)} complete image/mask pairs, expected {want}")
    return report
