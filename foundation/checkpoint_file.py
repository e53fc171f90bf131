"""Our checkpoint file: one format for the weights we publish and the runs we resume, written atomically and read
strictly.

File layout (one ``.ckpt`` written by ``mindspore.save_checkpoint``):

- network parameters under their own names (loadable by ``mindspore.load_param_into_net(network, ...)``);
- for a training file, the optimizer state (momentum buffers ``moments.*``, ``global_step``, ...) under
  ``optimizer.<name>``; a file without it holds weights only and cannot be resumed;
- ``lseg_record``: one JSON string ``{"format", "epoch", "options", "metrics"}``. ``options`` holds the network's
  build options and its label names (:data:`RECORDED_LABELS_KEY`), and for a training run every run option.

Files of the two earlier layouts still read, as the same record: training files (``lseg_ckpt_format``, ``epoch``,
``options_json``, ``metrics_json`` entries) and weights files (one ``lseg_build_options`` JSON entry).

Writes go through :func:`foundation.atomic.atomic_output` (a temporary file in the same folder, fsync'ed, then
``os.replace``d over the target), so a process killed at any moment leaves either the previous complete file or the
new complete file, never a torn one.

Reads check the file's structure first (:func:`checkpoint_entry_names`), so a missing, unreadable, empty, truncated
or foreign file gives one :class:`CheckpointError` line naming the file and what is wrong, and MindSpore never logs
its own misleading ERROR line ("May not have permission to read it", "check 'filter_prefix'") for it.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

import mindspore as ms
from mindspore import nn

from .atomic import atomic_output

FORMAT_VERSION = 2
RECORD_KEY = "lseg_record"
OPTIMIZER_PREFIX = "optimizer."
# The keys of ``options`` that say what a network predicts: its label names and, for ADE20K subsets, their class
# indices.
RECORDED_LABELS_KEY, RECORDED_CLASS_INDICES_KEY = "label_names", "class_indices"
RECORDED_PROMPTS_KEY = "prompt_templates"  # the text each label is encoded through (absent: the bare label)
# Earlier layouts: training files (format 1) and weights files.
TRAINING_V1_KEYS = ("lseg_ckpt_format", "epoch", "options_json", "metrics_json")
WEIGHTS_V1_KEY = "lseg_build_options"
RECORD_KEYS = (RECORD_KEY, TRAINING_V1_KEYS[0], WEIGHTS_V1_KEY)  # one of them marks a file of ours


# MindSpore's .ckpt is a protobuf ``Checkpoint`` message (mindspore/train/checkpoint.proto, identical on 2.0.0 and
# 2.10): ``repeated Value value = 1`` with ``Value {string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor
# = 3}``. save_checkpoint serialises one parameter (or one slice of a large one) at a time, so the file is a plain run
# of field-1 records; ``crc_check=True`` appends b"crc_num" and a 10-byte CRC.
_RECORD_KEY = 0x0A  # field 1, wire type 2 (length-delimited)
_TAG_KEY = 0x0A  # Value.tag
_DATA_KEYS = (0x12, 0x1A)  # Value.tensor, Value.maptensor
_CRC_TRAILER = b"crc_num"
_CRC_TRAILER_SIZE = len(_CRC_TRAILER) + 10
_MAX_VARINT_BYTES = 10


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not match the network/optimizer; the message starts with the file."""


def _read_varint(handle) -> Optional[int]:
    """Args: handle: binary file. Returns: the protobuf varint at its position, or None (end of file / not one)."""
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        byte = handle.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << (7 * index)
        if byte[0] < 0x80:
            return value
    return None


def _leading_tag(handle, end: int) -> Optional[str]:
    """The name in the ``tag`` field at the handle's position (the first field of a ``Value``), or None."""
    if _read_varint(handle) != _TAG_KEY:
        return None
    length = _read_varint(handle)
    if length is None or handle.tell() + length > end:
        return None
    try:
        name = handle.read(length).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if name.isprintable() else None


def _value_tag(handle, end: int) -> Optional[str]:
    """The name of the ``Value`` record that starts at the handle's position and ends at ``end``.

    Returns:
        the name, or None when those bytes are not a ``Value`` (tag first, then tensor/maptensor fields filling
        the record exactly).
    """
    name = _leading_tag(handle, end)
    has_data = False
    while name is not None and handle.tell() < end:
        key = _read_varint(handle)
        length = _read_varint(handle) if key in _DATA_KEYS else None
        if length is None or handle.tell() + length > end:
            return None
        handle.seek(length, os.SEEK_CUR)
        has_data = True
    return name if has_data else None


