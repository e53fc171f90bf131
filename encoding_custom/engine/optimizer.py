"""SGD with momentum and one poly-decayed lr per parameter group (the official backbone ×1 / head ×10 groups).

``nn.Momentum`` given parameter groups keeps one lr per *parameter* and evaluates its group's schedule once per
parameter inside its ``jit``-compiled update, which then takes seconds to compile (bench/PERFORMANCE.md, "The
optimizer's compile"). :class:`GroupedMomentum` evaluates each schedule once per step and applies the same
``ApplyMomentum`` with the same weight decay: every weight and momentum buffer equals ``nn.Momentum``'s bit for bit,
and its state has the same names (``moments.<parameter>``, ``global_step``), so checkpoints of either load into the
other.
"""
from typing import List, Sequence, Tuple

import mindspore as ms
from mindspore import jit, nn, ops

from encoding_custom.engine.lr import PolyLR

_grouped_update = ops.MultitypeFuncGraph("grouped_update")


@_grouped_update.register("Function", "Tensor", "Number", "Tuple", "Number", "Tensor", "Tensor", "Tensor")
def _update_one(apply_momentum, momentum, weight_decay, group_lrs, group, gradient, weight, moment):
    # weight decay as nn.Optimizer applies it (weight * decay + gradient), then nn.Momentum's ApplyMomentum.
    gradient = ops.add(ops.mul(weight, ops.cast(weight_decay, ops.dtype(weight))), gradient)
    return ops.depend(True, apply_momentum(weight, moment, group_lrs[group], gradient, momentum))


class GroupedMomentum(nn.Momentum):
    """``nn.Momentum`` (weight decay on every parameter, as torch.optim.SGD) with one lr schedule per group.

    Args:
        groups: ``[(parameters, schedule), ...]``; a parameter may appear once.
        momentum: momentum factor.
        weight_decay: L2 factor added to every gradient (``gradient + weight_decay * weight``).

    Call: ``optimizer(gradients)`` with a tuple of Tensors in ``optimizer.parameters`` order; advances
    ``global_step`` by one after reading the lrs of this step.
    """

    def __init__(self, groups: Sequence[Tuple[List[ms.Parameter], nn.Cell]], momentum: float, weight_decay: float):
        params, group_of_param = [], []
        for index, (group_params, _) in enumerate(groups):
            params += list(group_params)
            group_of_param += [index] * len(group_params)
        schedules = [schedule for _, schedule in groups]
        # One lr Cell makes nn.Optimizer keep a single dynamic lr (no per-parameter copies); decay is applied here.
        super().__init__(params, learning_rate=schedules[0], momentum=momentum, weight_decay=0.0)
        self.schedules = nn.CellList(schedules)
        self.group_of_param = tuple(group_of_param)
        self.decay = float(weight_decay)

    @jit
    def construct(self, gradients):
        group_lrs = ()
        for schedule in self.schedules:
            group_lrs += (schedule(self.global_step).reshape(()),)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        return self.hyper_map(ops.partial(_grouped_update, self.opt, self.momentum, self.decay, group_lrs),
                              self.group_of_param, gradients, self.params, self.moments)


def build_optimizer(param_groups: Sequence[Tuple[List[ms.Parameter], float]], lr: float, steps_per_epoch: int,
                    max_epochs: int, momentum: float, weight_decay: float) -> Tuple[GroupedMomentum, List[PolyLR]]:
    """:class:`GroupedMomentum` with one poly-decayed lr per parameter group.

    Args:
        param_groups: ``[(parameters, lr multiplier), ...]``, e.g. ``[(backbone, 1.0), (head, 10.0)]``; frozen
            parameters (``requires_grad=False``) are dropped, empty groups skipped.
        lr: base learning rate of multiplier 1.
        steps_per_epoch, max_epochs: see :class:`PolyLR`.
        momentum, weight_decay: SGD settings (weight decay on every parameter, as torch.optim.SGD does).

    Returns:
        ``(optimizer, schedules)`` with one :class:`PolyLR` per non-empty group, in group order.
    """
    groups, seen = [], set()
    for params, multiplier in param_groups:
        trainable = []
        for p in params:
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            trainable.append(p)
        if trainable:
            groups.append((trainable, PolyLR(lr * multiplier, steps_per_epoch, max_epochs)))
    if not groups:
        raise ValueError("build_optimizer: no trainable parameter in any group")
    return GroupedMomentum(groups, momentum, weight_decay), [schedule for _, schedule in groups]
