"""Whether CLIP's text tower can take a label list: token length, and labels it cannot tell apart.

Numpy only (the BPE tokenizer), so the scripts check ``--labels`` before any network runs.
"""
import os
from typing import List, Sequence, Tuple

from foundation.labels import inline_comment_warnings, looks_like_path, parse_labels, read_label_file

from .tokenizer import default_tokenizer

CLIP_CONTEXT_LENGTH = 77  # every CLIP text tower: start token + 75 BPE tokens + end token


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
        value: the option value: an existing file (read as UTF-8, comma- or newline-separated, ``#`` lines
            skipped), else a list (a bare word such as ``data`` is a label even when a folder of that name exists
            here).
        source: option name starting every message (``"--labels"``).
        context_length: the text tower's context.

    Returns:
        ``(labels, warnings)``: the labels in order, and one message per label with an inline ``#`` and per
        duplicate (see :func:`duplicate_label_warnings`) for the caller to print.

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
        warnings = inline_comment_warnings(labels, where) + duplicate_label_warnings(labels, where, context_length)
    except OSError as err:  # permissions, a file vanishing between the check and the read
        raise ValueError(f"{source}: cannot read {value!r} ({err.strerror or err})") from err
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(source) else f"{source}: {message}") from err
    return labels, warnings
