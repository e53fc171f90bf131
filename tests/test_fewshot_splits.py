"""The packaged HSNet split files: unchanged text files, COCO pickles packed without loss, readers' semantics."""
import hashlib
import os
import pickle
import re

import numpy as np
import pytest

from encoding_custom.fewshot import splits
from encoding_custom.fewshot.pascal import pascal_class_ids
from encoding_custom.fewshot.splits import (
    PACKAGED_SPLITS_DIR,
    FewShotDataError,
    pack_coco_classwise,
    read_coco_classwise,
    read_fss_categories,
    read_pascal_metadata,
)


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _listed_sha256(path, pattern=r"^([0-9a-f]{64})  (\S+)$"):
    with open(path, encoding="utf-8") as handle:
        return {match.group(2): match.group(1) for match in map(re.compile(pattern).match, handle) if match}


def test_text_split_files_are_the_documented_copies():
    listed = _listed_sha256(os.path.join(PACKAGED_SPLITS_DIR, "SOURCE.md"))
    assert len(listed) == 11
    for relative, digest in listed.items():
        assert _sha256(os.path.join(PACKAGED_SPLITS_DIR, relative)) == digest, relative


@pytest.mark.parametrize("split", ["trn", "val"])
@pytest.mark.parametrize("fold", range(4))
def test_packed_coco_split_repickles_to_the_original_bytes(split, fold):
    original = _listed_sha256(os.path.join(PACKAGED_SPLITS_DIR, "coco", "ORIGINAL_SHA256"))
    classwise = read_coco_classwise(split, fold)
    assert list(classwise) == list(range(80))
    assert hashlib.sha256(pickle.dumps(classwise, protocol=3)).hexdigest() == original[f"{split}/fold{fold}.pkl"]


@pytest.mark.parametrize("fold", range(4))
def test_coco_val_lists_hold_exactly_the_fold_classes(fold):
    # HSNet's coco.py: class_ids_val = [fold + 4 * v for v in range(20)]; the lists agree with it.
    classwise = read_coco_classwise("test", fold)
    assert [c for c, names in classwise.items() if names] == [fold + 4 * v for v in range(20)]
    assert classwise[fold][0].startswith("val2014/COCO_val2014_")
    trained = [c for c, names in read_coco_classwise("train", fold).items() if names]
    # Unlike PASCAL's, COCO's trn/fold<K> lists the 60 training classes of fold K (coco.py reads only that file).
    assert trained == [c for c in range(80) if c % 4 != fold]


def test_pascal_lists_are_one_based_and_fold_aligned():
    val0 = read_pascal_metadata("val", 0)
    assert len(val0) == 346 and val0[0] == ("2007_000033", 0) and val0[1] == ("2007_000061", 3)
    for split in ("trn", "val"):
        for fold in range(4):
            classes = {class_id for _, class_id in read_pascal_metadata(split, fold)}
            assert classes == set(pascal_class_ids(fold, "val")), (split, fold)
    assert len(read_pascal_metadata("trn", 2)) == 5883


def test_fss_categories_sorted_and_line_ends_removed():
    test = read_fss_categories("test")
    assert len(test) == 240 and test == sorted(test) and not any("\r" in name for name in test)
    assert len(read_fss_categories("trn")) == 520 and len(read_fss_categories("val")) == 240
    assert not set(test) & set(read_fss_categories("trn"))


def test_missing_and_malformed_split_files_name_the_file(tmp_path):
    with pytest.raises(FewShotDataError, match=r"pascal/val/fold1\.txt: split file not found"):
        read_pascal_metadata("val", 1, str(tmp_path))
    (tmp_path / "pascal" / "val").mkdir(parents=True)
    (tmp_path / "pascal" / "val" / "fold0.txt").write_text("2007_000033__01\n2007_000061_04\n")
    with pytest.raises(FewShotDataError, match=r"fold0\.txt:2: expected"):
        read_pascal_metadata("val", 0, str(tmp_path))
    with pytest.raises(ValueError, match="fold: pascal has folds 0, 1, 2, 3, got 4"):
        read_pascal_metadata("val", 4)
    with pytest.raises(ValueError, match="split: expected"):
        read_pascal_metadata("dev", 0)
    (tmp_path / "coco" / "val").mkdir(parents=True)
    (tmp_path / "coco" / "val" / "fold0.npz").write_bytes(b"not a zip")
    with pytest.raises(FewShotDataError, match=r"fold0\.npz: not a packed COCO split file"):
        read_coco_classwise("val", 0, str(tmp_path))


def test_pack_round_trip_and_refusal_of_objects(tmp_path):
    names = [f"val2014/COCO_val2014_{n:012d}.jpg" for n in (5, 42, 7)]
    classwise = {c: [] for c in range(80)}
    classwise[3] = [names[0], names[1], names[0]]
    classwise[7] = [names[2], names[1]]
    source = tmp_path / "src.pkl"
    source.write_bytes(pickle.dumps(classwise, protocol=3))
    (tmp_path / "out" / "coco" / "val").mkdir(parents=True)
    stats = pack_coco_classwise(str(source), str(tmp_path / "out" / "coco" / "val" / "fold2.npz"))
    assert stats == {"classes": 80, "entries": 5, "images": 3}
    assert read_coco_classwise("val", 2, str(tmp_path / "out")) == classwise
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({0: [np.int64(1)]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing numpy"):
        pack_coco_classwise(str(evil), str(tmp_path / "evil.npz"))
    classwise[1] = ["train2014/COCO_train2014_000000000001.jpg"]
    source.write_bytes(pickle.dumps(classwise))
    with pytest.raises(FewShotDataError, match="mixes COCO subsets"):
        pack_coco_classwise(str(source), str(tmp_path / "mixed.npz"))


def test_pack_command_reports_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        splits.main(["--pack-coco", str(tmp_path / "nowhere"), "--splits_dir", str(tmp_path)])
    assert stopped.value.code == 2
    assert "nowhere/trn/fold0.pkl: split file not found" in capsys.readouterr().err
