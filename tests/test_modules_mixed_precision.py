"""modules.mixed_precision: under O1 the convolutions and matrix products of LSeg's layers compute in float16 (through
MindSpore's own O1 they stayed float32), in PyNative and GRAPH_MODE, with the parameters unchanged, and the Trainer
trains the tiny network under O1 and O2 to losses close to float32's, writing nothing into the working folder."""
import os
import sys

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import TrainConfig, Trainer
from encoding_custom.engine.losses import SegmentationLoss
from modules import tnn
from modules.factory import build_lseg
from modules.mixed_precision import (
    LOW_PRECISION_PRIMITIVES,
    LowPrecisionProduct,
    apply_mixed_precision,
    compute_products_in_low_precision,
)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from toys import ToySegData  # noqa: E402

pytestmark = pytest.mark.both_stacks

LABELS = ["red", "green", "blue"]
IMAGES = ms.Tensor(np.random.RandomState(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32))


def tiny():
    """The tiny network with the spatial regularisation block (every product kind: conv, transposed conv, dense,
    attention)."""
    ms.set_seed(1)
    np.random.seed(1)
    return build_lseg("tiny_vit16", LABELS, text_config="tiny", arch_option=1, block_depth=1)


def float32_logits():
    net = tiny()
    net.set_train(False)
    return net(IMAGES).asnumpy()


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_o1_leaves_no_float32_product_and_keeps_the_parameters():
    net = tiny()
    before = {p.name: (p.dtype, tuple(p.shape)) for p in net.get_parameters()}
    changed = compute_products_in_low_precision(net)
    bare = ["%s.%s" % (name, attribute) for name, cell in net.cells_and_names()
            for attribute, value in vars(cell).items()
            if isinstance(value, LOW_PRECISION_PRIMITIVES) and not isinstance(cell, LowPrecisionProduct)]
    assert changed > 50 and bare == []
    assert compute_products_in_low_precision(net) == 0  # a second call finds nothing left to cast
    assert {p.name: (p.dtype, tuple(p.shape)) for p in net.get_parameters()} == before


class _Recording:
    """Stands in for a product (PyNative runs construct as Python) and records the dtypes it is given."""

    def __init__(self, product, seen):
        self.product, self.seen = product, seen

    def __call__(self, *args, **kwargs):
        self.seen.extend(str(arg.dtype) for arg in args[:2])
        return self.product(*args, **kwargs)


def test_the_products_are_given_float16_and_the_logits_move_by_rounding_only(monkeypatch):
    reference = float32_logits()
    net = tiny()
    compute_products_in_low_precision(net)
    seen = []
    for _, cell in net.cells_and_names():
        if isinstance(cell, LowPrecisionProduct):
            cell.product = _Recording(cell.product, seen)
    if tnn.BACKEND == "msadapter":  # its Conv2d and Linear call functional products
        monkeypatch.setattr(tnn, "functional_conv2d", _Recording(tnn.functional_conv2d, seen))
        monkeypatch.setattr(tnn, "functional_linear", _Recording(tnn.functional_linear, seen))
    net.set_train(False)
    logits = net(IMAGES)
    assert len(seen) > 100 and set(seen) == {"Float16"}
    assert logits.dtype == ms.float32
    assert 0 < relative(logits.asnumpy(), reference) <= 0.02


def test_graph_mode_computes_what_pynative_computes(graph_mode):
    """The casts are in the compiled graph too (MindSpore's O1 compiled, but left the logits equal to float32's)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    reference = float32_logits()
    pynative = tiny()
    compute_products_in_low_precision(pynative)
    pynative.set_train(False)
    expected = pynative(IMAGES).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    compiled = tiny()
    compute_products_in_low_precision(compiled)
    compiled.set_train(False)
    logits = compiled(IMAGES).asnumpy()
    assert relative(logits, reference) > 1e-5
    assert relative(logits, expected) <= 1e-3


def _losses(level, folder):
    net = tiny()
    config = TrainConfig(lr=0.01, max_epochs=1, batch_size=2, exp_dir=str(folder / level), progress=False, seed=7,
                         amp_level=level)
    trainer = Trainer(net, SegmentationLoss(), ToySegData(6, size=64), config,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)], nclass=len(LABELS))
    trainer.fit()
    return [step["loss"] for step in trainer.step_log]


def test_the_trainer_trains_under_o1_and_o2_to_losses_close_to_float32(tmp_path, monkeypatch):
    """~10 s quiet, ~30 s beside two busy processes: three trainings (O0, O1, O2) of three steps of the tiny
    network."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    float32 = _losses("O0", tmp_path)
    for level in ("O1", "O2"):
        losses = _losses(level, tmp_path)
        assert len(losses) == len(float32) == 3, level
        assert np.allclose(losses, float32, rtol=0.02), (level, losses, float32)
    assert os.listdir(work) == []  # MindSpore's O1 rewrite wrote rewritten_network/ here


def test_o0_returns_the_network_untouched():
    net = tiny()
    assert apply_mixed_precision(net, "O0") is net
    assert not any(isinstance(cell, LowPrecisionProduct) for _, cell in net.cells_and_names())


def test_bfloat16_is_refused_in_one_line_where_it_cannot_run_and_cast_to_where_it_can():
    from modules.mixed_precision import LOW_PRECISION_DTYPES, low_precision_refusal
    assert low_precision_refusal("float16", "CPU") is None
    if "bfloat16" not in LOW_PRECISION_DTYPES:  # MindSpore 2.0
        assert low_precision_refusal("bfloat16", "Ascend") == \
            "mindspore %s has no bfloat16 (it came in 2.3); use float16" % ms.__version__
        return
    assert low_precision_refusal("bfloat16", "CPU").startswith(
        "mindspore %s has no bfloat16 CPU kernels for convolutions and matrix products" % ms.__version__)
    assert low_precision_refusal("bfloat16", "Ascend") is None
    net = tiny()
    apply_mixed_precision(net, "O1", "bfloat16")  # built, not run: this CPU has no bfloat16 products
    products = [cell for _, cell in net.cells_and_names() if isinstance(cell, LowPrecisionProduct)]
    assert len(products) > 50 and {cell.dtype for cell in products} == {ms.bfloat16}
