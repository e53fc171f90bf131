"""AccumulatingTrainStep on the toy network: under a dynamic loss scale an overflow in any micro-batch skips the
whole group, the scale moves once per group exactly as MindSpore's DynamicLossScaleUpdateCell, clipping bounds the
applied gradient; and the MindSpore cell it replaces still has no CPU overflow check (why ours has one). Also
``refresh_parameters``, which the Trainer runs on msadapter's layers before building this cell."""
import os
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from encoding_custom.engine import PolyLR, refresh_parameters
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.engine.train_step import AccumulatingTrainStep

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from toys import ToySegData, ToySegNet  # noqa: E402

pytestmark = pytest.mark.both_stacks

DATA = ToySegData(8)
LR = 0.1


def _batch(index, nan=False):
    """One micro-batch of one image (numpy → Tensor); ``nan``: the image is all NaN (loss and gradients NaN)."""
    image, mask = DATA[index]
    image = np.full_like(image, np.nan) if nan else image
    return ms.Tensor(image[None]), ms.Tensor(mask[None])


def _step_cell(accumulate=2, scale_window=1000, clip_grad_norm=None, loss_scale=True):
    ms.set_seed(0)
    net = ToySegNet(batch_norm=False)
    refresh_parameters(net)  # as the Trainer does: else a GRAPH_MODE update of a bias may read back stale (msadapter)
    # A schedule (LR at step 0), as the Trainer's: MindSpore 2.0 counts global_step only with a dynamic lr.
    optimizer = nn.Momentum(net.trainable_params(), PolyLR(LR, 100, 10), 0.9)
    scale = nn.DynamicLossScaleUpdateCell(2.0 ** 16, 2, scale_window) if loss_scale else None
    cell = AccumulatingTrainStep(nn.WithLossCell(net, SegmentationLoss()), optimizer, accumulate, loss_scale=scale,
                                 clip_grad_norm=clip_grad_norm)
    cell.set_train()
    return cell, net, optimizer


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _run_group(cell, first_index, nan_at=()):
    """One accumulation group of ``cell.accumulate`` micro-batches; ``nan_at``: positions in the group made NaN.
    Returns the ``(loss, overflow, scale)`` of every micro-batch as Python values."""
    outputs = []
    for position in range(cell.accumulate):
        images, masks = _batch(first_index + position, nan=position in nan_at)
        loss, overflow, scale = cell(images, masks, position == cell.accumulate - 1)
        outputs.append((float(loss.asnumpy()), bool(overflow.asnumpy()), float(scale.asnumpy())))
    return outputs


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("nan_position", [0, 1])
def test_an_overflow_in_any_micro_batch_skips_the_whole_group(mode, nan_position):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    cell, net, optimizer = _step_cell()
    start = _weights(net)
    skipped = _run_group(cell, 0, nan_at=(nan_position,))
    # The flag is raised from the overflowing micro-batch on; the group's last micro-batch reports the skip.
    assert [overflow for _, overflow, _ in skipped] == [position >= nan_position for position in range(2)]
    assert [scale for _, _, scale in skipped] == [2.0 ** 16] * 2  # one scale for the whole group
    for name, value in _weights(net).items():
        np.testing.assert_array_equal(value, start[name], err_msg=name)  # no update, not even a partial one
    assert int(optimizer.global_step.asnumpy().reshape(-1)[0]) == 0
    assert float(cell.scale_sense.asnumpy()) == 2.0 ** 15  # lowered once, for the group
    assert all(not buffer.asnumpy().any() for buffer in cell.buffers)  # the bad gradients are gone

    applied = _run_group(cell, 2)
    assert [overflow for _, overflow, _ in applied] == [False, False]
    assert [scale for _, _, scale in applied] == [2.0 ** 15] * 2
    assert all(np.isfinite(loss) for loss, _, _ in applied)
    assert int(optimizer.global_step.asnumpy().reshape(-1)[0]) == 1
    assert any(not np.array_equal(value, start[name]) for name, value in _weights(net).items())


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_the_loss_scale_moves_once_per_group_as_dynamic_loss_scale_update_cell(mode):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    group_overflows = [True, False, False, False, True, False, False]
    cell, _, _ = _step_cell(accumulate=3, scale_window=2)
    reference = nn.DynamicLossScaleUpdateCell(2.0 ** 16, 2, 2)
    reference_scale = ms.Parameter(ms.Tensor(2.0 ** 16, ms.float32), name="reference_scale")
    for group, overflow in enumerate(group_overflows):
        outputs = _run_group(cell, 0, nan_at=(1,) if overflow else ())
        reference(reference_scale, ms.Tensor(overflow))
        assert outputs[-1][1] == overflow
        assert float(cell.scale_sense.asnumpy()) == float(reference_scale.asnumpy()), "after group %d" % group
    # The sequence exercised both directions: halved on overflow, doubled after scale_window good groups.
    assert float(reference_scale.asnumpy()) == 2.0 ** 16


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_clipping_bounds_the_norm_of_the_applied_average_gradient(mode):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    clip = 1e-3
    cell, net, _ = _step_cell(clip_grad_norm=clip, loss_scale=False)
    start = _weights(net)
    assert _run_group(cell, 0)[-1][1] is False
    # First Momentum step without weight decay: w1 = w0 - lr * g, so the applied gradient is (w0 - w1) / lr.
    applied = [(start[name] - value) / LR for name, value in _weights(net).items()]
    assert float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in applied))) == pytest.approx(clip,
                                                                                                       rel=1e-4)


