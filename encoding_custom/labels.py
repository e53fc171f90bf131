"""Label lists: the 150 ADE20K class names and user label files.

This module is data-only (no MindSpore import) so that ``modules`` may import it cheaply.
"""
import csv
import json
import os
from typing import List, Optional, Tuple

ADE20K_OBJECT_INFO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                  "ade20k_objectInfo150.csv")
ALL_CLASSES = "all"
SYNTHETIC_CLASSES = "synthetic"


def ade20k_labels(csv_path: str = ADE20K_OBJECT_INFO) -> List[str]:
    """The 150 ADE20K class names in class-index order.

    Each name is the first synonym (text before the first ``;``) of the ``Name`` column of
    ``objectInfo150.csv``; row ``i`` (0-based) is the class with mask value ``i + 1``.

    Args:
        csv_path: path of the objectInfo150 table (defaults to the copy shipped in the package).

    Returns:
        list of 150 ``str``, e.g. ``["wall", "building", "sky", ...]``.

    Raises:
        ValueError: if the file has no ``Name`` column, an empty name, or not 150 rows.
    """
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "Name" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: no 'Name' column (columns: {reader.fieldnames})")
        names = []
        for row_number, row in enumerate(reader, start=2):
            first_name = (row["Name"] or "").split(";")[0].strip()
            if not first_name:
                raise ValueError(f"{csv_path}:{row_number}: empty class name")
            names.append(first_name)
    if len(names) != 150:
        raise ValueError(f"{csv_path}: expected 150 ADE20K classes, found {len(names)}")
    return names


def parse_labels(text: str, source: str = "<labels>") -> List[str]:
    """Split a label specification into a list of labels.

    Labels are separated by commas and/or newlines; surrounding whitespace is stripped and a
    trailing separator (e.g. a final newline or comma) is allowed.

    Args:
        text: e.g. ``"dog, cat, other"`` or one label per line.
        source: name used in error messages (a file path or option name).

    Returns:
        list of non-empty label strings in the given order.

    Raises:
        ValueError: naming ``source`` if there are no labels or a label between two separators is empty.
    """
    labels = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue  # blank lines are layout, not labels
        if line.endswith(","):
            line = line[:-1]  # "dog, cat," followed by a newline is a common way to write a list
        for field_number, piece in enumerate(line.split(","), start=1):
            piece = piece.strip()
            if not piece:
                raise ValueError(f"{source}: line {line_number}, field {field_number}: empty label "
                                 "(two commas in a row?)")
            labels.append(piece)
    if not labels:
        raise ValueError(f"{source}: no labels given")
    return labels


def read_label_file(path: str) -> List[str]:
    """Read labels from a text file (comma- or newline-separated, UTF-8).

    Args:
        path: the label file.

    Returns:
        list of label strings.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: naming ``path`` if the file holds no labels or an empty label.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        return parse_labels(handle.read(), source=path)


def resolve_classes(spec: str, data_path: str, source: str = "--classes") -> Tuple[List[str], Optional[List[int]]]:
    """The label list a network is trained or evaluated with, as ADE20K class names and indices.

    Args:
        spec: ``"all"`` (the 150 ADE20K classes), ``"synthetic"`` (the classes listed in the synthetic set's
            ``SYNTHETIC.json`` under ``data_path``) or comma-separated ADE20K class names.
        data_path: data root holding ``ADEChallengeData2016/`` (only read for ``"synthetic"``).
        source: option name used in error messages.

    Returns:
        ``(label names, ADE20K class indices 0..149 in the same order, or None for all 150)``.

    Raises:
        ValueError: naming ``source``: unknown class names, or no synthetic set at ``data_path``.
    """
    from .layout import SYNTHETIC_MARKER, dataset_dir

    names = ade20k_labels()
    if spec == ALL_CLASSES:
        return names, None
    if spec == SYNTHETIC_CLASSES:
        marker = os.path.join(dataset_dir(data_path), SYNTHETIC_MARKER)
        if not os.path.isfile(marker):
            raise ValueError(f"{source}: 'synthetic' needs {marker} (written by prepare_ade20k.py --synthetic) "
                             f"(got {spec!r})")
        with open(marker, encoding="utf-8") as handle:
            indices = [int(v) - 1 for v in json.load(handle)["class_values"]]
    else:
        wanted = [part.strip() for part in spec.split(",") if part.strip()]
        unknown = [w for w in wanted if w not in names]
        if not wanted or unknown:
            raise ValueError(f"{source}: unknown ADE20K class names {unknown} (got {spec!r})")
        indices = [names.index(w) for w in wanted]
    return [names[i] for i in indices], indices
