"""Label lists: the 150 ADE20K class names and label text written by users (comma/newline lists, label files).

Standard library and numpy only; whether CLIP's text tower can take a label is :mod:`clip_ms.labels`.
"""
import csv
import os
import unicodedata
from typing import List

import numpy as np

ADE20K_OBJECT_INFO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                  "ade20k_objectInfo150.csv")
# A --labels value that is one word ending like this is meant as a label file (e.g. a mistyped "labels.txt").
LABEL_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".lst", ".list", ".labels")


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


def parse_labels(text: str, source: str = "<labels>", comments: bool = False) -> List[str]:
    """Split a label specification into a list of labels.

    Labels are separated by commas and/or newlines; surrounding whitespace is stripped and a
    trailing separator (e.g. a final newline or comma) is allowed.

    Args:
        text: e.g. ``"dog, cat, other"`` or one label per line.
        source: name used in error messages (a file path or option name).
        comments: skip lines whose first non-blank character is ``#`` (label files).

    Returns:
        list of non-empty label strings in the given order.

    Raises:
        ValueError: naming ``source`` if there are no labels or a label between two separators is empty.
    """
    labels = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (comments and line.startswith("#")):
            continue  # blank lines are layout, comment lines notes: neither is a label
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
    """Read labels from a text file (comma- or newline-separated, UTF-8; blank lines and lines starting with ``#``
    are skipped).

    Args:
        path: the label file.

    Returns:
        list of label strings.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: naming ``path`` if the file holds no labels or an empty label, or is not UTF-8 text (a
            byte-order mark is accepted).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the label file as UTF-8") \
            from err
    return parse_labels(text, source=path, comments=True)


def inline_comment_warnings(labels: List[str], source: str) -> List[str]:
    """Warnings for labels that look like a label with a comment after it (``grass  # lawn``).

    Args:
        labels: label strings.
        source: option or file name for the messages.

    Returns:
        one message per such label: only whole lines starting with ``#`` are comments.
    """
    return [f"{source}: label {position} {label!r} contains ' # ', which is part of the label; a comment goes "
            "on a line of its own, starting with #" for position, label in enumerate(labels, 1) if " #" in label]


def looks_like_path(text: str) -> bool:
    """Whether a ``--labels`` value is meant as a file name rather than a label list.

    Args:
        text: the option value.

    Returns:
        True for one item (no comma, no newline) that contains a path separator or ends in a label-file suffix
        (:data:`LABEL_FILE_SUFFIXES`), e.g. ``labels_missing.txt`` or ``data/labels``.
    """
    if "," in text or "\n" in text:
        return False
    separators = [os.sep] + ([os.altsep] if os.altsep else []) + ["/"]
    return any(sep in text for sep in separators) or text.strip().lower().endswith(LABEL_FILE_SUFFIXES)


def index_dtype(n_labels: int) -> np.dtype:
    """The smallest unsigned integer type that holds label indices ``0 .. n_labels - 1``.

    Args:
        n_labels: number of labels (>= 1).

    Returns:
        ``np.uint8`` up to 256 labels, ``np.uint16`` up to 65536, else ``np.int32``.
    """
    if n_labels <= 256:
        return np.dtype(np.uint8)
    if n_labels <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def display_columns(label: str) -> int:
    """The terminal columns ``label`` takes: CJK and other wide characters two, combining marks none."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 0 if unicodedata.combining(char) else 1
               for char in label)


def padded(label: str, width: int) -> str:
    """``label`` followed by spaces up to ``width`` terminal columns, so tables of labels stay aligned."""
    return label + " " * max(0, width - display_columns(label))


def read_text_lines(path: str, source: str, missing: str = "file not found") -> List[str]:
    """The lines of a UTF-8 text file (a byte-order mark is accepted), every failure one message naming it.

    Args:
        path: the file; source: what messages start with (the path, or an option and the path).
        missing: what the message says of a missing file.

    Returns:
        the lines, without line endings.

    Raises:
        ValueError: ``"<source>: <missing>"``, ``"<source>: not UTF-8 text (...)"`` or
            ``"<source>: cannot read (...)"``.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise ValueError(f"{source}: {missing}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ValueError(f"{source}: cannot read ({error.strerror or error})") from None
