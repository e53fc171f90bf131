"""The checkpoints of a training run in its experiment folder: ``epoch_XXX.ckpt`` (the last K), ``last.ckpt`` and
``best.ckpt``, written by rank 0 in the file format of :mod:`foundation.checkpoint_file`."""
import glob
import os
import re
from typing import Dict, List, Optional

from mindspore import nn

from encoding_custom.engine.distributed import is_main_process
from foundation.atomic import atomic_link
from foundation.checkpoint_file import save_checkpoint

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

    def save(self, network: nn.Cell, optimizer: Optional[nn.Cell], epoch: int, options: Optional[Dict] = None,
             metrics: Optional[Dict] = None, is_best: bool = False) -> Optional[str]:
        """Write ``epoch_XXX.ckpt``, point ``last.ckpt`` (and ``best.ckpt`` when ``is_best``) at it, prune.

        Returns:
            the epoch file's path, or None on non-writing ranks.
        """
        if not self.writer:
            return None
        path = save_checkpoint(self.epoch_path(epoch), network, optimizer, epoch, options, metrics)
        atomic_link(path, self.last_path)
        if is_best:
            atomic_link(path, self.best_path)
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
