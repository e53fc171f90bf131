"""Our weights files and the strict loading every weights path shares (torch-free).

* :func:`save_lseg_checkpoint` / :func:`read_lseg_checkpoint`: LSegNet weights in our one checkpoint format
  (``foundation.checkpoint_file``: parameters + a JSON record of the build options and labels);
  :func:`assign_checkpoint_arrays` loads them strictly, naming every differing option.
  ``modules.factory.load_lseg`` builds the network any file holds.
* :func:`match_strictly`, :func:`mismatch_summary`, :func:`assign_arrays`: names and shapes checked before a single
  value is assigned; used by the importers of foreign weights too (:mod:`modules.convert` for official lang-seg
  checkpoints, :mod:`modules.pretrained` for ImageNet backbones).

Every load path calls ``net.text_weights_changed()`` so cached text features are never stale. Every error about a
file is one :class:`WeightsError` line that starts with the file's path and says what is wrong with it (missing,
unreadable, empty, truncated, not a checkpoint, a checkpoint of something else, or the mismatching options and
names).
"""
import os
import re
import sys
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from mindspore import Tensor

from clip_ms.torch_archive import TorchArchiveError, torch_file_format
from foundation.checkpoint_file import (
    RECORD_KEY,
    RECORD_KEYS,
    RECORDED_LABELS_KEY,
    RECORDED_PROMPTS_KEY,
    CheckpointError,
    checkpoint_entry_names,
    is_resumable,
    load_raw_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

from .config import ArgumentError
from .lseg import TEXT_CACHE_NAME

# The options that fix a network's parameter layout (LSegNet.build_options), with the defaults of files that lack one.
BUILD_DEFAULTS = {"backbone": "clip_vitl16_384", "arch_option": 0, "block_depth": 0, "activation": "lrelu",
                  "text_config": "ViT-B/32"}


class WeightsError(ValueError):
    """A weights file is unreadable or does not fit the network; the message starts with the file's path and says
    what is wrong (with the offending options and entries)."""


class WeightsOptionError(WeightsError):
    """An architecture option that an official checkpoint cannot tell, or that contradicts it.

    Args:
        path: the checkpoint.
        option: the option's name (``"backbone"``, ``"arch_option"``, ``"block_depth"``, ``"activation"``,
            ``"text_config"``).
        template: what is wrong, with ``{flag}`` where the option is named.

    ``str(error)`` names the option as ``option``; scripts call :meth:`describe` with their own spelling.
    """

    def __init__(self, path: str, option: str, template: str):
        self.path, self.option, self.template = path, option, template
        super().__init__(self.describe(option))

    def describe(self, flag: str) -> str:
        """Args: flag: how the caller spells the option (e.g. ``"--block_depth"``). Returns: the one-line message."""
        return f"{self.path}: " + self.template.replace("{flag}", flag)


class RecordedOptionConflict(WeightsOptionError):
    """An option given explicitly that differs from what one of our checkpoints records.

    Args:
        path: the checkpoint.
        option: the option's name.
        given, recorded: the two values.
    """

    def __init__(self, path: str, option: str, given, recorded):
        self.given, self.recorded = given, recorded
        super().__init__(path, option, "")

    def describe(self, flag: str) -> str:
        """Args: flag: how the caller spells the option. Returns: the one-line message."""
        return (f"{flag}: {self.given!r} given, but {self.path} was trained with {self.recorded!r}; drop the option "
                "to use the checkpoint's")


def _long_option(name: str) -> str:
    return "--" + name


def command_status(prog: str, work: Callable[[], int], failure_status: int,
                   spell: Callable[[str], str] = _long_option, writing: Optional[str] = None) -> int:
    """Run a weights command's ``work`` and turn its errors into one stderr line (no traceback).

    Args:
        prog: the command's name, first on the line.
        work: the command's body; returns the exit status.
        failure_status: the exit status of a failure.
        spell: how the command spells an option name (``block_depth`` -> ``--block_depth``).
        writing: the file being written, named when writing fails.

    Returns:
        ``work()``'s status, or ``failure_status`` after printing ``"<prog>: error: <message>"``.
    """
    try:
        return work()
    except ArgumentError as error:
        message = error.describe(spell(error.argument))
    except WeightsOptionError as error:
        message = error.describe(spell(error.option))
    except ValueError as error:  # WeightsError and bad values: their message names the file or the option
        message = str(error)
    except OSError as error:  # writing: permissions, a directory, a full disk
        message = (f"{writing}: " if writing else "") + f"cannot write ({error.strerror or error})"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return failure_status


# ---------------------------------------------------------------------------------------------- helpers
def expected_parameters(net) -> "OrderedDict[str, Tuple[int, ...]]":
    """Args: net: an LSegNet (or any Cell).

    Returns: OrderedDict name -> shape of every parameter except the text cache.
    """
    return OrderedDict((name, tuple(p.shape)) for name, p in net.parameters_and_names() if name != TEXT_CACHE_NAME)


def _listing(title: str, names: Iterable[str], limit: int = 25) -> str:
    """Args: title: category; names: entries; limit: how many to show.

    Returns: ``"title (N): a, b, ... and M more"``, or ``""`` when there are none.
    """
    names = list(names)
    if not names:
        return ""
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"{title} ({len(names)}): " + ", ".join(names[:limit]) + more


def match_strictly(source: Dict[str, np.ndarray], expected: Dict[str, Tuple[int, ...]], where: str,
                   ignore_unexpected=()) -> "OrderedDict[str, np.ndarray]":
    """Check that ``source`` provides exactly the ``expected`` names and shapes; cast floats to float32.

    Args:
        source: name -> array (already in our naming).
        expected: name -> shape of the target network.
        where: file name / description for the error message.
        ignore_unexpected: regex patterns of source names that may be dropped silently.

    Returns:
        OrderedDict name -> float32 array in ``expected`` order.

    Raises:
        WeightsError: listing missing, unexpected and shape-mismatched names.
    """
    shapes = {name: tuple(np.shape(value)) for name, value in source.items()
              if name in expected or not any(re.search(pattern, name) for pattern in ignore_unexpected)}
    _report_mismatch(shapes, expected, where)
    out = OrderedDict()
    for name in expected:
        value = np.asarray(source[name])
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(f"{where}: {name} has dtype {value.dtype}, expected a floating-point tensor")
        out[name] = value.astype(np.float32)
    return out


def mismatch_summary(shapes: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]]) -> str:
    """One line listing the missing, unexpected and shape-mismatched names.

    Args:
        shapes: name -> shape found in the checkpoint (our naming).
        expected: name -> shape of the network.

    Returns:
        ``"missing (N): ...; unexpected (N): ...; shape mismatch (N): name: checkpoint (..) vs network (..)"``, or
        ``""`` when names and shapes all match.
    """
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes if name not in expected]
    mismatched = [f"{name}: checkpoint {shapes[name]} vs network {expected[name]}"
                  for name in expected if name in shapes and shapes[name] != tuple(expected[name])]
    parts = (_listing("missing", missing), _listing("unexpected", unexpected), _listing("shape mismatch", mismatched))
    return "; ".join(part for part in parts if part)


