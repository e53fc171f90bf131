"""Owning an experiment folder for a run's life: one run per folder, leftovers of dead runs cleaned up.

Two training runs writing one folder would interleave metrics.jsonl, steps.jsonl and checkpoints without an error.
:class:`ExperimentLock` takes an exclusive ``fcntl.flock`` on ``<folder>/.lock`` and keeps it until the run ends; the
kernel drops the lock when its process dies, however it dies (kill -9 included), so a dead run never blocks the next
one. The file records the holder's pid, host and command line, so that the second run can name them.

Once the folder is ours, no writer is alive in it, so checkpoint temp files left by a killed writer
(``.<name>.tmp<pid>.<random>.ckpt``, see :func:`foundation.atomic.atomic_output`; GBs at ViT-L size) are
removed.
"""
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import List, Optional

from foundation.atomic import is_dead_writers_temporary

LOCK_NAME = ".lock"
# flock errors of file systems without lock support (Lustre without -o flock, some NFS set-ups).
_NO_LOCK_SUPPORT = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class ExperimentBusyError(RuntimeError):
    """Another live process holds the experiment folder; the message names the folder and the holder."""


def _describe_holder(record: dict) -> str:
    if not record:
        return "another process (no details recorded)"
    return "pid %s on %s since %s (%s)" % (record.get("pid", "?"), record.get("host", "?"),
                                           record.get("started", "?"), record.get("command", "?"))


class ExperimentLock:
    """An exclusive, process-lifetime lock on an experiment folder.

    Args:
        folder: the experiment folder (created if missing).

    Use as a context manager or call :meth:`acquire` / :meth:`release`. Only the process that writes the folder
    (rank 0 of a data-parallel run) takes it.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self._handle = None
        self.previous: dict = {}
        self.unsupported: Optional[str] = None  # a warning when the file system cannot lock

    def acquire(self) -> "ExperimentLock":
        """Take the lock or raise :class:`ExperimentBusyError` at once (never waits).

        A lock file left by a dead process is taken over; ``previous`` then holds that process's record and
        :meth:`takeover_message` describes it. On a file system without locks the run goes on unprotected
        (``unsupported`` says so).

        Returns:
            ``self``.

        Raises:
            ExperimentBusyError: a live process holds the folder (named with its pid, host and command).
        """
        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            holder = _read_record(handle.read())
            handle.close()
            if err.errno in _NO_LOCK_SUPPORT:
                self.unsupported = "%s: the file system does not support locks (%s): this run is not protected " \
                                   "from a second one on the same folder" % (self.folder, err.strerror or err)
                return self
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ExperimentBusyError(
                    "%s is in use by another run: %s; wait for it to finish, stop it, or choose another --exp_name"
                    % (self.folder, _describe_holder(holder))) from None
            raise
        handle.seek(0)
        self.previous = _read_record(handle.read())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)}) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def takeover_message(self) -> Optional[str]:
        """What to tell the user about the lock, or None.

        Returns:
            a note when the lock file was left by an earlier process that ended without releasing it (killed), or
            the warning that the folder could not be locked at all; None otherwise.
        """
        if self.unsupported:
            return "warning: " + self.unsupported
        if not self.previous or self.previous.get("released"):
            return None
        return "%s: taking over the lock of an earlier run that did not end cleanly (%s)" % (
            self.folder, _describe_holder(self.previous))

    def release(self) -> None:
        """Mark the lock file released (so the next run sees a clean end) and drop the lock; idempotent."""
        if self._handle is None:
            return
        record = _read_record(_file_text(self.path))
        record["released"] = True
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _file_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def _read_record(text: str) -> dict:
    try:
        record = json.loads(text.strip() or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete checkpoint temp files left in ``folder`` by writers that died mid-write.

    Call only while holding the folder's :class:`ExperimentLock` (then no writer of ours is alive in it).

    Returns:
        the removed paths.
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if is_dead_writers_temporary(name) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


__all__ = ["ExperimentBusyError", "ExperimentLock", "LOCK_NAME", "remove_stale_temp_files"]