def test_bad_arguments_name_themselves():
    net = ToySegNet(batch_norm=False)
    optimizer = nn.Momentum(net.trainable_params(), LR, 0.9)
    with pytest.raises(ValueError, match="accumulate must be an integer >= 1"):
        AccumulatingTrainStep(nn.WithLossCell(net, SegmentationLoss()), optimizer, accumulate=0)
    with pytest.raises(ValueError, match="clip_grad_norm must be positive"):
        AccumulatingTrainStep(nn.WithLossCell(net, SegmentationLoss()), optimizer, clip_grad_norm=0.0)


def test_refresh_parameters_keeps_values_and_sharing_and_empties_the_replaced_ones():
    net = ToySegNet(width=3)  # head and skip then have weights of one shape: share one Parameter
    shared = net.skip.weight = net.head.weight
    shape = tuple(net.conv1.weight.shape)
    net.conv1.weight.set_data(ms.Tensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape)))
    before = {p.name: (p.asnumpy().copy(), p.requires_grad) for p in net.get_parameters()}
    held = net.backbone_params() + net.head_params()  # a caller's list taken before the refresh

    mapping = refresh_parameters(net)

    after = {p.name: (p.asnumpy(), p.requires_grad) for p in net.get_parameters()}
    assert sorted(after) == sorted(before)
    for name, (value, requires_grad) in before.items():
        np.testing.assert_array_equal(after[name][0], value, err_msg=name)
        assert after[name][1] == requires_grad, name
    assert all(id(p) in mapping and mapping[id(p)] is not p for p in held)
    assert all(tuple(p.shape) == (0,) for p in held)  # the stale copies hold no memory and cannot be read as weights
    fresh = {id(p) for p in net.get_parameters()}
    assert all(id(mapping[id(p)]) in fresh for p in held)
    assert mapping[id(shared)] is net.head.weight


def test_mindspores_loss_scale_cell_still_has_no_cpu_overflow_check():
    """Why AccumulatingTrainStep checks finiteness itself on CPU: MindSpore's cell reads the NPU float status there
    (2.0: NPUClearFloatStatusV2 before the backward, 2.10: NPUGetFloatStatusV2 after it). When this starts to fail,
    MindSpore has a CPU check and the workaround can go."""
    net = ToySegNet(batch_norm=False)
    stock = nn.TrainOneStepWithLossScaleCell(nn.WithLossCell(net, SegmentationLoss()),
                                             nn.Momentum(net.trainable_params(), LR, 0.9),
                                             scale_sense=nn.DynamicLossScaleUpdateCell(2.0 ** 16, 2, 1000))
    stock.set_train()
    with pytest.raises(RuntimeError, match=r"Unsupported op \[NPU(Clear|Get)FloatStatusV2\] on CPU"):
        stock(*_batch(0))
