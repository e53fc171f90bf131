"""encoding_custom.labels: the ADE20K name table and user label parsing."""
import pytest

from encoding_custom.labels import ade20k_labels, parse_labels, read_label_file, resolve_classes


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
    from encoding_custom.synthetic import write_synthetic_ade20k

    with pytest.raises(ValueError, match="--classes: 'synthetic' needs .*SYNTHETIC.json"):
        resolve_classes("synthetic", str(tmp_path))
    write_synthetic_ade20k(str(tmp_path), 2, 1, seed=0, size=(32, 32), class_values=[3, 1, 13])
    names, indices = resolve_classes("synthetic", str(tmp_path))
    assert indices == [2, 0, 12] and names == [ade20k_labels()[i] for i in indices]
