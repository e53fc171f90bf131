"""FSS-1000 episodes in HSNet's layout and protocol (``fewshot_data/data/fss.py``), and a synthetic set in it.

Layout: ``<root>/FSS-1000/<category>/<n>.jpg`` and its mask ``<n>.png`` (white object on black, any mode PIL
converts to greyscale; FSS-1000 has ten of each, ``n = 1..10``). HSNet's three category lists ``fss/{trn,val,test}.txt``
are sorted, and category ``i`` of a split has class id ``i + 0 / 520 / 760`` (trn / val / test: the order of
``label_files/fewshot_fss.txt``, which is the three sorted lists one after the other).

FSS-1000 has no folds: HSNet takes ``fold`` and ignores it; here the one fold is 0 (:data:`.splits.FOLDS_PER_BENCHMARK`)
and the split alone chooses the classes. The episodes are every image of every category of the split, in category order
and, within a category, in the string order of its file names (``1, 10, 2, ..., 9``, as ``sorted(glob(...))`` gives
them); the episode index is used as it is (no wrap). Supports: 0-shot none; test 1-shot always ``1.jpg`` (and the first
file of each category is then no query); other K-shot episodes draw ``np.random.choice(range(1, 11), 1, replace=False)``
until ``shot`` images other than the query are drawn. Mask rule: greyscale ``>= 128`` is the object (after the nearest
resize); no boundary ignore.
"""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from encoding_custom.fewshot.episodes import HSNET_IMAGE_SIZE, FewShotDataset, draw_supports
from encoding_custom.fewshot.splits import (
    FSS_SPLIT_FIRST_CLASS,
    PACKAGED_SPLITS_DIR,
    FewShotDataError,
    check_benchmark_fold,
    read_fss_categories,
    resolve_splits_dir,
)
from encoding_custom.fewshot.synthetic import CLASS_TEXTURE_BASE, checker_texture, synthetic_splits_dir

FSS_DIR = "FSS-1000"
MASK_THRESHOLD = 128
SUPPORT_RANGE = range(1, 11)  # HSNet draws K-shot supports among <n>.jpg, n = 1..10
TEST_ONE_SHOT_SUPPORT = "1.jpg"


def fss_split_name(split: str) -> str:
    """``trn`` (``train`` accepted), ``val`` or ``test``: FSS-1000 has three distinct category lists."""
    split = "trn" if split == "train" else split
    if split not in FSS_SPLIT_FIRST_CLASS:
        raise ValueError(f"split: expected trn/train, val or test for FSS-1000, got {split!r}")
    return split


def fss_class_ids(split: str, splits_dir: str = PACKAGED_SPLITS_DIR) -> List[int]:
    """Class ids of a split: ``first .. first + number of categories - 1`` (0..519, 520..759, 760..999 for HSNet's).

    Args:
        split: ``trn``/``train``, ``val`` or ``test``.
        splits_dir: folder holding ``fss/<split>.txt``.

    Returns:
        the class ids in increasing order.
    """
    split = fss_split_name(split)
    first = FSS_SPLIT_FIRST_CLASS[split]
    return list(range(first, first + len(read_fss_categories(split, splits_dir))))


def _is_jpg(file_name: str) -> bool:
    """HSNet's test ``basename.split('.')[1] == 'jpg'`` (a name without a dot is no image)."""
    parts = file_name.split(".")
    return len(parts) > 1 and parts[1] == "jpg"


