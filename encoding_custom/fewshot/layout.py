"""The on-disk layouts of the three few-shot benchmarks (HSNet's ``--datapath``) and a checker for each.

numpy/PIL only, no MindSpore: ``python -m scripts.prepare_fewshot`` runs it before any framework is needed.

Layouts, relative to the data root (``../datasets`` by default, the folder ``test.py --data_path`` names)::

    VOC2012/JPEGImages/<name>.jpg                         PASCAL-5i images (VOC2012 trainval + SBD)
    VOC2012/SegmentationClassAug/<name>.png               their masks (0 background, 1..20, 255 boundaries)
    COCO2014/{train2014,val2014}/COCO_<subset>_<12 digits>.jpg          COCO-20i images
    COCO2014/annotations/{train2014,val2014}/COCO_<subset>_<12 digits>.png   HSNet's class-value masks
    FSS-1000/<category>/<n>.jpg and <n>.png               FSS-1000 (1000 categories, 10 images each)

What must be there comes from the split lists (:mod:`.splits`): every image a PASCAL or COCO ``trn``/``val`` list
of any fold names must exist with its mask; every FSS-1000 category of ``trn``/``val``/``test`` must exist with at
least one image, and every image must have its mask. The lists are the packaged ones, or the ones a synthetic set
brought (``<root>/fewshot_splits/<benchmark>/``), by the data sets' own rule (:func:`.splits.resolve_splits_dir`).
"""
import os
from typing import Dict, Iterable, List, Optional, Set, Tuple

from encoding_custom.datasets.layout import LayoutReport, SplitCount
from encoding_custom.fewshot.coco import ANNOTATION_DIR as COCO_MASK_DIR
from encoding_custom.fewshot.coco import COCO_DIR
from encoding_custom.fewshot.fss import FSS_DIR
from encoding_custom.fewshot.pascal import IMAGE_DIR as PASCAL_IMAGE_DIR
from encoding_custom.fewshot.pascal import MASK_DIR as PASCAL_MASK_DIR
from encoding_custom.fewshot.pascal import VOC_DIR
from encoding_custom.fewshot.splits import (
    BENCHMARKS,
    COCO_SUBSET,
    FSS_SPLIT_FIRST_CLASS,
    NFOLDS,
    PACKAGED_SPLITS_DIR,
    SYNTHETIC_SPLITS_FOLDER,
    FewShotDataError,
    check_benchmark,
    read_coco_classwise,
    read_fss_categories,
    read_pascal_metadata,
    resolve_splits_dir,
)

# The folder of each benchmark under the data root (HSNet's names).
BENCHMARK_DIRS = {"pascal": VOC_DIR, "coco": COCO_DIR, "fss": FSS_DIR}
FSS_IMAGES_PER_CATEGORY = 10


def benchmark_dir(root: str, benchmark: str) -> str:
    """``<root>/VOC2012``, ``<root>/COCO2014`` or ``<root>/FSS-1000`` (not checked for existence)."""
    return os.path.join(os.path.expanduser(root), BENCHMARK_DIRS[check_benchmark(benchmark)])


def own_splits_dir(root: str, benchmark: str) -> Optional[str]:
    """``<root>/fewshot_splits`` when it holds lists of ``benchmark`` (a synthetic set's own), else None."""
    folder = resolve_splits_dir(os.path.expanduser(root), check_benchmark(benchmark))
    return None if folder == PACKAGED_SPLITS_DIR else folder


