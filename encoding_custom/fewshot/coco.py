"""COCO-20i episodes in HSNet's layout and protocol (``fewshot_data/data/coco.py``), and a synthetic set in it.

Layout: ``<root>/COCO2014/{train2014,val2014}/COCO_<subset>_<12 digits>.jpg`` and HSNet's masks
``<root>/COCO2014/annotations/{train2014,val2014}/COCO_<subset>_<12 digits>.png`` (single-channel, 0 background,
``c + 1`` = class ``c`` of the 80 in COCO's order, as in ``label_files/fewshot_coco.txt``). The split lists are
HSNet's ``{class_id: [image path, ...]}`` per split and fold (packaged as ``.npz``, :mod:`.splits`).

Folds are interleaved: fold ``K`` tests classes ``K, K + 4, ..., K + 76`` (0-based) and trains on the 60 others.
HSNet ignores the episode index: every episode draws a class uniformly from the split's classes, then a query
uniformly from that class's list, then (K-shot) support images from the same list until ``shot`` images other than
the query are drawn, each draw ``np.random.choice(items, 1, replace=False)``. With ``np.random.seed(0)``
(``utils.fix_randseed(0)`` in ``test_lseg_zs.py``) and the episodes taken in order, the episodes are the official
ones. The test split has 1000 episodes, the training split one per distinct listed image.

Masks: foreground = ``mask == class_id + 1`` after the nearest resize; COCO has no boundary ignore.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE, FewShotDataset, draw_index, draw_supports
from encoding_custom.fewshot.splits import (
    BENCHMARK_CLASSES,
    COCO_SUBSET,
    NFOLDS,
    FewShotDataError,
    check_benchmark_fold,
    coco_image_name,
    read_coco_classwise,
    resolve_splits_dir,
    write_coco_classwise,
)
from encoding_custom.fewshot.splits import split_name as hsnet_split
from encoding_custom.fewshot.synthetic import synthetic_objects_sample, synthetic_splits_dir

COCO_DIR = "COCO2014"
ANNOTATION_DIR = os.path.join(COCO_DIR, "annotations")
TEST_EPISODES = 1000
NCLASS = BENCHMARK_CLASSES["coco"]


def coco_class_ids(fold: int, split: str) -> List[int]:
    """0-based class ids of a fold: test (``val``/``test``) = ``fold + 4 v`` for v in 0..19, training = the 60 others.

    Args:
        fold: 0..3.
        split: ``trn``/``train`` or ``val``/``test``.

    Returns:
        the class ids in increasing order.
    """
    fold = check_benchmark_fold("coco", fold)
    test_ids = [fold + NFOLDS * v for v in range(NCLASS // NFOLDS)]
    if hsnet_split(split) == "val":
        return test_ids
    return [class_id for class_id in range(NCLASS) if class_id not in test_ids]


class CocoFewShot(FewShotDataset):
    """COCO-20i episodes of one fold (HSNet's ``DatasetCOCO``), numpy in and out.

    ``pairs`` lists ``(image path, class id)`` for every class of the split and every image of its list, class by
    class in list order (HSNet's ``img_metadata_classwise`` flattened); ``img_metadata`` is HSNet's sorted list of
    distinct images (``len`` of the training split).

    Args:
        root: folder holding ``COCO2014/`` (HSNet's ``--datapath``).
        fold: 0..3.
        split: ``test``/``val`` (the fold's 20 classes, 1000 episodes) or ``trn``/``train`` (the 60 others).
        shot, img_size, normalisation: see :func:`.episodes.check_episode_options` (480 px officially).
        splits_dir: folder holding ``coco/{trn,val}/fold<K>.npz``; None = ``<root>/fewshot_splits`` when it has a
            ``coco/`` folder (a synthetic set), else the packaged HSNet lists.
    """

    benchmark = "coco"

    def __init__(self, root: str, fold: int, split: str = "test", shot: int = 0, img_size: int = HSNET_IMAGE_SIZE,
                 normalisation: str = "vit", splits_dir: Optional[str] = None):
        super().__init__(shot, img_size, normalisation)
        if not os.path.isdir(os.path.join(root, COCO_DIR)):
            raise FewShotDataError(f"{root}: no {COCO_DIR}/ folder (expected {COCO_DIR}/train2014, "
                                   f"{COCO_DIR}/val2014 and {ANNOTATION_DIR})")
        splits_dir = resolve_splits_dir(root, self.benchmark, splits_dir)
        self.root, self.fold, self.split = root, check_benchmark_fold(self.benchmark, fold), hsnet_split(split)
        self.class_ids = coco_class_ids(self.fold, self.split)
        self.img_metadata_classwise: Dict[int, List[str]] = read_coco_classwise(self.split, self.fold, splits_dir)
        empty = [class_id for class_id in self.class_ids if not self.img_metadata_classwise[class_id]]
        if empty:
            raise FewShotDataError(f"{splits_dir}: the coco {self.split} list of fold {self.fold} has no image of "
                                   f"class{'es' if len(empty) > 1 else ''} {', '.join(map(str, empty))}")
        self.img_metadata = sorted({name for names in self.img_metadata_classwise.values() for name in names})
        self.pairs = [(name, class_id) for class_id in self.class_ids
                      for name in self.img_metadata_classwise[class_id]]

    def __len__(self) -> int:
        return len(self.img_metadata) if self.split == "trn" else TEST_EPISODES

    def sample_episode(self, idx: int, rng=np.random) -> Tuple[str, List[str], int]:
        """A random episode, as HSNet's ``load_frame`` draws it (``idx`` is ignored, as there).

        Args:
            idx: episode index (unused: the draw order alone makes the official episode list).
            rng: the random source; HSNet's is the global ``np.random`` (the default).

        Returns:
            ``(query path, support paths, class id)``.
        """
        class_id = self.class_ids[draw_index(len(self.class_ids), rng)]
        candidates = self.img_metadata_classwise[class_id]
        query_name = candidates[draw_index(len(candidates), rng)]
        support_names = draw_supports(candidates, query_name, self.shot, rng, f"class {class_id}")
        return query_name, support_names, class_id

    def image_path(self, name: str) -> str:
        """``<root>/COCO2014/<subset>/<file>.jpg`` (``name`` as listed: ``<subset>/<file>.jpg``)."""
        return os.path.join(self.root, COCO_DIR, name)

    def mask_path(self, name: str) -> str:
        """``<root>/COCO2014/annotations/<subset>/<file>.png``."""
        return os.path.join(self.root, ANNOTATION_DIR, os.path.splitext(name)[0] + ".png")

    def foreground(self, mask: np.ndarray, class_id: int) -> np.ndarray:
        """``mask == class_id + 1`` as float32 0/1."""
        return (mask == class_id + 1).astype(np.float32)


def synthetic_coco_sample(seed: int, split: str, index: int, size: Tuple[int, int] = (40, 72),
                          max_objects: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic image and COCO-20i-style mask (values 0, 1..80), always showing class ``index % 80``.

    Args:
        seed: data set seed.
        split: ``trn`` or ``val`` (they draw different images).
        index: image index in the split.
        size: ``(min_side, max_side)`` of the random width and height.
        max_objects: at most this many objects (at least one).

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))``.
    """
    rng = np.random.default_rng([seed, 2 if split == "trn" else 3, index])
    return synthetic_objects_sample(rng, index % NCLASS, NCLASS, size, max_objects, first_on_top=True)


def write_synthetic_coco20i(root: str, n_train: int = 160, n_val: int = 160, seed: int = 0,
                            size: Tuple[int, int] = (40, 72), splits_dir: Optional[str] = None,
                            jpeg_quality: int = 92) -> str:
    """Write a synthetic COCO-20i set in HSNet's layout, with split lists in the packaged format.

    Image ``i`` of a split is ``COCO2014/<subset>/COCO_<subset>_<i + 1, 12 digits>.jpg`` (``trn`` = train2014,
    ``val`` = val2014) with its mask in ``COCO2014/annotations/<subset>/`` (greyscale PNG, class values). The lists
    are HSNet's: for every fold, ``<splits_dir>/coco/<split>/fold<K>.npz`` lists for each of the split's classes
    the images holding it (in image order) and nothing for the other classes.

    Args:
        root: data root (gets ``COCO2014/``).
        n_train: training images (every class occurs once from 80 images, twice from 160).
        n_val: validation images (likewise; K-shot episodes need every test class in two images).
        seed: the same seed gives the same files.
        size: ``(min_side, max_side)`` of the image sizes.
        splits_dir: where the lists go (default ``<root>/fewshot_splits``, where :class:`CocoFewShot` finds them
            with just ``root``).
        jpeg_quality: JPEG quality.

    Returns:
        the splits folder.
    """
    splits_dir = synthetic_splits_dir(root, splits_dir, n_train=n_train, n_val=n_val)
    for split, count in (("trn", n_train), ("val", n_val)):
        subset = COCO_SUBSET[split]
        for folder in (os.path.join(COCO_DIR, subset), os.path.join(ANNOTATION_DIR, subset)):
            os.makedirs(os.path.join(root, folder), exist_ok=True)
        images_of_class: Dict[int, List[str]] = {class_id: [] for class_id in range(NCLASS)}
        for index in range(count):
            name = coco_image_name(subset, index + 1)
            image, mask = synthetic_coco_sample(seed, split, index, size)
            Image.fromarray(image).save(os.path.join(root, COCO_DIR, name), quality=jpeg_quality)
            Image.fromarray(mask).save(os.path.join(root, ANNOTATION_DIR, os.path.splitext(name)[0] + ".png"))
            for value in np.unique(mask):
                if 1 <= value <= NCLASS:
                    images_of_class[int(value) - 1].append(name)
        os.makedirs(os.path.join(splits_dir, "coco", split), exist_ok=True)
        for fold in range(NFOLDS):
            fold_classes = set(coco_class_ids(fold, split))
            classwise = {class_id: (names if class_id in fold_classes else [])
                         for class_id, names in images_of_class.items()}
            write_coco_classwise(classwise, os.path.join(splits_dir, "coco", split, f"fold{fold}.npz"))
    return splits_dir
