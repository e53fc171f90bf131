"""What every few-shot benchmark shares: the episode record, HSNet's image and mask resizing, the dataset base.

HSNet's ``FSSDataset`` resizes every image to ``img_size × img_size`` with torchvision's ``Resize`` (PIL bilinear on
a PIL image), then ``ToTensor`` + ``Normalize`` with mean = std = 0.5 (ViT backbones) or ImageNet's mean/std
(``imagenet_norm=True``, the ResNet-101 path of ``test_lseg_zs.py``). Masks are resized to the image's size with
``F.interpolate(mode='nearest')``, whose source index is ``min(floor(dst * (in / out)), in - 1)`` computed in
float32 (:func:`nearest_source_indices` reproduces it, including its exact cases ``out == in`` and ``out == 2 in``).
"""
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from encoding_custom.datasets.transforms import image_to_array
from encoding_custom.fewshot.splits import FewShotDataError
from foundation.images import NORMALISATIONS

HSNET_IMAGE_SIZE = 480


@dataclass
class FewShotEpisode:
    """One episode: a query image and its class, and ``shot`` support images of the same class (none for 0-shot).

    Attributes:
        query_img: float32 (3, S, S) normalised image.
        query_mask: float32 (S, S), 1 = the episode's class, 0 = anything else.
        query_name: the query's name as the split lists it.
        class_id: 0-based class id within the benchmark.
        query_ignore_idx: float32 (S, S) PASCAL boundary mask (1 = ignored) or None for the other benchmarks.
        org_query_imsize: the query image's original ``(width, height)``.
        support_imgs: float32 (shot, 3, S, S).
        support_masks: float32 (shot, S, S).
        support_names: the support images' names.
        support_ignore_idxs: float32 (shot, S, S) or None.
    """

    query_img: np.ndarray
    query_mask: np.ndarray
    query_name: str
    class_id: int
    query_ignore_idx: Optional[np.ndarray] = None
    org_query_imsize: Tuple[int, int] = (0, 0)
    support_imgs: Optional[np.ndarray] = None
    support_masks: Optional[np.ndarray] = None
    support_names: List[str] = field(default_factory=list)
    support_ignore_idxs: Optional[np.ndarray] = None


def check_normalisation(normalisation: str) -> Tuple[Sequence[float], Sequence[float]]:
    """``(mean, std)`` of a normalisation name: ``vit`` (0.5/0.5) or ``imagenet`` (the ResNet-101 path)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation: expected one of {sorted(NORMALISATIONS)}, got {normalisation!r}")
    return NORMALISATIONS[normalisation]


def resize_normalise(image: Image.Image, size: int, normalisation: str = "vit") -> np.ndarray:
    """HSNet's image transform: ``Resize((size, size))`` (PIL bilinear), ``ToTensor``, ``Normalize``.

    Args:
        image: PIL image (converted to RGB if it is not).
        size: output side in pixels.
        normalisation: ``vit`` or ``imagenet``.

    Returns:
        float32 (3, size, size).
    """
    mean, std = check_normalisation(normalisation)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image_to_array(image.resize((size, size), Image.BILINEAR), mean, std)


def nearest_source_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output index of torch's ``F.interpolate(mode='nearest')`` along one axis.

    Args:
        in_size: input length.
        out_size: output length.

    Returns:
        int64 (out_size,).
    """
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), in_size - 1)


