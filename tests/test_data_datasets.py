"""encoding_custom.datasets (transforms, the ADE20K set, synthetic sets): PyTorch-Encoding semantics, alignment,
errors, loaders."""
import os
import random

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.check import BadSampleError
from encoding_custom.datasets.segmentation import ClassSubset, SegmentationSet, build_segmentation_set
from encoding_custom.datasets.synthetic import DEFAULT_CLASS_VALUES, write_synthetic_ade20k
from encoding_custom.datasets.transforms import mask_to_array, train_sync_transform, val_sync_transform
from encoding_custom.engine import BatchLoader

STACK_INDEPENDENT = ("data sets, synthetic sets and transforms are numpy code; the Pillow resizes against the "
                     "reference and the loader's worker processes are marked both_stacks test by test")

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "encoding_custom", "transforms_reference.npz")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    write_synthetic_ade20k(str(root), 12, 4, seed=0, size=(48, 72))
    return str(root)


# --- transforms vs the official code -------------------------------------------------------------------------

@pytest.mark.both_stacks
def test_train_and_val_transforms_match_pytorch_encoding():
    reference = np.load(FIXTURE)
    base_size, crop_size = int(reference["base_size"]), int(reference["crop_size"])
    for name in ("wide", "tall"):
        image = Image.fromarray(reference[f"{name}/image"])
        mask = Image.fromarray(reference[f"{name}/mask"])
        for seed in reference["seeds"].tolist():
            out_image, out_mask = train_sync_transform(image, mask, base_size, crop_size, random.Random(seed))
            np.testing.assert_array_equal(np.asarray(out_mask), reference[f"{name}/train{seed}/mask"])
            # The reference was made with a newer Pillow, whose bicubic downscaling differs on ~1% of pixels of
            # this noise image; geometry (the mask) must match exactly.
            difference = np.abs(np.asarray(out_image, np.int16) - reference[f"{name}/train{seed}/image"])
            assert difference.mean() < 0.5 and np.mean(difference > 2) < 0.02, (name, seed)
        out_image, out_mask = val_sync_transform(image, mask, crop_size)
        np.testing.assert_array_equal(np.asarray(out_mask), reference[f"{name}/val/mask"])
        assert np.abs(np.asarray(out_image, np.int16) - reference[f"{name}/val/image"]).max() <= 2


def test_mask_shift_makes_unlabelled_minus_one():
    mask = Image.fromarray(np.array([[0, 1, 150]], np.uint8))
    result = mask_to_array(mask)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [[-1, 0, 149]])


# --- alignment: a mask drawn from the image stays consistent -------------------------------------------------

PALETTE = np.array([[0, 0, 0], [230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30]], np.float32)


def _write_colour_coded_set(root, count=3):
    """Images whose colour IS the class: blocks of classes 1..4, plus unlabelled (0, black) blocks."""
    rng = np.random.default_rng(7)
    image_dir = os.path.join(root, "ADEChallengeData2016", "images", "training")
    mask_dir = os.path.join(root, "ADEChallengeData2016", "annotations", "training")
    os.makedirs(image_dir)
    os.makedirs(mask_dir)
    for index in range(count):
        blocks = rng.integers(0, 5, size=(5, 7))
        blocks[:, 0] = 1  # an asymmetric column so that a flip of only one of the two is visible
        mask = np.kron(blocks, np.ones((12, 12), np.int64)).astype(np.uint8)[:57, :81]
        Image.fromarray(PALETTE[mask].astype(np.uint8)).save(os.path.join(image_dir, f"ADE_train_{index:08d}.png"
                                                                          .replace(".png", ".jpg")), quality=95)
        Image.fromarray(mask).save(os.path.join(mask_dir, f"ADE_train_{index:08d}.png"))


