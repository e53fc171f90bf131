"""--recompute: which cells LSegNet marks, and a GRAPH_MODE training step that recomputes them gives the same losses,
weights and batch-norm statistics as one that keeps every activation (the memory it saves is measured in bench/:
``python -m bench --cases train/graph/recompute``)."""
import os

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import TrainConfig, Trainer
from encoding_custom.engine.losses import SegmentationLoss
from modules.factory import build_lseg
from modules.resnet import Bottleneck

STACK_INDEPENDENT = ("our part is which cells are marked and the batch norms' primitives unmarked; the recomputation "
                     "is MindSpore's, and on the pinned MindSpore 2.0 the same steps were measured exact (losses, "
                     "weights, running statistics: bench/PERFORMANCE.md) but take 150 s to compile with msadapter")

LABELS = ["sky", "grass", "tree"]


def _train_two_steps(backbone, level, workdir):
    """Two Trainer steps in GRAPH_MODE from fixed random weights; returns (losses, {parameter name: value})."""
    net = build_lseg(backbone, LABELS, text_config="tiny")
    rng = np.random.RandomState(0)
    for param in net.get_parameters():  # the frozen text tower too: the label features must be the same
        if param.name != "text_features_cache" and "running_" not in param.name:
            param.set_data(ms.Tensor(rng.standard_normal(param.shape).astype(np.float32) * 0.05))
    net.text_weights_changed()
    images = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    masks = rng.randint(0, len(LABELS), (2, 64, 64)).astype(np.int32)
    config = TrainConfig(lr=0.01, max_epochs=10, batch_size=2, progress=False, recompute=level,
                         exp_dir=os.path.join(workdir, level))
    trainer = Trainer(net, SegmentationLoss(), list(zip(images, masks)), config,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)])
    losses = [float(trainer.train_step(ms.Tensor(images), ms.Tensor(masks), True)[0].asnumpy()) for _ in range(2)]
    return losses, {param.name: param.asnumpy().copy() for param in net.get_parameters()}


@pytest.fixture
def graph_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


@pytest.mark.parametrize("backbone", ["tiny_vit16", "tiny_resnet"])
def test_a_recomputing_step_equals_one_that_keeps_every_activation(backbone, graph_mode, tmp_path):
    """Over 20 s at times (10-16 s on a quiet machine, 20-28 s in CI runs on a busy host): two GRAPH_MODE trainings,
    each compiling its own step, because the recomputed graph must be compared with the one that keeps everything."""
    kept_losses, kept = _train_two_steps(backbone, "none", str(tmp_path))
    losses, weights = _train_two_steps(backbone, "backbone", str(tmp_path))
    assert losses == pytest.approx(kept_losses, rel=1e-6)
    assert kept_losses[1] != kept_losses[0]  # the first step changed the weights
    statistics = [name for name in kept if name.startswith("pretrained.") and "running_" in name]
    assert statistics or backbone == "tiny_vit16"  # the ResNet's bottlenecks have batch norms, the ViT's blocks none
    for name, value in kept.items():  # running statistics included: they move once per step, not twice
        np.testing.assert_allclose(weights[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_the_backbone_level_marks_every_block_the_forward_runs(graph_mode):
    vit = build_lseg("tiny_vit16", LABELS, text_config="tiny")
    assert vit.recompute_cells("none") == []
    assert vit.recompute_cells("backbone") == list(vit.pretrained.model.blocks)[:vit.pretrained.hooks[-1] + 1]
    assert vit.pretrained.hooks[-1] + 1 == len(vit.pretrained.model.blocks)  # tiny: every block feeds a hook
    resnet = build_lseg("tiny_resnet", LABELS, text_config="tiny")
    bottlenecks = resnet.recompute_cells("backbone")
    assert bottlenecks and all(isinstance(cell, Bottleneck) for cell in bottlenecks)
    assert len(bottlenecks) == sum(resnet.cfg.blocks)
    assert resnet.set_recompute("backbone") == len(bottlenecks)
    with pytest.raises(ValueError, match="recompute level must be one of"):
        vit.recompute_cells("all")
