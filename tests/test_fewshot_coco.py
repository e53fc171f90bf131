"""COCO-20i episodes: the official sampler's episodes (fixture from HSNet's DatasetCOCO), tensors, layout, errors."""
import hashlib
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from encoding_custom.fewshot import CocoFewShot, FewShotDataError, coco_class_ids, episode_names, read_coco_classwise
from encoding_custom.fewshot.coco import ANNOTATION_DIR, COCO_DIR, write_synthetic_coco20i
from encoding_custom.fewshot.episodes import resize_mask_nearest
from tests.fixtures.fewshot.episode_reference import (
    assert_same_episode_names,
    assert_same_episode_tensors,
    load_reference,
)


@pytest.fixture(scope="module")
def reference():
    return load_reference("coco_episodes_reference.npz")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, reference):
    """The synthetic set the fixture maker ran the official code on, rebuilt; its lists must be the same."""
    root = str(tmp_path_factory.mktemp("coco20i"))
    settings = {key: int(reference[f"synthetic/{key}"]) for key in ("n_train", "n_val", "seed")}
    splits_dir = write_synthetic_coco20i(root, **settings)
    assert splits_dir == os.path.join(root, "fewshot_splits")
    for split in ("trn", "val"):
        for fold in range(4):
            data = pickle.dumps(read_coco_classwise(split, fold, splits_dir), protocol=3)
            assert hashlib.sha256(data).hexdigest() == str(reference[f"split_sha256/{split}/fold{fold}"])
    return root


@pytest.mark.parametrize("run,split,shot", [("test_shot0", "test", 0), ("test_shot1", "test", 1),
                                            ("test_shot5", "test", 5), ("trn_shot1", "trn", 1)])
def test_episodes_equal_the_official_sampler(synthetic, reference, run, split, shot):
    dataset = CocoFewShot(synthetic, fold=int(reference["fold"]), split=split, shot=shot)  # lists found in the root
    count = len(reference[f"{run}/query_name"])
    assert_same_episode_names(episode_names(dataset, count, seed=0), reference, run)
    if split == "test":
        assert count == len(dataset) == 1000
        assert set(reference[f"{run}/class_id"].tolist()) == set(coco_class_ids(0, "test"))


@pytest.mark.parametrize("normalisation", ["vit", "imagenet"])
def test_episode_tensors_equal_the_official_loader(synthetic, reference, normalisation):
    dataset = CocoFewShot(synthetic, fold=0, split="test", shot=1, img_size=int(reference["tensor_size"]),
                          normalisation=normalisation)
    assert_same_episode_tensors(dataset, reference, normalisation, 3, ("query_mask", "support_masks"))
    assert dataset[0].query_ignore_idx is None and dataset[0].support_ignore_idxs is None


def test_fold_classes_are_interleaved():
    assert coco_class_ids(1, "test") == list(range(1, 80, 4))
    assert coco_class_ids(1, "val") == coco_class_ids(1, "test")
    train = coco_class_ids(1, "train")
    assert len(train) == 60 and not set(train) & set(coco_class_ids(1, "test"))


def test_layout_pairs_and_training_target(synthetic):
    dataset = CocoFewShot(synthetic, fold=2, split="trn", shot=0, img_size=64)
    assert dataset.class_ids == coco_class_ids(2, "trn")
    assert {class_id for _, class_id in dataset.pairs} == set(dataset.class_ids)  # all 60 occur (160 images)
    assert len(dataset) == len(dataset.img_metadata) == len({name for name, _ in dataset.pairs})
    name = "train2014/COCO_train2014_000000000001.jpg"
    assert dataset.image_path(name) == os.path.join(synthetic, COCO_DIR, name)
    assert dataset.mask_path(name) == os.path.join(synthetic, ANNOTATION_DIR, "train2014",
                                                   "COCO_train2014_000000000001.png")
    # An image with a training class and a held-out class: 1 / -1 / 0 as the mask says, resized nearest.
    held_out = coco_class_ids(2, "test")

    def holds_held_out_class(name):
        with Image.open(dataset.mask_path(name)) as mask_file:
            assert mask_file.mode == "L"
            return bool(set(np.unique(np.array(mask_file)).tolist()) & {c + 1 for c in held_out})

    name, class_id = next(pair for pair in dataset.pairs if holds_held_out_class(pair[0]))
    image, target = dataset.training_target(name, class_id, held_out)
    assert image.shape == (3, 64, 64) and image.dtype == np.float32 and target.dtype == np.int32
    _, mask = dataset.load(name)
    resized = resize_mask_nearest(mask, 64, 64)
    np.testing.assert_array_equal(target == 1, resized == class_id + 1)
    np.testing.assert_array_equal(target == -1, np.isin(resized, [c + 1 for c in held_out]))
    assert (target == 1).any() and (target == -1).any() and (target == 0).any()
    # Without ignored classes the held-out pixels are plain background; the episode's mask is the same foreground.
    assert set(np.unique(dataset.training_target(name, class_id)[1]).tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"class_id: \d+ is one of the ignored classes"):
        dataset.training_target(name, held_out[0], held_out)


def test_errors_name_what_is_wrong(tmp_path, synthetic):
    with pytest.raises(FewShotDataError, match=r"no COCO2014/ folder"):
        CocoFewShot(str(tmp_path), fold=0)
    with pytest.raises(FewShotDataError, match=r"fold: coco has folds 0, 1, 2, 3, got 4"):
        CocoFewShot(synthetic, fold=4)
    empty_root = tmp_path / "empty"
    (empty_root / COCO_DIR).mkdir(parents=True)
    dataset = CocoFewShot(str(empty_root), fold=0, splits_dir=os.path.join(synthetic, "fewshot_splits"))
    np.random.seed(0)
    with pytest.raises(FewShotDataError, match=r"COCO2014/val2014/COCO_val2014_\d{12}\.jpg: file not found "
                                               r"\(listed in the coco val split\)"):
        dataset[0]
    broken = tmp_path / "broken"
    write_synthetic_coco20i(str(broken), n_train=0, n_val=80)
    first = "val2014/COCO_val2014_000000000001"
    Image.new("RGB", (5, 5)).save(broken / ANNOTATION_DIR / (first + ".png"))
    dataset = CocoFewShot(str(broken), fold=0)
    with pytest.raises(FewShotDataError, match=r"COCO_val2014_000000000001\.png: expected a mask of mode L/P, "
                                               r"got RGB"):
        dataset.load(first + ".jpg")
    Image.new("L", (5, 5)).save(broken / ANNOTATION_DIR / (first + ".png"))
    with pytest.raises(FewShotDataError, match=r"\.png: mask is 5x5, its image COCO_val2014_000000000001\.jpg is "):
        dataset.load(first + ".jpg")
    (broken / ANNOTATION_DIR / (first + ".png")).write_bytes(b"not a png")
    with pytest.raises(FewShotDataError, match=r"\.png: not a readable mask image"):
        dataset.training_target(first + ".jpg", 0)
    with pytest.raises(FewShotDataError, match=r"fewshot_splits: the coco trn list of fold 0 has no image of classes"):
        CocoFewShot(str(broken), fold=0, split="trn")  # n_train=0: the training classes have no image
