"""The training loop: WithLossCell + one training-step cell (:class:`.train_step.AccumulatingTrainStep`: gradient
accumulation x dynamic loss scaling under AMP x optional clipping) + :class:`.optimizer.GroupedMomentum` with the
official parameter groups, poly lr per optimizer step; at each epoch end the hooks of :mod:`.callbacks` (validation,
metrics.jsonl, checkpoints, curves, the printed line).

Only rank 0 writes files and shows progress; training data is sharded by rank (see :mod:`.data`); validation is
sharded too and its pixel counts are all-reduced, so every rank sees single-device figures.
"""
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn

from encoding_custom.engine.callbacks import EpochEndHook, default_epoch_end_hooks
from encoding_custom.engine.checkpoint import CheckpointManager
from encoding_custom.engine.data import BatchLoader
from encoding_custom.engine.distributed import (
    all_reduce_counts,
    all_reduce_metric,
    broadcast_batchnorm_statistics,
    get_world_size,
    is_main_process,
    shard_for_evaluation,
)
from encoding_custom.engine.optimizer import build_optimizer
from encoding_custom.engine.params import refresh_parameters
from encoding_custom.engine.train_step import AccumulatingTrainStep
from encoding_custom.evaluation.evaluator import network_forward
from encoding_custom.evaluation.metrics import SegmentationMetric
from encoding_custom.progress import progress_bar
from foundation.atomic import append_text, atomic_output
from foundation.checkpoint_file import CheckpointError, load_checkpoint
from modules import tnn
from modules.mixed_precision import apply_mixed_precision

