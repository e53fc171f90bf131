"""LSegNet on tiny configurations: architecture facts, shapes, every arch_option/activation, pixel embeddings,
zero-shot labels, the text-feature cache, gradient flow, parameter groups and training in PyNative and GRAPH_MODE."""
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from modules import BACKBONES, BackboneConfig, LevelResample, LSegNet, get_backbone_config
from modules.backbone import exact_gelu
from modules.head import LOGIT_SCALE

pytestmark = pytest.mark.both_stacks

LABELS = ["wall", "cat", "sky"]


def tiny_net(labels=LABELS, **kwargs):
    net = LSegNet("tiny_vit16", labels=labels, text_config="tiny", **kwargs)
    net.set_train(False)
    return net


def images(batch=1, height=64, width=64, seed=0):
    return ms.Tensor(np.random.RandomState(seed).randn(batch, 3, height, width).astype(np.float32))


@pytest.fixture(scope="module")
def shared_net():
    """One tiny arch-0 network for tests that only read it (building one costs ~1-2 s)."""
    return tiny_net()


def copy_weights(src, dst):
    values = {p.name: p.asnumpy() for p in src.get_parameters()}
    for param in dst.get_parameters():
        if param.name in values and param.name != "text_features_cache":
            param.set_data(ms.Tensor(values[param.name]))
    dst.text_weights_changed()


# ------------------------------------------------------------------------------------------ configuration
def test_official_backbone_facts():
    vitl = BACKBONES["clip_vitl16_384"]
    assert (vitl.width, vitl.depth, vitl.heads, vitl.patch_size) == (1024, 24, 16, 16)
    assert vitl.hooks == (5, 11, 17, 23) and vitl.level_widths == (256, 512, 1024, 1024)
    assert [(r.kind, r.factor) for r in vitl.level_resample] == [("up", 4), ("up", 2), ("none", 1), ("down", 2)]
    vitb = BACKBONES["clip_vitb32_384"]
    assert (vitb.width, vitb.depth, vitb.heads, vitb.patch_size) == (768, 12, 12, 32)
    assert vitb.hooks == (2, 5, 8, 11) and vitb.level_widths == (96, 192, 384, 768)
    assert [(r.kind, r.factor) for r in vitb.level_resample] == [("up", 8), ("up", 4), ("up", 2), ("none", 1)]
    for cfg in (vitl, vitb):
        assert (cfg.image_size, cfg.features, cfg.out_dim, cfg.grid_size) == (384, 256, 512, 384 // cfg.patch_size)


def test_tiny_backbone_pairs_with_tiny_text_tower():
    import clip_ms
    assert BACKBONES["tiny_vit16"].out_dim == clip_ms.TEXT_CONFIGS["tiny"].embed_dim


def test_config_rejects_levels_that_do_not_reach_strides_4_to_32():
    with pytest.raises(ValueError, match="level 1 ends at stride 8"):
        BackboneConfig(name="bad", image_size=64, patch_size=16, width=32, depth=4, heads=2, hooks=(0, 1, 2, 3),
                       level_widths=(8, 16, 32, 32),
                       level_resample=(LevelResample("up", 2), LevelResample("up", 2), LevelResample("none"),
                                       LevelResample("down", 2)))
    with pytest.raises(ValueError, match="strictly increasing"):
        BackboneConfig(name="bad", image_size=64, patch_size=16, width=32, depth=4, heads=2, hooks=(0, 0, 2, 3),
                       level_widths=(8, 16, 32, 32), level_resample=BACKBONES["tiny_vit16"].level_resample)
    with pytest.raises(KeyError, match="clip_vitl16_384"):
        get_backbone_config("vit_huge")


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="arch_option"):
        tiny_net(arch_option=3)
    with pytest.raises(ValueError, match="activation"):
        tiny_net(arch_option=1, activation="gelu")
    with pytest.raises(ValueError, match="embed_dim"):
        LSegNet("tiny_vit16", labels=LABELS, text_config="ViT-B/32")


def test_default_labels_are_the_150_ade20k_names():
    net = LSegNet("tiny_vit16", text_config="tiny")
    assert len(net.labels) == 150 and net.labels[:3] == ["wall", "building", "sky"]
    assert net.text_features_cache.shape == (150, 64)


