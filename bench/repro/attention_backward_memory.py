"""Minimal reproduction of MindSpore 2.10's extra training memory on CPU (bench/PERFORMANCE.md, "Activation
recomputation"): N attention layers of MindCV's ViT (1024 wide, 16 heads, 901 tokens, residual), ``value_and_grad``
in GRAPH_MODE, peak RSS. Each layer adds 0.345 GiB on 2.10.0 against 0.145 GiB on 2.0.0; without the softmax
(``--no-softmax``) 0.145 GiB on 2.10.0 and 0.143 GiB on 2.0.0. In PyNative with synchronous ops (``--pynative``,
2.4+) 0.135 GiB on 2.10.0 at the same step time. MindSpore's and MindCV's code only: nothing of this project is
imported.

    .venv/bin/python bench/repro/attention_backward_memory.py 4
    .venv/bin/python bench/repro/attention_backward_memory.py 8          # the growth per layer: (peak8 - peak4) / 4
    .venv/bin/python bench/repro/attention_backward_memory.py 8 --no-softmax
    .venv/bin/python bench/repro/attention_backward_memory.py 8 --pynative
"""
import argparse
import resource

import mindspore as ms
import numpy as np
from mindcv.models.vit import Attention
from mindspore import nn


class AttentionWithoutSoftmax(Attention):
    """MindCV's attention with the softmax left out (the rest of its construct unchanged)."""

    def construct(self, x):
        b, n, c = x.shape
        q, k, v = self.unstack(self.transpose(self.reshape(self.qkv(x), (b, n, 3, self.num_heads, self.head_dim)),
                                              (2, 0, 3, 1, 4)))
        attn = self.mul(self.q_matmul_k(q, k), self.scale)
        out = self.transpose(self.attn_matmul_v(attn, v), (0, 2, 1, 3))
        return self.proj(self.reshape(out, (b, n, c)))


class Layers(nn.Cell):
    def __init__(self, count: int, layer):
        super().__init__()
        self.layers = nn.CellList([layer(1024, 16, True) for _ in range(count)])

    def construct(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return (x * x).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("layers", type=int)
    parser.add_argument("--no-softmax", action="store_true")
    parser.add_argument("--pynative", action="store_true", help="PyNative with ops launched synchronously")
    args = parser.parse_args()
    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE, device_target="CPU")
    if args.pynative:
        ms.runtime.launch_blocking()
    net = Layers(args.layers, AttentionWithoutSoftmax if args.no_softmax else Attention)
    x = ms.Tensor(np.random.RandomState(0).standard_normal((1, 901, 1024)).astype(np.float32))
    step = ms.value_and_grad(net, None, net.trainable_params())
    for _ in range(2):
        step(x)[0].asnumpy()
    print("mindspore %s, %s, %d attention layers%s: peak RSS %.2f GiB" % (
        ms.__version__, "PyNative" if args.pynative else "GRAPH_MODE", args.layers,
        " without softmax" if args.no_softmax else "",
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20))


if __name__ == "__main__":
    main()