def resize_mask_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (H, W) mask resized as ``F.interpolate(mask[None, None].float(), (height, width), mode='nearest')``.

    Returns:
        float32 (height, width).
    """
    mask = np.asarray(mask)
    rows = nearest_source_indices(mask.shape[0], height)
    cols = nearest_source_indices(mask.shape[1], width)
    return mask[rows[:, None], cols[None, :]].astype(np.float32)


def check_episode_options(shot: int, img_size: int, normalisation: str) -> Tuple[int, int, str]:
    """Validate the options every benchmark's episodes take.

    Args:
        shot: support images per episode (0 = zero-shot).
        img_size: side of the square images and masks.
        normalisation: ``vit`` (mean = std = 0.5) or ``imagenet`` (the ResNet-101 backbones).

    Returns:
        ``(shot, img_size, normalisation)`` with Python ints.
    """
    if not isinstance(shot, (int, np.integer)) or isinstance(shot, bool) or shot < 0:
        raise ValueError(f"shot: expected an integer >= 0, got {shot!r}")
    if not isinstance(img_size, (int, np.integer)) or isinstance(img_size, bool) or img_size <= 0:
        raise ValueError(f"img_size: expected a positive integer, got {img_size!r}")
    check_normalisation(normalisation)
    return int(shot), int(img_size), normalisation


def draw_index(count: int, rng=np.random) -> int:
    """One index drawn as HSNet's ``np.random.choice(items, 1, replace=False)[0]`` draws it from ``count`` items.

    ``choice(a, 1, replace=False)`` consumes ``rng.permutation(len(a))`` whether ``a`` is a list or its length, so
    drawing the index gives the official item without turning a long list into an array at every draw.

    Args:
        count: number of items (> 0).
        rng: ``np.random`` (HSNet's global state, the default) or a ``np.random.RandomState``.

    Returns:
        the drawn index, ``0 <= index < count``.
    """
    return int(rng.choice(count, 1, replace=False)[0])


def draw_supports(candidates: Sequence[str], query_name: str, shot: int, rng=np.random,
                  describe: str = "the class") -> List[str]:
    """HSNet's support draw: one :func:`draw_index` draw at a time until ``shot`` names other than the query.

    The draws are independent (a name may come twice); drawing the query costs a draw and is dropped, so the RNG
    calls are HSNet's and the official episode lists follow.

    Args:
        candidates: the names the supports are drawn from (the query's class; may include the query).
        query_name: the episode's query, never a support.
        shot: how many supports (0 draws nothing).
        rng: ``np.random`` (HSNet's global state, the default) or a ``np.random.RandomState``.
        describe: what ``candidates`` are, for the error message (``"class 3"``).

    Returns:
        ``shot`` support names in draw order.

    Raises:
        FewShotDataError: ``shot > 0`` and no candidate other than the query exists (the draw would never end).
    """
    if shot and all(name == query_name for name in candidates):
        raise FewShotDataError(f"{describe}: no support image other than the query {query_name}")
    support_names: List[str] = []
    while len(support_names) < shot:
        support_name = candidates[draw_index(len(candidates), rng)]
        if support_name != query_name:
            support_names.append(support_name)
    return support_names


class FewShotDataset:
    """What the three benchmarks' episode sets share: image and mask reading, the episode, the training target.

    A subclass sets ``benchmark``, ``split``, ``pairs`` (``[(name, class id), ...]``), ``class_ids`` and
    ``mask_modes`` and defines ``image_path``, ``mask_path``, ``sample_episode``, ``__len__`` and the mask rules
    ``foreground`` / ``ignore_mask`` / ``pixels_of_classes``.

    Args:
        shot: support images per episode (0 = zero-shot).
        img_size: side of the square images and masks (480 in the official evaluation).
        normalisation: ``vit`` (mean = std = 0.5) or ``imagenet`` (ResNet-101 backbone).
    """

    benchmark = ""
    split = ""
    # PIL modes a mask file may have; ``convert_mask_to`` (if set) is the mode it is converted to before reading.
    mask_modes: Tuple[str, ...] = ("L", "P")
    convert_mask_to: Optional[str] = None

    def __init__(self, shot: int = 0, img_size: int = HSNET_IMAGE_SIZE, normalisation: str = "vit"):
        self.shot, self.img_size, self.normalisation = check_episode_options(shot, img_size, normalisation)
        self.pairs: List[Tuple[str, int]] = []
        self.class_ids: List[int] = []

    def image_path(self, name: str) -> str:
        """Path of a listed image's picture."""
        raise NotImplementedError

    def mask_path(self, name: str) -> str:
        """Path of a listed image's mask."""
        raise NotImplementedError

    def sample_episode(self, idx: int, rng=np.random) -> Tuple[str, List[str], int]:
        """``(query name, support names, class id)`` of episode ``idx``, drawing from ``rng`` as HSNet does."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Number of episodes (HSNet's ``__len__``)."""
        raise NotImplementedError

    def foreground(self, mask: np.ndarray, class_id: int) -> np.ndarray:
        """Float32 0/1 (H, W): the pixels of ``class_id`` in a mask read by :meth:`load`."""
        raise NotImplementedError

    def ignore_mask(self, mask: np.ndarray) -> Optional[np.ndarray]:
        """Float32 (H, W) pixels the metric ignores (PASCAL's boundaries), or None."""
        return None

    def pixels_of_classes(self, mask: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
        """Bool (H, W): pixels belonging to any of ``class_ids`` (class-valued masks: value = class id + 1)."""
        return np.isin(mask, np.asarray([int(c) + 1 for c in class_ids], np.float32))

    def __iter__(self):
        """The ``len(self)`` episodes in order (PASCAL and COCO would otherwise wrap or resample forever)."""
        for idx in range(len(self)):
            yield self[idx]

    def _missing(self, path: str) -> FewShotDataError:
        return FewShotDataError(f"{path}: file not found (listed in the {self.benchmark} {self.split} split)")

    def load(self, name: str) -> Tuple[Image.Image, np.ndarray]:
        """Image and mask values of one listed image, checked.

        Args:
            name: the image's name as the split lists it.

        Returns:
            ``(RGB PIL image, mask (H, W) uint8)``, the mask of the image's size.
        """
        image_path, mask_path = self.image_path(name), self.mask_path(name)
        for path in (image_path, mask_path):
            if not os.path.isfile(path):
                raise self._missing(path)
        try:
            with Image.open(mask_path) as mask_file:
                mode, mask_size = mask_file.mode, mask_file.size
                if mode in self.mask_modes:
                    mask_file = mask_file.convert(self.convert_mask_to) if self.convert_mask_to else mask_file
                    mask = np.array(mask_file)
        except (OSError, SyntaxError) as error:
            raise FewShotDataError(f"{mask_path}: not a readable mask image ({error})") from error
        if mode not in self.mask_modes:
            raise FewShotDataError(f"{mask_path}: expected a mask of mode {'/'.join(self.mask_modes)}, got {mode}")
        try:
            with Image.open(image_path) as image_file:
                image = image_file.convert("RGB")
        except (OSError, SyntaxError) as error:
            raise FewShotDataError(f"{image_path}: not a readable image ({error})") from error
        if mask_size != image.size:
            raise FewShotDataError(f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]}, its image "
                                   f"{os.path.basename(image_path)} is {image.size[0]}x{image.size[1]}")
        return image, mask

    def _load_resized(self, name: str) -> Tuple[np.ndarray, np.ndarray, Tuple[int, int]]:
        """A listed image and its mask at S × S: the image resized and normalised, the mask resized nearest.

        Returns:
            ``(image float32 (3, S, S), mask values float32 (S, S), original (width, height))``.
        """
        image, mask = self.load(name)
        array = resize_normalise(image, self.img_size, self.normalisation)
        return array, resize_mask_nearest(mask, self.img_size, self.img_size), image.size

    def prepare(self, name: str, class_id: int) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray],
                                                          Tuple[int, int]]:
        """One image as an episode holds it.

        Args:
            name: listed image name.
            class_id: the episode's class.

        Returns:
            ``(image float32 (3, S, S), foreground float32 (S, S), ignore float32 (S, S) or None,
            original (width, height))``; masks resized nearest to S × S first, as HSNet does.
        """
        array, mask, size = self._load_resized(name)
        return array, self.foreground(mask, class_id), self.ignore_mask(mask), size

    def __getitem__(self, idx: int) -> FewShotEpisode:
        """Episode ``idx`` (support draws come from ``np.random``: take the episodes in order for parity)."""
        query_name, support_names, class_id = self.sample_episode(idx)
        query_img, query_mask, query_ignore, size = self.prepare(query_name, class_id)
        supports = [self.prepare(name, class_id)[:3] for name in support_names]
        side = self.img_size
        support_imgs = np.stack([s[0] for s in supports]) if supports else np.zeros((0, 3, side, side), np.float32)
        support_masks = np.stack([s[1] for s in supports]) if supports else np.zeros((0, side, side), np.float32)
        support_ignores = None
        if query_ignore is not None:
            support_ignores = (np.stack([s[2] for s in supports]) if supports
                               else np.zeros((0, side, side), np.float32))
        return FewShotEpisode(
            query_img=query_img, query_mask=query_mask, query_name=query_name, class_id=int(class_id),
            query_ignore_idx=query_ignore, org_query_imsize=size, support_imgs=support_imgs,
            support_masks=support_masks, support_names=support_names, support_ignore_idxs=support_ignores)

    def training_target(self, name: str, class_id: int, ignored_class_ids: Sequence[int] = ()
                        ) -> Tuple[np.ndarray, np.ndarray]:
        """An image and its binary training target for one class (the zero-shot training pairs of ``pairs``).

        Pixels of the fold's test classes must never be supervised, so they are -1 (the loss's ignore value).
        PASCAL's boundary pixels (255) are 0, as in the official training loss, which does not ignore them (only
        the metric does).

        Args:
            name: listed image name.
            class_id: the class the target is for (must not be one of ``ignored_class_ids``).
            ignored_class_ids: classes whose pixels become -1 (the fold's test classes).

        Returns:
            ``(image float32 (3, S, S), target int32 (S, S))``: 1 = ``class_id``, -1 = an ignored class, 0 else;
            same resize and normalisation as the episodes.
        """
        ignored = sorted({int(c) for c in ignored_class_ids})
        if int(class_id) in ignored:
            raise ValueError(f"class_id: {class_id} is one of the ignored classes {ignored}")
        array, mask, _ = self._load_resized(name)
        target = np.zeros(mask.shape, np.int32)
        if ignored:
            target[self.pixels_of_classes(mask, ignored)] = -1
        target[self.foreground(mask, class_id) > 0] = 1
        return array, target


def episode_names(dataset: FewShotDataset, count: Optional[int] = None, seed: Optional[int] = 0
                  ) -> List[Tuple[str, int, List[str]]]:
    """The first ``count`` episodes' names as ``test_lseg_zs.py`` meets them (seeded, in order), no images read.

    Args:
        dataset: the episodes (any benchmark).
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
        episodes.append((query_name, int(class_id), support_names))
    return episodes
