"""The official poly learning-rate decay as a MindSpore ``LearningRateSchedule``.

lang-seg steps ``LambdaLR(lambda epoch: (1 - epoch / max_epochs) ** 0.9)`` once per epoch, so the lr is constant
within an epoch. Here the schedule is evaluated by the optimizer at its ``global_step`` (optimizer steps, i.e. after
gradient accumulation), and the epoch is ``global_step // steps_per_epoch``.
"""
import mindspore as ms
from mindspore import nn, ops

POLY_POWER = 0.9


def poly_lr(base_lr: float, global_step: int, steps_per_epoch: int, max_epochs: int,
            power: float = POLY_POWER) -> float:
    """Reference value of the schedule in plain Python (what :class:`PolyLR` must compute).

    Args:
        base_lr: lr of epoch 0.
        global_step: optimizer steps taken so far (0-based index of the step about to run).
        steps_per_epoch: optimizer steps per epoch (micro-batches // accumulation).
        max_epochs: training length; from this epoch on the lr is 0 (clamped, never NaN).
        power: decay exponent (0.9 in lang-seg).

    Returns:
        ``base_lr * (1 - min(epoch, max_epochs) / max_epochs) ** power`` with
        ``epoch = global_step // steps_per_epoch``.
    """
    epoch = min(global_step // steps_per_epoch, max_epochs)
    return base_lr * (1.0 - epoch / max_epochs) ** power


class PolyLR(nn.learning_rate_schedule.LearningRateSchedule):
    """Per-epoch poly decay ``base_lr * (1 - epoch / max_epochs) ** 0.9`` driven by the optimizer's step counter.

    Args:
        base_lr: lr during the first epoch.
        steps_per_epoch: optimizer steps per epoch (with ``accumulate_grad_batches`` k and n micro-batches
            per epoch this is ``n // k``), so accumulation does not speed up the decay.
        max_epochs: number of epochs; the epoch index is clamped to it, giving lr 0 afterwards instead of NaN.
        power: decay exponent.

    Call: ``schedule(global_step)`` with an int32 scalar Tensor → float32 scalar Tensor.
    """

    def __init__(self, base_lr: float, steps_per_epoch: int, max_epochs: int, power: float = POLY_POWER):
        super().__init__()
        if steps_per_epoch < 1:
            raise ValueError("PolyLR: steps_per_epoch must be >= 1, got %r" % steps_per_epoch)
        if max_epochs < 1:
            raise ValueError("PolyLR: max_epochs must be >= 1, got %r" % max_epochs)
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.max_epochs = int(max_epochs)
        self.power = float(power)
        self.floor_div = ops.FloorDiv()
        self.cast = ops.Cast()
        self.minimum = ops.Minimum()
        self.pow = ops.Pow()

    def construct(self, global_step):
        """Args: global_step int32 scalar Tensor. Returns: float32 scalar lr."""
        epoch = self.floor_div(global_step, self.steps_per_epoch)
        epoch = self.minimum(self.cast(epoch, ms.float32), float(self.max_epochs))
        remaining = 1.0 - epoch / float(self.max_epochs)
        return self.base_lr * self.pow(remaining, self.power)

    def value(self, global_step: int) -> float:
        """The same lr computed in Python (for logging without running a graph)."""
        return poly_lr(self.base_lr, global_step, self.steps_per_epoch, self.max_epochs, self.power)
