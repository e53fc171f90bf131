"""Atomic, strict MindSpore checkpoints of network + optimizer state + epoch + options.

File layout (one ``.ckpt`` written by ``mindspore.save_checkpoint``):

- network parameters under their own names (loadable by ``mindspore.load_param_into_net(network, ...)``);
- optimizer state (momentum buffers ``moments.*``, ``global_step``, ...) under ``optimizer.<name>``;
- ``lseg_ckpt_format`` (int), ``epoch`` (epochs completed), ``options_json`` and ``metrics_json`` (str).

Writes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``d over the target, so a process
killed at any moment leaves either the previous complete file or the new complete file, never a torn one.
"""
import glob
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import mindspore as ms
from mindspore import nn

from .distributed import is_main_process

FORMAT_VERSION = 1
OPTIMIZER_PREFIX = "optimizer."
FORMAT_KEY = "lseg_ckpt_format"  # present in every checkpoint this module writes
META_KEYS = (FORMAT_KEY, "epoch", "options_json", "metrics_json")


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not match the network/optimizer; the message names the file."""


def _optimizer_state(optimizer: nn.Cell, network: nn.Cell) -> List[Dict]:
    """Optimizer parameters that are not network weights (moments, global_step, ...), prefixed."""
    network_ids = {id(p) for p in network.get_parameters()}
    entries = []
    for param in optimizer.get_parameters():
        if id(param) in network_ids:
            continue
        entries.append({"name": OPTIMIZER_PREFIX + param.name, "data": param})
    return entries


def _fsync_file(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _atomic_target_tmp(path: str) -> str:
    folder, base = os.path.split(os.path.abspath(path))
    # mindspore.save_checkpoint appends ".ckpt" to names that lack it, so the temp name must end with it.
    return os.path.join(folder, ".%s.tmp%d.ckpt" % (base, os.getpid()))


def save_checkpoint(path: str, network: nn.Cell, optimizer: Optional[nn.Cell] = None, epoch: int = 0,
                    options: Optional[Dict] = None, metrics: Optional[Dict] = None) -> str:
    """Write a checkpoint atomically.

    Args:
        path: target file (folder created if missing).
        network: the trained network; all its parameters (trainable, frozen, BN statistics) are saved.
        optimizer: optional; its non-network parameters (momentum buffers, global step) are saved too.
        epoch: number of completed epochs.
        options: JSON-serialisable run options (stored as text).
        metrics: JSON-serialisable metrics of this epoch (stored as text).

    Returns:
        ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    entries = [{"name": param.name, "data": param} for param in network.get_parameters()]
    names = [entry["name"] for entry in entries]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError("save_checkpoint(%s): duplicate parameter names %s" % (path, duplicates[:5]))
    if optimizer is not None:
        entries += _optimizer_state(optimizer, network)
    append = {
        FORMAT_KEY: FORMAT_VERSION,
        "epoch": int(epoch),
        "options_json": json.dumps(options or {}, sort_keys=True, default=str),
        "metrics_json": json.dumps(metrics or {}, sort_keys=True, default=str),
    }
    tmp = _atomic_target_tmp(path)
    try:
        ms.save_checkpoint(entries, tmp, append_dict=append)
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_checkpoint(path: str) -> Tuple[Dict[str, ms.Parameter], Dict[str, ms.Parameter], Dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: ``.ckpt`` file.

    Returns:
        ``(network_params, optimizer_params (prefix removed), meta)`` where ``meta`` has ``epoch`` (int),
        ``options`` and ``metrics`` (dicts), ``format`` (int or None for a plain network checkpoint).

    Raises:
        CheckpointError: missing or unreadable file.
    """
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint not found: %s" % path)
    try:
        raw = ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError with its own wording
        raise CheckpointError("checkpoint %s is unreadable (%s: %s)" % (path, type(err).__name__, err)) from err
    network_params, optimizer_params = {}, {}
    for name, value in raw.items():
        if name in META_KEYS:
            continue
        if name.startswith(OPTIMIZER_PREFIX):
            optimizer_params[name[len(OPTIMIZER_PREFIX):]] = value
        else:
            network_params[name] = value

    def _text(key):
        value = raw[key]  # load_checkpoint returns strings as str
        return value if isinstance(value, str) else str(value.asnumpy())

    meta = {
        "format": int(raw[FORMAT_KEY].asnumpy()) if FORMAT_KEY in raw else None,
        "epoch": int(raw["epoch"].asnumpy()) if "epoch" in raw else 0,
        "options": json.loads(_text("options_json")) if "options_json" in raw else {},
        "metrics": json.loads(_text("metrics_json")) if "metrics_json" in raw else {},
    }
    return network_params, optimizer_params, meta


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
        raise CheckpointError("checkpoint %s does not match the %s: %s" % (path, what, " | ".join(problems)))


def load_checkpoint(path: str, network: nn.Cell, optimizer: Optional[nn.Cell] = None, strict: bool = True) -> Dict:
    """Load a checkpoint into ``network`` (and ``optimizer``), checking names and shapes first.

    Args:
        path: ``.ckpt`` written by :func:`save_checkpoint` (a plain network-only MindSpore checkpoint also loads
            when no optimizer is given).
        network: receives the network parameters.
        optimizer: if given, receives momentum buffers and global step; the checkpoint must contain them.
        strict: every network (and optimizer) parameter must be present and no unknown entry may remain.

    Returns:
        the ``meta`` dict of :func:`read_checkpoint` (``epoch``, ``options``, ``metrics``, ``format``).

    Raises:
        CheckpointError: unreadable file, missing/unexpected names or shape mismatch (listing the first ones).
    """
    network_params, optimizer_params, meta = read_checkpoint(path)
    target = {p.name: p for p in network.get_parameters()}
    _match(path, "network", target, network_params, strict)
    ms.load_param_into_net(network, {k: v for k, v in network_params.items() if k in target})
    if optimizer is not None:
        if not optimizer_params:
            raise CheckpointError("checkpoint %s holds no optimizer state (needed to resume)" % path)
        network_ids = {id(p) for p in network.get_parameters()}
        opt_target = {p.name: p for p in optimizer.get_parameters() if id(p) not in network_ids}
        _match(path, "optimizer", opt_target, optimizer_params, strict)
        for name, param in opt_target.items():
            if name in optimizer_params:
                param.set_data(ms.Tensor(optimizer_params[name].asnumpy()))
    return meta


_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.ckpt$")


class CheckpointManager:
    """Per-epoch checkpoints in one experiment folder: ``epoch_XXX.ckpt`` (the last K), ``last.ckpt``,
    ``best.ckpt``. Only the main process (rank 0) writes.

    Args:
        folder: experiment folder.
        keep_last: how many ``epoch_XXX.ckpt`` files to keep.
        writer: whether this process writes (default: rank 0 only).
    """

    def __init__(self, folder: str, keep_last: int = 3, writer: Optional[bool] = None):
        self.folder = folder
        self.keep_last = int(keep_last)
        self.writer = is_main_process() if writer is None else writer

    @property
    def last_path(self) -> str:
        """``<folder>/last.ckpt``."""
        return os.path.join(self.folder, "last.ckpt")

    @property
    def best_path(self) -> str:
        """``<folder>/best.ckpt``."""
        return os.path.join(self.folder, "best.ckpt")

    def epoch_path(self, epoch: int) -> str:
        """``<folder>/epoch_XXX.ckpt`` for a number of completed epochs."""
        return os.path.join(self.folder, "epoch_%03d.ckpt" % epoch)

    def _link_atomically(self, source: str, target: str) -> None:
        tmp = _atomic_target_tmp(target)
        if os.path.exists(tmp):
            os.remove(tmp)
        try:
            os.link(source, tmp)  # a second name for the same bytes: no copy of a ~2 GB file
        except OSError:
            import shutil
            shutil.copyfile(source, tmp)
            _fsync_file(tmp)
        os.replace(tmp, target)

    def save(self, network: nn.Cell, optimizer: Optional[nn.Cell], epoch: int, options: Optional[Dict] = None,
             metrics: Optional[Dict] = None, is_best: bool = False) -> Optional[str]:
        """Write ``epoch_XXX.ckpt``, point ``last.ckpt`` (and ``best.ckpt`` when ``is_best``) at it, prune.

        Returns:
            the epoch file's path, or None on non-writing ranks.
        """
        if not self.writer:
            return None
        path = save_checkpoint(self.epoch_path(epoch), network, optimizer, epoch, options, metrics)
        self._link_atomically(path, self.last_path)
        if is_best:
            self._link_atomically(path, self.best_path)
        self.prune()
        return path

    def epoch_files(self) -> List[str]:
        """Existing ``epoch_XXX.ckpt`` files, oldest first."""
        found = []
        for path in glob.glob(os.path.join(self.folder, "epoch_*.ckpt")):
            match = _EPOCH_FILE.match(os.path.basename(path))
            if match:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` epoch files (``best.ckpt``/``last.ckpt`` are separate names)."""
        files = self.epoch_files()
        for path in files[:max(0, len(files) - self.keep_last)]:
            os.remove(path)
