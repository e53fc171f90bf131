"""Label lists: the ADE20K name table and user label parsing (foundation.labels), CLIP's checks of them
(clip_ms.labels) and ``--classes`` (encoding_custom.datasets.classes)."""
import numpy as np
import pytest

from clip_ms.labels import read_labels_argument
from encoding_custom.datasets.classes import resolve_classes
from foundation.labels import ade20k_labels, index_dtype, looks_like_path, parse_labels, read_label_file


def test_ade20k_labels_are_first_synonyms_in_order():
    names = ade20k_labels()
    assert len(names) == 150
    assert names[:5] == ["wall", "building", "sky", "floor", "tree"]
    assert names[-3:] == ["glass", "clock", "flag"]
    assert all(";" not in name and name == name.strip() and name for name in names)


def test_ade20k_labels_rejects_a_table_without_name_column(tmp_path):
    bad = tmp_path / "objectInfo150.csv"
    bad.write_text("Idx,Ratio\n1,0.1\n")
    with pytest.raises(ValueError, match="objectInfo150.csv.*Name"):
        ade20k_labels(str(bad))


@pytest.mark.parametrize("text, expected", [
    ("dog, cat, other", ["dog", "cat", "other"]),
    ("dog\ncat\nother\n", ["dog", "cat", "other"]),
    ("dog, cat,\n\nother,\n", ["dog", "cat", "other"]),
    ("  potted plant ,sky", ["potted plant", "sky"]),
])
def test_parse_labels_accepts_commas_and_newlines(text, expected):
    assert parse_labels(text) == expected


@pytest.mark.parametrize("text", ["", "\n \n", ",", "dog,,cat", " , "])
def test_parse_labels_rejects_empty_lists_and_labels_naming_the_source(text):
    with pytest.raises(ValueError, match="--label_src"):
        parse_labels(text, source="--label_src")