def _describe_content(head: bytes) -> str:
    """Args: head: the first bytes of a file. Returns: what the file looks like, for error messages."""
    if head[:2] == b"PK":
        return "a zip archive (torch.save writes these: a PyTorch or official lang-seg checkpoint?)"
    if head[:1] == b"\x80":
        return "a Python pickle (a legacy torch.save file?)"
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
        return "a text file (starts with %r)" % head[:24].decode("ascii")
    return "unrecognised content (first bytes %s)" % head[:8].hex()


def _record_names(path: str, handle, size: int) -> List[str]:
    """The entry names of the ``.ckpt`` open as ``handle`` (``size`` bytes): see :func:`checkpoint_entry_names`."""
    names: List[str] = []
    head = handle.read(64)
    position = 0
    while position < size:
        handle.seek(position)
        if size - position == _CRC_TRAILER_SIZE and handle.read(len(_CRC_TRAILER)) == _CRC_TRAILER:
            break
        handle.seek(position)
        key = _read_varint(handle)
        length = _read_varint(handle) if key == _RECORD_KEY else None
        end = None if length is None else handle.tell() + length
        if end is not None and end > size:
            name = _leading_tag(handle, size)
            if name is not None:
                raise CheckpointError("%s: truncated: entry %d (%s) ends at byte %d, the file has %d bytes"
                                      % (path, len(names) + 1, name, end, size))
        name = _value_tag(handle, end) if end is not None and end <= size else None
        if name is None:
            if not names:
                raise CheckpointError("%s: not a MindSpore checkpoint: %s" % (path, _describe_content(head)))
            if (end is not None and end > size) or (end is None and handle.tell() >= size):
                raise CheckpointError("%s: truncated after entry %d (%s), at byte %d of %d"
                                      % (path, len(names), names[-1], position, size))
            raise CheckpointError("%s: damaged: byte %d (after entry %d, %s) does not start a parameter entry"
                                  % (path, position, len(names), names[-1]))
        if not names or names[-1] != name:
            names.append(name)
        position = end
    if not names:
        raise CheckpointError("%s: holds no entries (only a CRC record)" % path)
    return names


def cannot_read_message(path: str, error: OSError) -> str:
    """Args: path: the file; error: what reading it raised. Returns: ``"<path>: cannot read (<strerror>)"``."""
    return "%s: cannot read (%s)" % (path, error.strerror or error)


def checkpoint_entry_names(path: str) -> List[str]:
    """The entry names of a MindSpore ``.ckpt``, read from its record headers without loading any tensor.

    Walks the protobuf records (see ``_RECORD_KEY``): every record must be a parameter entry and the last must end
    exactly at the end of the file, which catches empty, truncated, damaged and non-MindSpore files before
    ``mindspore.load_checkpoint`` sees them (it logs its own ERROR line and blames permissions or ``filter_prefix``).

    Args:
        path: the file.

    Returns:
        the entry names in file order, each once (slices of one large parameter share a name).

    Raises:
        CheckpointError: ``"<path>: <what is wrong>"``: no such file, a directory, unreadable (``cannot read
            (Permission denied)``), empty, not a MindSpore checkpoint (says what it looks like: zip, pickle, text),
            truncated or damaged (with the byte offset).
    """
    if not os.path.exists(path):
        raise CheckpointError("%s: no such file" % path)
    if os.path.isdir(path):
        raise CheckpointError("%s: is a directory, not a checkpoint file" % path)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise CheckpointError("%s: empty file (0 bytes), not a checkpoint" % path)
        with open(path, "rb") as handle:
            return _record_names(path, handle, size)
    except OSError as error:  # permissions, an I/O error of the disk
        raise CheckpointError(cannot_read_message(path, error)) from None


