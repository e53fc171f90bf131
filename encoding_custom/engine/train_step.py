"""One training-step cell for every configuration: gradient accumulation x dynamic loss scaling x optional gradient
clipping, on one device or data parallel, in PyNative and GRAPH_MODE, on MindSpore 2.0 and 2.10.

Why not ``mindcv.utils.TrainStep`` (mindcv 0.3.0, the same file on both stacks), measured on CPU with the toy network
of ``tests/fixtures/engine/toys.py``, accumulation 2, fixed scale 1.0:

- it does not run: on MindSpore 2.0 (PyNative and GRAPH_MODE) "Unsupported op [NPUClearFloatStatusV2] on CPU" (its
  base class clears the NPU float status on every non-GPU device); on 2.10 PyNative "Parameter '_accumulation_step'
  already exists in network, can not assign this type: '<class 'int'>'" (its ``GradientAccumulation`` rebinds the
  counter Parameter to an int);
- on 2.0 its ``GradientAccumulation`` calls ``optimizer.get_lr()`` on every micro-batch, which advances
  ``optimizer.global_step`` there (not on 2.10): the lr would decay per micro-batch on one stack only;
- under a dynamic loss scale it skips only the overflowing micro-batch, still applies the rest of the group, and
  updates the loss scale on every micro-batch; and it returns only the loss (no overflow flag, no scale).

So this cell keeps the shape of ``nn.TrainOneStepWithLossScaleCell`` (it subclasses it, so the device-specific
overflow check — NPU float status on Ascend 910A, ``FloatStatus`` on GPU, ``AllFinite`` on 910B — and the
loss-scale update stay MindSpore's) and adds what the training loop needs:

- **one forward per micro-batch** (``ops.value_and_grad`` of ``loss × scale``): batch-norm running statistics move
  once per micro-batch in both modes, as with the hand-written accumulation cells this replaces;
- **accumulation**: ``grads / k`` is added into zero-initialised buffers (one per trainable Parameter); the caller
  says which micro-batch ends a group (``apply_update``), so the optimizer — and ``optimizer.global_step``, hence the
  poly lr — steps once per group, and the buffers are zero again after every group (exact resume at epoch ends);
- **dynamic loss scale with accumulation**: every micro-batch of a group uses the same scale; an overflow in any of
  them (agreed over ranks by the base class's check) skips the whole group's update, and the scale is updated once
  per group with the group's overflow, so ``DynamicLossScaleUpdateCell`` counts its ``scale_window`` in optimizer
  steps exactly as without accumulation;
- **CPU**: MindSpore's check uses the NPU float-status ops there, which have no CPU kernel (measured on both stacks:
  "Unsupported op [NPUGetFloatStatusV2] on CPU" on 2.10, "... [NPUClearFloatStatusV2] ..." on 2.0, PyNative and
  GRAPH_MODE, O1–O3), while float16 kernels run; CPU arithmetic follows IEEE (an overflow is Inf/NaN), so on CPU the
  check is "every gradient is finite" (``ops.IsFinite``, the check MindSpore itself uses on 910B in inf/nan mode),
  summed over ranks when data parallel;
- **clipping** (optional): ``ops.clip_by_global_norm`` of the averaged, unscaled, rank-reduced gradient just before
  the optimizer, i.e. of the gradient the optimizer applies (as torch's ``clip_grad_norm_`` after ``unscale_``).
"""
from typing import Optional

import mindspore as ms
from mindspore import nn, ops

_add_scaled = ops.MultitypeFuncGraph("add_scaled")
_unscale = ops.MultitypeFuncGraph("unscale")
_copy = ops.MultitypeFuncGraph("copy")
_zero = ops.MultitypeFuncGraph("zero")
_not_finite = ops.MultitypeFuncGraph("not_finite")


@_add_scaled.register("Number", "Tensor", "Tensor")
def _add_scaled_tensor(scale, buffer, grad):
    return ops.assign_add(buffer, grad * scale)


@_unscale.register("Tensor", "Tensor")
def _unscale_tensor(scale, grad):
    return grad * ops.cast(ops.reciprocal(scale), ops.dtype(grad))


@_copy.register("Tensor")
def _copy_tensor(buffer):
    return buffer * 1.0  # a new tensor: the buffers are zeroed after the optimizer has read it


@_zero.register("Tensor")
def _zero_tensor(buffer):
    return ops.assign(buffer, ops.zeros_like(buffer))


@_not_finite.register("Tensor")
def _not_finite_tensor(grad):
    return 1.0 - ops.cast(ops.IsFinite()(grad).all(), ms.float32)


