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
from PIL import Image, ImageDraw

from .episodes import HSNET_IMAGE_SIZE, FewShotEpisode, check_normalisation, resize_mask_nearest, resize_normalise
from .splits import BENCHMARK_CLASSES, NFOLDS, PACKAGED_SPLITS_DIR, FewShotDataError, check_fold, read_pascal_metadata
from .splits import split_name as hsnet_split

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
    fold = check_fold(fold)
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


class PascalFewShot:
    """PASCAL-5i episodes of one fold (HSNet's ``DatasetPASCAL``), numpy in and out.

    Args:
        root: folder holding ``VOC2012/`` (HSNet's ``--datapath``).
        fold: 0..3.
        split: ``test``/``val`` (the fold's 5 classes, 1000 episodes) or ``trn``/``train`` (the 15 others).
        shot: support images per episode (0 = zero-shot).
        img_size: side of the square images and masks (480 in the official evaluation).
        normalisation: ``vit`` (mean = std = 0.5) or ``imagenet`` (ResNet-101 backbone).
        splits_dir: folder holding ``pascal/{trn,val}/fold<K>.txt`` (default: the packaged HSNet lists).
    """

    benchmark = "pascal"

    def __init__(self, root: str, fold: int, split: str = "test", shot: int = 0, img_size: int = HSNET_IMAGE_SIZE,
                 normalisation: str = "vit", splits_dir: str = PACKAGED_SPLITS_DIR):
        if not os.path.isdir(os.path.join(root, VOC_DIR)):
            raise FewShotDataError(f"{root}: no {VOC_DIR}/ folder (expected {IMAGE_DIR} and {MASK_DIR})")
        if not isinstance(shot, (int, np.integer)) or shot < 0:
            raise ValueError(f"shot: expected an integer >= 0, got {shot!r}")
        if not isinstance(img_size, (int, np.integer)) or img_size <= 0:
            raise ValueError(f"img_size: expected a positive integer, got {img_size!r}")
        check_normalisation(normalisation)
        self.root, self.fold, self.split = root, check_fold(fold), hsnet_split(split)
        self.shot, self.img_size, self.normalisation = int(shot), int(img_size), normalisation
        self.class_ids = pascal_class_ids(self.fold, self.split)
        folds = [self.fold] if self.split == "val" else [k for k in range(NFOLDS) if k != self.fold]
        self.img_metadata: List[Tuple[str, int]] = []
        for fold_id in folds:
            self.img_metadata += read_pascal_metadata(self.split, fold_id, splits_dir)
        if not self.img_metadata:
            raise FewShotDataError(f"{splits_dir}: the pascal {self.split} lists of fold {self.fold} are empty")
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
        candidates = self.img_metadata_classwise[class_id]
        support_names: List[str] = []
        if self.shot and all(name == query_name for name in candidates):
            raise FewShotDataError(f"class {class_id}: no support image other than the query {query_name}")
        while len(support_names) < self.shot:
            support_name = str(rng.choice(candidates, 1, replace=False)[0])
            if support_name != query_name:
                support_names.append(support_name)
        return query_name, support_names, class_id

    def image_path(self, name: str) -> str:
        """``<root>/VOC2012/JPEGImages/<name>.jpg``."""
        return os.path.join(self.root, IMAGE_DIR, name + ".jpg")

    def mask_path(self, name: str) -> str:
        """``<root>/VOC2012/SegmentationClassAug/<name>.png``."""
        return os.path.join(self.root, MASK_DIR, name + ".png")

    def _read(self, name: str) -> Tuple[Image.Image, np.ndarray]:
        for path in (self.image_path(name), self.mask_path(name)):
            if not os.path.isfile(path):
                raise FewShotDataError(f"{path}: file not found (listed in the pascal {self.split} split)")
        with Image.open(self.mask_path(name)) as mask:
            mask_values = np.array(mask)
        with Image.open(self.image_path(name)) as image:
            image.load()
            return image, mask_values

    def _prepare(self, name: str, class_id: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]:
        """Image (3, S, S), foreground (S, S), boundary (S, S) and original (width, height) of one image."""
        image, mask = self._read(name)
        if mask.ndim != 2:
            raise FewShotDataError(f"{self.mask_path(name)}: expected a single-channel mask, got shape {mask.shape}")
        array = resize_normalise(image, self.img_size, self.normalisation)
        foreground, boundary = extract_ignore_idx(resize_mask_nearest(mask, self.img_size, self.img_size), class_id)
        return array, foreground, boundary, image.size

    def __getitem__(self, idx: int) -> FewShotEpisode:
        """Episode ``idx`` (draws its supports from ``np.random``, so take the episodes in order for parity)."""
        query_name, support_names, class_id = self.sample_episode(idx)
        query_img, query_mask, query_ignore, size = self._prepare(query_name, class_id)
        supports = [self._prepare(name, class_id)[:3] for name in support_names]
        empty_masks = np.zeros((0, self.img_size, self.img_size), np.float32)
        return FewShotEpisode(
            query_img=query_img, query_mask=query_mask, query_name=query_name, class_id=class_id,
            query_ignore_idx=query_ignore, org_query_imsize=size,
            support_imgs=(np.stack([s[0] for s in supports]) if supports
                          else np.zeros((0, 3, self.img_size, self.img_size), np.float32)),
            support_masks=np.stack([s[1] for s in supports]) if supports else empty_masks,
            support_names=support_names,
            support_ignore_idxs=np.stack([s[2] for s in supports]) if supports else empty_masks.copy())


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