def test_read_label_file_names_the_file(tmp_path):
    good = tmp_path / "labels.txt"
    good.write_text("road\ncar\n", encoding="utf-8")
    assert read_label_file(str(good)) == ["road", "car"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty.txt"):
        read_label_file(str(empty))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_label_file(str(tmp_path / "missing.txt"))


# --- read_labels_argument: the --labels option ----------------------------------------------------------------

def test_labels_argument_takes_a_list_or_a_file_with_any_script(tmp_path):
    assert read_labels_argument("cat, 草地 ,café,🐱") == (["cat", "草地", "café", "🐱"], [])
    path = tmp_path / "labels.txt"
    path.write_text("\ufeffroad\n天空\n", encoding="utf-8")  # a byte-order mark, as Windows Notepad writes
    assert read_labels_argument(str(path)) == (["road", "天空"], [])


def test_a_label_file_skips_comment_lines_and_warns_of_an_inline_comment(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# trees\ngrass  # lawn\n  # sky is last\n\nsky\n", encoding="utf-8")
    labels, warnings = read_labels_argument(str(path))
    assert labels == ["grass  # lawn", "sky"]
    assert warnings == ["--labels %s: label 1 'grass  # lawn' contains ' # ', which is part of the label; a comment "
                        "goes on a line of its own, starting with #" % path]
    only_comments = tmp_path / "comments.txt"
    only_comments.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ValueError, match="^--labels: .*comments.txt: no labels given"):
        read_labels_argument(str(only_comments))
    assert read_labels_argument("#1 pick, sky") == (["#1 pick", "sky"], [])  # an inline list has no comments


@pytest.mark.parametrize("value", ["labels_missing.txt", "data/labels", "LABELS.CSV"])
def test_a_labels_value_that_looks_like_a_missing_file_is_an_error(tmp_path, value):
    assert looks_like_path(value)
    with pytest.raises(ValueError, match="^--labels: label file '%s' does not exist" % value):
        read_labels_argument(value)


def test_label_lists_are_not_taken_for_paths():
    assert not looks_like_path("cat, dog.txt") and not looks_like_path("potted plant")
    assert read_labels_argument("a.txt,b") == (["a.txt", "b"], [])


@pytest.mark.parametrize("value, message", [
    ("", "no labels given"), ("  ", "no labels given"), ("cat,,dog", "line 1, field 2: empty label"),
])
def test_empty_labels_are_errors_naming_the_option(value, message):
    with pytest.raises(ValueError, match="^--labels: " + message):
        read_labels_argument(value)


def test_directories_and_non_utf8_files_are_errors_naming_them(tmp_path):
    with pytest.raises(ValueError, match="^--labels: .* is a directory"):
        read_labels_argument(str(tmp_path))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(ValueError, match="^--labels: .*latin1.txt: not UTF-8 text"):
        read_labels_argument(str(latin1))


def test_a_single_label_that_names_a_folder_here_is_a_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert read_labels_argument("data") == (["data"], [])
    with pytest.raises(ValueError, match="^--labels: 'data/' is a directory"):
        read_labels_argument("data/")  # a path separator: meant as a file
    (tmp_path / "sky").write_text("cloud\nsun\n", encoding="utf-8")
    assert read_labels_argument("sky") == (["cloud", "sun"], [])  # an existing file is read


def test_a_label_longer_than_clips_context_names_the_label_and_its_token_count():
    long_label = "a very long description " * 20  # 4 tokens x 20 + start + end = 82 tokens
    with pytest.raises(ValueError, match=r"^--classes_text: label 2 'a very long.*\.\.\.' is 82 CLIP tokens long; "
                                         r"the text encoder takes at most 77") as error:
        read_labels_argument("cat," + long_label, source="--classes_text")
    assert "truncate" not in str(error.value)
    labels, _ = read_labels_argument(",".join(["cat", "x " * 75]))  # 75 tokens + start + end = 77: accepted
    assert len(labels) == 2


def test_duplicate_labels_are_warnings_because_the_second_copy_never_wins(tmp_path):
    labels, warnings = read_labels_argument("cat, sky, Cat, dog, cat")
    assert labels == ["cat", "sky", "Cat", "dog", "cat"]
    assert warnings == [
        "--labels: label 3 'Cat' is the same text as label 1 'cat' for CLIP; label 3 can never be predicted (ties "
        "go to the first)",
        "--labels: label 5 'cat' is the same text as label 1 'cat' for CLIP; label 5 can never be predicted (ties "
        "go to the first)"]
    path = tmp_path / "dup.txt"
    path.write_text("road\nroad\n", encoding="utf-8")
    assert read_labels_argument(str(path))[1][0].startswith("--labels %s: label 2 'road'" % path)


def test_index_dtype_is_the_smallest_that_holds_the_labels():
    assert [index_dtype(n) for n in (1, 256, 257, 65536, 65537)] == [np.uint8, np.uint8, np.uint16, np.uint16,
                                                                      np.int32]


# --- resolve_classes: the --classes option -------------------------------------------------------------------

def test_resolve_classes_all_and_named_subsets_keep_the_given_order():
    names, indices = resolve_classes("all", "/nonexistent")
    assert names == ade20k_labels() and indices is None
    names, indices = resolve_classes(" sky,wall , tree", "/nonexistent")
    assert names == ["sky", "wall", "tree"] and indices == [2, 0, 4]


@pytest.mark.parametrize("spec", ["sky,unicorn", " , "])
def test_resolve_classes_names_the_option_and_the_unknown_names(spec):
    with pytest.raises(ValueError, match="^--classes: unknown ADE20K class names") as error:
        resolve_classes(spec, "/nonexistent")
    assert ("unicorn" in str(error.value)) == ("unicorn" in spec)


def test_resolve_classes_synthetic_reads_the_marker_or_names_it(tmp_path):
    from encoding_custom.datasets.synthetic import write_synthetic_ade20k

    with pytest.raises(ValueError, match="--classes: 'synthetic' needs .*SYNTHETIC.json"):
        resolve_classes("synthetic", str(tmp_path))
    write_synthetic_ade20k(str(tmp_path), 2, 1, seed=0, size=(32, 32), class_values=[3, 1, 13])
    names, indices = resolve_classes("synthetic", str(tmp_path))
    assert indices == [2, 0, 12] and names == [ade20k_labels()[i] for i in indices]