def _report_mismatch(shapes: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]], where: str) -> None:
    """Raise WeightsError listing missing, unexpected and shape-mismatched names (no-op when all match)."""
    summary = mismatch_summary(shapes, expected)
    if summary:
        raise WeightsError(f"{where}: checkpoint does not match the network: {summary}")


def differing_options(found: Dict, wanted: Dict) -> List[str]:
    """Args: found: the checkpoint's options; wanted: the network's. Returns: ``"key: checkpoint A vs network B"``."""
    return [f"{key}: checkpoint {found[key]!r} vs network {value!r}" for key, value in wanted.items()
            if key in found and found[key] != value]


def raise_other_options(path: str, differing: List[str], summary: str) -> None:
    """Raise the WeightsError for a checkpoint of a network built with other options (no-op when none differ)."""
    if differing:
        names = f"; its parameters: {summary}" if summary else " (the parameter names and shapes are the same)"
        raise WeightsError(f"{path}: checkpoint of a network built with other options: " + "; ".join(differing)
                           + names)


# ---------------------------------------------------------------------------------------------- reading files
def mindspore_entry_names(path: str) -> List[str]:
    """Args: path: a MindSpore ``.ckpt``. Returns: its entry names (no tensor is read).

    Raises: WeightsError ``"<path>: ..."``: missing, a directory, empty, truncated, damaged, not a MindSpore checkpoint.
    """
    try:
        return checkpoint_entry_names(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None


def load_mindspore_checkpoint(path: str) -> Dict:
    """``mindspore.load_checkpoint`` behind a structural check, so a bad file is one WeightsError line (the
    message of ``foundation.checkpoint_file.load_raw_checkpoint``).

    Args:
        path: a MindSpore ``.ckpt``.

    Returns:
        name -> Parameter (strings for text entries), as ``mindspore.load_checkpoint``.

    Raises:
        WeightsError: ``"<path>: ..."`` missing, a directory, unreadable, empty, truncated, damaged, not a MindSpore
            checkpoint.
    """
    try:
        return load_raw_checkpoint(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None


def is_torch_file(path: str) -> bool:
    """Whether ``path`` is an existing file written by ``torch.save`` (zip archive or legacy pickle), by its first
    bytes, i.e. an official checkpoint or a timm ``.pth``.

    Args:
        path: any path (False for a missing file or a directory).

    Returns:
        True for a torch file.

    Raises:
        WeightsError: ``"<path>: cannot read (<reason>)"``.
    """
    if not os.path.isfile(path):
        return False
    try:
        return torch_file_format(path) is not None
    except TorchArchiveError as error:
        raise WeightsError(str(error)) from None


def describe_foreign_checkpoint(path: str, names: List[str]) -> str:
    """Args: path: a MindSpore checkpoint that is none of ours; names: its entries.

    Returns: the one-line message saying so, with a few of its entry names.
    """
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} entries)" if len(names) > 5 else "")
    return (f"{path}: a MindSpore checkpoint of something else, not an LSegNet checkpoint (no '{RECORD_KEY}' "
            f"entry); its entries: {shown}")