class FssFewShot(FewShotDataset):
    """FSS-1000 episodes of a split (HSNet's ``DatasetFSS``), numpy in and out.

    ``pairs`` is HSNet's ``img_metadata`` with each image's class: ``(<category>/<n>.jpg, class id)`` for every
    image of every category of the split (less each category's first file for test 1-shot, as HSNet).

    Args:
        root: folder holding ``FSS-1000/`` (HSNet's ``--datapath``).
        fold: 0, the only fold (see the module docstring).
        split: ``test`` (the official evaluation, classes 760..999), ``val`` (520..759) or ``trn``/``train``.
        shot, img_size, normalisation: see :func:`.episodes.check_episode_options` (480 px officially).
        splits_dir: folder holding ``fss/{trn,val,test}.txt``; None = ``<root>/fewshot_splits`` when it has an
            ``fss/`` folder (a synthetic set), else the packaged HSNet lists.
    """

    benchmark = "fss"
    mask_modes = ("1", "L", "LA", "P", "RGB", "RGBA")
    convert_mask_to = "L"

    def __init__(self, root: str, fold: int = 0, split: str = "test", shot: int = 0,
                 img_size: int = HSNET_IMAGE_SIZE, normalisation: str = "vit", splits_dir: Optional[str] = None):
        super().__init__(shot, img_size, normalisation)
        self.base_path = os.path.join(root, FSS_DIR)
        if not os.path.isdir(self.base_path):
            raise FewShotDataError(f"{root}: no {FSS_DIR}/ folder (expected {FSS_DIR}/<category>/<n>.jpg, <n>.png)")
        splits_dir = resolve_splits_dir(root, self.benchmark, splits_dir)
        self.root, self.fold, self.split = root, check_benchmark_fold(self.benchmark, fold), fss_split_name(split)
        self.categories = read_fss_categories(self.split, splits_dir)
        if not self.categories:
            raise FewShotDataError(f"{splits_dir}: the fss {self.split} list is empty")
        first = FSS_SPLIT_FIRST_CLASS[self.split]
        self.class_ids = list(range(first, first + len(self.categories)))
        self.skip_first_file = self.split == "test" and self.shot == 1
        self.pairs = []
        for offset, category in enumerate(self.categories):
            folder = os.path.join(self.base_path, category)
            if not os.path.isdir(folder):
                raise FewShotDataError(f"{folder}: category folder not found (listed in the fss {self.split} split)")
            files = sorted(name for name in os.listdir(folder) if not name.startswith("."))  # glob('*') order
            jpgs = [name for name in files[1 if self.skip_first_file else 0:] if _is_jpg(name)]
            if not jpgs:
                raise FewShotDataError(f"{folder}: no .jpg image in the category folder")
            self.pairs += [(f"{category}/{name}", first + offset) for name in jpgs]
        self.img_metadata = [name for name, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def sample_episode(self, idx: int, rng=np.random) -> Tuple[str, List[str], int]:
        """The names of episode ``idx``: ``(query, supports, class id)``, names ``<category>/<n>.jpg``.

        Args:
            idx: episode index, ``0 <= idx < len(self)``.
            rng: the random source of K-shot draws; HSNet's is the global ``np.random`` (the default).

        Returns:
            the query name, ``shot`` support names and the class id.
        """
        if not 0 <= idx < len(self.pairs):
            raise IndexError(f"episode {idx} out of range (the fss {self.split} split has {len(self.pairs)})")
        query_name, class_id = self.pairs[idx]
        category = query_name.rsplit("/", 1)[0]
        if self.skip_first_file:  # test 1-shot: the one support is fixed, nothing is drawn
            support_name = f"{category}/{TEST_ONE_SHOT_SUPPORT}"
            if support_name == query_name:
                raise FewShotDataError(f"{self.image_path(query_name)}: the test 1-shot query is its own support")
            return query_name, [support_name], class_id
        candidates = [f"{category}/{number}.jpg" for number in SUPPORT_RANGE]
        return query_name, draw_supports(candidates, query_name, self.shot, rng, f"category {category}"), class_id

    def image_path(self, name: str) -> str:
        """``<root>/FSS-1000/<category>/<n>.jpg``."""
        return os.path.join(self.base_path, name)

    def mask_path(self, name: str) -> str:
        """``<root>/FSS-1000/<category>/<n>.png`` (HSNet: the file name up to its first dot, then ``.png``)."""
        folder, file_name = os.path.split(name)
        return os.path.join(self.base_path, folder, file_name.split(".")[0] + ".png")

    def foreground(self, mask: np.ndarray, class_id: int) -> np.ndarray:
        """Greyscale ``>= 128`` as float32 0/1 (the mask shows only its category's object)."""
        return (mask >= MASK_THRESHOLD).astype(np.float32)

    def pixels_of_classes(self, mask: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
        """No pixel: an FSS-1000 mask holds only its own category, so no other class can be marked."""
        return np.zeros(mask.shape, bool)


def synthetic_fss_sample(seed: int, class_id: int, number: int, size: Tuple[int, int] = (40, 72)
                         ) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic FSS-1000 picture: an object with its category's texture on a background, and its 0/255 mask.

    Args:
        seed: data set seed.
        class_id: the category's class id (its texture).
        number: the picture's number in the category.
        size: ``(min_side, max_side)`` of the random width and height.

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W) with 0 and 255)``.
    """
    rng = np.random.default_rng([seed, 4, class_id, number])
    width, height = (int(rng.integers(size[0], size[1] + 1)) for _ in range(2))
    mask_image = Image.new("L", (width, height), color=0)
    box_w, box_h = int(rng.uniform(0.4, 0.8) * width), int(rng.uniform(0.4, 0.8) * height)
    x0, y0 = int(rng.integers(0, width - box_w)), int(rng.integers(0, height - box_h))
    draw = ImageDraw.Draw(mask_image)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + box_w, y0 + box_h], fill=255)
    mask = np.asarray(mask_image, dtype=np.uint8)
    background = checker_texture(CLASS_TEXTURE_BASE, height, width, int(rng.integers(16)))
    image = np.where(mask[..., None] > 0,
                     checker_texture(CLASS_TEXTURE_BASE + 1 + class_id, height, width, int(rng.integers(16))),
                     background)
    image = image + rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic_fss1000(root: str, categories: Sequence[int] = (6, 3, 10), images_per_category: int = 10,
                            seed: int = 0, size: Tuple[int, int] = (40, 72), splits_dir: Optional[str] = None,
                            jpeg_quality: int = 92) -> str:
    """Write a synthetic FSS-1000 set in HSNet's layout, with its own category lists.

    The categories are the first ``categories[k]`` names of HSNet's sorted ``trn``, ``val`` and ``test`` lists, so
    their class ids and label names are the real ones (``trn`` 0.., ``val`` 520.., ``test`` 760..). Each gets
    ``<n>.jpg`` + ``<n>.png`` for ``n = 1..images_per_category`` under ``<root>/FSS-1000/<category>/`` (masks 0/255,
    odd ``n`` greyscale, even ``n`` RGB: both read as FSS-1000's are), and the lists go to
    ``<splits_dir>/fss/{trn,val,test}.txt`` (LF line ends).

    Args:
        root: data root (gets ``FSS-1000/``).
        categories: number of categories of the trn, val and test splits.
        images_per_category: pictures per category (K-shot episodes other than test 1-shot draw among 1..10, so
            they need 10).
        seed: the same seed gives the same files.
        size: ``(min_side, max_side)`` of the image sizes.
        splits_dir: where the lists go (default ``<root>/fewshot_splits``, where :class:`FssFewShot` finds them with
            just ``root``).
        jpeg_quality: JPEG quality.

    Returns:
        the splits folder.
    """
    if len(categories) != len(FSS_SPLIT_FIRST_CLASS) or any(count < 1 for count in categories):
        raise ValueError(f"categories: expected three counts >= 1 (trn, val, test), got {categories!r}")
    if images_per_category < 2:
        raise ValueError(f"images_per_category: expected >= 2, got {images_per_category}")
    splits_dir = synthetic_splits_dir(root, splits_dir)
    os.makedirs(os.path.join(splits_dir, "fss"), exist_ok=True)
    for split, count in zip(("trn", "val", "test"), categories):
        names = read_fss_categories(split)[:count]
        for offset, category in enumerate(names):
            folder = os.path.join(root, FSS_DIR, category)
            os.makedirs(folder, exist_ok=True)
            for number in range(1, images_per_category + 1):
                image, mask = synthetic_fss_sample(seed, FSS_SPLIT_FIRST_CLASS[split] + offset, number, size)
                Image.fromarray(image).save(os.path.join(folder, f"{number}.jpg"), quality=jpeg_quality)
                mask_image = Image.fromarray(mask)
                if number % 2 == 0:
                    mask_image = Image.merge("RGB", [mask_image] * 3)
                mask_image.save(os.path.join(folder, f"{number}.png"))
        with open(os.path.join(splits_dir, "fss", f"{split}.txt"), "w", encoding="utf-8", newline="\n") as handle:
            handle.write("".join(name + "\n" for name in names))
    return splits_dir
