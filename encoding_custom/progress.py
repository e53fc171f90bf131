"""Progress bars that suit where the output goes: on a terminal tqdm's line redrawn in place; in a file or a pipe
(``> log.txt``, a job scheduler) a new line every 5 % of the work, instead of one carriage-return update per step;
none at all after :func:`set_progress` ``(False)`` (every script's ``--no-progress``)."""
import sys
from typing import Optional

from tqdm import tqdm

LINES_PER_BAR = 20  # in a file: one line per 5 %
_enabled = True


def set_progress(enabled: bool) -> None:
    """Turn every progress bar of this process on or off (the scripts' ``--no-progress``)."""
    global _enabled
    _enabled = bool(enabled)


class _OneLinePerUpdate:
    """A text stream for tqdm that turns each in-place redraw (``"\\r" + status``) into a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _FileProgress(tqdm):
    """tqdm for a file: a line only when ``miniters`` of the work are done (a new postfix does not force one)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress_bar(total: Optional[int] = None, disable: bool = False, file=None, **kwargs) -> tqdm:
    """A tqdm bar over ``total`` units on ``file`` (default stderr), shaped for a terminal or a file.

    Args:
        total: units of work (None: unknown, a line per update in a file).
        disable: no bar (e.g. not the main process); :func:`set_progress` ``(False)`` disables every bar too.
        file: the stream.
        **kwargs: tqdm's other options (``desc``, ``unit``, ``initial``, ...).

    Returns:
        the bar (use it as tqdm's: ``update``, ``set_postfix``, ``close``).
    """
    stream = sys.stderr if file is None else file
    disable = disable or not _enabled
    if _is_terminal(stream) or disable:
        return tqdm(total=total, disable=disable, file=stream, dynamic_ncols=True, **kwargs)
    every = max(1, (total or 0) // LINES_PER_BAR)
    return _FileProgress(total=total, file=_OneLinePerUpdate(stream), mininterval=0, miniters=every, ncols=100,
                         **kwargs)


__all__ = ["LINES_PER_BAR", "set_progress", "progress_bar"]
