"""The on-disk layout of ADE20K (SceneParsing / ADEChallengeData2016) and a checker for it.

No MindSpore import: ``prepare_ade20k.py`` uses this before any framework is needed.

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
from typing import Dict, List, Optional

BASE_DIR = "ADEChallengeData2016"
SPLIT_DIRS = {"train": "training", "val": "validation"}
OFFICIAL_COUNTS = {"train": 20210, "val": 2000}
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


def split_folders(root: str, split: str):
    """Image and annotation folders of one split.

    Args:
        root: the data root (see :func:`dataset_dir`).
        split: ``"train"`` or ``"val"``.

    Returns:
        ``(image_folder, mask_folder)`` paths.
    """
    if split not in SPLIT_DIRS:
        raise ValueError(f"unknown ADE20K split {split!r}; expected one of {sorted(SPLIT_DIRS)}")
    base = dataset_dir(root)
    sub = SPLIT_DIRS[split]
    return os.path.join(base, "images", sub), os.path.join(base, "annotations", sub)


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


def list_pairs(root: str, split: str):
    """Sorted (image, mask) path pairs of a split; images without a mask are reported, not paired.

    Args:
        root: the data root.
        split: ``"train"`` or ``"val"``.

    Returns:
        ``(pairs, images_without_mask, masks_without_image)``: a list of ``(jpg_path, png_path)`` and two
        sorted lists of paths.

    Raises:
        FileNotFoundError: naming the image folder if it does not exist.
    """
    image_folder, mask_folder = split_folders(root, split)
    if not os.path.isdir(image_folder):
        raise FileNotFoundError(
            f"ADE20K image folder not found: {image_folder} (run prepare_ade20k.py, or pass the folder that "
            f"contains {BASE_DIR}/ as the data root)")
    image_stems = sorted(os.path.splitext(name)[0] for name in os.listdir(image_folder)
                         if name.lower().endswith(".jpg"))
    mask_stems = set()
    if os.path.isdir(mask_folder):
        mask_stems = {os.path.splitext(name)[0] for name in os.listdir(mask_folder)
                      if name.lower().endswith(".png")}
    pairs, images_without_mask = [], []
    for stem in image_stems:
        image_path = os.path.join(image_folder, stem + ".jpg")
        if stem in mask_stems:
            pairs.append((image_path, os.path.join(mask_folder, stem + ".png")))
        else:
            images_without_mask.append(os.path.join(mask_folder, stem + ".png"))
    masks_without_image = sorted(os.path.join(image_folder, stem + ".jpg")
                                 for stem in mask_stems.difference(image_stems))
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
        if images_without_mask:
            named = ", ".join(images_without_mask[:max_listed])
            report.problems.append(f"{split}: {len(images_without_mask)} image(s) have no mask, e.g. {named}")
        if masks_without_image:
            named = ", ".join(masks_without_image[:max_listed])
            report.problems.append(f"{split}: {len(masks_without_image)} mask(s) have no image, e.g. {named}")
        if len(pairs) != want:
            report.problems.append(f"{split}: {len(pairs)} complete image/mask pairs, expected {want}")
    return report
