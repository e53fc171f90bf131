"""PASCAL-5i episodes in HSNet's layout and protocol (``fewshot_data/data/pascal.py``), and a synthetic set in it.

Layout: ``<root>/VOC2012/JPEGImages/<name>.jpg`` and ``<root>/VOC2012/SegmentationClassAug/<name>.png`` (VOC values:
0 background, 1..20 the classes, 255 object boundaries). Fold ``K`` tests classes ``5K..5K+4`` (0-based) and trains
on the 15 others. The test split lists the ``val/fold<K>.txt`` pairs and has 1000 episodes (``idx % len(list)``);
training lists the ``trn`` pairs of the three other folds. A 0-shot episode is ``(query, class)`` as listed; a
K-shot one draws each support image with ``np.random.choice(images of the class, 1, replace=False)`` until ``shot``
images other than the query are drawn, exactly as HSNet: with ``np.random.seed(0)`` (``utils.fix_randseed(0)`` in
``test_lseg_zs.py``) and the episodes taken in order, the episodes are the official ones.

Masks: boundary = ``floor(mask / 255)``, foreground = ``mask == class_id + 1`` (everything else 0), both after the
nearest resize to the image size; images are resized to 480 × 480 (see :mod:`.episodes`).
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE, FewShotDataset, draw_supports
from encoding_custom.fewshot.splits import (
    BENCHMARK_CLASSES,
    NFOLDS,
    FewShotDataError,
    check_benchmark_fold,
    read_pascal_metadata,
    resolve_splits_dir,
)
from encoding_custom.fewshot.splits import split_name as hsnet_split
from encoding_custom.fewshot.synthetic import synthetic_objects_sample, synthetic_splits_dir

VOC_DIR = "VOC2012"
IMAGE_DIR = os.path.join(VOC_DIR, "JPEGImages")
MASK_DIR = os.path.join(VOC_DIR, "SegmentationClassAug")
TEST_EPISODES = 1000
BOUNDARY_VALUE = 255
NCLASS = BENCHMARK_CLASSES["pascal"]
CLASSES_PER_FOLD = NCLASS // NFOLDS
PASCAL_CLASS_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                      "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
                      "tvmonitor")


def pascal_class_ids(fold: int, split: str) -> List[int]:
    """0-based class ids of a fold: test (``val``/``test``) = ``5 fold .. 5 fold + 4``, training = the other 15."""
    fold = check_benchmark_fold("pascal", fold)
    test_ids = [fold * CLASSES_PER_FOLD + i for i in range(CLASSES_PER_FOLD)]
    if hsnet_split(split) == "val":
        return test_ids
    return [class_id for class_id in range(NCLASS) if class_id not in test_ids]


def extract_ignore_idx(mask: np.ndarray, class_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """HSNet's ``extract_ignore_idx``: an episode's binary mask and boundary mask from a VOC mask.

    Args:
        mask: (H, W) VOC values (0..20, 255).
        class_id: 0-based class of the episode.

    Returns:
        ``(foreground float32 (H, W) 0/1, boundary float32 (H, W) = floor(mask / 255))``.
    """
    mask = np.asarray(mask, dtype=np.float32)
    boundary = np.floor(mask / BOUNDARY_VALUE)
    return (mask == class_id + 1).astype(np.float32), boundary


class PascalFewShot(FewShotDataset):
    """PASCAL-5i episodes of one fold (HSNet's ``DatasetPASCAL``), numpy in and out.

    ``pairs`` is HSNet's ``img_metadata`` (``(name, class id)`` per listed line, in order); ``class_ids`` the fold's
    test (``val``) or training classes.

    Args:
        root: folder holding ``VOC2012/`` (HSNet's ``--datapath``).
        fold: 0..3.
        split: ``test``/``val`` (the fold's 5 classes, 1000 episodes) or ``trn``/``train`` (the 15 others).
        shot, img_size, normalisation: see :func:`.episodes.check_episode_options` (480 px officially).
        splits_dir: folder holding ``pascal/{trn,val}/fold<K>.txt``; None = ``<root>/fewshot_splits`` when it has
            a ``pascal/`` folder (a synthetic set), else the packaged HSNet lists (:func:`.splits.resolve_splits_dir`).
    """

    benchmark = "pascal"

    def __init__(self, root: str, fold: int, split: str = "test", shot: int = 0, img_size: int = HSNET_IMAGE_SIZE,
                 normalisation: str = "vit", splits_dir: Optional[str] = None):
        super().__init__(shot, img_size, normalisation)
        if not os.path.isdir(os.path.join(root, VOC_DIR)):
            raise FewShotDataError(f"{root}: no {VOC_DIR}/ folder (expected {IMAGE_DIR} and {MASK_DIR})")
        splits_dir = resolve_splits_dir(root, self.benchmark, splits_dir)
        self.root, self.fold, self.split = root, check_benchmark_fold(self.benchmark, fold), hsnet_split(split)
        self.class_ids = pascal_class_ids(self.fold, self.split)
        folds = [self.fold] if self.split == "val" else [k for k in range(NFOLDS) if k != self.fold]
        self.img_metadata: List[Tuple[str, int]] = []
        for fold_id in folds:
            self.img_metadata += read_pascal_metadata(self.split, fold_id, splits_dir)
        if not self.img_metadata:
            raise FewShotDataError(f"{splits_dir}: the pascal {self.split} lists of fold {self.fold} are empty")
        self.pairs = self.img_metadata
        self.img_metadata_classwise: Dict[int, List[str]] = {class_id: [] for class_id in range(NCLASS)}
        for name, class_id in self.img_metadata:
            self.img_metadata_classwise[class_id].append(name)

    def __len__(self) -> int:
        return len(self.img_metadata) if self.split == "trn" else TEST_EPISODES

    def sample_episode(self, idx: int, rng=np.random) -> Tuple[str, List[str], int]:
        """The names of episode ``idx``: ``(query name, support names, class id)``.

        Args:
            idx: episode index (taken modulo the list length, as HSNet does for its 1000 test episodes).
            rng: the random source of the support draws; HSNet's is the global ``np.random`` (the default).

        Returns:
            the query name, ``shot`` support names (drawn with replacement across draws, never the query) and the
            0-based class id.
        """
        query_name, class_id = self.img_metadata[idx % len(self.img_metadata)]
        support_names = draw_supports(self.img_metadata_classwise[class_id], query_name, self.shot, rng,
                                      f"class {class_id}")
        return query_name, support_names, class_id

    def image_path(self, name: str) -> str:
        """``<root>/VOC2012/JPEGImages/<name>.jpg``."""
        return os.path.join(self.root, IMAGE_DIR, name + ".jpg")

    def mask_path(self, name: str) -> str:
        """``<root>/VOC2012/SegmentationClassAug/<name>.png``."""
        return os.path.join(self.root, MASK_DIR, name + ".png")

    def foreground(self, mask: np.ndarray, class_id: int) -> np.ndarray:
        """``mask == class_id + 1`` as float32 0/1."""
        return extract_ignore_idx(mask, class_id)[0]

    def ignore_mask(self, mask: np.ndarray) -> np.ndarray:
        """The boundary mask ``floor(mask / 255)``, float32."""
        return extract_ignore_idx(mask, 0)[1]


def voc_palette() -> List[int]:
    """The PASCAL VOC colour map (256 RGB entries, flattened) of its palette PNG masks."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette += [red, green, blue]
    return palette


def synthetic_pascal_sample(seed: int, split: str, index: int, size: Tuple[int, int] = (64, 112),
                            max_objects: int = 3, boundary_width: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic image and VOC-style mask: textured objects with 255 boundary rings on a background.

    Args:
        seed: data set seed.
        split: ``trn`` or ``val`` (they draw different images).
        index: image index in the split; the first object's class is ``index % 20`` so that every class occurs.
        size: ``(min_side, max_side)`` of the random width and height.
        max_objects: at most this many objects (at least one).
        boundary_width: width in pixels of the 255 ring around each object.

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))``, mask values in ``{0, 1..20, 255}``.
    """
    rng = np.random.default_rng([seed, 0 if split == "trn" else 1, index])
    return synthetic_objects_sample(rng, index % NCLASS, NCLASS, size, max_objects, BOUNDARY_VALUE, boundary_width)


def write_synthetic_pascal5i(root: str, n_train: int = 60, n_val: int = 40, seed: int = 0,
                             size: Tuple[int, int] = (64, 112), splits_dir: Optional[str] = None,
                             jpeg_quality: int = 92) -> str:
    """Write a synthetic PASCAL-5i set in HSNet's layout, with split files in the official format.

    Images ``syn_trn_%06d`` and ``syn_val_%06d`` go to ``<root>/VOC2012/JPEGImages/*.jpg``, masks to
    ``SegmentationClassAug/*.png`` (even indices as VOC palette PNGs, odd ones as greyscale: both read as class
    values). Each (image, class present) pair is listed as ``<name>__%02d`` (1-based class) in
    ``<splits_dir>/pascal/<trn|val>/fold<class // 5>.txt``, sorted, LF line ends, as HSNet's files.

    Args:
        root: data root (gets ``VOC2012/``).
        n_train: training images (every class occurs in at least two when ``n_train >= 40``).
        n_val: validation images (likewise for ``n_val >= 40``; 20 suffice for 0-shot).
        seed: the same seed gives the same files.
        size: ``(min_side, max_side)`` of the image sizes.
        splits_dir: where the split files go (default ``<root>/fewshot_splits``, where :class:`PascalFewShot`
            finds them with just ``root``).
        jpeg_quality: JPEG quality.

    Returns:
        the splits folder.
    """
    splits_dir = synthetic_splits_dir(root, splits_dir, n_train=n_train, n_val=n_val)
    for folder in (IMAGE_DIR, MASK_DIR):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    palette = voc_palette()
    for split, count in (("trn", n_train), ("val", n_val)):
        lines: Dict[int, List[str]] = {fold: [] for fold in range(NFOLDS)}
        for index in range(count):
            name = f"syn_{split}_{index:06d}"
            image, mask = synthetic_pascal_sample(seed, split, index, size)
            Image.fromarray(image).save(os.path.join(root, IMAGE_DIR, name + ".jpg"), quality=jpeg_quality)
            mask_image = Image.fromarray(mask)
            if index % 2 == 0:
                mask_image = mask_image.convert("P")
                mask_image.putpalette(palette)
            mask_image.save(os.path.join(root, MASK_DIR, name + ".png"))
            for value in np.unique(mask):
                if 1 <= value <= NCLASS:
                    lines[(int(value) - 1) // CLASSES_PER_FOLD].append(f"{name}__{int(value):02d}")
        os.makedirs(os.path.join(splits_dir, "pascal", split), exist_ok=True)
        for fold, fold_lines in lines.items():
            with open(os.path.join(splits_dir, "pascal", split, f"fold{fold}.txt"), "w", encoding="utf-8",
                      newline="\n") as handle:
                handle.write("".join(line + "\n" for line in sorted(fold_lines)))
    return splits_dir
