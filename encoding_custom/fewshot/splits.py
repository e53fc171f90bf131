"""HSNet's few-shot split files (PASCAL-5i, COCO-20i, FSS-1000) as packaged in ``encoding_custom/data/fewshot_splits``.

The files are lang-seg's ``fewshot_data/data/splits/`` (see ``SOURCE.md`` there). PASCAL and FSS lists are the
original text files, byte for byte. COCO's were pickles of ``{class_id: [image path, ...]}`` (19 MB for the eight
folds); they are kept as ``coco/{trn,val}/fold<K>.npz`` (image numbers and per-class offsets, 1.6 MB) and
:func:`read_coco_classwise` rebuilds the same dictionary: re-pickled with protocol 3 it is byte-identical to the
original file, whose sha256 is listed in ``coco/ORIGINAL_SHA256``. ``python -m encoding_custom.fewshot.splits
--pack-coco DIR`` redoes the conversion from a folder holding the original ``{trn,val}/fold<K>.pkl``.

A ``splits_dir`` argument everywhere points at a folder with this layout (``pascal/``, ``fss/``, ``coco/``), so a
synthetic data set can bring its own lists. The one rule when it is not given (:func:`resolve_splits_dir`): a data
root holding ``fewshot_splits/<benchmark>/`` uses those lists (the synthetic generators write them there), any other
root the packaged HSNet lists.

The benchmarks and their folds are here too (:data:`BENCHMARKS`, :data:`FOLDS_PER_BENCHMARK`), with the one fold
rule :func:`check_benchmark_fold` that the readers, the data sets and the registry all apply.
"""
import argparse
import os
import pickle
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from encoding_custom.datasets.check import DataError

PACKAGED_SPLITS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                                   "fewshot_splits")
# Folder of a data root with the root's own split lists (synthetic sets); see resolve_splits_dir.
SYNTHETIC_SPLITS_FOLDER = "fewshot_splits"
NFOLDS = 4
BENCHMARKS = ("pascal", "coco", "fss")
# Number of classes of each benchmark (HSNet's AverageMeter.nclass).
BENCHMARK_CLASSES = {"pascal": 20, "coco": 80, "fss": 1000}
# Folds of each benchmark: FSS-1000 has none in HSNet (it takes a fold and ignores it); here its one fold is 0.
FOLDS_PER_BENCHMARK = {"pascal": NFOLDS, "coco": NFOLDS, "fss": 1}
# FSS-1000's split files and the first class id of each (HSNet's DatasetFSS: trn 0-519, val 520-759, test 760-999).
FSS_SPLIT_FIRST_CLASS = {"trn": 0, "val": 520, "test": 760}
COCO_SUBSET = {"trn": "train2014", "val": "val2014"}
_COCO_NAME = re.compile(r"^(train2014|val2014)/COCO_\1_(\d{12})\.jpg$")


class FewShotDataError(DataError):
    """A missing or malformed few-shot split file or data folder; the message names it."""


def split_name(split: str) -> str:
    """HSNet's split-file folder for a data set split.

    Args:
        split: ``"trn"``/``"train"`` or ``"val"``/``"test"`` (HSNet evaluates on the ``val`` lists).

    Returns:
        ``"trn"`` or ``"val"``.
    """
    if split in ("trn", "train"):
        return "trn"
    if split in ("val", "test"):
        return "val"
    raise ValueError(f"split: expected trn/train or val/test, got {split!r}")


def check_benchmark(benchmark: str) -> str:
    """``benchmark`` if it is one of :data:`BENCHMARKS`, else :class:`FewShotDataError` naming it."""
    if benchmark not in BENCHMARKS:
        raise FewShotDataError(f"benchmark: expected one of {', '.join(BENCHMARKS)}, got {benchmark!r}")
    return benchmark


def benchmark_folds(benchmark: str) -> List[int]:
    """The folds of a benchmark: ``[0, 1, 2, 3]`` for PASCAL-5i and COCO-20i, ``[0]`` for FSS-1000."""
    return list(range(FOLDS_PER_BENCHMARK[check_benchmark(benchmark)]))


def check_benchmark_fold(benchmark: str, fold: int) -> int:
    """The one fold rule of every benchmark (data sets, split readers, registry).

    Args:
        benchmark: ``pascal``, ``coco`` or ``fss``.
        fold: the fold asked for (an int or numpy integer, not a bool).

    Returns:
        ``fold`` as an int if the benchmark has it (:data:`FOLDS_PER_BENCHMARK`), else :class:`FewShotDataError`
        naming the benchmark and its folds.
    """
    folds = benchmark_folds(benchmark)
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)):
        raise FewShotDataError(f"fold: expected an integer, got {fold!r}")
    if int(fold) not in folds:
        raise FewShotDataError(f"fold: {benchmark} has fold{'s' if len(folds) > 1 else ''} "
                               f"{', '.join(map(str, folds))}, got {fold!r}")
    return int(fold)


