"""FSS-1000 episodes: the official sampler's episodes (fixture from HSNet's DatasetFSS), tensors, mask rule, errors."""
import os

import numpy as np
import pytest
from PIL import Image

from encoding_custom.fewshot import FewShotDataError, FssFewShot, episode_names, fss_class_ids
from encoding_custom.fewshot.fss import FSS_DIR, write_synthetic_fss1000
from encoding_custom.fewshot.splits import read_fss_categories
from tests.fixtures.fewshot.episode_reference import (
    assert_same_episode_names,
    assert_same_episode_tensors,
    file_sha256,
    load_reference,
)


@pytest.fixture(scope="module")
def reference():
    return load_reference("fss_episodes_reference.npz")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, reference):
    """The synthetic set the fixture maker ran the official code on, rebuilt; its lists must be the same bytes."""
    root = str(tmp_path_factory.mktemp("fss1000"))
    splits_dir = write_synthetic_fss1000(root, categories=tuple(reference["synthetic/categories"].tolist()),
                                         seed=int(reference["synthetic/seed"]))
    for split in ("trn", "val", "test"):
        assert file_sha256(os.path.join(splits_dir, "fss", f"{split}.txt")) == str(reference[f"split_sha256/{split}"])
    return root


@pytest.mark.parametrize("run,split,shot", [("test_shot0", "test", 0), ("test_shot1", "test", 1),
                                            ("test_shot5", "test", 5), ("trn_shot1", "trn", 1),
                                            ("val_shot0", "val", 0)])
def test_episodes_equal_the_official_sampler(synthetic, reference, run, split, shot):
    dataset = FssFewShot(synthetic, fold=0, split=split, shot=shot)  # lists found in the root
    assert len(dataset) == len(reference[f"{run}/query_name"])  # every episode, none wraps
    assert_same_episode_names(episode_names(dataset, seed=0), reference, run)
    assert [name for name, _ in dataset.pairs] == reference[f"{run}/query_name"].tolist()


def test_test_one_shot_uses_the_first_image_and_skips_it_as_query(synthetic):
    dataset = FssFewShot(synthetic, split="test", shot=1)
    zero_shot = FssFewShot(synthetic, split="test", shot=0)
    assert len(zero_shot) == 10 * 10 and len(dataset) == 10 * 9
    category = zero_shot.categories[0]
    assert [name for name, _ in zero_shot.pairs[:3]] == [f"{category}/1.jpg", f"{category}/10.jpg",
                                                         f"{category}/2.jpg"]  # string order, as sorted(glob)
    assert all(episode[2] == [episode[0].split("/")[0] + "/1.jpg"] for episode in episode_names(dataset))


@pytest.mark.parametrize("normalisation", ["vit", "imagenet"])
def test_episode_tensors_equal_the_official_loader(synthetic, reference, normalisation):
    dataset = FssFewShot(synthetic, split="test", shot=1, img_size=int(reference["tensor_size"]),
                         normalisation=normalisation)
    assert_same_episode_tensors(dataset, reference, normalisation, 3, ("query_mask", "support_masks"))


def test_classes_labels_order_and_training_target(synthetic):
    test_names = read_fss_categories("test")
    dataset = FssFewShot(synthetic, split="test", shot=0, img_size=48)
    assert dataset.class_ids == list(range(760, 770)) and dataset.categories == test_names[:10]
    assert fss_class_ids("test") == list(range(760, 1000)) and fss_class_ids("train") == list(range(520))
    assert fss_class_ids("val", os.path.join(synthetic, "fewshot_splits")) == [520, 521, 522]
    name, class_id = dataset.pairs[12]
    assert class_id == 761 and name.startswith(test_names[1] + "/")
    image, target = dataset.training_target(name, class_id, ignored_class_ids=[0, 1, 2])
    _, mask = dataset.load(name)
    assert image.shape == (3, 48, 48) and target.dtype == np.int32
    assert set(np.unique(target).tolist()) == {0, 1}  # an FSS mask holds only its own category: nothing is -1
    np.testing.assert_array_equal(target, dataset[12].query_mask.astype(np.int32))


def test_mask_rule_thresholds_greyscale_at_128(tmp_path):
    root = tmp_path / "data"
    write_synthetic_fss1000(str(root), categories=(1, 1, 1))
    category = read_fss_categories("test")[0]
    folder = root / FSS_DIR / category
    values = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(np.repeat(values, 4, axis=0)).save(folder / "3.png")  # greyscale
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, 1] = (255, 0, 0)  # L = 76: background
    rgb[:, 2] = (0, 255, 0)  # L = 150: object
    rgb[:, 3] = (255, 255, 255)
    Image.fromarray(rgb).save(folder / "4.png")
    for number in (3, 4):
        Image.new("RGB", (4, 4)).save(folder / f"{number}.jpg")
    dataset = FssFewShot(str(root), split="test", img_size=4)
    for number in (3, 4):
        index = [name for name, _ in dataset.pairs].index(f"{category}/{number}.jpg")
        np.testing.assert_array_equal(dataset[index].query_mask[0], [0, 0, 1, 1])


def test_errors_name_what_is_wrong(tmp_path, synthetic):
    with pytest.raises(FewShotDataError, match=r"no FSS-1000/ folder"):
        FssFewShot(str(tmp_path))
    with pytest.raises(FewShotDataError, match=r"fold: fss has fold 0, got 1"):
        FssFewShot(synthetic, fold=1)
    with pytest.raises(ValueError, match=r"split: expected trn/train, val or test for FSS-1000, got 'dev'"):
        FssFewShot(synthetic, split="dev")
    root = tmp_path / "data"
    write_synthetic_fss1000(str(root), categories=(1, 1, 2))
    category = read_fss_categories("test")[1]
    (root / FSS_DIR / category / "7.png").unlink()
    dataset = FssFewShot(str(root), split="test")
    index = [name for name, _ in dataset.pairs].index(f"{category}/7.jpg")
    with pytest.raises(FewShotDataError, match=rf"{category}/7\.png: file not found \(listed in the fss test split\)"):
        dataset[index]
    with pytest.raises(IndexError, match="episode 20 out of range"):
        dataset[20]
    for path in (root / FSS_DIR / category).iterdir():
        path.unlink()
    with pytest.raises(FewShotDataError, match=rf"{category}: no \.jpg image in the category folder"):
        FssFewShot(str(root), split="test")
    (root / FSS_DIR / category).rmdir()
    with pytest.raises(FewShotDataError, match=rf"{category}: category folder not found \(listed in the fss test"):
        FssFewShot(str(root), split="test")
