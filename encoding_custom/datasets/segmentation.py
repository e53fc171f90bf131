"""A segmentation set (ADE20K, a plain folder set: any ``SegmentationLayout``) as a map-style dataset
(``__getitem__`` / ``__len__``); batches come from ``engine.BatchLoader``.

Samples are numpy arrays (the framework conversion happens in the training/evaluation code):
``image float32 (3, H, W)`` normalised with mean 0.5 / std 0.5 and ``mask int32 (H, W)`` with -1 = ignore.

Randomness: the augmentation of sample ``index`` in epoch ``epoch`` uses its own ``random.Random`` seeded from
``(seed, epoch, index)``, so results do not depend on the number of loader workers or on which worker loads the
sample, and every (epoch, sample) pair gets a distinct stream.

Bad data: construction fails listing every image without a mask and mask without an image (``DataCheckError``);
each sample checks its files as it loads them (decodable, single-channel mask, equal sizes, mask values the layout
allows) and raises a one-line ``BadSampleError`` naming the file, so no data value reaches a MindSpore kernel.
The full check of a split before training is :func:`encoding_custom.datasets.check.verify_data`.
"""
import random
from typing import Collection, Optional, Sequence

import numpy as np

from encoding_custom.datasets.check import (
    DataCheckError,
    check_mask,
    check_sizes,
    file_stem,
    format_problems,
    list_split,
    read_sample_file,
)
from encoding_custom.datasets.layout import SegmentationLayout, as_layout
from encoding_custom.datasets.transforms import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    image_to_array,
    mask_to_array,
    train_sync_transform,
    val_sync_transform,
)