def _checker_texture(texture_id: int, height: int, width: int, phase: int) -> np.ndarray:
    """A texture's full frame: its own colour in a checkerboard of its own cell size. float32 (H, W, 3).

    (Not ``encoding_custom.synthetic``'s stripes: importing that module pulls in the CLIP tokenizer.)
    """
    rng = np.random.default_rng(7919 * texture_id + 13)
    colour = rng.uniform(30, 225, size=3).astype(np.float32)
    cell = int(rng.integers(3, 9))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((yy + phase) // cell + (xx + phase) // cell) % 2).astype(np.float32)
    return colour[None, None, :] * (0.8 + 0.2 * checker[..., None])


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
    width, height = (int(rng.integers(size[0], size[1] + 1)) for _ in range(2))
    mask_image = Image.new("L", (width, height), color=0)
    draw = ImageDraw.Draw(mask_image)
    classes = [index % NCLASS] + [int(rng.integers(NCLASS)) for _ in range(int(rng.integers(0, max_objects)))]
    for class_id in classes:
        box_w, box_h = int(rng.uniform(0.3, 0.6) * width), int(rng.uniform(0.3, 0.6) * height)
        x0, y0 = int(rng.integers(0, width - box_w)), int(rng.integers(0, height - box_h))
        box = [x0, y0, x0 + box_w, y0 + box_h]
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=class_id + 1, outline=BOUNDARY_VALUE, width=boundary_width)
    mask = np.asarray(mask_image, dtype=np.uint8)
    image = np.empty((height, width, 3), np.float32)
    for value in np.unique(mask):
        region = mask == value
        texture_value = 1000 if value == BOUNDARY_VALUE else 500 + int(value)  # a texture of its own per class
        image[region] = _checker_texture(texture_value, height, width, int(rng.integers(16)))[region]
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


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
        splits_dir: where the split files go (default ``<root>/fewshot_splits``); pass it to
            :class:`PascalFewShot`.
        jpeg_quality: JPEG quality.

    Returns:
        the splits folder.
    """
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train/n_val: expected >= 0, got {n_train}, {n_val}")
    splits_dir = splits_dir or os.path.join(root, "fewshot_splits")
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


def episode_names(dataset: PascalFewShot, count: Optional[int] = None, seed: Optional[int] = 0
                  ) -> List[Tuple[str, int, List[str]]]:
    """The first ``count`` episodes' names as ``test_lseg_zs.py`` meets them (seeded, in order), no images read.

    Args:
        dataset: the episodes.
        count: how many (default ``len(dataset)``).
        seed: ``np.random.seed`` before the first episode (HSNet's ``fix_randseed(0)``); None keeps the state.

    Returns:
        ``[(query name, class id, support names), ...]``.
    """
    if seed is not None:
        np.random.seed(seed)
    episodes = []
    for idx in range(len(dataset) if count is None else count):
        query_name, support_names, class_id = dataset.sample_episode(idx)
        episodes.append((query_name, class_id, support_names))
    return episodes