@pytest.mark.parametrize("mode", ["train", "val", "testval"])
def test_augmentation_keeps_image_and_mask_aligned(tmp_path, mode):
    _write_colour_coded_set(str(tmp_path))
    dataset = SegmentationSet(str(tmp_path), "train", mode=mode, base_size=64, crop_size=48, seed=3)
    padded_pixels = 0
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            image, mask = dataset[index]
            rgb = (image.transpose(1, 2, 0) * 0.5 + 0.5) * 255
            nearest = np.argmin(((rgb[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1), axis=-1)
            agreement = np.mean(nearest == mask + 1)
            assert agreement > 0.93, (mode, epoch, index, agreement)
            padded_pixels += int(np.sum((mask == -1) & (nearest == 0)))
    if mode == "train":
        assert padded_pixels > 0  # some crops were padded (black image, ignored mask)


# --- the dataset ---------------------------------------------------------------------------------------------

def test_dataset_shapes_dtypes_and_modes(synthetic_root):
    train = SegmentationSet(synthetic_root, "train", base_size=64, crop_size=40)
    assert len(train) == 12 and train.num_class == 150
    image, mask = train[0]
    assert image.shape == (3, 40, 40) and image.dtype == np.float32
    assert mask.shape == (40, 40) and mask.dtype == np.int32
    assert -1.0 <= image.min() and image.max() <= 1.0
    allowed = {-1} | {value - 1 for value in DEFAULT_CLASS_VALUES}
    assert set(np.unique(mask).tolist()) <= allowed

    val = SegmentationSet(synthetic_root, "val", mode="val", crop_size=40)
    assert val[1][0].shape == (3, 40, 40)
    testval = SegmentationSet(synthetic_root, "val", mode="testval")
    image, mask = testval[2]
    png = np.asarray(Image.open(testval.masks[2]))
    assert image.shape[1:] == png.shape
    np.testing.assert_array_equal(mask, png.astype(np.int32) - 1)


def test_train_augmentation_is_seeded_per_epoch_and_sample(synthetic_root):
    first = SegmentationSet(synthetic_root, "train", base_size=64, crop_size=40, seed=1)
    again = SegmentationSet(synthetic_root, "train", base_size=64, crop_size=40, seed=1)
    other = SegmentationSet(synthetic_root, "train", base_size=64, crop_size=40, seed=2)
    np.testing.assert_array_equal(first[3][0], again[3][0])
    assert not np.array_equal(first[3][0], other[3][0])
    assert not np.array_equal(first[(0, 3)][0], first[(1, 3)][0])  # epochs differ


def test_errors_name_the_file(tmp_path):
    write_synthetic_ade20k(str(tmp_path), 3, 1, seed=0, size=(32, 40))
    dataset = SegmentationSet(str(tmp_path), "train", mode="testval")
    os.remove(dataset.masks[0])  # after construction (which lists unpaired files): as by a failing disk
    with pytest.raises(BadSampleError, match="ADE_train_00000001.png: file missing"):
        dataset[0]
    with open(dataset.images[1], "wb") as handle:
        handle.write(b"not a jpeg at all")
    with pytest.raises(OSError, match="ADE_train_00000002.jpg: cannot decode"):
        dataset[1]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(dataset.masks[2])
    with pytest.raises(ValueError, match="ADE_train_00000003.png: size 5x5 differs from its image .*"
                                         "ADE_train_00000003.jpg"):
        dataset[2]
    with pytest.raises(FileNotFoundError, match="images/validation"):
        SegmentationSet(str(tmp_path / "elsewhere"), "val")


# --- loaders -------------------------------------------------------------------------------------------------

def _collect(loader, epochs=2):
    return [[(images.copy(), masks.copy()) for images, masks in loader.iterate(epoch)] for epoch in range(epochs)]


@pytest.mark.both_stacks
def test_loader_with_workers_matches_single_process_and_reshuffles(synthetic_root):
    dataset = SegmentationSet(synthetic_root, "train", base_size=64, crop_size=40, seed=0)
    single = _collect(BatchLoader(dataset, 4, seed=5, shuffle=True, workers=0, drop_last=True))
    multi = _collect(BatchLoader(dataset, 4, seed=5, shuffle=True, workers=2, drop_last=True))
    assert len(single[0]) == 3 and single[0][0][0].shape == (4, 3, 40, 40) and single[0][0][1].dtype == np.int32
    for epoch in range(2):
        for (image_a, mask_a), (image_b, mask_b) in zip(single[epoch], multi[epoch]):
            np.testing.assert_array_equal(image_a, image_b)
            np.testing.assert_array_equal(mask_a, mask_b)
    assert not np.array_equal(single[0][0][0], single[1][0][0])  # new order and augmentation each epoch


def test_loader_without_shuffle_keeps_order(synthetic_root):
    dataset = SegmentationSet(synthetic_root, "val", mode="val", crop_size=32)
    images, masks = next(BatchLoader(dataset, 2, shuffle=False, drop_last=False).iterate(0))
    assert images.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(masks[1], dataset[1][1])


# --- synthetic data ------------------------------------------------------------------------------------------

def test_synthetic_set_is_deterministic_and_ade20k_valued(tmp_path):
    write_synthetic_ade20k(str(tmp_path / "a"), 3, 1, seed=4, size=(40, 50))
    write_synthetic_ade20k(str(tmp_path / "b"), 3, 1, seed=4, size=(40, 50))
    write_synthetic_ade20k(str(tmp_path / "c"), 3, 1, seed=5, size=(40, 50))
    rel = os.path.join("ADEChallengeData2016", "images", "training", "ADE_train_00000002.jpg")
    assert open(tmp_path / "a" / rel, "rb").read() == open(tmp_path / "b" / rel, "rb").read()
    assert open(tmp_path / "a" / rel, "rb").read() != open(tmp_path / "c" / rel, "rb").read()
    mask = np.asarray(Image.open(tmp_path / "a" / rel.replace("images", "annotations").replace(".jpg", ".png")))
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, *DEFAULT_CLASS_VALUES}
    assert 40 <= mask.shape[0] <= 50 and 40 <= mask.shape[1] <= 50


def test_synthetic_classes_are_separable_by_colour(tmp_path):
    """Learnability floor: a nearest-class-mean colour rule fitted on train pixels is accurate on val."""
    write_synthetic_ade20k(str(tmp_path), 10, 4, seed=0, size=(48, 64))
    train = SegmentationSet(str(tmp_path), "train", mode="testval")
    val = SegmentationSet(str(tmp_path), "val", mode="testval")
    sums, counts = np.zeros((150, 3)), np.zeros(150)
    for image, mask in (train[index] for index in range(len(train))):
        pixels, labels = image.reshape(3, -1).T, mask.reshape(-1)
        keep = labels >= 0
        np.add.at(sums, labels[keep], pixels[keep])
        np.add.at(counts, labels[keep], 1)
    present = counts > 0
    means = sums[present] / counts[present, None]
    classes = np.flatnonzero(present)
    correct = total = 0
    for image, mask in (val[index] for index in range(len(val))):
        pixels, labels = image.reshape(3, -1).T, mask.reshape(-1)
        keep = labels >= 0
        guess = classes[np.argmin(((pixels[keep, None] - means[None]) ** 2).sum(-1), axis=1)]
        correct += int(np.sum(guess == labels[keep]))
        total += int(keep.sum())
    assert correct / total > 0.6


def test_pipeline_benchmark_reports_rates(synthetic_root):
    from bench.pipeline import measure
    rate, cpu_per_image = measure(synthetic_root, workers=0, batch_size=2, base_size=48, crop_size=32, passes=1)
    assert rate > 0 and 0 < cpu_per_image < 1.0


def test_synthetic_set_replaces_itself_but_never_touches_real_data(tmp_path):
    write_synthetic_ade20k(str(tmp_path), 5, 2, seed=0, size=(32, 40))
    write_synthetic_ade20k(str(tmp_path), 2, 1, seed=0, size=(32, 40))
    assert len(os.listdir(tmp_path / "ADEChallengeData2016" / "images" / "training")) == 2
    real = tmp_path / "real"
    (real / "ADEChallengeData2016" / "images" / "training").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        write_synthetic_ade20k(str(real), 2, 1)
    assert (real / "ADEChallengeData2016" / "images" / "training").is_dir()


@pytest.mark.both_stacks
@pytest.mark.slow
def test_full_size_pipeline_with_workers(tmp_path):
    """ADE20K-sized images, 480 crops, base 520: 2 fork workers give the same batches as the main process."""
    write_synthetic_ade20k(str(tmp_path), 8, 1, seed=0, size=(512, 683))
    dataset = SegmentationSet(str(tmp_path), "train", seed=0)
    single = _collect(BatchLoader(dataset, 4, seed=1, shuffle=True, workers=0), epochs=1)
    multi = _collect(BatchLoader(dataset, 4, seed=1, shuffle=True, workers=2), epochs=1)
    assert single[0][0][0].shape == (4, 3, 480, 480) and single[0][0][1].shape == (4, 480, 480)
    for (image_a, mask_a), (image_b, mask_b) in zip(single[0], multi[0]):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(mask_a, mask_b)


@pytest.mark.slow
def test_tiny_conv_net_learns_the_synthetic_set(tmp_path, graph_mode):
    """The synthetic set is learnable: a 3-layer conv net trained briefly segments held-out images well."""
    import mindspore as ms
    from mindspore import nn

    from encoding_custom.engine import evaluate
    from encoding_custom.engine.losses import SegmentationLoss
    from encoding_custom.evaluation.evaluator import MultiScaleEvaluator

    write_synthetic_ade20k(str(tmp_path), 64, 12, seed=0)
    train = SegmentationSet(str(tmp_path), "train", base_size=96, crop_size=64, seed=0)
    net = nn.SequentialCell([nn.Conv2d(3, 32, 5), nn.ReLU(), nn.Conv2d(32, 32, 5), nn.ReLU(), nn.Conv2d(32, 150, 1)])
    step = nn.TrainOneStepCell(nn.WithLossCell(net, SegmentationLoss()), nn.Adam(net.trainable_params(), 1e-2))
    loader = BatchLoader(train, 8, seed=0, shuffle=True, drop_last=True)
    for epoch in range(6):
        for images, masks in loader.iterate(epoch):
            step(ms.Tensor(images), ms.Tensor(masks))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    val = SegmentationSet(str(tmp_path), "val", mode="testval")
    evaluator = MultiScaleEvaluator(lambda x: net(ms.Tensor(x)), nclass=150, multi_scale=False, base_size=160,
                                    crop_size=160)
    metric = evaluate(evaluator.predict, val, 150)  # batch 1: full images differ in size
    assert metric.get()[0] > 0.7 and metric.miou_present() > 0.5


# --- class subsets (--classes) ---------------------------------------------------------------------------------

class _FixedPairs:
    """A dataset of given (image, mask) pairs that records the keys it was asked for."""

    def __init__(self, masks):
        self.masks, self.keys, self.images = masks, [], ["a.jpg"]
        self.num_class = 150

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, key):
        self.keys.append(key)
        index = key[1] if isinstance(key, tuple) else key
        return np.zeros((3, 2, 3), np.float32), self.masks[index]


def test_class_subset_renumbers_in_the_given_order_and_ignores_the_rest():
    mask = np.array([[-1, 0, 2], [4, 149, 12]], np.int32)
    inner = _FixedPairs([mask])
    subset = ClassSubset(inner, class_indices=[4, 0, 149], ignore_index=-7)
    image, remapped = subset[(3, 0)]
    np.testing.assert_array_equal(remapped, [[-7, 1, -7], [0, 2, -7]])
    assert inner.keys == [(3, 0)]  # (epoch, index) keys pass through
    assert len(subset) == 1 and subset.images == ["a.jpg"] and image.shape == (3, 2, 3)


def test_build_segmentation_set_restricts_to_classes_when_given(synthetic_root):
    full = build_segmentation_set(synthetic_root, "val", "testval")
    assert isinstance(full, SegmentationSet)
    kept = int(np.max(full[0][1]))  # a class present in the first val mask
    subset = build_segmentation_set(synthetic_root, "val", "testval", class_indices=[kept], ignore_index=-1)
    _, mask = full[0]
    _, remapped = subset[0]
    np.testing.assert_array_equal(remapped == 0, mask == kept)
    np.testing.assert_array_equal(remapped == -1, mask != kept)
