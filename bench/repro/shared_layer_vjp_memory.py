"""A route around MindSpore 2.10's CPU training memory (bench/PERFORMANCE.md, "Activation recomputation"): N
attention layers (1024 wide, 16 heads, 901 tokens, residual) trained by one compiled forward graph and one compiled
vector-Jacobian graph that every layer shares (its weights are inputs, so each graph compiles once), driven from
Python in PyNative; the backward graph recomputes its layer's forward. Against ``--whole``: ``value_and_grad`` of the
whole stack in GRAPH_MODE. Peak RSS and step time; the growth per layer is (peak16 - peak4) / 12. ``--check``
compares the gradients with PyNative's of the whole stack. MindSpore 2.4+ (``mindspore.runtime``) only: nothing of
this project is imported. Measured on 2.10.0 (PERFORMANCE.md): 0.054 GiB and 0.60 s per layer shared, 0.409 GiB and
0.44 s per layer whole; gradients equal.

    .venv/bin/python bench/repro/shared_layer_vjp_memory.py 4
    .venv/bin/python bench/repro/shared_layer_vjp_memory.py 16
    .venv/bin/python bench/repro/shared_layer_vjp_memory.py 16 --whole
    .venv/bin/python bench/repro/shared_layer_vjp_memory.py 2 --check
"""
import argparse
import resource
import time

import mindspore as ms
import numpy as np
from mindspore import nn, ops

WIDTH, HEADS, TOKENS = 1024, 16, 901
HEAD_DIM = WIDTH // HEADS
_SCORES = ops.BatchMatMul(transpose_b=True)
_VALUES = ops.BatchMatMul()
_LINEAR = ops.MatMul(transpose_b=True)
_GRAD_ALL = ops.GradOperation(get_all=True, sens_param=True)


def attention_layer(x, qkv_weight, qkv_bias, proj_weight, proj_bias):
    """x (TOKENS, WIDTH) -> x + proj(softmax(q kᵀ / sqrt(d)) v)."""
    qkv = ops.transpose(ops.reshape(_LINEAR(x, qkv_weight) + qkv_bias, (TOKENS, 3, HEADS, HEAD_DIM)), (1, 2, 0, 3))
    probabilities = ops.softmax(_SCORES(qkv[0] * HEAD_DIM ** -0.5, qkv[1]), axis=-1)
    out = ops.reshape(ops.transpose(_VALUES(probabilities, qkv[2]), (1, 0, 2)), (TOKENS, WIDTH))
    return x + _LINEAR(out, proj_weight) + proj_bias


layer_forward = ms.jit(attention_layer)


@ms.jit
def layer_vjp(x, qkv_weight, qkv_bias, proj_weight, proj_bias, output_grad):
    """(d x, d qkv_weight, d qkv_bias, d proj_weight, d proj_bias) of one layer, its forward recomputed inside."""
    return _GRAD_ALL(attention_layer)(x, qkv_weight, qkv_bias, proj_weight, proj_bias, output_grad)


def shared_graph_step(x, weights):
    """Loss mean(y²) of the stack and every layer's weight gradients, one layer's graphs at a time."""
    inputs = [x]
    for layer_weights in weights:
        inputs.append(layer_forward(inputs[-1], *layer_weights))
    output = inputs[-1]
    output_grad = output * (2.0 / output.size)
    grads = [None] * len(weights)
    for index in reversed(range(len(weights))):
        layer_grads = layer_vjp(inputs[index], *weights[index], output_grad)
        output_grad, grads[index] = layer_grads[0], layer_grads[1:]
    return (output * output).mean(), grads


class Stack(nn.Cell):
    """The same layers as one network, for ``value_and_grad`` of the whole."""

    def __init__(self, weights):
        super().__init__()
        self.weights = ms.ParameterTuple([ms.Parameter(w, name=f"w{i}") for i, w in
                                          enumerate(t for layer in weights for t in layer)])

    def construct(self, x):
        for i in range(len(self.weights) // 4):
            x = attention_layer(x, *self.weights[4 * i:4 * i + 4])
        return (x * x).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("layers", type=int)
    parser.add_argument("--whole", action="store_true", help="value_and_grad of the whole stack in GRAPH_MODE")
    parser.add_argument("--check", action="store_true", help="compare the gradients with PyNative's")
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    weights = [[ms.Tensor(rng.standard_normal((3 * WIDTH, WIDTH)).astype(np.float32) * 0.02),
                ms.Tensor(np.zeros(3 * WIDTH, np.float32)),
                ms.Tensor(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) * 0.02),
                ms.Tensor(np.zeros(WIDTH, np.float32))] for _ in range(args.layers)]
    x = ms.Tensor(rng.standard_normal((TOKENS, WIDTH)).astype(np.float32))
    if args.whole:
        ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
        stack = Stack(weights)
        step = ms.value_and_grad(stack, None, stack.trainable_params())
    else:
        ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
        ms.runtime.launch_blocking()

        def step(inputs):
            return shared_graph_step(inputs, weights)
    for _ in range(2):
        started = time.perf_counter()
        loss, grads = step(x)
        loss.asnumpy()
        seconds = time.perf_counter() - started
    print("mindspore %s, %s, %d attention layers: peak RSS %.3f GiB, step %.2f s" % (
        ms.__version__, "whole graph" if args.whole else "shared layer graphs", args.layers,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, seconds))
    if args.check and not args.whole:
        flat = [t for layer in weights for t in layer]

        def loss_of(*tensors):
            out = x
            for i in range(args.layers):
                out = attention_layer(out, *tensors[4 * i:4 * i + 4])
            return (out * out).mean()
        reference = ms.grad(loss_of, grad_position=tuple(range(len(flat))))(*flat)
        mine = [g for layer_grads in grads for g in layer_grads]
        worst = max(float(np.abs(a.asnumpy() - b.asnumpy()).max() / (np.abs(a.asnumpy()).max() + 1e-30))
                    for a, b in zip(reference, mine))
        print("largest relative gradient difference: %.2e" % worst)


if __name__ == "__main__":
    main()