# ------------------------------------------------------------------------------------------ shapes and heads
@pytest.mark.parametrize("height,width", [(64, 64), (96, 64), (64, 128), (32, 32)])
def test_any_size_multiple_of_32(shared_net, height, width):
    net = shared_net
    logits = net(images(2, height, width))
    assert logits.shape == (2, len(LABELS), height, width)
    assert np.isfinite(logits.asnumpy()).all()
    assert net.pixel_embeddings(images(1, height, width)).shape == (1, 64, height // 2, width // 2)


def test_size_not_multiple_of_32_is_rejected(shared_net):
    with pytest.raises(ValueError, match="multiples of 32"):
        shared_net(images(1, 80, 64))


def test_pixel_embeddings_are_unit_norm_and_give_the_logits(shared_net):
    net = shared_net
    x = images(2, 64, 96)
    pixels = net.pixel_embeddings(x).asnumpy()
    np.testing.assert_allclose(np.linalg.norm(pixels, axis=1), 1.0, atol=1e-5)
    text = net.text_features_cache.asnumpy()
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    low = LOGIT_SCALE * np.einsum("bdhw,nd->bnhw", pixels, text)
    expected = ops.interpolate(ms.Tensor(low.astype(np.float32)), size=(64, 96), mode="bilinear",
                               align_corners=True).asnumpy()
    np.testing.assert_allclose(net(x).asnumpy(), expected, atol=1e-4)
    assert abs(LOGIT_SCALE - 1 / 0.07) < 1e-4
    assert "logit_scale" not in {p.name for p in net.get_parameters()}


def _numpy_head_block(logits, weight, bias, arch, activation, depth):
    def conv(x):
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.full_like(x, bias)
        for dy in range(3):
            for dx in range(3):
                out += weight[dy, dx] * padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
        return out

    act = {"relu": lambda v: np.maximum(v, 0), "lrelu": lambda v: np.where(v > 0, v, 0.01 * v),
           "tanh": np.tanh}[activation]
    for step in range(max(depth, 1)):
        out = conv(logits)
        if arch == 1:
            out = out + logits.max(axis=1, keepdims=True)
        logits = act(out) if step < max(depth, 1) - 1 else out
    return logits


@pytest.mark.parametrize("arch,activation,depth", [(1, "lrelu", 2), (2, "tanh", 3), (1, "relu", 0), (2, "relu", 1)])
def test_spatial_regularization_blocks_follow_the_official_order(shared_net, arch, activation, depth):
    base = shared_net
    net = tiny_net(arch_option=arch, block_depth=depth, activation=activation)
    copy_weights(base, net)
    conv = net.scratch.head_block.label_conv.conv
    conv.weight.set_data(ms.Tensor(np.random.RandomState(1).randn(1, 1, 3, 3).astype(np.float32) * 0.5))
    conv.bias.set_data(ms.Tensor(np.array([0.1], np.float32)))
    x = images(1, 64, 64)
    # The low-resolution logits, recomputed exactly from the embeddings (arch 0 has no block).
    pixels = base.pixel_embeddings(x).asnumpy()
    text = base.text_features_cache.asnumpy()
    low = LOGIT_SCALE * np.einsum("bdhw,nd->bnhw", pixels, text / np.linalg.norm(text, axis=1, keepdims=True))
    expected_low = _numpy_head_block(low, conv.weight.asnumpy()[0, 0], conv.bias.asnumpy()[0], arch, activation, depth)
    expected = ops.interpolate(ms.Tensor(expected_low.astype(np.float32)), size=(64, 64), mode="bilinear",
                               align_corners=True).asnumpy()
    np.testing.assert_allclose(net(x).asnumpy(), expected, atol=1e-4)
    assert not np.allclose(expected, base(x).asnumpy(), atol=1e-3)


# ------------------------------------------------------------------------------------------ labels and cache
def test_per_call_labels_are_zero_shot_and_leave_the_default_alone():
    net = tiny_net()
    x = images(1)
    default_before = net(x).asnumpy()
    other = ["dog", "tree", "road", "person", "car"]
    zero_shot = net(x, net.text_features(other)).asnumpy()
    assert zero_shot.shape == (1, 5, 64, 64)
    np.testing.assert_array_equal(net(x).asnumpy(), default_before)
    net.set_labels(other)
    np.testing.assert_allclose(net(x).asnumpy(), zero_shot, atol=1e-6)


def test_text_features_are_encoded_once_per_label_list(monkeypatch):
    net = tiny_net()
    calls = []
    original = net.encode_text
    monkeypatch.setattr(net, "encode_text", lambda labels: calls.append(list(labels)) or original(labels))
    x = images(1)
    net(x)
    net(x)
    assert calls == []
    net(x, net.text_features(["dog", "cat"]))
    net(x, net.text_features(["dog", "cat"]))
    assert calls == [["dog", "cat"]]
    net.set_labels(["road"])
    assert net(x).shape[1] == 1 and calls[-1] == ["road"]
    net.set_labels(["dog", "cat"])  # a list seen before: its features are reused
    assert net(x).shape[1] == 2 and calls == [["dog", "cat"], ["road"]]


def test_a_network_built_without_encoding_encodes_on_first_use(monkeypatch):
    calls = []
    original = LSegNet.encode_text
    monkeypatch.setattr(LSegNet, "encode_text", lambda self, labels: calls.append(list(labels)) or original(self,
                                                                                                          labels))
    net = tiny_net(encode_labels=False)
    assert calls == [] and not net.text_features_cache.asnumpy().any()
    eager = tiny_net()
    copy_weights(eager, net)  # text_weights_changed encodes the current labels with the new weights
    assert calls == [LABELS, LABELS]  # the eager build, then the copy: never the random text weights of `net`
    np.testing.assert_allclose(net(images(1)).asnumpy(), eager(images(1)).asnumpy(), atol=1e-5)
    assert calls == [LABELS, LABELS]


def test_text_features_follow_text_weights_changed_by_hand_once_told():
    net = tiny_net()
    x = images(1)
    before = net(x).asnumpy()
    dog_before = net(x, net.text_features(["dog"])).asnumpy()
    projection = net.clip_pretrained.text_projection
    projection.set_data(ms.Tensor(np.random.RandomState(5).randn(*projection.shape).astype(np.float32)))
    np.testing.assert_array_equal(net(x).asnumpy(), before)  # the contract: whoever edits the weights says so
    net.text_weights_changed()
    after = net(x).asnumpy()
    assert not np.allclose(before, after, atol=1e-3)
    assert not np.allclose(net(x, net.text_features(["dog"])).asnumpy(), dog_before, atol=1e-3)
    fresh = tiny_net()
    copy_weights(net, fresh)
    np.testing.assert_allclose(after, fresh(x).asnumpy(), atol=1e-5)
    np.testing.assert_allclose(net(x, net.text_features(["dog"])).asnumpy(),
                               fresh(x, fresh.text_features(["dog"])).asnumpy(), atol=1e-5)


def test_label_lists_are_not_a_features_argument():
    with pytest.raises(TypeError, match="pass net.text_features"):
        tiny_net()(images(1), ["dog"])


def test_cache_is_refreshed_when_a_checkpoint_is_loaded(tmp_path):
    from modules.weights import assign_checkpoint_arrays, read_lseg_checkpoint, save_lseg_checkpoint
    source = tiny_net()
    path = str(tmp_path / "net.ckpt")
    save_lseg_checkpoint(source, path)
    target = tiny_net()  # different random text tower (numpy RNG advanced)
    x = images(1)
    assert not np.allclose(target(x).asnumpy(), source(x).asnumpy(), atol=1e-3)
    assign_checkpoint_arrays(target, path, *read_lseg_checkpoint(path)[:2])
    np.testing.assert_allclose(target.text_features_cache.asnumpy(), source.text_features_cache.asnumpy(), atol=1e-6)
    np.testing.assert_allclose(target(x).asnumpy(), source(x).asnumpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------ training
def test_parameter_groups_are_the_official_ones():
    net = tiny_net(arch_option=1, block_depth=2)
    backbone = {p.name for p in net.backbone_params()}
    head = {p.name for p in net.head_params()}
    trainable = {p.name for p in net.trainable_params()}
    assert backbone and head and not backbone & head
    assert backbone | head == trainable
    assert all(name.startswith("pretrained.") for name in backbone)
    assert all(name.startswith("scratch.") for name in head)
    assert "scratch.head_block.label_conv.conv.weight" in head
    assert "pretrained.act_postprocess4.resample.weight" in backbone
    assert not any(name.startswith("clip_pretrained.") or name == "text_features_cache" for name in trainable)


class PixelCrossEntropy(nn.Cell):
    """Mean softmax cross-entropy of logits (B, N, H, W) against one-hot targets (B, N, H, W)."""

    def construct(self, logits, one_hot):
        return -(one_hot * ops.log_softmax(logits, axis=1)).sum(axis=1).mean()


def _train(net, steps=3):
    rng = np.random.RandomState(7)
    x = ms.Tensor(rng.randn(2, 3, 32, 32).astype(np.float32))
    target = np.eye(len(LABELS), dtype=np.float32)[rng.randint(0, len(LABELS), (2, 32, 32))].transpose(0, 3, 1, 2)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, PixelCrossEntropy()),
                               nn.SGD(net.trainable_params(), learning_rate=0.05))
    step.set_train()
    return [float(step(x, ms.Tensor(target)).asnumpy()) for _ in range(steps)]


