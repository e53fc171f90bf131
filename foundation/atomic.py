"""The one way this project writes a file that must never be seen half-written (checkpoints, converted weights,
caches): write a temporary file beside the target, ``fsync`` it, ``os.replace`` it over the target, ``fsync`` the
folder. A process killed at any moment leaves the previous complete file or the new complete file, and at worst a
temporary file whose name says whose it was (``.<name>.tmp<pid>.<random><suffix>``; a run that owns the folder
removes those of dead writers: :func:`encoding_custom.engine.experiment.remove_stale_temp_files`). Logs grow by
whole records (:func:`append_text`), and a failed write is told in one line (:func:`write_failure`).

Imports nothing but the standard library, so every package (``clip_ms`` included) can use it.
"""
import contextlib
import errno
import os
import re
import shutil
import tempfile
from typing import Iterator, List, Optional, Sequence

# The temporary names of :func:`atomic_output` (and of the writers before it: ".<name>.tmp<pid>.ckpt",
# "data_check.json.<random>.tmp"), for the clean-up of dead writers' leftovers; group "pid" is the writer's.
# MindSpore's save_checkpoint writes our ``....ckpt`` temporary through ``....tmp`` of its own.
TEMPORARY_NAME = re.compile(r"^(\..+\.tmp(?P<pid>\d+)(\.\w+)?\.(ckpt|json|jsonl|txt|png|npy|tmp)"
                            r"|data_check\.json\..+\.tmp)$")


def is_dead_writers_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_output` whose writer is no longer alive on this host.

    Args:
        name: a file name (no folder).

    Returns:
        True for our temporary names with a pid that no process has (or no pid, the older cache name); False for
        other names and for a live writer's file (e.g. ``python -m modules.convert`` writing into the folder).
    """
    match = TEMPORARY_NAME.match(name)
    if not match:
        return False
    if match.group("pid") is None:
        return True
    try:
        os.kill(int(match.group("pid")), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False  # alive: its writer may still be writing it


def user_file_mode() -> int:
    """The mode a file the user creates gets: ``0o666`` less the process umask (``/proc/self/status`` where Linux
    has it, so no other thread ever sees a changed umask)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            return 0o666 & ~int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def give_user_mode(path: str) -> None:
    """Give a file written through a temporary (``mkstemp``: 0600) or by MindSpore (0400) the user's usual mode."""
    os.chmod(path, user_file_mode())


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


@contextlib.contextmanager
def atomic_output(path: str, suffix: Optional[str] = None) -> Iterator[str]:
    """A temporary path to write ``path``'s new content to; when the block ends without an exception, the file is
    made durable and renamed over ``path``; otherwise it is removed and ``path`` is untouched.

    The temporary name holds the pid plus a random part (ranks on several hosts may write one shared file) and ends
    with ``suffix``.

    Args:
        path: the target file; its folder is created when missing.
        suffix: the temporary name's ending; default ``path``'s own extension. Writers that append an extension
            to names lacking it pass theirs (``mindspore.save_checkpoint`` appends ``.ckpt``: a target named
            ``weights`` would otherwise be replaced by the empty temporary file).

    Yields:
        the temporary file's path (it exists, empty).
    """
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".%s.tmp%d." % (base, os.getpid()),
                                         suffix=os.path.splitext(base)[1] if suffix is None else suffix, dir=folder)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        give_user_mode(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        for leftover in (temporary, os.path.splitext(temporary)[0] + ".tmp"):  # ours, MindSpore's
            with contextlib.suppress(OSError):
                os.remove(leftover)
        if isinstance(error, OSError) and error.errno and error.filename != path:
            # The file the user asked for, not our temporary name (a full disk then names what did not fit).
            raise type(error)(error.errno, error.strerror or str(error), path) from error
        raise
    _fsync_folder(folder)


def append_text(path: str, text: str) -> None:
    """Append ``text`` to ``path`` whole or not at all: what a failed write (a full disk) added is cut off again, so
    a log of one record per line never ends in half a record.

    Args:
        path: the file (created with the user's mode when missing); text: what to append (UTF-8).

    Raises:
        OSError: the write failed (``filename`` is ``path``); the file is as it was.
    """
    data = text.encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(descriptor).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, start)
            raise OSError(error.errno, error.strerror, path) from error
    finally:
        os.close(descriptor)


def write_failure(error: OSError, folder: str) -> str:
    """What a failed write means for the user, in one line without the command's name.

    Args:
        error: what writing raised (its ``filename`` the file meant, as :func:`atomic_output` and
            :func:`append_text` give it); folder: the output folder, named when ``error`` names no file.

    Returns:
        ``"no space left in <folder> while writing <file> (<MB> MB free)"`` for a full disk, else
        ``"cannot write <file>: <reason>"``.
    """
    target = error.filename or folder
    if error.errno == errno.ENOSPC:
        where = os.path.dirname(os.path.abspath(target)) if error.filename else folder
        try:
            free = "%.1f MB free" % (shutil.disk_usage(where).free / 2 ** 20)
        except OSError:
            free = "free space unknown"
        return "no space left in %s while writing %s (%s)" % (where, os.path.basename(target), free)
    return "cannot write %s: %s" % (target, error.strerror or error)


def missing_folders(path: str) -> List[str]:
    """Args: path: a folder a command is about to create. Returns: it and its parents that do not exist yet,
    deepest first (for :func:`remove_empty_folders` when the command fails)."""
    missing, folder = [], os.path.abspath(path)
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def remove_empty_folders(folders: Sequence[str]) -> None:
    """Remove the ``folders`` (deepest first) that are empty: what a failed command created and wrote nothing into.
    A folder holding anything (a partial download to resume, an output) stays."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def atomic_link(source: str, target: str) -> None:
    """Give ``source``'s bytes the name ``target`` atomically: a hard link (no copy of a ~2 GB checkpoint), or a
    copy where the file system has no hard links.

    Args:
        source: an existing, complete file.
        target: the name to (re)point at it.
    """
    with atomic_output(target) as temporary:
        os.remove(temporary)  # os.link wants a free name
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)


__all__ = ["TEMPORARY_NAME", "is_dead_writers_temporary", "user_file_mode", "give_user_mode", "atomic_output",
           "append_text", "write_failure", "missing_folders", "remove_empty_folders", "atomic_link"]
