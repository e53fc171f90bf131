"""The few-shot benchmark registry: each benchmark's labels, classes, data set and synthetic writer.

The benchmark and fold choices the scripts offer (``--dataset`` / ``--fold``), ``BENCHMARKS``,
``FOLDS_PER_BENCHMARK`` and ``benchmark_folds``, and the one fold rule ``check_benchmark_fold`` live in
:mod:`.splits`, below the data sets, so that the data sets and split readers apply the same rule;
:func:`make_fewshot_dataset` builds any benchmark's episodes with one signature and :func:`write_synthetic` writes a
synthetic set of any layout that :func:`make_fewshot_dataset` reads with just its root (the generators put their
split lists in ``<root>/fewshot_splits/<benchmark>/``, which a data set prefers to the packaged lists when present:
:func:`.splits.resolve_splits_dir`).

Splits: ``test`` is the official evaluation everywhere (PASCAL/COCO: the fold's ``val`` lists; FSS-1000: its
``test`` categories); ``trn``/``train`` the training classes; ``val`` means ``test`` for PASCAL/COCO (HSNet's
validation is its test set) and the separate validation categories 520..759 for FSS-1000. FSS-1000 has one fold, 0.
"""
import os
from typing import List, Optional

from encoding_custom.fewshot.coco import CocoFewShot, coco_class_ids, write_synthetic_coco20i
from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE, FewShotDataset
from encoding_custom.fewshot.fss import FssFewShot, fss_class_ids, write_synthetic_fss1000
from encoding_custom.fewshot.pascal import PascalFewShot, pascal_class_ids, write_synthetic_pascal5i
from encoding_custom.fewshot.splits import (
    BENCHMARK_CLASSES,
    PACKAGED_SPLITS_DIR,
    FewShotDataError,
    check_benchmark,
    check_benchmark_fold,
    resolve_splits_dir,
)

LABELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "fewshot_labels")
DATASET_CLASSES = {"pascal": PascalFewShot, "coco": CocoFewShot, "fss": FssFewShot}
SYNTHETIC_WRITERS = {"pascal": write_synthetic_pascal5i, "coco": write_synthetic_coco20i,
                     "fss": write_synthetic_fss1000}


def benchmark_labels(benchmark: str) -> List[str]:
    """The class names of a benchmark, index = class id (lang-seg's ``label_files/fewshot_<benchmark>.txt``).

    Args:
        benchmark: ``pascal``, ``coco`` or ``fss``.

    Returns:
        20, 80 or 1000 names, each line stripped as the official ``get_labels`` does.
    """
    path = os.path.join(LABELS_DIR, f"fewshot_{check_benchmark(benchmark)}.txt")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            labels = [line.strip() for line in handle.readlines()]
    except OSError as error:
        raise FewShotDataError(f"{path}: cannot read the label file ({error.strerror})") from error
    if len(labels) != BENCHMARK_CLASSES[benchmark]:
        raise FewShotDataError(f"{path}: expected {BENCHMARK_CLASSES[benchmark]} labels, found {len(labels)}")
    return labels


def fold_class_ids(benchmark: str, fold: int, split: str, splits_dir: str = PACKAGED_SPLITS_DIR) -> List[int]:
    """The class ids of a fold's split.

    Args:
        benchmark: ``pascal``, ``coco`` or ``fss``.
        fold: a fold of the benchmark (:func:`benchmark_folds`).
        split: ``test``/``val``/``trn``/``train`` (see the module docstring for FSS-1000's ``val``).
        splits_dir: FSS-1000 only: the folder holding the category lists (their lengths give the ids).

    Returns:
        the class ids in increasing order (PASCAL fold 1 test: 5..9; COCO fold 1 test: 1, 5, .., 77; FSS test:
        760..999).
    """
    fold = check_benchmark_fold(benchmark, fold)
    if benchmark == "pascal":
        return pascal_class_ids(fold, split)
    if benchmark == "coco":
        return coco_class_ids(fold, split)
    return fss_class_ids(split, splits_dir)


def make_fewshot_dataset(benchmark: str, root: str, fold: int, split: str = "test", shot: int = 0,
                         img_size: int = HSNET_IMAGE_SIZE, normalisation: str = "vit",
                         splits_dir: Optional[str] = None) -> FewShotDataset:
    """The episodes of a benchmark's fold.

    Args:
        benchmark: ``pascal``, ``coco`` or ``fss``.
        root: the data root (HSNet's ``--datapath``: holds ``VOC2012/``, ``COCO2014/`` or ``FSS-1000/``).
        fold: a fold of the benchmark.
        split: ``test`` (official evaluation), ``trn``/``train`` or ``val``.
        shot: support images per episode (0 = zero-shot).
        img_size: side of the square images and masks.
        normalisation: ``vit`` or ``imagenet`` (ResNet-101 backbone).
        splits_dir: split-list folder; None = ``<root>/fewshot_splits`` when it has the benchmark's lists, else the
            packaged HSNet lists.

    Returns:
        a :class:`PascalFewShot`, :class:`CocoFewShot` or :class:`FssFewShot`.
    """
    fold = check_benchmark_fold(benchmark, fold)
    return DATASET_CLASSES[benchmark](root, fold=fold, split=split, shot=shot, img_size=img_size,
                                      normalisation=normalisation,
                                      splits_dir=resolve_splits_dir(root, benchmark, splits_dir))


def write_synthetic(benchmark: str, root: str, seed: int = 0, **options) -> str:
    """Write a synthetic set in a benchmark's layout that :func:`make_fewshot_dataset` reads with just ``root``.

    Args:
        benchmark: ``pascal`` (:func:`write_synthetic_pascal5i`), ``coco`` (:func:`write_synthetic_coco20i`) or
            ``fss`` (:func:`write_synthetic_fss1000`).
        root: data root.
        seed: the same seed gives the same files.
        **options: the generator's other arguments (sizes, counts); ``splits_dir`` is not accepted, the lists always
            go to ``<root>/fewshot_splits``.

    Returns:
        the splits folder written (``<root>/fewshot_splits``).
    """
    if "splits_dir" in options:
        raise TypeError("write_synthetic: the split lists always go to <root>/fewshot_splits (no splits_dir)")
    return SYNTHETIC_WRITERS[check_benchmark(benchmark)](root, seed=seed, **options)