def assign_arrays(net, arrays: Dict[str, np.ndarray]) -> None:
    params = dict(net.parameters_and_names())
    for name, value in arrays.items():
        params[name].set_data(Tensor(value, dtype=params[name].dtype))


# ---------------------------------------------------------------------------------------------- our format
def save_lseg_checkpoint(net, path: str, labels: Optional[List[str]] = None, extra: Optional[Dict] = None) -> None:
    """Save an LSegNet's weights in our one checkpoint format (``foundation.checkpoint_file``), atomically.

    Args:
        net: LSegNet.
        path: destination ``.ckpt``.
        labels: the label set the weights were trained for, recorded for loaders (None: not recorded, they fall
            back to the 150 ADE20K names); not ``net.labels``, which may be any list set for a prediction.
        extra: optional JSON-serialisable facts recorded beside the build options (e.g. where they came from).
    """
    if not path.endswith(".ckpt"):
        raise WeightsError(f"{path}: a MindSpore checkpoint's name must end in .ckpt (mindspore.load_checkpoint "
                           "refuses other names)")
    options = dict(net.build_options(), **{RECORDED_PROMPTS_KEY: list(net.prompts)})
    if labels is not None:
        options[RECORDED_LABELS_KEY] = [str(label) for label in labels]
    if extra:
        options["extra"] = extra
    save_checkpoint(path, net, options=options)


def read_lseg_checkpoint(path: str) -> Tuple[Dict, "OrderedDict[str, np.ndarray]", bool]:
    """Read one of our checkpoints, of any layout and kind.

    Args:
        path: our ``.ckpt``.

    Returns:
        ``(options record, OrderedDict name -> array of every network parameter but the text cache, resumable)``;
        resumable: the file holds optimizer state (a training file).

    Raises:
        WeightsError: ``"<path>: ..."``: missing, unreadable, a damaged record, or not a checkpoint of ours (says
            what it is instead).
    """
    if is_torch_file(path):
        raise WeightsError(f"{path}: a PyTorch file (an official lang-seg checkpoint?), not our MindSpore .ckpt; "
                           "convert it with `python -m modules.convert`")
    names = mindspore_entry_names(path)
    if not any(key in names for key in RECORD_KEYS):
        raise WeightsError(describe_foreign_checkpoint(path, names))
    try:
        network_params, _, record = read_checkpoint(path)
    except CheckpointError as error:
        raise WeightsError(str(error)) from None
    arrays = OrderedDict((name, value.asnumpy()) for name, value in network_params.items()
                         if name != TEXT_CACHE_NAME)
    return record["options"], arrays, is_resumable(names)


def assign_checkpoint_arrays(net, path: str, recorded: Dict, arrays: Dict[str, np.ndarray]) -> None:
    """Load the parameter arrays read from one of our files into ``net``, strictly.

    Args:
        net: LSegNet.
        path: the file (for messages).
        recorded: the build options the file records (missing ones are :data:`BUILD_DEFAULTS`).
        arrays: name -> array of every parameter but the text cache.

    Raises:
        WeightsError: naming each build option that differs from ``net``'s (and the parameter names that differ
            with it), or the missing/unexpected/mismatched parameters; nothing is assigned then.
    """
    expected = expected_parameters(net)
    shapes = {name: tuple(np.shape(value)) for name, value in arrays.items()}
    stored = {key: recorded.get(key, BUILD_DEFAULTS.get(key)) for key in net.build_options()}
    raise_other_options(path, differing_options(stored, net.build_options()), mismatch_summary(shapes, expected))
    assign_arrays(net, match_strictly(arrays, expected, path))
    net.text_weights_changed()


def recorded_build_options(path: str, recorded: Dict, explicit: Dict) -> Dict:
    """The build options one of our files records, checked against the values a caller gave explicitly.

    Args:
        path: the file (for messages).
        recorded: what it records (missing options take :data:`BUILD_DEFAULTS`: files of older versions).
        explicit: option -> value the caller gave (those not given are absent or None).

    Returns:
        every option of :data:`BUILD_DEFAULTS` with the file's value.

    Raises:
        RecordedOptionConflict: an explicit value that differs from the file's (``.option`` names it).
    """
    options = {key: recorded.get(key, default) for key, default in BUILD_DEFAULTS.items()}
    for key, given in explicit.items():
        if given is not None and key in options and given != options[key]:
            raise RecordedOptionConflict(path, key, given, options[key])
    return options