def test_gradients_reach_backbone_and_head_but_not_the_text_encoder():
    net = tiny_net(arch_option=2, block_depth=2)
    net.set_train()
    x = images(2)
    loss_net = nn.WithLossCell(net, PixelCrossEntropy())
    target = ms.Tensor(np.eye(3, dtype=np.float32)[np.zeros((2, 64, 64), int)].transpose(0, 3, 1, 2))
    params = net.trainable_params()
    grads = ms.grad(loss_net, grad_position=None, weights=params)(x, target)
    norms = {p.name: float(np.abs(g.asnumpy()).sum()) for p, g in zip(params, grads)}
    for name in ("pretrained.model.patch_embed.proj.weight", "pretrained.model.blocks.0.attn.qkv.weight",
                 "pretrained.act_postprocess1.readout_project.weight", "scratch.layer4_rn.weight",
                 "scratch.head1.weight", "scratch.head_block.label_conv.conv.weight"):
        assert norms[name] > 0, name
    # The official hook design makes the final norm and blocks after the last hook irrelevant: no gradient.
    assert norms["pretrained.model.norm.gamma"] == 0
    text_params = net.text_encoder_params()
    assert text_params and not any(p.requires_grad for p in text_params)


def _trained_weights(mode):
    ms.set_context(mode=mode)
    ms.set_seed(0)
    np.random.seed(0)
    net = tiny_net()
    initial = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    losses = _train(net)
    return net, initial, losses


