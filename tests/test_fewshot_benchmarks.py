"""The few-shot registry: choices, packaged label files, fold classes, datasets and synthetic sets by root alone."""
import os
import re

import numpy as np
import pytest

from encoding_custom.fewshot import (
    BENCHMARKS,
    FOLDS_PER_BENCHMARK,
    CocoFewShot,
    FewShotDataError,
    FewShotEpisode,
    FssFewShot,
    PascalFewShot,
    benchmark_folds,
    benchmark_labels,
    check_benchmark_fold,
    coco_class_ids,
    fold_class_ids,
    make_fewshot_dataset,
    pascal_class_ids,
    read_coco_classwise,
    read_fss_categories,
    read_pascal_metadata,
    write_synthetic,
)
from encoding_custom.fewshot.benchmarks import LABELS_DIR
from encoding_custom.fewshot.episodes import draw_supports, resize_mask_nearest
from encoding_custom.fewshot.pascal import PASCAL_CLASS_NAMES
from encoding_custom.fewshot.splits import PACKAGED_SPLITS_DIR, resolve_splits_dir
from tests.fixtures.fewshot.episode_reference import file_sha256

SYNTHETIC_OPTIONS = {"pascal": {"n_train": 40, "n_val": 20, "size": (32, 48)},
                     "coco": {"n_train": 80, "n_val": 80, "size": (32, 48)},
                     "fss": {"categories": (2, 1, 2), "size": (32, 48)}}


def test_choices_and_folds():
    assert BENCHMARKS == ("pascal", "coco", "fss")
    assert FOLDS_PER_BENCHMARK == {"pascal": 4, "coco": 4, "fss": 1}
    assert benchmark_folds("coco") == [0, 1, 2, 3] and benchmark_folds("fss") == [0]
    with pytest.raises(FewShotDataError, match=r"benchmark: expected one of pascal, coco, fss, got 'ade20k'"):
        benchmark_folds("ade20k")
    with pytest.raises(FewShotDataError, match=r"fold: fss has fold 0, got 2"):
        fold_class_ids("fss", 2, "test")
    with pytest.raises(FewShotDataError, match=r"fold: pascal has folds 0, 1, 2, 3, got 4"):
        make_fewshot_dataset("pascal", "/nowhere", 4)
    with pytest.raises(FewShotDataError, match=r"fold: expected an integer, got '1'"):
        fold_class_ids("coco", "1", "test")


def test_every_fold_check_is_the_registry_rule():
    assert check_benchmark_fold("coco", np.int64(3)) == 3 and type(check_benchmark_fold("coco", np.int64(3))) is int
    pascal_fault, coco_fault = r"fold: pascal has folds 0, 1, 2, 3, got 4", r"fold: coco has folds 0, 1, 2, 3, got 4"
    for fault, call in ((pascal_fault, lambda: pascal_class_ids(4, "test")),
                        (pascal_fault, lambda: read_pascal_metadata("val", 4)),
                        (coco_fault, lambda: coco_class_ids(4, "test")),
                        (coco_fault, lambda: read_coco_classwise("val", 4)),
                        (r"fold: expected an integer, got True", lambda: pascal_class_ids(True, "test"))):
        with pytest.raises(FewShotDataError, match=fault):
            call()


def test_draw_supports_makes_hsnets_draws():
    candidates, query = ["b", "q", "a", "q"], "q"
    official = np.random.RandomState(5)  # HSNet's loop: np.random.choice(names, 1, replace=False)[0] per draw
    expected = []
    while len(expected) < 6:
        name = str(official.choice(candidates, 1, replace=False)[0])
        if name != query:
            expected.append(name)
    rng = np.random.RandomState(5)
    assert draw_supports(candidates, query, 6, rng) == expected
    assert rng.randint(1 << 30) == official.randint(1 << 30)  # as many draws as HSNet's: the next episodes agree
    untouched = np.random.RandomState(5)
    assert draw_supports(["q"], query, 0, untouched) == []  # 0-shot: no draw, even with no other candidate
    assert untouched.randint(1 << 30) == np.random.RandomState(5).randint(1 << 30)
    with pytest.raises(FewShotDataError, match=r"^category cat: no support image other than the query q$"):
        draw_supports(["q", "q"], query, 1, rng, "category cat")


