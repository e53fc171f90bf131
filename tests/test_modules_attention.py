"""modules.backbone.ViTAttention: the same function and gradients as MindCV's attention it replaces (q scaled first,
the softmax's backward written out), in PyNative and GRAPH_MODE, with the fused CPU kernel for the softmax's gradient
and with MindSpore's ops, and every block of a built ViT uses it."""
import mindspore as ms
import numpy as np
import pytest
from mindcv.models.vit import Attention
from mindspore import nn

from modules import backbone
from modules.backbone import ViTAttention, as_vit_attention

pytestmark = pytest.mark.both_stacks


class Residual(nn.Cell):
    """Two attention layers with residuals and a non-linear loss, so that every gradient path is exercised."""

    def __init__(self, layer, width, heads):
        super().__init__()
        self.layers = nn.CellList([layer(width, heads, True) for _ in range(2)])

    def construct(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return (x * x * x).mean()


def losses_and_gradients(layer, width, heads, inputs):
    """One network differentiated at each of ``inputs`` in turn (a later call must not see an earlier one's values)."""
    ms.set_seed(0)
    net = Residual(layer, width, heads)
    step = ms.value_and_grad(net, 0, net.trainable_params())
    results = []
    for x in inputs:
        loss, (grad_x, grad_weights) = step(x)
        results.append((loss.asnumpy(), grad_x.asnumpy(), [g.asnumpy() for g in grad_weights]))
    return results


def vit_attention(*args):
    return as_vit_attention(Attention(*args))


@pytest.mark.parametrize("softmax_grad", ["fused kernel", "mindspore ops"])
@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("width,heads", [(64, 1), (96, 4)])  # head widths 64 (scale 1/8) and 24 (not a power of 2)
def test_vit_attention_has_mindcvs_value_and_gradients(mode, width, heads, softmax_grad, monkeypatch):
    if softmax_grad == "mindspore ops":
        monkeypatch.setattr(backbone, "softmax_grad_op", lambda: None)
    elif backbone.softmax_grad_op() is None:
        pytest.skip("the fused kernel does not run here: before MindSpore 2.10 or no C++ compiler (modules.kernels)")
    uses_kernel = vit_attention(width, heads, True).core.fused_softmax is not None
    assert uses_kernel == (softmax_grad == "fused kernel")
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    inputs = [ms.Tensor(np.random.RandomState(seed).standard_normal((2, 17, width)).astype(np.float32))
              for seed in (1, 2, 3)]
    for got, expected in zip(losses_and_gradients(vit_attention, width, heads, inputs),
                             losses_and_gradients(Attention, width, heads, inputs)):
        if width // heads == 64:  # a power-of-two scale: scaling q or the scores rounds alike
            np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6 * np.abs(expected[1]).max())
        assert len(got[2]) == len(expected[2]) == 8
        for grad, reference in zip(got[2], expected[2]):
            np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())


def test_every_block_of_a_built_vit_uses_it_with_timms_parameter_names_only():
    from modules import get_backbone_config
    from modules.backbone import build_vit

    vit = build_vit(get_backbone_config("tiny_vit16"))
    assert len(vit.blocks) > 1 and all(type(block.attn) is ViTAttention for block in vit.blocks)
    for block in vit.blocks:
        names = sorted(parameter.name.rsplit(".attn.", 1)[1] for parameter in block.attn.get_parameters())
        assert names == ["proj.bias", "proj.weight", "qkv.bias", "qkv.weight"]
