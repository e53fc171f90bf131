"""PASCAL-5i episodes: the official sampler's episodes (fixture from HSNet's DatasetPASCAL), tensors, layout."""
import os

import numpy as np
import pytest
from PIL import Image

from encoding_custom.fewshot import FewShotDataError, PascalFewShot, episode_names, write_synthetic_pascal5i
from encoding_custom.fewshot.episodes import nearest_source_indices, resize_mask_nearest
from encoding_custom.fewshot.pascal import IMAGE_DIR, MASK_DIR, extract_ignore_idx, pascal_class_ids
from tests.fixtures.fewshot.episode_reference import (
    assert_same_episode_names,
    assert_same_episode_tensors,
    file_sha256,
    load_reference,
)


@pytest.fixture(scope="module")
def reference():
    return load_reference("pascal_episodes_reference.npz")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, reference):
    """The synthetic set the fixture maker ran the official code on, rebuilt; its lists must be the same bytes."""
    root = str(tmp_path_factory.mktemp("pascal5i"))
    settings = {key: int(reference[f"synthetic/{key}"]) for key in ("n_train", "n_val", "seed")}
    splits_dir = write_synthetic_pascal5i(root, **settings)
    for split in ("trn", "val"):
        for fold in range(4):
            digest = file_sha256(os.path.join(splits_dir, "pascal", split, f"fold{fold}.txt"))
            assert digest == str(reference[f"split_sha256/{split}/fold{fold}"]), (split, fold)
    return root, splits_dir


@pytest.mark.parametrize("run,split,shot", [("test_shot0", "test", 0), ("test_shot1", "test", 1),
                                            ("test_shot5", "test", 5), ("trn_shot1", "trn", 1)])
def test_episodes_equal_the_official_sampler(synthetic, reference, run, split, shot):
    root, splits_dir = synthetic
    dataset = PascalFewShot(root, fold=int(reference["fold"]), split=split, shot=shot, splits_dir=splits_dir)
    expected_names = reference[f"{run}/query_name"].tolist()
    assert_same_episode_names(episode_names(dataset, len(expected_names), seed=0), reference, run)
    if split == "test":
        assert len(dataset) == 1000 and len(set(expected_names)) < 1000  # 1000 episodes over a shorter list


@pytest.mark.parametrize("normalisation", ["vit", "imagenet"])
def test_episode_tensors_equal_the_official_loader(synthetic, reference, normalisation):
    root, splits_dir = synthetic
    dataset = PascalFewShot(root, fold=0, split="test", shot=1, img_size=int(reference["tensor_size"]),
                            normalisation=normalisation, splits_dir=splits_dir)
    assert_same_episode_tensors(dataset, reference, normalisation, 3,
                                ("query_mask", "query_ignore_idx", "support_masks", "support_ignore_idxs"))


def test_zero_shot_episode_at_480(synthetic):
    root, splits_dir = synthetic
    dataset = PascalFewShot(root, fold=1, split="test", shot=0, splits_dir=splits_dir)
    episode = dataset[1003]  # wraps around like HSNet's idx %= len(metadata)
    assert episode.query_name == dataset.img_metadata[1003 % len(dataset.img_metadata)][0]
    assert episode.query_img.shape == (3, 480, 480) and episode.query_mask.shape == (480, 480)
    assert episode.support_imgs.shape == (0, 3, 480, 480) and episode.support_names == []
    assert episode.class_id in range(5, 10)
    assert set(np.unique(episode.query_mask)) <= {0.0, 1.0} and episode.query_mask.any()
    assert episode.query_ignore_idx.any() and not (episode.query_ignore_idx * episode.query_mask).any()


def test_synthetic_layout_and_lists(synthetic):
    root, splits_dir = synthetic
    modes = set()
    for index in range(4):
        name = f"syn_val_{index:06d}"
        with Image.open(os.path.join(root, MASK_DIR, name + ".png")) as mask:
            modes.add(mask.mode)
            values = set(np.unique(np.array(mask)).tolist())
        assert 255 in values and index % 20 + 1 in values and values <= set(range(21)) | {255}
        with Image.open(os.path.join(root, IMAGE_DIR, name + ".jpg")) as image:
            assert image.mode == "RGB"
    assert modes == {"P", "L"}
    with open(os.path.join(splits_dir, "pascal", "val", "fold0.txt"), encoding="utf-8") as handle:
        first = handle.readline()
    assert first == "syn_val_000000__01\n"


def test_class_ids_and_mask_rule():
    assert pascal_class_ids(2, "test") == [10, 11, 12, 13, 14]
    assert pascal_class_ids(2, "trn") == [c for c in range(20) if c not in range(10, 15)]
    foreground, boundary = extract_ignore_idx(np.array([[0, 3, 4, 255]], np.uint8), 2)
    np.testing.assert_array_equal(foreground, [[0, 1, 0, 0]])
    np.testing.assert_array_equal(boundary, [[0, 0, 0, 1]])


def test_nearest_resize_follows_torch_rules():
    # torch: src = min(floor(dst * float32(in / out)), in - 1), exact copies for out == in and out == 2 in.
    np.testing.assert_array_equal(nearest_source_indices(3, 6), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(nearest_source_indices(5, 3), [0, 1, 3])
    mask = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(resize_mask_nearest(mask, 3, 4), mask)
    assert resize_mask_nearest(mask, 7, 9).dtype == np.float32


def test_errors_name_what_is_wrong(tmp_path, synthetic):
    root, splits_dir = synthetic
    with pytest.raises(FewShotDataError, match=r"no VOC2012/ folder"):
        PascalFewShot(str(tmp_path), fold=0)
    with pytest.raises(ValueError, match="shot: expected"):
        PascalFewShot(root, fold=0, shot=-1, splits_dir=splits_dir)
    with pytest.raises(ValueError, match="normalisation: expected"):
        PascalFewShot(root, fold=0, normalisation="clip", splits_dir=splits_dir)
    missing = tmp_path / "data"
    (missing / "VOC2012").mkdir(parents=True)
    dataset = PascalFewShot(str(missing), fold=0, splits_dir=splits_dir)
    with pytest.raises(FewShotDataError, match=r"syn_val_000000\.jpg: file not found"):
        dataset[0]
    lonely = tmp_path / "lonely"
    (lonely / "pascal" / "val").mkdir(parents=True)
    (lonely / "pascal" / "val" / "fold0.txt").write_text("syn_val_000000__01\n")
    with pytest.raises(FewShotDataError, match="class 0: no support image other than the query"):
        PascalFewShot(root, fold=0, shot=1, splits_dir=str(lonely)).sample_episode(0)