MODES = ("train", "val", "testval")


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one (seed, epoch, index) triple."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SegmentationSet:
    """A segmentation set's split with PyTorch-Encoding's modes.

    Modes: ``train`` (random flip / rescale of the long side in [0.5, 2] x base size / pad / random crop),
    ``val`` (short side to the crop size, centre crop), ``testval`` (full image, original mask). Masks come as class
    indices ``0..num_class-1`` with -1 for unlabelled and ignored pixels (ignored by the loss and metrics).

    Args:
        source: a :class:`SegmentationLayout`, or the ADE20K data root (holding ``ADEChallengeData2016/`` or that
            folder itself).
        split: ``"train"`` or ``"val"``.
        mode: ``"train"``, ``"val"`` or ``"testval"``; default ``"train"`` for the train split, else ``"val"``.
        base_size: base size of the train rescale (520 in lang-seg).
        crop_size: output side in train/val modes (480 in lang-seg).
        seed: augmentation seed.
        mean: normalisation mean per channel (0..1 scale).
        std: normalisation std per channel.
        exclude: file stems (``ADE_train_00000001``) to leave out: the pairs and unpaired files that
            ``data_check.verify_data(..., skip_bad_samples=True)`` reported (``report.excluded(split)``).

    Attributes:
        layout: the set's :class:`SegmentationLayout`.

    Raises:
        FileNotFoundError: if the split's image folder is missing (message names the folder).
        DataCheckError: listing the images without a mask and masks without an image not in ``exclude``, or
            naming the image folder when no pair is left.
    """

    def __init__(self, source, split: str = "train", mode: Optional[str] = None, base_size: int = 520,
                 crop_size: int = 480, seed: int = 0, mean: Sequence[float] = DEFAULT_MEAN,
                 std: Sequence[float] = DEFAULT_STD, exclude: Optional[Collection[str]] = None):
        self.layout: SegmentationLayout = as_layout(source)
        self.root = self.layout.folder
        self.split = split
        self.mode = mode if mode is not None else ("train" if split == "train" else "val")
        if self.mode not in MODES:
            raise ValueError(f"SegmentationSet: unknown mode {self.mode!r}; expected one of {MODES}")
        self.base_size = base_size
        self.crop_size = crop_size
        self.seed = seed
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.epoch = 0
        pairs, listing = list_split(self.layout, split, missing_ok=False)
        excluded = set(exclude or ())
        for problem, entries in list(listing.problems.items()):  # the unpaired files: accepted when excluded
            listing.problems[problem] = [entry for entry in entries if file_stem(entry[0]) not in excluded]
            if not listing.problems[problem]:
                del listing.problems[problem]
        pairs = [(image, mask) for image, mask in pairs if file_stem(image) not in excluded]
        if not pairs and not listing.fatal:
            listing.fatal = f"no image/mask pair left for split {split!r} in {listing.image_folder}"
        if listing.problems or listing.fatal:
            raise DataCheckError(f"bad data in {self.root}:\n"
                                 + format_problems([listing], self.layout, relative_to=self.root))
        self.images = [image for image, _ in pairs]
        self.masks = [mask for _, mask in pairs]

    @property
    def num_class(self) -> int:
        """Number of classes (150 for ADE20K)."""
        return self.layout.num_class

    def set_epoch(self, epoch: int):
        """Select the augmentation stream of an epoch (the loader calls this before every epoch).

        Args:
            epoch: epoch number (any int).
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def load_pair(self, index: int):
        """Read image ``index`` (RGB) and its mask, checking the mask and that the sizes agree.

        The check runs on the raw mask (before any ``ClassSubset`` renumbering): a value past the classes would
        index past the logits in the loss kernel. Its cost is a min/max over the mask already decoded.

        Args:
            index: sample index.

        Returns:
            ``(image, mask)`` PIL images; the mask in the shared encoding (0 = ignored, class k = k + 1:
            ``SegmentationLayout.encode_mask``).

        Raises:
            BadSampleError: one line naming the missing or undecodable file, a multi-channel mask, a mask value
                the layout does not allow, or both files when their sizes differ.
        """
        image = read_sample_file(self.images[index], "RGB", "unreadable_image")
        mask = read_sample_file(self.masks[index], None, "unreadable_mask")
        check_mask(mask, self.masks[index], self.layout)
        check_sizes(image.size, mask.size, self.images[index], self.masks[index])
        return image, self.layout.encode_mask(mask)

    def __getitem__(self, key):
        """One sample.

        Args:
            key: sample index (augmented for the epoch set by :meth:`set_epoch`), or ``(epoch, index)`` to pick
                the epoch explicitly.

        Returns:
            ``(image float32 (3, H, W), mask int32 (H, W))``; H = W = crop_size in train/val modes, the original
            size in testval.
        """
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        image, mask = self.load_pair(index)
        if self.mode == "train":
            rng = random.Random(_sample_seed(self.seed, epoch, index))
            image, mask = train_sync_transform(image, mask, self.base_size, self.crop_size, rng)
        elif self.mode == "val":
            image, mask = val_sync_transform(image, mask, self.crop_size)
        return image_to_array(image, self.mean, self.std), mask_to_array(mask)


class ClassSubset:
    """A segmentation dataset restricted to some of its classes, renumbered in the given order.

    Wraps a dataset returning ``(image (3, H, W), mask int32 (H, W) in 0..N-1 or ignore)``; mask values of the kept
    classes become ``0..K-1`` (the position in ``class_indices``) and every other value becomes ``ignore_index``.
    Keys, ``set_epoch`` and attributes (``images``, ``masks`` ...) pass through to the wrapped dataset.

    Args:
        dataset: the wrapped dataset, a :class:`SegmentationSet` (its ``num_class`` is N).
        class_indices: the kept class indices (0..N-1).
        ignore_index: value of pixels outside the subset.
    """

    def __init__(self, dataset, class_indices: Sequence[int], ignore_index: int = -1):
        self.dataset = dataset
        self.ignore_index = ignore_index
        self.num_source_classes = dataset.num_class
        # one extra slot, addressed by every value outside 0..N-1 (the -1 of unlabelled pixels included)
        self.lookup = np.full(self.num_source_classes + 1, ignore_index, dtype=np.int32)
        for new, old in enumerate(class_indices):
            self.lookup[old] = new

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset (per-epoch augmentation)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        """Returns: ``(image, mask int32 (H, W) in 0..K-1 or ignore_index)``."""
        image, mask = self.dataset[key]
        mask = np.asarray(mask)
        outside = (mask < 0) | (mask >= self.num_source_classes)
        return image, self.lookup[np.where(outside, self.num_source_classes, mask)]

    def __getattr__(self, name):
        if name == "dataset":  # not yet set (e.g. while unpickling): avoid recursing through __getattr__
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_segmentation_set(source, split: str, mode: str, base_size: int = 520, crop_size: int = 480,
                           seed: int = 0, class_indices: Optional[Sequence[int]] = None, ignore_index: int = -1,
                           exclude: Optional[Collection[str]] = None):
    """A set's ``split``/``mode``, restricted to ``class_indices`` when given.

    Args:
        source: a ``SegmentationLayout``, or the ADE20K data root.
        split, mode, base_size, crop_size, seed, exclude: as :class:`SegmentationSet` (the checks run on the raw
            masks, before the class renumbering).
        class_indices: class indices to keep (see :class:`ClassSubset`); None keeps all.
        ignore_index: mask value of pixels outside the kept classes.

    Returns:
        :class:`SegmentationSet` or a :class:`ClassSubset` of it.
    """
    dataset = SegmentationSet(source, split=split, mode=mode, base_size=base_size, crop_size=crop_size, seed=seed,
                              exclude=exclude)
    if class_indices is not None:
        dataset = ClassSubset(dataset, class_indices, ignore_index)
    return dataset