def test_label_files_are_the_documented_copies():
    with open(os.path.join(LABELS_DIR, "SOURCE.md"), encoding="utf-8") as handle:
        listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", handle.read(), re.M))
    assert sorted(listed) == [f"fewshot_{b}.txt" for b in ("coco", "fss", "pascal")]
    for name, digest in listed.items():
        path = os.path.join(LABELS_DIR, name)
        assert file_sha256(path) == digest, name
        with open(path, "rb") as handle:
            data = handle.read()
        assert not data.endswith(b"\n") and b"\r" not in data, name  # as lang-seg ships them
    counts = {benchmark: len(benchmark_labels(benchmark)) for benchmark in BENCHMARKS}
    assert counts == {"pascal": 20, "coco": 80, "fss": 1000}
    assert tuple(benchmark_labels("pascal")) == PASCAL_CLASS_NAMES
    coco = benchmark_labels("coco")
    assert coco[:5] == ["person", "bicycle", "car", "motorbike", "aeroplane"] and coco[-1] == "toothbrush"
    # FSS class id = split offset + index in the sorted split list (HSNet's DatasetFSS): the label order matches.
    assert benchmark_labels("fss") == sum((read_fss_categories(s) for s in ("trn", "val", "test")), [])
    assert all(len(set(benchmark_labels(b))) == len(benchmark_labels(b)) for b in BENCHMARKS)


def test_fold_class_ids():
    assert fold_class_ids("pascal", 3, "test") == [15, 16, 17, 18, 19]
    assert fold_class_ids("coco", 0, "test") == list(range(0, 80, 4))
    assert fold_class_ids("coco", 0, "val") == fold_class_ids("coco", 0, "test")
    assert fold_class_ids("fss", 0, "test") == list(range(760, 1000))
    assert fold_class_ids("fss", 0, "val") == list(range(520, 760))
    for benchmark, nclass in (("pascal", 20), ("coco", 80)):
        for fold in benchmark_folds(benchmark):
            test, train = fold_class_ids(benchmark, fold, "test"), fold_class_ids(benchmark, fold, "trn")
            assert sorted(test + train) == list(range(nclass)), (benchmark, fold)


@pytest.mark.parametrize("benchmark,dataset_class", [("pascal", PascalFewShot), ("coco", CocoFewShot),
                                                     ("fss", FssFewShot)])
def test_synthetic_sets_need_only_their_root(tmp_path, benchmark, dataset_class):
    root = str(tmp_path / benchmark)
    splits_dir = write_synthetic(benchmark, root, seed=3, **SYNTHETIC_OPTIONS[benchmark])
    assert splits_dir == os.path.join(root, "fewshot_splits") == resolve_splits_dir(root, benchmark)
    assert resolve_splits_dir(root, [b for b in BENCHMARKS if b != benchmark][0]) == PACKAGED_SPLITS_DIR
    for split in ("test", "trn"):
        dataset = make_fewshot_dataset(benchmark, root, 0, split, shot=0, img_size=32, normalisation="imagenet")
        assert type(dataset) is dataset_class and dataset.benchmark == benchmark
        assert dataset.class_ids == fold_class_ids(benchmark, 0, split, splits_dir)
        assert {class_id for _, class_id in dataset.pairs} <= set(dataset.class_ids)
        episode = dataset[0]
        assert isinstance(episode, FewShotEpisode) and episode.class_id in dataset.class_ids
        assert episode.query_img.shape == (3, 32, 32) and episode.query_mask.shape == (32, 32)
        assert episode.support_imgs.shape == (0, 3, 32, 32)
        name, class_id = dataset.pairs[-1]
        image, target = dataset.training_target(name, class_id, fold_class_ids(benchmark, 0, "test", splits_dir)
                                                if split == "trn" else ())
        assert image.shape == (3, 32, 32) and target.shape == (32, 32) and (target == 1).any()
    episodes = list(make_fewshot_dataset(benchmark, root, 0, "test", img_size=16))
    assert len(episodes) == (1000 if benchmark != "fss" else 20)  # iteration stops after len() episodes


def test_pascal_training_target_keeps_boundaries_and_ignores_held_out_classes(tmp_path):
    root = str(tmp_path / "pascal")
    write_synthetic("pascal", root, **SYNTHETIC_OPTIONS["pascal"])
    dataset = make_fewshot_dataset("pascal", root, 1, "trn", img_size=48)
    held_out = fold_class_ids("pascal", 1, "test")
    for name, class_id in dataset.pairs:
        _, target = dataset.training_target(name, class_id, held_out)
        if (target == -1).any():
            break
    else:
        pytest.fail("no training image holds a held-out class")
    mask = resize_mask_nearest(dataset.load(name)[1], 48, 48)
    np.testing.assert_array_equal(target == -1, np.isin(mask, [c + 1 for c in held_out]))
    assert (mask == 255).any() and not (target[mask == 255]).any()  # boundaries: 0, as in the official loss
    np.testing.assert_array_equal(target == 1, mask == class_id + 1)


def test_write_synthetic_refuses_unknown_benchmarks_and_splits_dirs(tmp_path):
    with pytest.raises(FewShotDataError, match="benchmark: expected one of"):
        write_synthetic("voc", str(tmp_path))
    with pytest.raises(TypeError, match="no splits_dir"):
        write_synthetic("pascal", str(tmp_path), splits_dir=str(tmp_path))
