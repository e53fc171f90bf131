"""encoding_custom.engine.losses.SegmentationLoss: cross-entropy with ignore_index, PyNative and GRAPH_MODE."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from encoding_custom.engine.losses import SegmentationLoss

pytestmark = pytest.mark.both_stacks


def reference_loss(logits, target, ignore_index=-1):
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    valid = target != ignore_index
    picked = np.take_along_axis(log_probs, np.where(valid, target, 0)[:, None], 1)[:, 0]
    return -picked[valid].mean()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(2, 6, 5, 7)).astype(np.float32)
    target = rng.integers(-1, 6, size=(2, 5, 7)).astype(np.int32)
    return logits, target


def test_matches_mean_cross_entropy_over_non_ignored_pixels(batch):
    logits, target = batch
    value = SegmentationLoss()(ms.Tensor(logits), ms.Tensor(target)).asnumpy()
    assert value == pytest.approx(reference_loss(logits, target), rel=1e-5)
    # Changing the logits of ignored pixels does not change the loss.
    changed = logits.copy()
    changed[np.broadcast_to((target == -1)[:, None], logits.shape)] = 100.0
    assert SegmentationLoss()(ms.Tensor(changed), ms.Tensor(target)).asnumpy() == pytest.approx(value, rel=1e-6)


def test_all_ignored_gives_zero_and_other_ignore_index(batch):
    logits, target = batch
    assert SegmentationLoss()(ms.Tensor(logits), ms.Tensor(np.full_like(target, -1))).asnumpy() == 0.0
    target255 = np.where(target == -1, 255, target).astype(np.int32)
    value = SegmentationLoss(ignore_index=255)(ms.Tensor(logits), ms.Tensor(target255)).asnumpy()
    assert value == pytest.approx(reference_loss(logits, target), rel=1e-5)


def test_trains_inside_with_loss_cell_in_graph_mode(graph_mode, batch):
    logits, target = batch
    conv = nn.Conv2d(3, 6, 1, has_bias=True)
    images = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 5, 7)).astype(np.float32))
    net = nn.WithLossCell(conv, SegmentationLoss())
    expected = reference_loss(conv(images).asnumpy(), target)
    assert net(images, ms.Tensor(target)).asnumpy() == pytest.approx(expected, rel=1e-4)
    step = nn.TrainOneStepCell(net, nn.SGD(conv.trainable_params(), learning_rate=0.5))
    losses = [float(step(images, ms.Tensor(target)).asnumpy()) for _ in range(5)]
    assert losses[-1] < losses[0]


def reference_gradient(logits, target, ignore_index=-1):
    """d loss / d logits = (softmax - one_hot(target)) / n_valid on valid pixels, 0 on ignored ones."""
    shifted = logits - logits.max(1, keepdims=True)
    softmax = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    valid = target != ignore_index
    one_hot = np.eye(logits.shape[1], dtype=np.float32)[np.where(valid, target, 0)].transpose(0, 3, 1, 2)
    return (softmax - one_hot) * valid[:, None] / valid.sum()


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_gradient_is_softmax_minus_one_hot_and_stable_for_large_logits(batch, mode):
    logits, target = batch
    grad = ms.grad(SegmentationLoss(), grad_position=0)
    if mode == "graph":
        grad = ms.jit(grad)
    np.testing.assert_allclose(grad(ms.Tensor(logits), ms.Tensor(target)).asnumpy(),
                               reference_gradient(logits, target), atol=1e-6)
    # Logits of 1e4 overflow a naive exp; the shifted form stays finite and exact.
    large = logits * 3000.0
    loss = SegmentationLoss()(ms.Tensor(large), ms.Tensor(target)).asnumpy()
    assert np.isfinite(loss) and loss == pytest.approx(reference_loss(large.astype(np.float64), target), rel=1e-5)
    np.testing.assert_allclose(grad(ms.Tensor(large), ms.Tensor(target)).asnumpy(),
                               reference_gradient(large.astype(np.float64), target), atol=1e-6)