def load_raw_checkpoint(path: str) -> Dict[str, object]:
    """``mindspore.load_checkpoint`` behind the structural check, so a bad file is one :class:`CheckpointError`.

    Args:
        path: a MindSpore ``.ckpt``.

    Returns:
        entry name -> ``mindspore.Parameter`` (``str`` for text entries), as ``mindspore.load_checkpoint``.

    Raises:
        CheckpointError: ``"<path>: ..."``: see :func:`checkpoint_entry_names`; or what MindSpore still refuses
            (its exception type and the first line of its message).
    """
    checkpoint_entry_names(path)
    try:
        return ms.load_checkpoint(path)
    except OSError as error:
        raise CheckpointError(cannot_read_message(path, error)) from None
    except Exception as error:  # MindSpore raises ValueError/RuntimeError with its own wording
        first_line = (str(error).splitlines() or [""])[0]
        raise CheckpointError("%s: unreadable MindSpore checkpoint (%s: %s)" % (path, type(error).__name__,
                                                                                first_line)) from None


def _optimizer_state(optimizer: nn.Cell, network: nn.Cell) -> List[Dict]:
    """Optimizer parameters that are not network weights (moments, global_step, ...), prefixed."""
    network_ids = {id(p) for p in network.get_parameters()}
    entries = []
    for param in optimizer.get_parameters():
        if id(param) in network_ids:
            continue
        entries.append({"name": OPTIMIZER_PREFIX + param.name, "data": param})
    return entries


def save_checkpoint(path: str, network: nn.Cell, optimizer: Optional[nn.Cell] = None, epoch: int = 0,
                    options: Optional[Dict] = None, metrics: Optional[Dict] = None) -> str:
    """Write a checkpoint atomically.

    Args:
        path: target file (folder created if missing).
        network: all its parameters (trainable, frozen, BN statistics) are saved.
        optimizer: given for a training file: its non-network parameters (momentum buffers, global step) are saved
            too, which makes the file resumable.
        epoch: number of completed epochs.
        options: JSON-serialisable record of the network (build options, :data:`RECORDED_LABELS_KEY`) and the run.
        metrics: JSON-serialisable metrics of this epoch.

    Returns:
        ``path``.
    """
    entries = [{"name": param.name, "data": param} for param in network.get_parameters()]
    names = [entry["name"] for entry in entries]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError("save_checkpoint(%s): duplicate parameter names %s" % (path, duplicates[:5]))
    if optimizer is not None:
        entries += _optimizer_state(optimizer, network)
    record = {"format": FORMAT_VERSION, "epoch": int(epoch), "options": options or {}, "metrics": metrics or {}}
    with atomic_output(path, suffix=".ckpt") as temporary:
        ms.save_checkpoint(entries, temporary,
                           append_dict={RECORD_KEY: json.dumps(record, sort_keys=True, default=str)})
    return path


def _text(value) -> str:
    return value if isinstance(value, str) else str(value.asnumpy())  # load_checkpoint returns strings as str


def _json(path: str, key: str, value) -> Dict:
    try:
        return json.loads(_text(value))
    except ValueError as error:
        raise CheckpointError("%s: damaged '%s' entry (%s)" % (path, key, error)) from None


def _record(path: str, raw: Dict[str, object]) -> Dict:
    """The file's record in the current layout, from whichever layout the file has (see the module docstring)."""
    if RECORD_KEY in raw:
        return _json(path, RECORD_KEY, raw[RECORD_KEY])
    format_key, epoch_key, options_key, metrics_key = TRAINING_V1_KEYS
    if format_key in raw:
        return {"format": int(raw[format_key].asnumpy()),
                "epoch": int(raw[epoch_key].asnumpy()) if epoch_key in raw else 0,
                "options": _json(path, options_key, raw[options_key]) if options_key in raw else {},
                "metrics": _json(path, metrics_key, raw[metrics_key]) if metrics_key in raw else {}}
    if WEIGHTS_V1_KEY in raw:
        options = _json(path, WEIGHTS_V1_KEY, raw[WEIGHTS_V1_KEY])
        options.pop("format_version", None)
        if "labels" in options:
            options[RECORDED_LABELS_KEY] = options.pop("labels")
        return {"format": 0, "epoch": 0, "options": options, "metrics": {}}
    return {"format": None, "epoch": 0, "options": {}, "metrics": {}}  # a plain MindSpore checkpoint