class _ScaledLoss(nn.Cell):
    """``loss(images, masks) × scale``: differentiating it gives the loss-scaled gradients in the same single pass
    that computes the loss."""

    def __init__(self, net_with_loss: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss

    def construct(self, images, masks, scale):
        loss = self.net_with_loss(images, masks)
        return loss * ops.cast(scale, ops.dtype(loss))


class AccumulatingTrainStep(nn.TrainOneStepWithLossScaleCell):
    """Forward + backward of one micro-batch; at the last micro-batch of a group, one optimizer step with the
    group's averaged gradient (skipped when any micro-batch of the group overflowed under a dynamic loss scale).

    Args:
        net_with_loss: Cell ``(images, masks) → scalar loss`` (e.g. ``nn.WithLossCell``; the network inside may be
            ``modules.mixed_precision.apply_mixed_precision``'s O2/O3 wrapper).
        optimizer: its ``parameters`` are the trained weights (gradient buffers are cloned from them).
        accumulate: micro-batches per optimizer step (≥ 1); their gradients are averaged.
        loss_scale: ``nn.DynamicLossScaleUpdateCell`` (or ``nn.FixedLossScaleUpdateCell``) for mixed precision;
            None trains without a loss scale and without an overflow check (float32).
        clip_grad_norm: clip the averaged gradient to this global L2 norm before the optimizer; None: no clipping.

    Inputs:
        images: float (B, 3, H, W); masks: int32 (B, H, W) — whatever ``net_with_loss`` takes.
        apply_update: Python bool, True at the last micro-batch of a group (always True with ``accumulate == 1``).
            A constant of the graph: GRAPH_MODE compiles one graph per value (at most two).

    Outputs:
        ``(loss, overflow, scale)``: this micro-batch's unscaled loss (float32 scalar; on this rank, before any
        reduction); bool scalar, True when the group so far overflowed (at ``apply_update``: the update was skipped),
        always False without ``loss_scale``; float32 scalar, the loss scale this micro-batch used (1.0 without).
    """

    def __init__(self, net_with_loss: nn.Cell, optimizer: nn.Optimizer, accumulate: int = 1,
                 loss_scale: Optional[nn.Cell] = None, clip_grad_norm: Optional[float] = None):
        scale_sense = loss_scale if loss_scale is not None else ms.Tensor(1.0, ms.float32)
        super().__init__(net_with_loss, optimizer, scale_sense=scale_sense)  # first: a Cell must exist to raise
        if int(accumulate) != accumulate or accumulate < 1:
            raise ValueError("AccumulatingTrainStep: accumulate must be an integer >= 1 (got %r)" % (accumulate,))
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError("AccumulatingTrainStep: clip_grad_norm must be positive (got %r)" % (clip_grad_norm,))
        self.uses_loss_scale = loss_scale is not None
        self.accumulate = int(accumulate)
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.check_finite_grads = ms.get_context("device_target") == "CPU"
        weights = self.weights
        if self.uses_loss_scale:
            self.value_and_grad = ops.value_and_grad(_ScaledLoss(net_with_loss), grad_position=None,
                                                     weights=weights)
        else:
            self.value_and_grad = ops.value_and_grad(net_with_loss, grad_position=None, weights=weights)
        self.no_overflow = ms.Tensor(False, ms.bool_)
        if self.accumulate > 1:
            self.buffers = weights.clone(prefix="accumulated_grads", init="zeros")
            self.micro_weight = 1.0 / self.accumulate
            if self.uses_loss_scale:
                # 1.0 once a micro-batch of the running group overflowed; reset at the group's last micro-batch.
                self.group_overflow = ms.Parameter(ms.Tensor(0.0, ms.float32), name="accumulated_overflow",
                                                   requires_grad=False)

    def _micro_batch_overflow(self, status, grads):
        """True when this micro-batch's (unscaled) gradients overflowed, agreed over ranks."""
        if self.check_finite_grads:
            flags = ops.AddN()(self.hyper_map(_not_finite, grads))
            if self.is_distributed:
                flags = self.allreduce(flags)
            return flags >= 1.0
        return self.get_overflow_status(status, grads)

    def construct(self, images, masks, apply_update=True):
        scale = self.scale_sense * 1.0  # the value of this step: the Parameter itself changes at the group's end
        overflow = self.no_overflow
        if self.uses_loss_scale:
            status = ms.Tensor([0] * 8, ms.int32)
            if not self.check_finite_grads:
                # Cleared before the forward, so a float16 overflow of the forward pass counts too.
                status, scale = self.start_overflow_check(images, scale)
            scaled_loss, grads = self.value_and_grad(images, masks, scale)
            loss = scaled_loss / ops.cast(scale, ops.dtype(scaled_loss))  # exact: the scale is a power of 2
            grads = self.hyper_map(ops.partial(_unscale, scale), grads)
            overflow = self._micro_batch_overflow(status, grads)
        else:
            loss, grads = self.value_and_grad(images, masks)

        if self.accumulate > 1:
            loss = ops.depend(loss, self.hyper_map(ops.partial(_add_scaled, self.micro_weight), self.buffers, grads))
            if self.uses_loss_scale:
                running = ops.maximum(self.group_overflow, ops.cast(overflow, ms.float32))
                overflow = running > 0.5
                loss = ops.depend(loss, ops.assign(self.group_overflow, running))
            if not apply_update:
                return loss, overflow, scale
            grads = self.hyper_map(_copy, self.grad_reducer(self.buffers))
        else:
            grads = self.grad_reducer(grads)

        if self.clip_grad_norm is not None:
            grads = ops.clip_by_global_norm(grads, self.clip_grad_norm)
        if self.uses_loss_scale:
            overflow = self.process_loss_scale(overflow)  # once per optimizer step, with the group's overflow
            if not overflow:
                loss = ops.depend(loss, self.optimizer(grads))
        else:
            loss = ops.depend(loss, self.optimizer(grads))
        if self.accumulate > 1:
            loss = ops.depend(loss, self.hyper_map(_zero, self.buffers))
            if self.uses_loss_scale:
                loss = ops.depend(loss, ops.assign(self.group_overflow, ops.zeros_like(self.group_overflow)))
        return loss, overflow, scale
