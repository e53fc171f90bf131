"""Re-measure the MindSpore workarounds the code carries, on whichever stack runs this (one JSON line each).

    python -m bench.workarounds                  # all checks, CPU
    LSEG_NN=msadapter python -m bench.workarounds stale_readback   # legacy stack, msadapter layer

Checks:
    stale_readback  after GRAPH_MODE TrainOneStepCell steps, does every parameter read back (``asnumpy``) as the
                    PyNative run of the same steps leaves it, without and with ``engine.refresh_parameters``? A
                    deliberately minimal reproduction of a MindSpore behaviour (toy network, plain TrainOneStepCell),
                    not the Trainer's step (``python -m bench --cases train`` times that one).
    loss            forward + gradient time in GRAPH_MODE of a LogSoftmax cross-entropy against our
                    ``SegmentationLoss`` (shifted log-sum-exp) at 150 classes x 240 x 240.
    amp_graph       does a network of torch-style layers compile and run in GRAPH_MODE after
                    ``auto_mixed_precision`` at O1 / O2 / O3 (CPU: forward only; the loss-scale cell is not built)?
    text_cache      in GRAPH_MODE, does a cell see a new value of a plain Tensor attribute after its first call
                    (``Parameter.set_data`` is what ``LSegNet`` uses for its text features), and is it recompiled?
"""
import json
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.engine.params import refresh_parameters
from modules import tnn


class _ToyNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.features = tnn.Conv2d(3, 8, 3, padding=1)
        self.norm = tnn.BatchNorm2d(8)
        self.project = tnn.Linear(8, 8)
        self.classifier = tnn.Conv2d(8, 3, 1)

    def forward(self, images):
        features = tnn.relu(self.norm(self.features(images)))
        projected = self.project(ops.transpose(features, (0, 2, 3, 1)))
        return self.classifier(ops.transpose(projected, (0, 3, 1, 2)))


def _train_toy(mode: int, refresh: bool):
    ms.set_context(mode=mode)
    net = _ToyNet()
    rng = np.random.RandomState(0)
    for param in net.get_parameters():
        param.set_data(ms.Tensor((rng.randn(*param.shape) * 0.3).astype(np.float32)))
    if refresh:
        refresh_parameters(net)
    images = ms.Tensor(rng.randn(2, 3, 8, 8).astype(np.float32))
    masks = ms.Tensor(rng.randint(0, 3, (2, 8, 8)).astype(np.int32))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, SegmentationLoss()), nn.SGD(net.trainable_params(), 0.1))
    step.set_train()
    for _ in range(3):
        step(images, masks)
    return {param.name: param.asnumpy() for param in net.get_parameters()}


def check_stale_readback():
    """Returns: per variant, the parameters whose graph-mode read-back differs from PyNative's."""
    reference = _train_toy(ms.PYNATIVE_MODE, refresh=False)
    result = {}
    for refresh in (False, True):
        graph = _train_toy(ms.GRAPH_MODE, refresh=refresh)
        stale = [name for name in reference if not np.allclose(graph[name], reference[name], rtol=1e-5, atol=1e-6)]
        result["with_refresh" if refresh else "without_refresh"] = stale
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return result


class _LogSoftmaxLoss(nn.Cell):
    def __init__(self):
        super().__init__()
        self.log_softmax = nn.LogSoftmax(axis=1)

    def construct(self, logits, target):
        log_p = self.log_softmax(logits)
        picked = ops.gather_elements(log_p, 1, ops.expand_dims(target, 1))
        return -ops.mean(picked)


def _time_loss(loss_cell, logits, target, repeats: int = 3):
    grad = ms.grad(loss_cell, grad_position=0)
    grad(logits, target).asnumpy()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grad(logits, target).asnumpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def check_loss():
    """Returns: seconds of forward + gradient for both losses (median of 3, after compilation)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.RandomState(0)
    logits = ms.Tensor(rng.randn(1, 150, 240, 240).astype(np.float32))
    target = ms.Tensor(rng.randint(0, 150, (1, 240, 240)).astype(np.int32))
    result = {"log_softmax_s": _time_loss(_LogSoftmaxLoss(), logits, target),
              "segmentation_loss_s": _time_loss(SegmentationLoss(), logits, target)}
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return result


def check_amp_graph():
    """Returns: per AMP level, "ok" or the first line of the error."""
    from mindspore import amp

    result = {}
    images = ms.Tensor(np.random.RandomState(0).randn(1, 3, 8, 8).astype(np.float32))
    for level in ("O1", "O2", "O3"):
        ms.set_context(mode=ms.GRAPH_MODE)
        try:
            net = amp.auto_mixed_precision(_ToyNet(), level)
            net.set_train(False)
            net(images).asnumpy()
            result[level] = "ok"
        except Exception as error:  # reported, not raised: this is a measurement
            result[level] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return result


class _HoldsFeatures(nn.Cell):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def construct(self, x):
        return ops.matmul(x, self.features)


def check_text_cache():
    """Returns: whether a changed Tensor attribute / Parameter is seen by a compiled cell, and the call times."""
    ms.set_context(mode=ms.GRAPH_MODE)
    x = ms.Tensor(np.ones((2, 4), np.float32))
    result = {}
    for kind in ("tensor_attribute", "parameter"):
        first = ms.Tensor(np.ones((4, 3), np.float32))
        holder = _HoldsFeatures(ms.Parameter(first, name="features") if kind == "parameter" else first)
        start = time.perf_counter()
        before = float(holder(x).asnumpy().sum())
        compile_s = time.perf_counter() - start
        new = ms.Tensor(np.full((4, 3), 2.0, np.float32))
        if kind == "parameter":
            holder.features.set_data(new)
        else:
            holder.features = new
        start = time.perf_counter()
        after = float(holder(x).asnumpy().sum())
        result[kind] = {"sees_new_value": after == 2 * before, "first_call_s": round(compile_s, 4),
                        "call_after_change_s": round(time.perf_counter() - start, 4)}
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return result


CHECKS = {"stale_readback": check_stale_readback, "loss": check_loss, "amp_graph": check_amp_graph,
          "text_cache": check_text_cache}


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or list(CHECKS)
    ms.set_context(device_target="CPU")
    for name in names:
        if name not in CHECKS:
            raise SystemExit(f"bench.workarounds: unknown check {name!r}; known: {', '.join(CHECKS)}")
        print(json.dumps({"check": name, "mindspore": ms.__version__, "layer": tnn.BACKEND,
                          "result": CHECKS[name]()}), flush=True)


if __name__ == "__main__":
    main()