def test_training_in_pynative_and_graph_mode_gives_the_same_saved_weights(tmp_path):
    from modules.weights import read_lseg_checkpoint, save_lseg_checkpoint
    saved = {}
    for label, mode in (("pynative", ms.PYNATIVE_MODE), ("graph", ms.GRAPH_MODE)):
        net, initial, losses = _trained_weights(mode)
        assert losses[-1] < losses[0], (label, losses)
        path = str(tmp_path / f"{label}.ckpt")
        save_lseg_checkpoint(net, path)
        saved[label] = read_lseg_checkpoint(path)[1]
        changed = [name for name in ("scratch.head1.bias", "pretrained.act_postprocess1.readout_project.bias",
                                     "pretrained.model.blocks.0.mlp.fc1.bias", "scratch.refinenet1.out_conv.bias")
                   if not np.allclose(saved[label][name], initial[name])]
        assert len(changed) == 4, (label, changed)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    for name, value in saved["pynative"].items():
        np.testing.assert_allclose(saved["graph"][name], value, atol=2e-4, err_msg=name)


def test_exact_gelu_and_its_gradient_are_pytorchs_erf_gelu():
    x = np.linspace(-6.0, 6.0, 241).astype(np.float32)
    grid = x.astype(np.float64)
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in grid]))
    density = np.exp(-grid * grid / 2.0) / math.sqrt(2.0 * math.pi)
    gelu = exact_gelu()
    _, grad = ms.value_and_grad(lambda t: gelu(t).sum())(ms.Tensor(x))
    np.testing.assert_allclose(gelu(ms.Tensor(x)).asnumpy(), grid * cdf, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.asnumpy(), cdf + grid * density, rtol=1e-5, atol=1e-6)
    tanh_gelu = 0.5 * grid * (1 + np.tanh(math.sqrt(2 / math.pi) * (grid + 0.044715 * grid ** 3)))
    assert np.abs(tanh_gelu - grid * cdf).max() > 1e-4  # the test tells the two apart
