"""Case 2: the training step ``encoding_custom.engine.Trainer`` runs (its ``AccumulatingTrainStep``), timed on one
fixed batch; and that step under ``mindspore.Profiler``, by operation type."""
import csv
import glob
import os
from typing import Dict, List, Tuple

import numpy as np

import clip_ms
from bench.cases.random_network import build_random_network, normalised_images, parameter_counts, random_masks
from bench.cases.variant import CaseContext
from bench.timing import measure

# Epochs of the Trainer's poly lr schedule (one step each): the few timed steps stay far from its end, where lr is 0.
SCHEDULE_EPOCHS = 100


def _text_encoded_in_step(net):
    """``(images, token_ids) → logits`` with the frozen text tower run in the step, without gradient, as the official
    training step does; given to the Trainer as its ``train_network``."""
    from mindspore import nn, ops

    class TextEncodedInStep(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net

        def construct(self, inputs):
            images, token_ids = inputs
            return self.net(images, ops.stop_gradient(self.net.clip_pretrained(token_ids)))

    return TextEncodedInStep()


def build_trainer(ctx: CaseContext, text_in_step: bool) -> Tuple[object, tuple, Dict[str, object]]:
    """A random-weight network of ``ctx.params``, the ``Trainer`` that train_custom.py would build for it (official
    parameter groups, ``SegmentationLoss``, ``amp_level`` O0, no accumulation, ``recompute`` of ``ctx.params`` or
    "none") and one batch for its step.

    With ``text_in_step`` the labels' token ids, trimmed after the last end-of-text token as
    ``CLIPTextEncoder.__call__`` trims them (a cell called inside a compiled step bypasses ``__call__``), are a step
    input and the text tower runs in the step; otherwise the network's cached text features are used.

    Returns:
        ``(trainer, step arguments, facts)``: call ``trainer.train_step(*arguments)`` → ``(loss, overflow, scale)``;
        facts: ``build_s``, ``trainable_tensors`` and the network's parameter counts.
    """
    import mindspore as ms

    from encoding_custom.engine import TrainConfig, Trainer
    from encoding_custom.engine.losses import SegmentationLoss

    params = ctx.params
    net, labels, build_s = build_random_network(params)
    height, width = params["image_hw"]
    batch = int(params["batch"])
    loss = SegmentationLoss()
    images = normalised_images(batch, height, width, params["backbone"])
    masks = random_masks(batch, height, width, len(labels), loss.ignore_index)
    config = TrainConfig(lr=1e-4, max_epochs=SCHEDULE_EPOCHS, batch_size=batch, progress=False,
                         recompute=params.get("recompute", "none"), exp_dir=os.path.join(ctx.workdir, "exp"))
    trainer = Trainer(net, loss, list(zip(images, masks)), config,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                      train_network=_text_encoded_in_step(net) if text_in_step else None)
    inputs = ms.Tensor(images)
    if text_in_step:
        token_ids = clip_ms.trim_token_ids(np.asarray(clip_ms.tokenize(labels), dtype=np.int32))
        inputs = (inputs, ms.Tensor(token_ids))
    facts = dict(parameter_counts(net), build_s=build_s, trainable_tensors=len(trainer.optimizer.parameters))
    return trainer, (inputs, ms.Tensor(masks), True), facts


def case_train(ctx: CaseContext) -> Dict[str, object]:
    """Case 2: one training step (forward, backward, Momentum update) at batch ``params["batch"]``, text cached or
    encoded in the step (``params["text"]``), as ``Trainer`` runs it for each batch.

    Returns: timing (per step), build time, parameter counts, the losses seen (they must be finite).

    Raises:
        FloatingPointError: a step's loss is not finite.
    """
    trainer, arguments, facts = build_trainer(ctx, ctx.params["text"] == "in_step")
    batch = int(arguments[1].shape[0])
    losses: List[float] = []

    def run_once():
        loss, overflow, _ = trainer.train_step(*arguments)
        losses.append(float(loss.asnumpy()))
        overflow.asnumpy()

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"{ctx.variant}: non-finite training loss {losses}")
    return dict(facts, timing=timing, losses=losses, images_per_s=batch / timing["median_s"])


def read_cpu_op_profile(profile_dir: str, top: int = 15) -> List[Dict[str, object]]:
    """The op-type summary written by ``mindspore.Profiler`` on CPU (``cpu_op_type_info_<rank>.csv``).

    Args:
        profile_dir: the profiler's ``output_path``.
        top: how many op types to keep, by total time.

    Returns:
        list of ``{"op_type", "occurrences", "total_ms", "percent"}`` (percent of the summed kernel time of all op
        types), slowest first.

    Raises:
        FileNotFoundError: naming the directory when the profiler wrote no summary.
    """
    paths = glob.glob(os.path.join(profile_dir, "**", "cpu_op_type_info_*.csv"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no cpu_op_type_info_*.csv under {profile_dir}: the MindSpore profiler wrote nothing")
    rows = []
    with open(paths[0], newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({"op_type": row["op_type"], "occurrences": int(row["type_occurrences"]),
                         "total_ms": float(row["total_compute_time"])})
    kernel_ms = sum(r["total_ms"] for r in rows) or 1.0
    for row in rows:  # share of the summed kernel time (the profiler's own "percent" column is not documented)
        row["percent"] = 100.0 * row["total_ms"] / kernel_ms
    return sorted(rows, key=lambda r: -r["total_ms"])[:top]


def case_train_profile(ctx: CaseContext) -> Dict[str, object]:
    """Profile of case 2: the training step of :func:`case_train` (text cached) under ``mindspore.Profiler``,
    summarised by operation type. The step runs ``ctx.warmup`` times (compiling it) before profiling; the profiled
    step's wall time includes the profiler's overhead.

    Returns: timing (the profiled step), build time, ``op_types`` (slowest first, see :func:`read_cpu_op_profile`).
    """
    from mindspore import Profiler

    trainer, arguments, facts = build_trainer(ctx, text_in_step=False)
    for _ in range(ctx.warmup):
        trainer.train_step(*arguments)[0].asnumpy()
    profile_dir = os.path.join(ctx.workdir, "profile")
    profiler = Profiler(output_path=profile_dir)
    timing = measure(lambda: trainer.train_step(*arguments)[0].asnumpy(), 0, ctx.repeats)
    profiler.analyse()
    return {"timing": timing, "build_s": facts["build_s"], "op_types": read_cpu_op_profile(profile_dir)}
