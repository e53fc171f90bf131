"""Label lists: the 150 ADE20K class names and user label files.

This module is data-only (no MindSpore import) so that ``modules`` may import it cheaply; it uses CLIP's tokenizer
(numpy only) to check user labels before any network runs.
"""
import csv
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from clip_ms.tokenizer import default_tokenizer

from .layout import SYNTHETIC_MARKER, dataset_dir

ADE20K_OBJECT_INFO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                  "ade20k_objectInfo150.csv")
ALL_CLASSES = "all"
SYNTHETIC_CLASSES = "synthetic"
CLIP_CONTEXT_LENGTH = 77  # every CLIP text tower: start token + 75 BPE tokens + end token
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
    return parse_labels(text, source=path)


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


def label_token_ids(labels: Sequence[str], source: str = "labels",
                    context_length: int = CLIP_CONTEXT_LENGTH) -> List[Tuple[int, ...]]:
    """CLIP token ids of each label (start and end tokens included), refusing labels the text tower cannot take.

    Args:
        labels: label strings.
        source: option or file name for the message.
        context_length: the text tower's context (77 for every CLIP model).

    Returns:
        one tuple of ids per label; equal tuples mean equal text features (the tokenizer lower-cases and collapses
        whitespace, so "Cat" and "cat" are the same label to the network).

    Raises:
        ValueError: ``"<source>: label ... is N CLIP tokens long ..."`` for a label longer than ``context_length``.
    """
    tokenizer = default_tokenizer()
    ids = []
    for position, label in enumerate(labels, start=1):
        tokens = tuple(tokenizer.encode(label))
        count = len(tokens) + 2  # start and end tokens
        if count > context_length:
            shown = label if len(label) <= 60 else label[:57] + "..."
            raise ValueError(f"{source}: label {position} {shown!r} is {count} CLIP tokens long; the text encoder "
                             f"takes at most {context_length} (start + {context_length - 2} + end): shorten it")
        ids.append(tokens)
    return ids


def duplicate_label_warnings(labels: Sequence[str], source: str = "labels",
                             context_length: int = CLIP_CONTEXT_LENGTH) -> List[str]:
    """Warnings for labels the network cannot tell apart (same CLIP tokens); checks token lengths too.

    Args:
        labels: label strings.
        source: option or file name for the messages.
        context_length: the text tower's context.

    Returns:
        one message per repeated label, e.g. ``"--labels: label 3 'Cat' is the same text as label 1 'cat'
        for CLIP; label 3 can never be predicted (ties go to the first)"``.

    Raises:
        ValueError: from :func:`label_token_ids` for a label that is too long.
    """
    first_position = {}
    warnings = []
    for position, (label, tokens) in enumerate(zip(labels, label_token_ids(labels, source, context_length)), 1):
        if tokens in first_position:
            first = first_position[tokens]
            warnings.append(f"{source}: label {position} {label!r} is the same text as label {first} "
                            f"{labels[first - 1]!r} for CLIP; label {position} can never be predicted (ties go "
                            "to the first)")
        else:
            first_position[tokens] = position
    return warnings


def read_labels_argument(value: str, source: str = "--labels",
                         context_length: int = CLIP_CONTEXT_LENGTH) -> Tuple[List[str], List[str]]:
    """A label option's value (a comma/newline list or a label file) as checked labels, before any network runs.

    Args:
        value: the option value: an existing file (read as UTF-8, comma- or newline-separated), else a list (a
            bare word such as ``data`` is a label even when a folder of that name exists here).
        source: option name starting every message (``"--labels"``).
        context_length: the text tower's context.

    Returns:
        ``(labels, warnings)``: the labels in order, and one message per duplicate (see
        :func:`duplicate_label_warnings`) for the caller to print.

    Raises:
        ValueError: starting with ``source``: a value that looks like a file name (:func:`looks_like_path`) but
            names no file or a directory, an unreadable or non-UTF-8 file, an empty list or label, a label longer
            than CLIP's context.
    """
    if value is None or not value.strip():
        raise ValueError(f"{source}: no labels given (got {value!r})")
    try:
        if os.path.isfile(value):
            labels = read_label_file(value)
            where = f"{source} {value}"
        elif looks_like_path(value):
            if os.path.isdir(value):
                raise ValueError(f"{value!r} is a directory, not a label file or a comma-separated list")
            raise ValueError(f"label file {value!r} does not exist (a label list is comma-separated; a single "
                             "label cannot contain '/' or end in a file suffix)")
        else:
            labels = parse_labels(value, source=source)
            where = source
        warnings = duplicate_label_warnings(labels, where, context_length)
    except OSError as err:  # permissions, a file vanishing between the check and the read
        raise ValueError(f"{source}: cannot read {value!r} ({err.strerror or err})") from err
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(source) else f"{source}: {message}") from err
    return labels, warnings


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
