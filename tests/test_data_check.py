"""encoding_custom.datasets.check and the dataset's own guards: every kind of bad file is found, named and skippable."""
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets import check as data_check
from encoding_custom.datasets.check import (
    BadSampleError,
    DataCheckError,
    SplitCheck,
    check_data,
    format_problems,
    verify_data,
)
from encoding_custom.datasets.layout import ade20k_layout, dataset_dir, split_folders
from encoding_custom.datasets.segmentation import SegmentationSet, build_segmentation_set
from encoding_custom.datasets.synthetic import write_synthetic_ade20k
from encoding_custom.engine import BatchLoader

pytestmark = pytest.mark.both_stacks

SIZE = (24, 32)  # tiny images: the check's logic does not depend on the size


def _paths(root, split, number):
    """``(jpg, png)`` paths of the 1-based ``number``-th file of a synthetic split."""
    image_folder, mask_folder = split_folders(root, split)
    stem = f"ADE_{split}_{number:08d}"
    return os.path.join(image_folder, stem + ".jpg"), os.path.join(mask_folder, stem + ".png")


def _truncate(path):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) - 10])


def _rewrite_mask(path, transform):
    mask = np.asarray(Image.open(path))
    Image.fromarray(transform(mask)).save(path)


@pytest.fixture
def broken_root(tmp_path):
    """A synthetic set with one file broken in each way; returns ``(root, {problem: [bad path]}, bad stems)``."""
    root = str(tmp_path)
    write_synthetic_ade20k(root, 9, 3, seed=0, size=SIZE)
    bad = {}
    image, _ = _paths(root, "train", 2)
    _truncate(image)
    bad["unreadable_image"] = [image]
    _, mask = _paths(root, "train", 3)
    _rewrite_mask(mask, lambda m: np.stack([m] * 3, axis=-1))  # the classic colour-mask mistake
    bad["mask_mode"] = [mask]
    _, mask = _paths(root, "train", 4)
    _rewrite_mask(mask, lambda m: m[:-3])
    bad["size_mismatch"] = [mask]
    _, mask = _paths(root, "train", 5)
    _rewrite_mask(mask, lambda m: np.where(m == m.max(), 151, m).astype(np.uint8))
    bad["mask_values"] = [mask]
    image, mask = _paths(root, "train", 6)
    os.remove(mask)
    bad["image_without_mask"] = [image]
    _, mask = _paths(root, "train", 99)
    shutil.copy(_paths(root, "train", 1)[1], mask)
    bad["mask_without_image"] = [mask]
    _, mask = _paths(root, "val", 2)
    with open(mask, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n but not really")
    bad["unreadable_mask"] = [mask]
    stems = {"train": [f"ADE_train_{n:08d}" for n in (2, 3, 4, 5, 6, 99)], "val": ["ADE_val_00000002"]}
    return root, bad, stems


def _found(report):
    """``{problem: [paths]}`` over all splits of a report."""
    found = {}
    for check in report.splits.values():
        for problem, entries in check.problems.items():
            found.setdefault(problem, []).extend(path for path, _ in entries)
    return found


# --- the check ---------------------------------------------------------------------------------------------------

def test_check_finds_exactly_the_broken_files(broken_root):
    root, bad, stems = broken_root
    report = check_data(root, workers=1, progress=False)
    assert not report.ok
    assert _found(report) == bad
    assert report.excluded("train") == stems["train"] and report.excluded("val") == stems["val"]
    assert report.splits["train"].n_pairs == 8 and report.splits["val"].n_pairs == 3  # 9 images, one mask gone


def test_verify_stops_with_every_bad_file_grouped(broken_root):
    root, bad, _ = broken_root
    with pytest.raises(DataCheckError) as caught:
        verify_data(root, workers=1, progress=False)
    message = str(caught.value)
    folder = dataset_dir(root)
    assert message.startswith(f"bad data in {folder}:\n")
    listed = [line.split(": ")[0].strip() for line in message.splitlines()[1:] if line.startswith("    ")]
    assert sorted(listed) == sorted(os.path.relpath(path, folder) for paths in bad.values() for path in paths)
    assert "train: 1 masks that are not single-channel class maps:" in message
    assert "got mode RGB: a colour-coded mask?" in message
    assert "train: 1 masks with values outside 0..150:" in message and "found 151" in message
    assert "val: 1 masks that cannot be decoded" in message
    assert "--skip_bad_samples" in message
    assert caught.value.report is not None and not caught.value.report.ok


def test_a_good_set_passes_and_reports_on_stderr(tmp_path, capsys):
    write_synthetic_ade20k(str(tmp_path), 4, 2, seed=0, size=SIZE)
    report = verify_data(str(tmp_path), workers=1, progress=True)
    assert report.ok and report.excluded("train") == []
    err = capsys.readouterr().err
    assert "checking data" in err and "train 4 pairs (0 bad), val 2 pairs (0 bad)" in err


def test_pool_gives_the_same_report_as_one_process(tmp_path):
    root = str(tmp_path)
    write_synthetic_ade20k(root, 70, 1, seed=1, size=SIZE)  # 71 pairs: three chunks of 32
    for number in (1, 40, 70):
        _rewrite_mask(_paths(root, "train", number)[1], lambda m: (m.astype(np.int64) + 200).clip(0, 255)
                      .astype(np.uint8))
    single = check_data(root, workers=1, progress=False)
    pooled = check_data(root, workers=2, progress=False)
    assert single.splits["train"].problems == pooled.splits["train"].problems
    assert pooled.excluded("train") == [f"ADE_train_{n:08d}" for n in (1, 40, 70)]


def test_empty_or_missing_split_names_the_folder(tmp_path):
    root = str(tmp_path)
    write_synthetic_ade20k(root, 2, 0, seed=0, size=SIZE)
    val_images = split_folders(root, "val")[0]
    empty = f"val: split 'val' is empty: no .jpg images in {re.escape(val_images)}"
    for skip in (False, True):
        with pytest.raises(DataCheckError, match=empty):
            verify_data(root, workers=1, progress=False, skip_bad_samples=skip)
    with pytest.raises(DataCheckError, match="ADE20K image folder not found: .*elsewhere"):
        verify_data(str(tmp_path / "elsewhere"), workers=1, progress=False)
    with pytest.raises(DataCheckError, match=f"split 'val' is empty: no .jpg images in {re.escape(val_images)}"):
        SegmentationSet(root, "val")
    train_images = split_folders(root, "train")[0]
    with pytest.raises(DataCheckError, match=f"no image/mask pair left for split 'train' in {re.escape(train_images)}"):
        SegmentationSet(root, "train", exclude=["ADE_train_00000001", "ADE_train_00000002"])


def test_problem_lists_are_cut_after_max_listed():
    check = SplitCheck("train", "/data/images/training")
    for number in range(25):
        check.add("mask_values", f"/data/m{number:02d}.png", "mask values must be 0..150, found 151")
    text = format_problems([check], ade20k_layout("/data"), max_listed=20)
    assert text.startswith("train: 25 masks with values outside 0..150:")
    assert "/data/m19.png" in text and "/data/m20.png" not in text and text.endswith("... and 5 more")


# --- skipping ------------------------------------------------------------------------------------------------------

def test_skip_drops_exactly_the_bad_pairs_with_a_warning(broken_root, capsys):
    root, _, stems = broken_root
    report = verify_data(root, workers=1, progress=False, skip_bad_samples=True)
    warning = capsys.readouterr().err
    assert warning.startswith("warning: --skip_bad_samples: leaving out 6 train, 1 val bad sample(s):")
    assert "annotations/training/ADE_train_00000003.png: mask must be single-channel" in warning
    train = SegmentationSet(root, "train", exclude=report.excluded("train"))
    good = [_paths(root, "train", n) for n in (1, 7, 8, 9)]
    assert train.images == [image for image, _ in good] and train.masks == [mask for _, mask in good]
    val = SegmentationSet(root, "val", mode="testval", exclude=report.excluded("val"))
    assert val.images == [_paths(root, "val", n)[0] for n in (1, 3)]
    for index in range(len(train)):
        train[index]  # every kept pair loads
    # the same list at every start, so the data order of a resumed run is the uninterrupted run's
    again = verify_data(root, workers=1, skip_bad_samples=True, quiet=True)
    assert again.excluded("train") == stems["train"] and capsys.readouterr().err == ""
    rebuilt = build_segmentation_set(root, "train", "train", class_indices=[0, 3], exclude=again.excluded("train"))
    order = [list(b) for b in BatchLoader(train, 2, seed=3).batch_indices(5)]
    assert order == [list(b) for b in BatchLoader(rebuilt, 2, seed=3).batch_indices(5)]


def test_skip_refuses_a_split_with_nothing_left(tmp_path):
    root = str(tmp_path)
    write_synthetic_ade20k(root, 2, 1, seed=0, size=SIZE)
    for number in (1, 2):
        _truncate(_paths(root, "train", number)[0])
    with pytest.raises(DataCheckError, match="nothing to train on even with --skip_bad_samples:\ntrain: 2 images"):
        verify_data(root, workers=1, progress=False, skip_bad_samples=True)


# --- the cache -----------------------------------------------------------------------------------------------------

def test_cache_skips_unchanged_pairs_and_rechecks_changed_ones(broken_root, tmp_path, monkeypatch):
    root, bad, _ = broken_root
    cache = str(tmp_path / "exp" / "data_check.json")
    first = check_data(root, workers=1, progress=False, cache_path=cache)
    assert first.n_cached == 0 and os.path.isfile(cache)

    checked = []
    real_check_pair = data_check.check_pair
    monkeypatch.setattr(data_check, "check_pair", lambda *args: checked.append(args[1]) or real_check_pair(*args))
    second = check_data(root, workers=1, progress=False, cache_path=cache)
    assert checked == [] and second.n_cached == 11 and _found(second) == bad

    _, mask = _paths(root, "train", 7)
    _rewrite_mask(mask, lambda m: np.full_like(m, 200))
    os.utime(mask, ns=(1, 1))  # a new mtime even on file systems with coarse timestamps
    third = check_data(root, workers=1, progress=False, cache_path=cache)
    assert checked == [mask] and third.n_cached == 10
    assert _found(third)["mask_values"] == bad["mask_values"] + [mask]


def test_cache_of_other_settings_or_damaged_is_ignored(tmp_path):
    root = str(tmp_path / "data")
    write_synthetic_ade20k(root, 2, 1, seed=0, size=SIZE)
    cache = str(tmp_path / "data_check.json")
    check_data(root, workers=1, progress=False, cache_path=cache)
    other_rule = dataclasses.replace(ade20k_layout(root), num_class=20)
    assert check_data(other_rule, workers=1, progress=False, cache_path=cache).n_cached == 0
    with open(cache, "w") as handle:
        handle.write("{not json")
    assert check_data(root, workers=1, progress=False, cache_path=cache).n_cached == 0


def test_a_cache_the_disk_cannot_hold_is_a_note_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / "data")
    write_synthetic_ade20k(root, 2, 1, seed=0, size=SIZE)
    folder = tmp_path / "exp"
    dump = json.dump

    def full(value, stream, **kwargs):
        stream.write('{"version": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full)
    report = check_data(root, workers=1, progress=False, cache_path=str(folder / "data_check.json"))
    monkeypatch.setattr(json, "dump", dump)
    assert sum(check.n_pairs for check in report.splits.values()) == 3 and os.listdir(folder) == []
    assert capsys.readouterr().err.strip() == ("note: the data check's cache %s was not written (No space left on "
                                               "device): the next start checks every file again"
                                               % (folder / "data_check.json"))


# --- the dataset's own guards (the check skipped, or a file broken after it) ---------------------------------------

def test_dataset_lists_unpaired_files_unless_excluded(broken_root):
    root, bad, _ = broken_root
    with pytest.raises(DataCheckError) as caught:
        SegmentationSet(root, "train")
    message = str(caught.value)
    assert "train: 1 images without a mask:\n    images/training/ADE_train_00000006.jpg: no mask" in message
    assert "train: 1 masks without an image:\n    annotations/training/ADE_train_00000099.png: no image" in message
    assert "ADE_train_00000002" not in message  # the decoding problems are the full check's, not the listing's
    dataset = SegmentationSet(root, "train", exclude=["ADE_train_00000006", "ADE_train_00000099"])
    assert len(dataset) == 8


@pytest.mark.parametrize("class_indices", [None, [0, 2]])
def test_out_of_range_mask_value_raises_naming_the_file(tmp_path, class_indices):
    """A value > 150 would index past the logits in the loss kernel; a ClassSubset would hide it as 'ignore'."""
    root = str(tmp_path)
    write_synthetic_ade20k(root, 2, 0, seed=0, size=SIZE)
    _, mask = _paths(root, "train", 2)
    _rewrite_mask(mask, lambda m: np.where(np.arange(m.shape[1]) < 3, 255, m).astype(np.uint8))
    dataset = build_segmentation_set(root, "train", "train", base_size=32, crop_size=16, class_indices=class_indices)
    dataset[0]
    with pytest.raises(ValueError, match=f"^{re.escape(mask)}: mask values must be 0..150 .*found 255$"):
        dataset[1]


def test_bad_sample_in_a_loader_worker_arrives_named(tmp_path):
    root = str(tmp_path)
    write_synthetic_ade20k(root, 4, 0, seed=0, size=SIZE)
    dataset = SegmentationSet(root, "train", base_size=32, crop_size=16)
    image, _ = _paths(root, "train", 3)
    _truncate(image)  # broken after the dataset was built, as by a failing disk mid-run
    loader = BatchLoader(dataset, 4, shuffle=False, workers=2)
    with pytest.raises(BadSampleError) as caught:
        list(loader.iterate(0))
    assert caught.value.problem == "unreadable_image" and caught.value.path == image
    assert str(caught.value).startswith(f"{image}: cannot decode: ") and "\n" not in str(caught.value)


def test_rgb_mask_and_size_mismatch_in_the_dataset(tmp_path):
    root = str(tmp_path)
    write_synthetic_ade20k(root, 2, 0, seed=0, size=SIZE)
    dataset = SegmentationSet(root, "train", mode="testval")
    first_mask, second_mask = (_paths(root, "train", n)[1] for n in (1, 2))
    _rewrite_mask(first_mask, lambda m: np.stack([m] * 3, axis=-1))
    _rewrite_mask(second_mask, lambda m: m[:, :-1])
    with pytest.raises(BadSampleError, match=f"^{re.escape(first_mask)}: mask must be single-channel .* mode RGB"):
        dataset[0]
    with pytest.raises(BadSampleError, match=f"^{re.escape(second_mask)}: size .* differs from its image"):
        dataset[1]
