"""What the training loop does at the end of every epoch, as a list of hooks, and the training log.

``Trainer.epoch_end_hooks`` (default :func:`default_epoch_end_hooks`) is run in order after an epoch's steps, each
``hook.on_epoch_end(trainer, record)`` with the epoch's record (the dict that becomes a ``metrics.jsonl`` line):
validation fills it in, the next hooks write it out. Append a hook of your own to add a side effect.

The printed progress lines go through the logger ``lseg.train`` (:data:`train_log`): its handler writes the bare
message to the ``sys.stdout`` of the moment (so pytest's capture and a worker's redirected log see it) on rank 0
only, flushing every line like the ``print(..., flush=True)`` it replaced. It does not propagate to the root logger,
so an application's own ``logging.basicConfig`` does not print the lines twice; add handlers to ``lseg.train`` to
send them elsewhere.
"""
import logging
import os
import sys
import time
from typing import Dict, List

from encoding_custom.engine.distributed import is_main_process
from encoding_custom.engine.plotting import plot_curves

train_log = logging.getLogger("lseg.train")


class _CurrentStdoutHandler(logging.StreamHandler):
    """A StreamHandler bound to whatever ``sys.stdout`` is when a record is written, not when it was made."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass  # StreamHandler.__init__ sets it; the property always answers the current sys.stdout


def _rank0_only(_record: logging.LogRecord) -> bool:
    return is_main_process()


def _install_stdout_handler() -> None:
    if not any(isinstance(handler, _CurrentStdoutHandler) for handler in train_log.handlers):
        handler = _CurrentStdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_rank0_only)
        train_log.addHandler(handler)
    train_log.setLevel(logging.INFO)
    train_log.propagate = False


_install_stdout_handler()


class EpochEndHook:
    """One side effect at the end of every epoch.

    Attributes:
        name: what it does, for messages and for finding it in ``Trainer.epoch_end_hooks``.
    """

    name = "epoch end hook"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        """Called once per completed epoch, after its last step, in list order.

        Args:
            trainer: the running ``Trainer``.
            record: the epoch's record (``epoch`` 1-based, ``global_step``, ``train_loss``, ``lrs``, ``time_s``,
                ``world_size``; after :class:`Validate` also ``pixAcc``, ``mIoU``, ``best_mIoU``); hooks may add keys.
        """
        raise NotImplementedError


class Validate(EpochEndHook):
    """The epoch network's validation figures (``Trainer.validate``: pixAcc/mIoU, or a zero-shot run's mIoU/FB-IoU)
    into the record, the best mIoU so far tracked.

    A stop signal that came during validation abandons the epoch (its checkpoint would lack the metrics):
    raises the trainer's ``TrainingInterrupted``. ``time_s`` is re-stamped afterwards so it counts validation too.
    Sets ``trainer.epoch_is_best`` (this epoch has the best mIoU so far).
    """

    name = "validation"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        metrics = trainer.validate()
        signum = trainer.stop_signal()
        if signum is not None:
            raise trainer.interrupted(signum, record["epoch"] - 1, None)
        record["time_s"] = round(time.time() - trainer.epoch_started, 2)
        record.update(metrics)
        trainer.epoch_is_best = "mIoU" in metrics and metrics["mIoU"] > trainer.best_miou
        if trainer.epoch_is_best:
            trainer.best_miou = metrics["mIoU"]
        record["best_mIoU"] = trainer.best_miou


class AppendMetrics(EpochEndHook):
    """The record into ``trainer.history`` and as one line of ``<exp_dir>/metrics.jsonl`` (rank 0 writes)."""

    name = "metrics.jsonl"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        trainer.history.append(record)
        trainer.append_jsonl("metrics.jsonl", record)


class SaveCheckpoint(EpochEndHook):
    """``epoch_XXX.ckpt``, ``last.ckpt`` and (when best) ``best.ckpt`` (rank 0; see ``CheckpointManager.save``)."""

    name = "checkpoint"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        if trainer.main:
            trainer.checkpoints.save(trainer.network, trainer.optimizer, record["epoch"], trainer.config.options,
                                     record, trainer.epoch_is_best)


class PlotCurves(EpochEndHook):
    """``<exp_dir>/curves.png`` from the history so far (rank 0)."""

    name = "curves.png"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        if trainer.main:
            plot_curves(trainer.history, os.path.join(trainer.exp_dir, "curves.png"))


class LogEpochLine(EpochEndHook):
    """``epoch 3/240: train_loss 0.4123, pixAcc 0.8012, mIoU 0.4100 -> <exp_dir>/epoch_003.ckpt`` to
    :data:`train_log` (rank 0, with ``config.progress``)."""

    name = "epoch line"

    def on_epoch_end(self, trainer, record: Dict) -> None:
        if not (trainer.main and trainer.config.progress):
            return
        shown = ", ".join("%s %.4f" % (key, record[key]) for key in ("train_loss", "pixAcc", "FB-IoU", "mIoU")
                          if record.get(key) is not None)
        train_log.info("epoch %d/%d: %s -> %s", record["epoch"], trainer.config.max_epochs, shown,
                       trainer.checkpoints.epoch_path(record["epoch"]))


def default_epoch_end_hooks() -> List[EpochEndHook]:
    """The Trainer's epoch end, in order: validate, append metrics.jsonl, save checkpoints, plot, log the line."""
    return [Validate(), AppendMetrics(), SaveCheckpoint(), PlotCurves(), LogEpochLine()]