class _FolderIndex:
    """File names per folder, listed once (a million ``os.path.isfile`` calls would be slower)."""

    def __init__(self):
        self._names: Dict[str, Set[str]] = {}

    def has(self, path: str) -> bool:
        folder, name = os.path.split(path)
        if folder not in self._names:
            self._names[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        return name in self._names[folder]


def _add_problem(report: LayoutReport, split: str, paths: List[str], what: str, max_listed: int):
    """Add ``<split>: <len(paths)> <what>, e.g. <the first max_listed paths>`` to the report if ``paths``."""
    if paths:
        report.problems.append(f"{split}: {len(paths)} {what}, e.g. {', '.join(paths[:max_listed])}")


def _check_pairs(report: LayoutReport, split: str, pairs: Iterable[Tuple[str, str]], max_listed: int):
    """Count listed (image, mask) path pairs present on disk; name the missing ones in the report."""
    index = _FolderIndex()
    count = SplitCount()
    missing_images, missing_masks = [], []
    for image_path, mask_path in pairs:
        count.expected += 1
        has_image, has_mask = index.has(image_path), index.has(mask_path)
        if not has_image:
            missing_images.append(image_path)
        if not has_mask:
            missing_masks.append(mask_path)
        count.found += has_image and has_mask
    report.counts[split] = count
    _add_problem(report, split, missing_images, "listed image(s) missing", max_listed)
    _add_problem(report, split, missing_masks, "listed mask(s) missing", max_listed)


def pascal_pairs(root: str, split: str, splits_dir: str) -> List[Tuple[str, str]]:
    """The (image, mask) paths every fold's PASCAL-5i ``split`` list names, each image once, sorted.

    Args:
        root: the data root.
        split: ``trn`` or ``val``.
        splits_dir: folder holding ``pascal/{trn,val}/fold<K>.txt``.

    Returns:
        ``[(<root>/VOC2012/JPEGImages/<name>.jpg, <root>/VOC2012/SegmentationClassAug/<name>.png), ...]``.
    """
    names = sorted({name for fold in range(NFOLDS) for name, _ in read_pascal_metadata(split, fold, splits_dir)})
    return [(os.path.join(root, PASCAL_IMAGE_DIR, name + ".jpg"), os.path.join(root, PASCAL_MASK_DIR, name + ".png"))
            for name in names]


def coco_pairs(root: str, split: str, splits_dir: str) -> List[Tuple[str, str]]:
    """The (image, mask) paths every fold's COCO-20i ``split`` list names, each image once, sorted.

    Args:
        root: the data root.
        split: ``trn`` (train2014) or ``val`` (val2014).
        splits_dir: folder holding ``coco/{trn,val}/fold<K>.npz``.

    Returns:
        ``[(<root>/COCO2014/<subset>/<file>.jpg, <root>/COCO2014/annotations/<subset>/<file>.png), ...]`` (the
        mask path as HSNet's ``read_mask`` forms it).
    """
    names = set()
    for fold in range(NFOLDS):
        for class_names in read_coco_classwise(split, fold, splits_dir).values():
            names.update(class_names)
    base = os.path.join(root, COCO_DIR)
    return [(os.path.join(base, name), os.path.join(root, COCO_MASK_DIR, name[:name.index(".jpg")] + ".png"))
            for name in sorted(names)]


def _check_fss(report: LayoutReport, root: str, splits_dir: str, max_listed: int):
    """FSS-1000: every listed category folder with images, every ``<n>.jpg`` with its ``<n>.png``."""
    base = benchmark_dir(root, "fss")
    for split in FSS_SPLIT_FIRST_CLASS:
        categories = read_fss_categories(split, splits_dir)
        count = SplitCount(expected=FSS_IMAGES_PER_CATEGORY * len(categories))
        missing, empty, without_mask = [], [], []
        for category in categories:
            folder = os.path.join(base, category)
            if not os.path.isdir(folder):
                missing.append(folder)
                continue
            files = set(os.listdir(folder))
            # HSNet's build_img_metadata: a file is an image when the text after its first dot is "jpg".
            stems = sorted(name.split(".")[0] for name in files if name.split(".")[1:2] == ["jpg"])
            if not stems:
                empty.append(folder)
            for stem in stems:
                if stem + ".png" in files:
                    count.found += 1
                else:
                    without_mask.append(os.path.join(folder, stem + ".png"))
        report.counts[split] = count
        _add_problem(report, split, missing, f"of {len(categories)} listed categories missing", max_listed)
        _add_problem(report, split, empty, "categories have no .jpg image", max_listed)
        _add_problem(report, split, without_mask, "image(s) have no mask", max_listed)


def check_fewshot_layout(root: str, benchmark: str, splits_dir: Optional[str] = None,
                         max_listed: int = 5) -> LayoutReport:
    """Check that a few-shot benchmark is complete on disk for its split lists.

    Args:
        root: the data root (holding ``VOC2012/``, ``COCO2014/`` or ``FSS-1000/``; HSNet's ``--datapath``).
        benchmark: ``pascal``, ``coco`` or ``fss``.
        splits_dir: split lists to check against (default: the root's own lists, else the packaged ones).
        max_listed: how many missing files to name per problem.

    Returns:
        a :class:`LayoutReport`; ``report.ok`` is False with named problems when anything is missing.

    Raises:
        FewShotDataError: a split file is missing or malformed (names it).
    """
    root = os.path.abspath(os.path.expanduser(root))
    check_benchmark(benchmark)
    synthetic = splits_dir is None and own_splits_dir(root, benchmark) is not None
    splits_dir = resolve_splits_dir(root, benchmark, splits_dir)
    report = LayoutReport(benchmark, benchmark_dir(root, benchmark), synthetic=synthetic,
                          detail=f"(split lists: {splits_dir})")
    base = benchmark_dir(root, benchmark)
    if not os.path.isdir(base):
        report.problems.append(f"{base} does not exist")
    if benchmark == "fss":
        _check_fss(report, root, splits_dir, max_listed)
    else:
        pairs = pascal_pairs if benchmark == "pascal" else coco_pairs
        for split in COCO_SUBSET:
            _check_pairs(report, split, pairs(root, split, splits_dir), max_listed)
    if not os.path.isdir(base):
        report.problems = report.problems[:1]  # one line is enough when nothing is there
    return report


__all__ = ["BENCHMARKS", "BENCHMARK_DIRS", "FSS_DIR", "FewShotDataError",
           "SYNTHETIC_SPLITS_FOLDER", "benchmark_dir", "check_benchmark", "check_fewshot_layout",
           "coco_pairs", "own_splits_dir", "pascal_pairs"]