def read_checkpoint(path: str) -> Tuple[Dict[str, ms.Parameter], Dict[str, ms.Parameter], Dict]:
    """Read a checkpoint of ours, of any layout (a plain MindSpore checkpoint reads with an empty record).

    Args:
        path: ``.ckpt`` file.

    Returns:
        ``(network_params, optimizer_params (prefix removed), record)`` where ``record`` has ``epoch`` (int),
        ``options`` and ``metrics`` (dicts), ``format`` (int, None for a plain MindSpore checkpoint).

    Raises:
        CheckpointError: ``"<path>: ..."``: missing, unreadable, empty, truncated, damaged or not a MindSpore
            checkpoint (see :func:`load_raw_checkpoint`), or a damaged record.
    """
    raw = load_raw_checkpoint(path)
    record = _record(path, raw)
    network_params, optimizer_params = {}, {}
    for name, value in raw.items():
        if name in RECORD_KEYS or name in TRAINING_V1_KEYS:
            continue
        if name.startswith(OPTIMIZER_PREFIX):
            optimizer_params[name[len(OPTIMIZER_PREFIX):]] = value
        else:
            network_params[name] = value
    return network_params, optimizer_params, record


def is_resumable(names: List[str]) -> bool:
    """Args: names: a checkpoint's entry names. Returns: whether it is a training file of ours (record + optimizer)."""
    return any(key in names for key in RECORD_KEYS) and any(name.startswith(OPTIMIZER_PREFIX) for name in names)


def check_resumable(path: str) -> None:
    """Prove, from its record headers alone (no tensor is read), that ``path`` is a training checkpoint written by
    :func:`save_checkpoint` with the optimizer state, so a run can resume from it. Cheap: train_custom.py calls it
    before the data check.

    Raises:
        CheckpointError: ``"<path>: ..."``: unreadable (see :func:`checkpoint_entry_names`), weights only, or a
            checkpoint of another kind.
    """
    names = checkpoint_entry_names(path)
    if is_resumable(names):
        return
    if any(key in names for key in RECORD_KEYS):
        raise CheckpointError("%s: holds network weights without optimizer state, so it cannot be resumed; start "
                              "a run from it with --weights" % path)
    raise CheckpointError("%s: not a checkpoint of ours (no %s entry; it holds %d entries such as %s), so it "
                          "cannot be resumed" % (path, RECORD_KEY, len(names), ", ".join(sorted(names)[:3])))


def _match(path: str, what: str, target: Dict[str, ms.Parameter], stored: Dict[str, ms.Parameter],
           strict: bool) -> None:
    missing = sorted(set(target) - set(stored))
    unexpected = sorted(set(stored) - set(target))
    mismatched = ["%s: checkpoint %s vs %s %s" % (name, tuple(stored[name].shape), what, tuple(target[name].shape))
                  for name in sorted(set(target) & set(stored))
                  if tuple(stored[name].shape) != tuple(target[name].shape)]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:5]))
    if strict and missing:
        problems.append("%d %s parameters missing from the checkpoint, e.g. %s" % (len(missing), what, missing[:5]))
    if strict and unexpected:
        problems.append("%d checkpoint entries unknown to the %s, e.g. %s" % (len(unexpected), what, unexpected[:5]))
    if problems:
        raise CheckpointError("%s: does not match the %s: %s" % (path, what, " | ".join(problems)))


def load_checkpoint(path: str, network: nn.Cell, optimizer: Optional[nn.Cell] = None, strict: bool = True) -> Dict:
    """Load a checkpoint into ``network`` (and ``optimizer``), checking names and shapes first.

    Args:
        path: ``.ckpt`` written by :func:`save_checkpoint` (a plain network-only MindSpore checkpoint also loads
            when no optimizer is given).
        network: receives the network parameters.
        optimizer: if given, receives momentum buffers and global step; the checkpoint must contain them.
        strict: every network (and optimizer) parameter must be present and no unknown entry may remain.

    Returns:
        the record of :func:`read_checkpoint` (``epoch``, ``options``, ``metrics``, ``format``).

    Raises:
        CheckpointError: unreadable file, missing/unexpected names or shape mismatch (listing the first ones).
    """
    if optimizer is not None:
        check_resumable(path)
    network_params, optimizer_params, record = read_checkpoint(path)
    target = {p.name: p for p in network.get_parameters()}
    _match(path, "network", target, network_params, strict)
    ms.load_param_into_net(network, {k: v for k, v in network_params.items() if k in target})
    if optimizer is not None:
        network_ids = {id(p) for p in network.get_parameters()}
        opt_target = {p.name: p for p in optimizer.get_parameters() if id(p) not in network_ids}
        _match(path, "optimizer", opt_target, optimizer_params, strict)
        for name, param in opt_target.items():
            if name in optimizer_params:
                param.set_data(ms.Tensor(optimizer_params[name].asnumpy()))
    return record
