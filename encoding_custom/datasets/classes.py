"""``--classes``: which classes of a set (ADE20K, a folder set) a network is trained or evaluated with."""
import json
import os
from typing import List, Optional, Tuple

from foundation.labels import ade20k_labels

from encoding_custom.datasets.layout import SYNTHETIC_MARKER, dataset_dir

ALL_CLASSES = "all"
SYNTHETIC_CLASSES = "synthetic"


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
        return select_classes(spec, names, "ADE20K", source)
    return [names[i] for i in indices], indices


def select_classes(spec: str, names: List[str], set_name: str,
                   source: str = "--classes") -> Tuple[List[str], Optional[List[int]]]:
    """``--classes`` among a set's class names.

    Args:
        spec: ``"all"`` or comma-separated names of ``names``.
        names: the set's class names, in mask-value order.
        set_name: the set as messages name it.
        source: option name used in error messages.

    Returns:
        ``(label names, their indices in names, or None for all)``.

    Raises:
        ValueError: naming ``source`` and the unknown names.
    """
    if spec == ALL_CLASSES:
        return list(names), None
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in names]
    if not wanted or unknown:
        raise ValueError(f"{source}: unknown {set_name} class names {unknown} (got {spec!r})")
    indices = [names.index(w) for w in wanted]
    return [names[i] for i in indices], indices