# Micro-batches in a row with a non-finite loss that the loss-scale check flagged as an overflow (their group's update
# is skipped and the scale lowered) after which an AMP run is declared diverged.
MAX_CONSECUTIVE_OVERFLOWS = 50
# Dynamic loss scale under AMP, unchanged: start at 2**16 (torch GradScaler's start), halve on an overflowing
# optimizer step, double after 1000 good ones (MindSpore's DynamicLossScaleManager defaults: 2**24, 2, 2000).
LOSS_SCALE_START, LOSS_SCALE_FACTOR, LOSS_SCALE_WINDOW = 2.0 ** 16, 2, 1000


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN/Inf; the message names epoch, batch and optimizer step."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped training between two steps.

    Attributes:
        signum: the signal received.
        epoch: 1-based epoch that was running; batch: its micro-batch index (None: during validation).
        last_checkpoint: the newest complete checkpoint (``last.ckpt``), or None when no epoch has finished yet.
        last_epoch: the epoch that checkpoint ends (0 without one).
    """

    def __init__(self, signum: int, epoch: int, batch: Optional[int], last_checkpoint: Optional[str],
                 last_epoch: int):
        self.signum, self.epoch, self.batch = signum, epoch, batch
        self.last_checkpoint, self.last_epoch = last_checkpoint, last_epoch
        where = "validation" if batch is None else "batch %d" % batch
        super().__init__("stopped by %s during epoch %d (%s)" % (signal.Signals(signum).name, epoch, where))


class StopSignals:
    """While active, the first SIGINT/SIGTERM only sets :attr:`signum` (the loop stops after the running step);
    a second one ends the process at once with the default action.

    A step cannot be interrupted half-way anyway: Python runs handlers between bytecodes, i.e. after MindSpore's
    step returns. Outside the main thread (signals cannot be handled there) it does nothing.

    MindSpore installs its own C-level SIGINT handler while it runs (``utils/signal_util.cc``; its ``IntHandler``
    logs "receive KeyboardInterrupt signal" and sends the process SIGTERM) and leaves it in place after a training
    step (measured on 2.10: an ``os.kill(SIGINT)`` between steps arrived as SIGTERM). :meth:`rearm` after each step
    puts ours back, so a SIGINT between steps is reported as SIGINT; one that lands inside a step arrives as
    SIGTERM, which stops the run the same way.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.signum: Optional[int] = None
        self.announce = announce
        self._previous: Dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            for number in self.SIGNALS:
                signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if self.announce:
            print("\n%s received: stopping after the current step (send it again to stop at once)"
                  % signal.Signals(signum).name, file=sys.stderr, flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def rearm(self) -> None:
        """Install the handlers again (after a MindSpore call may have replaced the SIGINT one)."""
        for number in self._previous:
            signal.signal(number, self._handle)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


@dataclass
class TrainConfig:
    """What the loop needs besides the network and data.

    Attributes:
        lr: backbone learning rate, already scaled (``options.effective_lr``); groups multiply it.
        max_epochs: epochs to train (poly decay reaches 0 at this epoch).
        stop_after_epoch: end ``fit`` after this (1-based) epoch, the schedule still being that of ``max_epochs``
            (the official zero-shot module's early stop); a resumed run continues from there. None: no early end.
        batch_size: images per micro-batch on this device.
        momentum, weight_decay: SGD settings (:class:`.optimizer.GroupedMomentum`).
        accumulate_grad_batches: micro-batches per optimizer step (gradients averaged).
        amp_level: "O0" (float32) or O1/O2/O3 (mixed precision with dynamic loss scaling; any accumulation).
        amp_dtype: the low float type of O1-O3, "float16" or "bfloat16" (``modules.mixed_precision``).
        recompute: "none", or a level of ``LSegNet.set_recompute`` ("backbone"): activations recomputed
            in the backward pass instead of kept (the network must have ``set_recompute``).
        exp_dir: experiment folder (checkpoints, metrics.jsonl, steps.jsonl, curves.png).
        keep_last: epoch checkpoints kept besides best/last.
        seed: data order seed.
        workers: data loading processes.
        max_train_images / max_val_images: use only the first N images (quick runs).
        val_batch_size: images per validation forward.
        progress: show tqdm bars (rank 0 only).
        options: JSON-serialisable run options stored in every checkpoint.
        overwrite: a fresh run may delete an earlier run's checkpoints/logs in ``exp_dir`` (else it refuses).
        clip_grad_norm: clip the averaged gradient of every optimizer step to this global L2 norm; None: no clipping.
    """

    lr: float
    max_epochs: int
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 1e-4
    accumulate_grad_batches: int = 1
    amp_level: str = "O0"
    amp_dtype: str = "float16"
    recompute: str = "none"
    exp_dir: str = "checkpoints/exp"
    keep_last: int = 3
    seed: int = 0
    workers: int = 0
    max_train_images: Optional[int] = None
    max_val_images: Optional[int] = None
    val_batch_size: int = 1
    progress: bool = True
    options: Dict = field(default_factory=dict)
    overwrite: bool = False
    clip_grad_norm: Optional[float] = None
    stop_after_epoch: Optional[int] = None


def earlier_run_files(exp_dir: str) -> List[str]:
    """The checkpoints an earlier run left in ``exp_dir`` (epoch files oldest first, then ``last``/``best``)."""
    checkpoints = CheckpointManager(exp_dir, writer=False)
    return checkpoints.epoch_files() + [path for path in (checkpoints.last_path, checkpoints.best_path)
                                        if os.path.isfile(path)]


def refuse_earlier_run(exp_dir: str) -> None:
    """A fresh run must not mix with an earlier one: cheap, so train_custom.py asks before building anything.

    Raises:
        FileExistsError: ``exp_dir`` holds checkpoints; the message says how to resume, rename or overwrite.
    """
    earlier = earlier_run_files(exp_dir)
    if earlier:
        raise FileExistsError(
            "%s already holds a training run (%s); resume it (--resume), choose another --exp_name, or pass "
            "--overwrite to delete it" % (exp_dir, os.path.basename(earlier[-1])))


class Trainer:
    """Trains a built network.

    Args:
        network: the model (``modules.tnn`` Module or any Cell), ``network(images) → logits (B, C, H, W)``. Its
            Parameters are re-created once (:func:`refresh_parameters`) where graph-mode updates would otherwise not
            be visible to checkpoints (``modules.tnn.STALE_GRAPH_READBACK``: the msadapter layer).
        loss_fn: Cell ``(logits, masks int32 (B,H,W)) → scalar``.
        train_set: map-style dataset ``→ (image (3,H,W), mask (H,W))``.
        config: :class:`TrainConfig`.
        param_groups: ``[(parameters, lr multiplier)]``; default all trainable parameters at 1×.
            For LSeg: ``[(net.backbone_params(), 1.0), (net.head_params(), 10.0)]``.
        val_set: optional dataset for per-epoch pixAcc/mIoU.
        nclass: number of classes for the metric (required with ``val_set``).
        step_hook: optional ``f(trainer, epoch, batch_index, global_step)`` called after every micro-batch
            (tests use it to interrupt a run mid-epoch).
        sampler: optional ``f(epoch) → indices`` for the training data (custom sharding).
        train_network: the Cell the training step runs instead of ``network`` (it must hold ``network``'s Parameters,
            e.g. ``encoding_custom.evaluation.zero_shot.EpisodeForward(network)``); a dataset with fields after the mask
            (``(image, mask, class_id)``) feeds it the tuple ``(images, class_ids)``. Checkpoints and validation keep
            ``network``.
        validator: optional ``f(network, stop) → {"mIoU": ..., ...} or None`` replacing the pixAcc/mIoU validation on
            ``val_set`` (e.g. the few-shot episodes); ``stop`` is as :func:`evaluate`'s, None abandons it.

    Attributes after :meth:`fit`: ``history`` (per-epoch records), ``step_log`` (per optimizer step records).
    """

    def __init__(self, network, loss_fn: nn.Cell, train_set, config: TrainConfig,
                 param_groups: Optional[Sequence[Tuple[List[ms.Parameter], float]]] = None, val_set=None,
                 nclass: Optional[int] = None, step_hook: Optional[Callable] = None,
                 sampler: Optional[Callable[[int], Sequence[int]]] = None, train_network: Optional[nn.Cell] = None,
                 validator: Optional[Callable] = None):
        if val_set is not None and nclass is None and validator is None:
            raise ValueError("Trainer: nclass is required when val_set is given")
        self.config = config
        self.network = network
        self.loss_fn = loss_fn
        self.val_set = val_set
        self.nclass = nclass
        self.validator = validator
        self.step_hook = step_hook
        self.main = is_main_process()
        self.exp_dir = config.exp_dir

        mapping = refresh_parameters(network) if tnn.STALE_GRAPH_READBACK else {}
        if param_groups is None:
            param_groups = [(list(network.trainable_params()), 1.0)]
        else:
            param_groups = [([mapping.get(id(p), p) for p in params], mult) for params, mult in param_groups]

        self.loader = BatchLoader(train_set, config.batch_size, seed=config.seed, shuffle=True,
                                  workers=config.workers, drop_last=True, max_items=config.max_train_images,
                                  sampler=sampler)
        n_micro = self.loader.num_batches(0)
        self.steps_per_epoch = n_micro // config.accumulate_grad_batches
        if self.steps_per_epoch < 1:
            raise ValueError(
                "Trainer: %d training images give %d batches of %d on this device, fewer than "
                "accumulate_grad_batches=%d; lower --batch_size/--accumulate_grad_batches or add data"
                % (self.loader.n_items, n_micro, config.batch_size, config.accumulate_grad_batches))
        self.optimizer, self.schedules = build_optimizer(param_groups, config.lr, self.steps_per_epoch,
                                                         config.max_epochs, config.momentum, config.weight_decay)
        if config.recompute != "none":
            network.set_recompute(config.recompute)  # before compiling: the marks are read at graph build
        train_network = apply_mixed_precision(network if train_network is None else train_network, config.amp_level,
                                              config.amp_dtype)
        self.net_with_loss = nn.WithLossCell(train_network, loss_fn)
        self.uses_loss_scale = config.amp_level != "O0"
        loss_scale = (nn.DynamicLossScaleUpdateCell(LOSS_SCALE_START, LOSS_SCALE_FACTOR, LOSS_SCALE_WINDOW)
                      if self.uses_loss_scale else None)
        self.train_step = AccumulatingTrainStep(self.net_with_loss, self.optimizer, config.accumulate_grad_batches,
                                                loss_scale=loss_scale, clip_grad_norm=config.clip_grad_norm)
        self.train_step.set_train()

        self.checkpoints = CheckpointManager(self.exp_dir, config.keep_last)
        self.start_epoch = 0
        self.global_step = 0
        self.skipped_steps = 0  # optimizer steps a loss-scale overflow skipped (AMP), since the first epoch
        self.best_miou = -1.0
        self.history: List[Dict] = []
        self.step_log: List[Dict] = []
        self._signals: Optional[StopSignals] = None
        # Run in order after every epoch's steps (see .callbacks); append hooks of your own.
        self.epoch_end_hooks: List[EpochEndHook] = default_epoch_end_hooks()
        self.epoch_started = 0.0  # time.time() at the start of the running epoch
        self.epoch_is_best = False  # the last finished epoch has the best mIoU so far (set by callbacks.Validate)

    # ----------------------------------------------------------------- resume
    def resume(self, path: str) -> Dict:
        """Load network + optimizer state from ``path`` and continue after its epoch.

        Returns:
            the checkpoint's meta dict. Raises ``CheckpointError`` (message starting with the path) if it does not
            match the network, the optimizer or this run's steps per epoch.
        """
        meta = load_checkpoint(path, self.network, self.optimizer, strict=True)
        text_weights_changed = getattr(self.network, "text_weights_changed", None)  # an LSegNet's label features
        if text_weights_changed is not None:
            text_weights_changed()
        self.start_epoch = int(meta["epoch"])
        self.global_step = int(self.optimizer.global_step.asnumpy().reshape(-1)[0])
        # Under AMP an overflow skips a step: the epoch record counts them and keeps the loss scale reached.
        self.skipped_steps = int(meta["metrics"].get("skipped_steps", 0))
        if self.uses_loss_scale and "loss_scale" in meta["metrics"]:
            self.train_step.scale_sense.set_data(ms.Tensor(meta["metrics"]["loss_scale"], ms.float32))
        expected = self.start_epoch * self.steps_per_epoch - self.skipped_steps
        if self.global_step != expected:
            raise CheckpointError(
                "%s: optimizer step %d != %d epochs x %d steps per epoch - %d skipped; was the batch size, "
                "accumulation or data changed since it was written?"
                % (path, self.global_step, self.start_epoch, self.steps_per_epoch, self.skipped_steps))
        self.best_miou = float(meta["metrics"].get("best_mIoU", -1.0))
        if self.main:
            self._truncate_logs(self.start_epoch)
            self.history = self._read_jsonl("metrics.jsonl")
        return meta

    # ---------------------------------------------------------------- logging
    def _path(self, name: str) -> str:
        return os.path.join(self.exp_dir, name)

    def _read_jsonl(self, name: str) -> List[Dict]:
        path = self._path(name)
        if not os.path.isfile(path):
            return []
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _truncate_logs(self, start_epoch: int) -> None:
        """Drop log lines of epochs at/after ``start_epoch`` (written by an interrupted run)."""
        # metrics.jsonl counts completed epochs (1-based); steps.jsonl holds the 0-based epoch of each step.
        keep = {"metrics.jsonl": lambda r: "event" not in r and r.get("epoch", 0) <= start_epoch,
                "steps.jsonl": lambda r: r.get("epoch", 0) < start_epoch}
        for name, wanted in keep.items():
            kept = [r for r in self._read_jsonl(name) if wanted(r)]
            with atomic_output(self._path(name)) as temporary, open(temporary, "w") as handle:
                for record in kept:
                    handle.write(json.dumps(record) + "\n")

    def _start_afresh(self) -> None:
        """A new run in ``exp_dir``: refuse to mix with an earlier run unless ``config.overwrite``."""
        if not self.config.overwrite:
            refuse_earlier_run(self.exp_dir)  # raises when there is one; otherwise nothing to delete
        else:
            earlier = earlier_run_files(self.exp_dir)
            for path in earlier:
                os.remove(path)
            if earlier and self.main:
                print("--overwrite: deleted the earlier run's %d checkpoint(s) in %s (the last: %s) and its logs"
                      % (len(earlier), self.exp_dir, os.path.basename(earlier[-1])), file=sys.stderr, flush=True)
        self._truncate_logs(0)
        for name in ("curves.png",):
            if os.path.isfile(self._path(name)):
                os.remove(self._path(name))

    def append_jsonl(self, name: str, record: Dict) -> None:
        """Append ``record`` as one JSON line to ``<exp_dir>/<name>`` (rank 0 only; the others do nothing)."""
        if not self.main:
            return
        os.makedirs(self.exp_dir, exist_ok=True)
        append_text(self._path(name), json.dumps(record) + "\n")

    # ------------------------------------------------------------------ steps
    def _micro_step(self, images, masks, apply: bool, extra: Sequence[np.ndarray] = ()) -> Tuple[float, bool]:
        """Run one micro-batch (with ``apply``: the last of its group, followed by the optimizer step).

        Args:
            images: float32 (B, 3, H, W); masks: int32 (B, H, W) (numpy).
            apply: this micro-batch ends an accumulation group.
            extra: the batch's further columns (class ids, ...): the training network gets ``(images, *extra)``.

        Returns:
            ``(loss, overflowed)``: this micro-batch's loss; True when the loss-scale check found an overflow in its
            group so far (with ``apply``: the optimizer step was skipped), always False without AMP.
        """
        inputs = ms.Tensor(images)
        if extra:
            inputs = (inputs,) + tuple(ms.Tensor(column) for column in extra)
        loss, overflow, _ = self.train_step(inputs, ms.Tensor(masks), apply)
        return float(loss.asnumpy()), bool(overflow.asnumpy())

    def current_lrs(self) -> List[float]:
        """The lr of every parameter group for the next optimizer step (formula of :class:`PolyLR`)."""
        return [s.value(self.global_step) for s in self.schedules]

    # ------------------------------------------------------------- validation
    def validate(self) -> Dict[str, float]:
        """pixAcc and mIoU of the current network on ``val_set`` (PyTorch-Encoding definitions), or the figures of
        the ``validator`` given to the Trainer.

        Returns:
            ``{"pixAcc": float, "mIoU": float}`` (the validator's dict), or ``{}`` without a val set.
        """
        if self.val_set is None and self.validator is None:
            return {}
        if get_world_size() > 1:
            # Ranks normalise with their own batch statistics, so their BN running stats differ; evaluate rank 0's
            # model (the one it saves), as DDP's buffer broadcast does, so the all-reduced figures match test.py.
            broadcast_batchnorm_statistics(self.network)
        self.network.set_train(False)
        signals = self._signals
        # Shards differ by up to one batch, so a per-batch stop vote (a collective) could not pair up over ranks:
        # with several devices validation runs to its end and the stop is agreed after it.
        stop = (lambda: signals.signum is not None) if signals is not None and get_world_size() == 1 else None
        try:
            if self.validator is not None:
                return self.validator(self.network, stop) or {}
            metric = evaluate(network_predictor(self.network), self.val_set, self.nclass,
                              batch_size=self.config.val_batch_size, max_items=self.config.max_val_images,
                              workers=self.config.workers, stop=stop)
        finally:
            self.network.set_train(True)
        if metric is None:
            return {}
        pix_acc, miou = metric.get()
        return {"pixAcc": float(pix_acc), "mIoU": float(miou)}

    # -------------------------------------------------------------------- fit
    def fit(self) -> List[Dict]:
        """Train from ``start_epoch`` to ``max_epochs``.

        Returns:
            the per-epoch records (also in ``<exp_dir>/metrics.jsonl``); the run ends after ``max_epochs`` or
            ``stop_after_epoch``.

        Raises:
            NonFiniteLossError: NaN/Inf loss; the last good checkpoint stays, a ``stopped`` record is logged.
        """
        if self.main:
            os.makedirs(self.exp_dir, exist_ok=True)
            if self.start_epoch == 0 and self.global_step == 0:
                self._start_afresh()
        with StopSignals(announce=self.main) as self._signals:
            return self._run_epochs()

    def stop_signal(self) -> Optional[int]:
        """The signal that asked this run to stop, agreed over all ranks (a collective with several devices, so
        every rank stops after the same step), or None."""
        signum = self._signals.signum if self._signals is not None else None
        if get_world_size() == 1:
            return signum
        agreed = all_reduce_counts(np.array([signum or 0], np.int64))  # sum: nonzero when any rank was signalled
        return None if int(agreed[0]) == 0 else (signum or int(signal.SIGTERM))

    def interrupted(self, signum: int, epoch: int, batch: Optional[int]) -> TrainingInterrupted:
        """The exception for a stop during 0-based ``epoch``: its checkpoint is that of ``epoch`` completed ones."""
        last = self.checkpoints.last_path if epoch > 0 and os.path.isfile(self.checkpoints.last_path) else None
        return TrainingInterrupted(signum, epoch + 1, batch, last, epoch if last else 0)

    def _run_epochs(self) -> List[Dict]:
        """Every epoch: its steps (:meth:`_run_steps`), then :attr:`epoch_end_hooks` on the epoch's record."""
        cfg = self.config
        end = cfg.max_epochs if cfg.stop_after_epoch is None else min(cfg.max_epochs, cfg.stop_after_epoch)
        for epoch in range(self.start_epoch, end):
            self.epoch_started = time.time()
            losses = self._run_steps(epoch)
            self._check_step_counter()
            record = {"epoch": epoch + 1, "global_step": self.global_step,
                      "train_loss": float(np.mean(losses)) if losses else None,
                      "lrs": [s.value(self.global_step - 1) for s in self.schedules],
                      "time_s": round(time.time() - self.epoch_started, 2), "world_size": get_world_size()}
            if self.uses_loss_scale:  # what an exact resume needs (the checkpoint stores this record)
                record["skipped_steps"] = self.skipped_steps
                record["loss_scale"] = float(self.train_step.scale_sense.asnumpy())
            for hook in self.epoch_end_hooks:
                hook.on_epoch_end(self, record)
        return self.history

    def _run_steps(self, epoch: int) -> List[float]:
        """The micro-batches of 0-based ``epoch``: optimizer steps logged to steps.jsonl, stop signals and non-finite
        losses handled.

        Returns:
            the finite micro-batch losses (their mean is the epoch's ``train_loss``).

        Raises:
            TrainingInterrupted: a stop signal; NonFiniteLossError: see :meth:`fit`.
        """
        cfg = self.config
        accumulate = cfg.accumulate_grad_batches
        n_micro = self.steps_per_epoch * accumulate
        losses: List[float] = []
        overflow_run = 0
        bar = progress_bar(total=n_micro, desc="epoch %d/%d" % (epoch + 1, cfg.max_epochs), leave=True,
                           disable=not (cfg.progress and self.main))
        for index, (images, masks, *extra) in enumerate(self.loader.iterate(epoch)):
            if index >= n_micro:
                break  # micro-batches beyond the last full accumulation group are not used
            lrs = self.current_lrs()
            apply = (index + 1) % accumulate == 0
            loss, overflowed = self._micro_step(images, masks, apply, extra)
            self._signals.rearm()
            if apply and overflowed:
                self.skipped_steps += 1
            if not math.isfinite(loss):
                if self.uses_loss_scale and overflowed and overflow_run < MAX_CONSECUTIVE_OVERFLOWS:
                    overflow_run += 1  # the group's update is skipped and the loss scale lowered
                    bar.update(1)
                    continue
                self._stop(epoch, index, loss)
            overflow_run = 0
            losses.append(loss)
            if apply and not overflowed:
                record = {"epoch": epoch, "batch": index, "global_step": self.global_step, "loss": loss,
                          "lrs": lrs}
                self.step_log.append(record)
                self.append_jsonl("steps.jsonl", record)
                self.global_step += 1
            bar.set_postfix(loss="%.4f" % loss, lr="%.3g" % lrs[0])
            bar.update(1)
            if self.step_hook is not None:
                self.step_hook(self, epoch, index, self.global_step)
            signum = self.stop_signal()
            if signum is not None:
                bar.close()
                raise self.interrupted(signum, epoch, index)
        bar.close()
        return losses

    def _check_step_counter(self) -> None:
        stored = int(self.optimizer.global_step.asnumpy().reshape(-1)[0])
        if stored != self.global_step:
            raise RuntimeError("optimizer global_step reads %d but %d optimizer steps ran: parameter updates are "
                               "not visible outside the training graph" % (stored, self.global_step))

    def _stop(self, epoch: int, index: int, loss: float) -> None:
        last = self.checkpoints.last_path if os.path.isfile(self.checkpoints.last_path) else "none yet"
        message = ("non-finite loss %r at epoch %d, batch %d (optimizer step %d); training stopped. "
                   "Last good checkpoint: %s" % (loss, epoch + 1, index, self.global_step, last))
        self.append_jsonl("metrics.jsonl", {"epoch": epoch + 1, "event": "stopped", "reason": message})
        raise NonFiniteLossError(message)


def network_predictor(network) -> Callable[[np.ndarray], np.ndarray]:
    """``images float32 (B,3,H,W) numpy → labels int64 (B,H,W)``: the argmax of
    :func:`encoding_custom.evaluation.evaluator.network_forward` (single scale)."""
    forward = network_forward(network)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.argmax(forward(images), axis=1)
    return predict


def evaluate(predict_labels: Callable[[np.ndarray], np.ndarray], dataset, nclass: int, batch_size: int = 1,
             max_items: Optional[int] = None, workers: int = 0, progress: bool = False, desc: str = "eval",
             stop: Optional[Callable[[], bool]] = None):
    """Accumulate pixAcc/mIoU of ``predict_labels`` over a dataset in order (the training validation and
    ``test.py --eval`` both use this, so their figures agree).

    Args:
        predict_labels: ``images (B,3,H,W) float32 → labels (B,H,W)``.
        dataset: ``→ (image (3,H,W), mask (H,W))``; images of different sizes need ``batch_size=1``.
        nclass: number of classes.
        batch_size, max_items, workers: see :class:`BatchLoader`.
        progress: show a tqdm bar with the running pixAcc/mIoU.
        desc: bar title.
        stop: optional ``() → bool`` asked after every batch; True abandons the evaluation (single device only).

    Returns:
        the filled ``encoding_custom.evaluation.metrics.SegmentationMetric``, or None when ``stop`` abandoned it.
    """
    metric = SegmentationMetric(nclass)
    n_items = len(dataset) if max_items is None else min(len(dataset), int(max_items))
    world_size = get_world_size()
    # Each rank evaluates its shard (every item exactly once over all ranks); the pixel counts are summed below,
    # so every rank ends with the figures of a single-device evaluation.
    loader = BatchLoader(dataset, batch_size, shuffle=False, drop_last=False, max_items=max_items, workers=workers,
                         sampler=lambda epoch: shard_for_evaluation(n_items))
    bar = progress_bar(total=loader.num_batches(), desc=desc, disable=not (progress and is_main_process()))
    for images, masks in loader.iterate(0):
        metric.update(predict_labels(images), masks)
        pix_acc, miou = metric.get()
        bar.set_postfix(pixAcc="%.4f" % pix_acc, mIoU="%.4f" % miou)
        bar.update(1)
        if stop is not None and stop():
            bar.close()
            return None
    bar.close()
    if world_size > 1:
        all_reduce_metric(metric)
    return metric
