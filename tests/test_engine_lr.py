"""PolyLR equals the official per-epoch poly formula at every optimizer step, the optimizer applies it per group, and
its update equals nn.Momentum's with the same groups."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from encoding_custom.engine import PolyLR, build_optimizer, poly_lr

pytestmark = pytest.mark.both_stacks


def _formula(base, step, steps_per_epoch, max_epochs):
    epoch = min(step // steps_per_epoch, max_epochs)
    return base * (1 - epoch / max_epochs) ** 0.9


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_schedule_matches_formula_at_every_step_and_clamps(mode):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    schedule = PolyLR(0.01, steps_per_epoch=3, max_epochs=4)
    for step in range(20):  # 12 steps of training, then 8 past the end
        got = float(schedule(ms.Tensor(step, ms.int32)).asnumpy())
        want = _formula(0.01, step, 3, 4)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12), step
        assert schedule.value(step) == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert np.isfinite(got)
    assert float(schedule(ms.Tensor(1000, ms.int32)).asnumpy()) == 0.0
    assert poly_lr(0.01, 3, 3, 4) == pytest.approx(0.01 * 0.75 ** 0.9)


def test_schedule_rejects_bad_lengths():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        PolyLR(0.1, 0, 5)
    with pytest.raises(ValueError, match="max_epochs"):
        PolyLR(0.1, 3, 0)


class _Linear(nn.Cell):
    """loss = sum(a) + sum(b): every gradient is 1, so plain SGD moves each weight by exactly -lr."""

    def __init__(self):
        super().__init__()
        self.a = ms.Parameter(ms.Tensor(np.zeros(2, np.float32)), name="a")
        self.b = ms.Parameter(ms.Tensor(np.zeros(2, np.float32)), name="b")
        self.frozen = ms.Parameter(ms.Tensor(np.zeros(2, np.float32)), name="frozen", requires_grad=False)

    def construct(self, x):
        return (self.a.sum() + self.b.sum() + self.frozen.sum()) * x


def test_optimizer_applies_poly_lr_per_group_with_10x_head():
    net = _Linear()
    opt, schedules = build_optimizer([([net.a, net.frozen], 1.0), ([net.b], 10.0)], lr=0.02, steps_per_epoch=2,
                                     max_epochs=3, momentum=0.0, weight_decay=0.0)
    assert len(schedules) == 2 and id(net.frozen) not in {id(p) for p in opt.parameters}
    step = nn.TrainOneStepCell(net, opt)
    x = ms.Tensor(1.0, ms.float32)
    for k in range(8):
        before_a, before_b = net.a.asnumpy().copy(), net.b.asnumpy().copy()
        step(x)
        np.testing.assert_allclose(before_a - net.a.asnumpy(), _formula(0.02, k, 2, 3), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(before_b - net.b.asnumpy(), _formula(0.2, k, 2, 3), rtol=1e-5, atol=1e-9)
    assert int(opt.global_step.asnumpy().reshape(-1)[0]) == 8
    np.testing.assert_array_equal(net.frozen.asnumpy(), 0)


class _Quadratic(nn.Cell):
    """loss = sum((w * x - 1)^2) + sum(b^2): gradients that change with the weights, so momentum and decay matter."""

    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.linspace(-1, 1, 6, dtype=np.float32)), name="w")
        self.b = ms.Parameter(ms.Tensor(np.ones(3, np.float32)), name="b")

    def construct(self, x):
        return ((self.w * x - 1.0) ** 2).sum() + (self.b * self.b).sum()


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_grouped_momentum_updates_exactly_as_mindspores_grouped_momentum(mode):
    """Same weights, momentum buffers, step count and state names as ``nn.Momentum`` with lr groups, every step."""
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    reference_net, our_net = _Quadratic(), _Quadratic()
    reference = nn.Momentum([{"params": [reference_net.w], "lr": PolyLR(0.05, 2, 3)},
                             {"params": [reference_net.b], "lr": PolyLR(0.5, 2, 3)}],
                            learning_rate=0.05, momentum=0.9, weight_decay=1e-2)
    ours, _ = build_optimizer([([our_net.w], 1.0), ([our_net.b], 10.0)], lr=0.05, steps_per_epoch=2, max_epochs=3,
                              momentum=0.9, weight_decay=1e-2)
    steps = [nn.TrainOneStepCell(reference_net, reference), nn.TrainOneStepCell(our_net, ours)]
    x = ms.Tensor(np.linspace(0.5, 2, 6, dtype=np.float32))
    for k in range(7):  # across the epoch boundaries of the schedule
        losses = [float(step(x).asnumpy()) for step in steps]
        assert losses[0] == losses[1], k
        for name in ("w", "b"):
            np.testing.assert_array_equal(getattr(our_net, name).asnumpy(), getattr(reference_net, name).asnumpy())
        for reference_moment, our_moment in zip(reference.moments, ours.moments):
            np.testing.assert_array_equal(our_moment.asnumpy(), reference_moment.asnumpy())
    assert int(ours.global_step.asnumpy().reshape(-1)[0]) == 7
    assert sorted(p.name for p in ours.get_parameters()) == sorted(p.name for p in reference.get_parameters())