def resolve_splits_dir(root: str, benchmark: str, splits_dir: Optional[str] = None) -> str:
    """The split-list folder a data set reads.

    Args:
        root: the data root.
        benchmark: ``pascal``, ``coco`` or ``fss`` (the sub-folder looked for).
        splits_dir: an explicit folder, returned as it is.

    Returns:
        ``splits_dir`` if given, else ``<root>/fewshot_splits`` when it holds ``<benchmark>/``, else
        :data:`PACKAGED_SPLITS_DIR`.
    """
    if splits_dir is not None:
        return splits_dir
    local = os.path.join(root, SYNTHETIC_SPLITS_FOLDER)
    return local if os.path.isdir(os.path.join(local, benchmark)) else PACKAGED_SPLITS_DIR


def _split_file(splits_dir: str, *parts: str) -> str:
    path = os.path.join(splits_dir, *parts)
    if not os.path.isfile(path):
        raise FewShotDataError(f"{path}: split file not found (splits_dir={splits_dir})")
    return path


def read_lines(path: str) -> List[str]:
    """Lines of a split file as HSNet reads them (``open(path).read().split('\\n')[:-1]``, universal newlines).

    Args:
        path: text file.

    Returns:
        the lines without their end of line; the text after the last newline is dropped, as HSNet does.
    """
    with open(path, "r", encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


def read_pascal_metadata(split: str, fold: int, splits_dir: str = PACKAGED_SPLITS_DIR) -> List[Tuple[str, int]]:
    """One fold's PASCAL-5i list: ``name__CC`` lines, ``CC`` the 1-based VOC class.

    Args:
        split: ``trn`` or ``val`` (``train``/``test`` accepted).
        fold: 0..3.
        splits_dir: folder holding ``pascal/{trn,val}/fold<K>.txt``.

    Returns:
        ``[(image name, 0-based class id), ...]`` in file order.
    """
    path = _split_file(splits_dir, "pascal", split_name(split), f"fold{check_benchmark_fold('pascal', fold)}.txt")
    metadata = []
    for number, line in enumerate(read_lines(path), 1):
        name, sep, class_text = line.partition("__")
        if not sep or not name or not class_text.isdigit() or not 1 <= int(class_text) <= BENCHMARK_CLASSES["pascal"]:
            raise FewShotDataError(f"{path}:{number}: expected '<image>__<class 01..20>', got {line!r}")
        metadata.append((name, int(class_text) - 1))
    return metadata


def read_fss_categories(split: str, splits_dir: str = PACKAGED_SPLITS_DIR) -> List[str]:
    """FSS-1000 category folder names of a split, sorted as HSNet sorts them (its class order).

    Args:
        split: ``trn``, ``val`` or ``test``.
        splits_dir: folder holding ``fss/{trn,val,test}.txt``.

    Returns:
        sorted category names; category ``i`` has class id ``FSS_SPLIT_FIRST_CLASS[split] + i``.
    """
    if split not in FSS_SPLIT_FIRST_CLASS:
        raise ValueError(f"split: expected one of {sorted(FSS_SPLIT_FIRST_CLASS)} for FSS-1000, got {split!r}")
    return sorted(read_lines(_split_file(splits_dir, "fss", f"{split}.txt")))


def coco_image_name(subset: str, image_id: int) -> str:
    """``train2014/COCO_train2014_000000000009.jpg``-style path of a COCO 2014 image under ``COCO2014/``."""
    return f"{subset}/COCO_{subset}_{int(image_id):012d}.jpg"


def read_coco_classwise(split: str, fold: int, splits_dir: str = PACKAGED_SPLITS_DIR) -> Dict[int, List[str]]:
    """One fold's COCO-20i ``{class_id: [image path, ...]}``, as HSNet's pickle holds it.

    Args:
        split: ``trn`` or ``val`` (``train``/``test`` accepted).
        fold: 0..3.
        splits_dir: folder holding ``coco/{trn,val}/fold<K>.npz``.

    Returns:
        a dict with keys 0..79 in order, each a list of paths in the original order (empty for classes the split
        does not use). Equal paths are one string object, as in the original pickle.
    """
    split = split_name(split)
    path = _split_file(splits_dir, "coco", split, f"fold{check_benchmark_fold('coco', fold)}.npz")
    try:
        with np.load(path, allow_pickle=False) as packed:
            subset = str(packed["subset"])
            image_ids = packed["image_ids"]
            offsets = packed["class_offsets"]
    except (OSError, KeyError, ValueError) as error:
        raise FewShotDataError(f"{path}: not a packed COCO split file ({error})") from error
    nclass = BENCHMARK_CLASSES["coco"]
    if (subset not in COCO_SUBSET.values() or offsets.shape != (nclass + 1,) or offsets[0] != 0
            or offsets[-1] != len(image_ids) or np.any(np.diff(offsets) < 0)):
        raise FewShotDataError(f"{path}: inconsistent packed COCO split (subset {subset!r}, "
                               f"{offsets.shape[0]} offsets, {len(image_ids)} images)")
    unique_ids, inverse = np.unique(image_ids, return_inverse=True)
    names = [coco_image_name(subset, image_id) for image_id in unique_ids.tolist()]
    inverse = inverse.reshape(-1).tolist()
    return {class_id: [names[i] for i in inverse[offsets[class_id]:offsets[class_id + 1]]]
            for class_id in range(nclass)}


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for the split pickles: plain dicts, lists, ints and strings only, never a class or function."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"split pickles hold no objects, refusing {module}.{name}")


def write_coco_classwise(classwise: Dict[int, Sequence[str]], npz_path: str,
                         source: str = "classwise") -> Dict[str, int]:
    """Write a COCO-20i ``{class_id: [image path, ...]}`` in the packed form :func:`read_coco_classwise` reads.

    Args:
        classwise: keys 0..79 in order, each a list of ``<subset>/COCO_<subset>_<12 digits>.jpg`` paths of one subset.
        npz_path: output file (``.npz``).
        source: what ``classwise`` came from, for error messages.

    Returns:
        ``{"classes": 80, "entries": total list entries, "images": distinct images}``.
    """
    nclass = BENCHMARK_CLASSES["coco"]
    if not isinstance(classwise, dict) or list(classwise) != list(range(nclass)):
        raise FewShotDataError(f"{source}: expected a dict with keys 0..{nclass - 1}")
    subsets, image_ids, offsets = set(), [], [0]
    for class_id in range(nclass):
        for name in classwise[class_id]:
            match = _COCO_NAME.match(name) if isinstance(name, str) else None
            if match is None:
                raise FewShotDataError(f"{source}: class {class_id}: unexpected image path {name!r}")
            subsets.add(match.group(1))
            image_ids.append(int(match.group(2)))
        offsets.append(len(image_ids))
    if len(subsets) > 1:
        raise FewShotDataError(f"{source}: mixes COCO subsets {sorted(subsets)}")
    subset = subsets.pop() if subsets else COCO_SUBSET["val"]
    np.savez_compressed(npz_path, subset=np.array(subset), image_ids=np.asarray(image_ids, np.uint32),
                        class_offsets=np.asarray(offsets, np.int64))
    return {"classes": nclass, "entries": len(image_ids), "images": len(set(image_ids))}


def pack_coco_classwise(pickle_path: str, npz_path: str) -> Dict[str, int]:
    """Convert one of HSNet's COCO split pickles into the packed ``.npz`` :func:`read_coco_classwise` reads.

    Args:
        pickle_path: ``{trn,val}/fold<K>.pkl`` of HSNet / lang-seg.
        npz_path: output file (``.npz``).

    Returns:
        ``{"classes": 80, "entries": total list entries, "images": distinct images}``.
    """
    with open(pickle_path, "rb") as handle:
        classwise = _NoGlobalsUnpickler(handle).load()
    return write_coco_classwise(classwise, npz_path, source=pickle_path)


def pack_coco_folder(source_dir: str, splits_dir: str = PACKAGED_SPLITS_DIR,
                     splits: Sequence[str] = ("trn", "val")) -> None:
    """Pack every ``<source_dir>/{trn,val}/fold<K>.pkl`` into ``<splits_dir>/coco/{trn,val}/fold<K>.npz``."""
    for split in splits:
        os.makedirs(os.path.join(splits_dir, "coco", split), exist_ok=True)
        for fold in range(NFOLDS):
            source = _split_file(source_dir, split, f"fold{fold}.pkl")
            stats = pack_coco_classwise(source, os.path.join(splits_dir, "coco", split, f"fold{fold}.npz"))
            print(f"{source}: {stats['entries']} entries, {stats['images']} images")


def main(argv=None) -> None:
    """``python -m encoding_custom.fewshot.splits --pack-coco DIR [--splits_dir OUT]``."""
    parser = argparse.ArgumentParser(prog="python -m encoding_custom.fewshot.splits",
                                     description="Pack HSNet's COCO-20i split pickles into the packaged .npz form.")
    parser.add_argument("--pack-coco", required=True, metavar="DIR",
                        help="folder holding HSNet's coco/{trn,val}/fold<K>.pkl")
    parser.add_argument("--splits_dir", default=PACKAGED_SPLITS_DIR, help="output splits folder (holds coco/)")
    args = parser.parse_args(argv)
    try:
        pack_coco_folder(args.pack_coco, args.splits_dir)
    except (FewShotDataError, pickle.UnpicklingError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
