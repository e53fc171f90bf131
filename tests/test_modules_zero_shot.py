"""The zero-shot networks of issue 15: per-image label pairs ['others', name] (official ``class_info``), the ResNet
backbone as data, its ImageNet init, and parity with lang-seg's ``LSegNetZS`` / ``LSegRNNetZS``."""
import json
import os
import re
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

import clip_ms
from encoding_custom.evaluation.zero_shot import EpisodeForward
from modules import BACKBONES, LSegNet, ResNetConfig, tnn
from modules.config import NORMALISATION_NAMES
from modules.convert import main
from modules.factory import ArgumentError, build_lseg, load_lseg
from modules.head import pixel_text_logits
from modules.lseg import ZERO_SHOT_BACKGROUND, episode_text_features, zero_shot_labels
from modules.pretrained import init_backbone_from_pretrained, torchvision_resnet_name
from modules.resnet import ResNetBackbone
from modules.weights import WeightsError, expected_parameters
from tests.fixtures.torch_writer import save_torch_file

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "modules")
sys.path.insert(0, FIXTURES)
from support import write_full_zero_shot_checkpoint  # noqa: E402

pytestmark = pytest.mark.both_stacks

CLASS_NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle"]


def tiny_net(backbone="tiny_vit16", labels=None, **kwargs):
    net = LSegNet(backbone, labels=zero_shot_labels(CLASS_NAMES) if labels is None else labels, text_config="tiny",
                  **kwargs)
    net.set_train(False)
    return net


def images(batch=1, height=64, width=64, seed=0):
    return ms.Tensor(np.random.RandomState(seed).randn(batch, 3, height, width).astype(np.float32))


def per_image_pair_logits(net, batch_images, class_ids):
    """Reference: each image alone with its own 2-label list, the shared-features path."""
    return np.concatenate([net(batch_images[i:i + 1], net.text_features([ZERO_SHOT_BACKGROUND, CLASS_NAMES[c]]))
                           .asnumpy() for i, c in enumerate(class_ids)])


# ------------------------------------------------------------------------------------------ label pairs
def test_zero_shot_labels_put_the_official_background_first():
    assert zero_shot_labels(["cat", "dog"]) == ["others", "cat", "dog"]
    assert ZERO_SHOT_BACKGROUND == "others"


def test_episode_text_features_pick_the_background_and_each_images_class():
    features = ms.Tensor(np.arange(6 * 3, dtype=np.float32).reshape(6, 3))
    picked = episode_text_features(features, ms.Tensor(np.array([4, 0, 2], np.int32))).asnumpy()
    assert picked.shape == (3, 2, 3)
    rows = features.asnumpy()
    np.testing.assert_array_equal(picked[:, 0], rows[[0, 0, 0]])
    np.testing.assert_array_equal(picked[:, 1], rows[[5, 1, 3]])


def test_pixel_text_logits_with_per_image_features_equal_one_image_at_a_time():
    rng = np.random.RandomState(3)
    pixels = ms.Tensor(rng.randn(3, 8, 4, 5).astype(np.float32))
    text = ms.Tensor(rng.randn(3, 2, 8).astype(np.float32))
    batched = pixel_text_logits(pixels, text).asnumpy()
    assert batched.shape == (3, 2, 4, 5)
    for b in range(3):
        alone = pixel_text_logits(pixels[b:b + 1], text[b]).asnumpy()
        np.testing.assert_allclose(batched[b:b + 1], alone, rtol=1e-6, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-2  # the images really got different label sets


@pytest.mark.parametrize("text_rank", [2, 3])
def test_pixel_text_logits_are_the_scaled_cosines_of_pixels_and_labels(text_rank):
    rng = np.random.RandomState(4)
    pixels = rng.randn(2, 8, 4, 5).astype(np.float32) * 3
    text = rng.randn(*((2, 6, 8) if text_rank == 3 else (6, 8))).astype(np.float32)
    logits = pixel_text_logits(ms.Tensor(pixels), ms.Tensor(text), logit_scale=14.0).asnumpy()
    unit_pixels = pixels.astype(np.float64) / np.linalg.norm(pixels.astype(np.float64), axis=1, keepdims=True)
    unit_text = text.astype(np.float64) / np.linalg.norm(text.astype(np.float64), axis=-1, keepdims=True)
    unit_text = np.broadcast_to(unit_text, (2, 6, 8))
    expected = 14.0 * np.einsum("bnd,bdhw->bnhw", unit_text, unit_pixels)
    assert logits.dtype == np.float32 and logits.shape == (2, 6, 4, 5)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch_option", [0, 1])
def test_episode_logits_equal_the_per_image_two_label_logits(arch_option):
    net = tiny_net(arch_option=arch_option, block_depth=2 if arch_option else 0)
    batch_images, class_ids = images(3, seed=1), [3, 0, 3]
    features = episode_text_features(net.text_features(), ms.Tensor(np.array(class_ids, np.int32)))
    logits = net(batch_images, features).asnumpy()
    assert logits.shape == (3, 2, 64, 64)
    np.testing.assert_allclose(logits, per_image_pair_logits(net, batch_images, class_ids), rtol=1e-5, atol=1e-4)


def test_episode_logits_in_graph_mode_equal_the_per_image_logits():
    # The network is built, its label features encoded and the reference computed in PyNative (the text tower's
    # graphs would only add compile time); the episode forward alone runs compiled.
    net = tiny_net()
    batch_images, class_ids = images(2, seed=2), [1, 4]
    forward = EpisodeForward(net)
    net.sync_text_features()
    reference = per_image_pair_logits(net, batch_images, class_ids)
    ms.set_context(mode=ms.GRAPH_MODE)  # undone by conftest's autouse fixture
    # ms.mutable: the tuple's tensors are graph inputs, as in the training step (TrainOneStepWithLossScaleCell sets
    # enable_tuple_broaden); a plain tuple of tensors is a constant to MindSpore, compiled again for every class id.
    logits = forward(ms.mutable((batch_images, ms.Tensor(np.array(class_ids, np.int32))))).asnumpy()
    assert logits.shape == (2, 2, 64, 64)
    np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-4)
    # The class id really reaches the graph: another id gives other logits with the same compiled graph.
    other = forward(ms.mutable((batch_images, ms.Tensor(np.array([2, 4], np.int32))))).asnumpy()
    assert np.abs(other[0] - logits[0]).max() > 1e-3
    np.testing.assert_allclose(other[1], logits[1], rtol=1e-5, atol=1e-4)


def test_shared_label_path_is_unchanged_by_the_episode_path():
    net = tiny_net(labels=["wall", "cat", "sky"])
    batch_images = images(2, seed=4)
    shared = net(batch_images).asnumpy()
    per_image = ms.Tensor(np.broadcast_to(net.text_features().asnumpy(), (2, 3, 64)).copy())
    np.testing.assert_allclose(net(batch_images, per_image).asnumpy(), shared, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------------ the ResNet backbone as data


def test_resnet_configs_hold_the_official_facts():
    rn101 = BACKBONES["clip_resnet101"]
    assert isinstance(rn101, ResNetConfig) and rn101.torchvision_name == "resnet101"
    assert (rn101.stem_width, rn101.planes, rn101.blocks) == (64, (64, 128, 256, 512), (3, 4, 23, 3))
    assert rn101.level_widths == (256, 512, 1024, 2048)  # lseg_blocks_zs._make_scratch([256, 512, 1024, 2048])
    assert (rn101.features, rn101.out_dim, rn101.normalisation) == (256, 512, "imagenet")
    assert BACKBONES["tiny_resnet"].out_dim == clip_ms.TEXT_CONFIGS["tiny"].embed_dim
    assert {cfg.normalisation for cfg in BACKBONES.values() if not isinstance(cfg, ResNetConfig)} == {"vit"}


def test_normalisation_names_are_the_episode_normalisations():
    from encoding_custom.fewshot.episodes import NORMALISATIONS
    assert set(NORMALISATION_NAMES) == set(NORMALISATIONS)


@pytest.mark.parametrize("change,message", [
    (dict(planes=(4, 8, 16)), "4 entries"),
    (dict(blocks=(1, 0, 1, 1)), "positive integers"),
    (dict(normalisation="coco"), "normalisation must be one of"),
])
def test_resnet_config_rejects_bad_layouts(change, message):
    fields = dict(name="bad", stem_width=8, planes=(4, 8, 16, 32), blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=message):
        ResNetConfig(**dict(fields, **change))


@pytest.mark.parametrize("pool_class", ["MaxPool2d", "NativeMaxPool2d"])
def test_max_pool_pads_like_torch(pool_class):
    """torch's MaxPool2d(3, 2, 1): padding on every side and never the maximum (all-negative input)."""
    x = -1.0 - np.random.RandomState(4).rand(1, 2, 7, 6).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    reference = np.array([[[[padded[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(3)]
                            for i in range(4)] for c in range(2)]])
    pooled = getattr(tnn, pool_class)(kernel_size=3, stride=2, padding=1)(ms.Tensor(x)).asnumpy()
    np.testing.assert_array_equal(pooled, reference)


def test_resnet_levels_are_at_strides_4_to_32_and_the_network_outputs_two_maps():
    net = tiny_net("tiny_resnet")
    levels = net.pretrained(images(2, 64, 96))
    widths = BACKBONES["tiny_resnet"].level_widths
    assert [tuple(level.shape) for level in levels] == [(2, widths[i], 64 // s, 96 // s)
                                                        for i, s in enumerate((4, 8, 16, 32))]
    batch_images, class_ids = images(2, seed=5), [0, 2]
    logits = net(batch_images, episode_text_features(net.text_features(), ms.Tensor(np.array(class_ids, np.int32))))
    assert logits.shape == (2, 2, 64, 64)
    np.testing.assert_allclose(logits.asnumpy(), per_image_pair_logits(net, batch_images, class_ids), rtol=1e-5,
                               atol=1e-4)
    with pytest.raises(ValueError, match="multiples of 32"):
        net.pretrained(images(1, 48, 64))


def test_resnet_parameter_names_are_torchvisions_under_the_official_sequential():
    names = {name for name, _ in tiny_net("tiny_resnet").parameters_and_names()}
    for name in ("pretrained.layer1.0.weight", "pretrained.layer1.1.running_var", "pretrained.layer1.4.0.conv1.weight",
                 "pretrained.layer1.4.0.downsample.0.weight", "pretrained.layer1.4.0.downsample.1.bias",
                 "pretrained.layer2.1.bn3.weight", "pretrained.layer4.0.conv2.weight", "scratch.layer4_rn.weight",
                 "scratch.refinenet1.resConfUnit1.bn1.weight", "scratch.head1.weight"):
        assert name in names, name
    assert not any(name.startswith("scratch.head_block") for name in names)


@pytest.mark.parametrize("option", ["arch_option", "block_depth"])
def test_a_resnet_backbone_refuses_the_spatial_regularisation_block(option):
    values = dict(arch_option=1, block_depth=2) if option == "arch_option" else dict(block_depth=2)
    with pytest.raises(ArgumentError, match="official LSegRN ignores") as error:
        build_lseg("tiny_resnet", ["others", "cat"], text_config="tiny", **values)
    assert error.value.argument == option


def test_a_resnet_network_trains_in_graph_mode():
    """One compiled SGD step on an episode batch moves the stem, a downsample and the fusion (maxpool/BN gradients
    compile on both stacks)."""
    net = tiny_net("tiny_resnet")  # built and its label features encoded in PyNative: only the step is compiled
    net.set_train()
    net.sync_text_features()
    ms.set_context(mode=ms.GRAPH_MODE)  # undone by conftest's autouse fixture

    class EpisodeLoss(nn.Cell):
        def __init__(self, network):
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, batch_images, class_ids, target):
            logits = self.network(batch_images, episode_text_features(self.network.text_features_cache, class_ids))
            return ((logits - target) ** 2).mean()

    step = nn.TrainOneStepCell(EpisodeLoss(net), nn.SGD(net.backbone_params() + net.head_params(),
                                                        learning_rate=0.1))
    watched = ("pretrained.layer1.0.weight", "pretrained.layer2.0.downsample.0.weight", "scratch.head1.bias")
    before = {name: dict(net.parameters_and_names())[name].asnumpy().copy() for name in watched}
    target = ms.Tensor(np.zeros((2, 2, 64, 64), np.float32))
    losses = [float(step(images(2, seed=9), ms.Tensor(np.array([1, 3], np.int32)), target).asnumpy())
              for _ in range(2)]
    assert np.isfinite(losses).all()
    params = dict(net.parameters_and_names())
    for name in watched:
        assert not np.allclose(params[name].asnumpy(), before[name]), name


def test_resnet_parameter_groups_and_build_options():
    net = tiny_net("tiny_resnet")
    names = {id(p): n for n, p in net.parameters_and_names()}
    backbone = [names[id(p)] for p in net.backbone_params()]
    assert backbone and all(name.startswith("pretrained.") for name in backbone)
    assert "pretrained.layer1.0.weight" in backbone and "pretrained.layer1.1.running_mean" not in backbone
    assert all(names[id(p)].startswith("scratch.") for p in net.head_params())
    assert net.build_options() == {"backbone": "tiny_resnet", "arch_option": 0, "block_depth": 0,
                                   "activation": "lrelu", "text_config": "tiny"}


def test_our_resnet_checkpoint_round_trips_through_load_lseg(tmp_path):
    from modules.weights import save_lseg_checkpoint
    net = tiny_net("tiny_resnet")
    path = str(tmp_path / "zs.ckpt")
    save_lseg_checkpoint(net, path, labels=net.labels)
    loaded = load_lseg(path)
    assert loaded.network.build_options() == net.build_options() and loaded.labels == net.labels
    loaded.network.set_train(False)
    x = images(1, seed=6)
    np.testing.assert_allclose(loaded.network(x).asnumpy(), net(x).asnumpy(), rtol=1e-6, atol=1e-6)


def full_size_keys(which):
    with open(os.path.join(FIXTURES, "zero_shot_keys.json")) as handle:
        return json.load(handle)[which]


@pytest.fixture(scope="module")
def full_size_rn101_net():
    """LSegNet('clip_resnet101') with the real CLIP ViT-B/32 text tower (random weights; ~3 s to build, built once)."""
    return LSegNet("clip_resnet101", labels=["others", "cat"], encode_labels=False)


def test_full_size_resnet101_backbone_has_torchvisions_names_and_shapes(full_size_rn101_net):
    """torchvision's own resnet101().state_dict() (recorded by make_zero_shot_fixtures.py) mapped as the ImageNet
    init maps it == the parameters of our clip_resnet101 backbone."""
    theirs = {}
    for name, shape in full_size_keys("torchvision_resnet101").items():
        ours = torchvision_resnet_name(name)
        if ours is not None:
            theirs[ours] = tuple(shape)
    backbone = full_size_rn101_net.pretrained  # the network's own backbone
    assert type(backbone) is ResNetBackbone and backbone.cfg is BACKBONES["clip_resnet101"]
    ours = {"pretrained." + name: tuple(p.shape) for name, p in backbone.parameters_and_names()}
    assert ours == theirs
    assert sum(int(np.prod(shape)) for name, shape in ours.items() if "running" not in name) == 42_500_160


def test_full_size_clip_resnet101_network_has_exactly_the_official_layout(full_size_rn101_net):
    """The official LSegRNNetZS (its own _make_encoder, torchvision resnet101, features 256) + the real CLIP
    ViT-B/32 text tower (official_keys.json) == our LSegNet('clip_resnet101'), name for name, shape for shape."""
    from support import check_official_layout
    layout = dict(full_size_keys("official_lseg_rn_zs"))
    with open(os.path.join(FIXTURES, "official_keys.json")) as handle:
        layout.update({name: shape for name, shape in json.load(handle)["clip_vitb32_384"]["entries"].items()
                       if name.startswith("clip_pretrained.")})
    assert layout["scratch.layer4_rn.weight"] == [256, 2048, 3, 3] and layout["scratch.head1.weight"][0] == 512
    check_official_layout(layout, expected_parameters(full_size_rn101_net), where="clip_resnet101")


# ------------------------------------------------------------------------------------------ ImageNet init (torchvision)
def torchvision_state_of(net, rng):
    """A torchvision-named state_dict for ``net``'s ResNet (random values), with the classifier and BN counters."""
    inverse = ((r"^layer1\.0\.", "conv1."), (r"^layer1\.1\.", "bn1."), (r"^layer1\.4\.", "layer1."))
    state = {}
    for name, shape in expected_parameters(net).items():
        if not name.startswith("pretrained."):
            continue
        tv_name = name[len("pretrained."):]
        for pattern, replacement in inverse:
            if re.match(pattern, tv_name):
                tv_name = re.sub(pattern, replacement, tv_name)
                break
        state[tv_name] = rng.randn(*shape).astype(np.float32)
        if tv_name.endswith("running_var"):
            state[tv_name[:-len("running_var")] + "num_batches_tracked"] = np.array(7, np.int64)
    state["fc.weight"] = rng.randn(10, net.cfg.level_widths[3]).astype(np.float32)
    state["fc.bias"] = rng.randn(10).astype(np.float32)
    return state


def test_resnet_imagenet_init_from_a_torchvision_pth(tmp_path):
    net = build_lseg("tiny_resnet", ["others", "cat"], text_config="tiny")
    state = torchvision_state_of(net, np.random.RandomState(7))
    path = str(tmp_path / "resnet_tiny.pth")
    save_torch_file(path, state)
    before = {n: p.asnumpy().copy() for n, p in net.parameters_and_names()}
    loaded = init_backbone_from_pretrained(net, path)
    params = dict(net.parameters_and_names())
    assert set(loaded) == {n for n in before if n.startswith("pretrained.")}
    for ours, theirs in (("pretrained.layer1.0.weight", "conv1.weight"), ("pretrained.layer1.1.running_var",
                                                                          "bn1.running_var"),
                         ("pretrained.layer1.4.0.downsample.1.weight", "layer1.0.downsample.1.weight"),
                         ("pretrained.layer3.0.conv2.weight", "layer3.0.conv2.weight")):
        np.testing.assert_array_equal(params[ours].asnumpy(), state[theirs])
    np.testing.assert_array_equal(params["scratch.head1.weight"].asnumpy(), before["scratch.head1.weight"])
    # build_lseg's backbone_weights and its older spelling vit_weights give the same network.
    for keyword in ("backbone_weights", "vit_weights"):
        other = build_lseg("tiny_resnet", ["others", "cat"], text_config="tiny", **{keyword: path})
        np.testing.assert_array_equal(dict(other.parameters_and_names())["pretrained.layer2.1.conv3.weight"]
                                      .asnumpy(), state["layer2.1.conv3.weight"])


def test_a_torchvision_pth_that_does_not_fit_names_every_bad_entry(tmp_path):
    net = build_lseg("tiny_resnet", ["others", "cat"], text_config="tiny")
    state = torchvision_state_of(net, np.random.RandomState(8))
    del state["layer2.1.bn2.weight"]
    state["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    state["conv1.weight"] = np.zeros((8, 3, 3, 3), np.float32)
    path = str(tmp_path / "bad.pth")
    save_torch_file(path, state)
    before = dict(net.parameters_and_names())["pretrained.layer1.1.weight"].asnumpy().copy()
    with pytest.raises(WeightsError) as error:
        build_lseg("tiny_resnet", ["others", "cat"], text_config="tiny", backbone_weights=path)
    message = str(error.value)
    assert message.startswith(path) and "\n" not in message
    for part in ("missing (1): layer2.1.bn2.weight", "unexpected (1): layer5.0.conv1.weight",
                 "conv1.weight: checkpoint (8, 3, 3, 3) vs network (8, 3, 7, 7)"):
        assert part in message, message
    with pytest.raises(WeightsError):
        init_backbone_from_pretrained(net, path)
    np.testing.assert_array_equal(dict(net.parameters_and_names())["pretrained.layer1.1.weight"].asnumpy(), before)
    with pytest.raises(WeightsError, match="no such file"):
        init_backbone_from_pretrained(net, str(tmp_path / "absent.pth"))


# ---------------------------------------------------------------------------------- parity with lang-seg's ZS nets
def load_zero_shot_parity():
    """Returns: (arrays of parity_zero_shot.npz, its meta: class_names, class_info_a/b, networks)."""
    with np.load(os.path.join(FIXTURES, "parity_zero_shot.npz")) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, json.loads(bytes(arrays.pop("meta")).decode())


ZS_ARRAYS, ZS_META = load_zero_shot_parity()
KINDS = ("vit", "resnet")


def assert_parity(ours, reference, what):
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} vs official {reference.shape}"
    tolerance = 1e-4 * np.abs(reference).max()
    error = np.abs(ours - reference).max()
    assert error <= tolerance, f"{what}: max |d| {error:.3g} > 1e-4 * max|logits| = {tolerance:.3g}"


def official_episode_logits(net, case):
    class_info = ms.Tensor(np.array(ZS_META[f"class_info_{case}"], np.int32))
    return net(ms.Tensor(ZS_ARRAYS[f"images_{case}"]), episode_text_features(net.text_features(), class_info))


@pytest.fixture(scope="module")
def zero_shot_nets(tmp_path_factory):
    """kind -> LSegNet loaded (load_lseg) from our checkpoint, converted from the official one by the CLI."""
    folder = tmp_path_factory.mktemp("zs_parity")
    nets = {}
    for kind in KINDS:
        src, dst = str(folder / f"official_{kind}.ckpt"), str(folder / f"ours_{kind}.ckpt")
        write_full_zero_shot_checkpoint(kind, src)
        assert main([src, dst]) == 0
        loaded = load_lseg(dst, labels=zero_shot_labels(ZS_META["class_names"]))
        assert loaded.network.build_options()["backbone"] == ZS_META["networks"][kind]
        loaded.network.set_train(False)
        nets[kind] = loaded.network
    return nets


@pytest.mark.parametrize("case", ["a", "b"])
@pytest.mark.parametrize("kind", KINDS)
def test_zero_shot_logits_match_the_official_networks(zero_shot_nets, kind, case):
    assert_parity(official_episode_logits(zero_shot_nets[kind], case).asnumpy(), ZS_ARRAYS[f"{kind}_logits_{case}"],
                  f"{kind} case {case}")


def test_the_two_images_of_an_episode_batch_get_their_own_class(zero_shot_nets):
    """class_info really selects the pair: swapping the ids changes the logits (channel 1 differs)."""
    net = zero_shot_nets["resnet"]
    swapped = net(ms.Tensor(ZS_ARRAYS["images_a"]), episode_text_features(
        net.text_features(), ms.Tensor(np.array(ZS_META["class_info_a"][::-1], np.int32)))).asnumpy()
    reference = ZS_ARRAYS["resnet_logits_a"]
    assert np.abs(swapped - reference).max() > 1e-2 * np.abs(reference).max()


@pytest.mark.parametrize("kind,name", [("resnet", "pretrained.layer2.0.conv2.weight"),
                                       ("resnet", "pretrained.layer1.1.running_var"),
                                       ("vit", "scratch.refinenet1.out_conv.weight")])
def test_zero_shot_parity_is_sensitive_to_the_weights(zero_shot_nets, kind, name):
    net = zero_shot_nets[kind]
    param = dict(net.parameters_and_names())[name]
    original = param.asnumpy().copy()
    try:
        param.set_data(ms.Tensor(original * 1.5))
        logits = official_episode_logits(net, "a").asnumpy()
        reference = ZS_ARRAYS[f"{kind}_logits_a"]
        assert np.abs(logits - reference).max() > 1e-4 * np.abs(reference).max()
    finally:
        param.set_data(ms.Tensor(original))


@pytest.mark.parametrize("kind", KINDS)
def test_a_bare_official_state_dict_gets_its_backbone_from_the_weights(tmp_path, kind):
    src = str(tmp_path / "bare.pth")
    write_full_zero_shot_checkpoint(kind, src, hyper=False)
    loaded = load_lseg(src, labels=zero_shot_labels(ZS_META["class_names"]))
    assert loaded.kind == "official" and loaded.network.build_options()["backbone"] == ZS_META["networks"][kind]
    loaded.network.set_train(False)
    assert_parity(official_episode_logits(loaded.network, "b").asnumpy(), ZS_ARRAYS[f"{kind}_logits_b"], kind)


@pytest.mark.parametrize("kind", KINDS)
def test_arch_options_recorded_by_the_zero_shot_module_are_ignored_as_officially(tmp_path, kind):
    """LSegModuleZS records --arch_option/--block_depth, but LSegNetZS/LSegRNNetZS build no block."""
    src, dst = str(tmp_path / "official.ckpt"), str(tmp_path / "ours.ckpt")
    write_full_zero_shot_checkpoint(kind, src, hyper_edit=dict(arch_option=2, block_depth=3, activation="tanh"))
    assert main([src, dst]) == 0
    options = load_lseg(dst).network.build_options()
    assert (options["arch_option"], options["block_depth"]) == (0, 0)


def test_an_unknown_resnet_layout_without_hyper_parameters_names_the_backbone_option(tmp_path, capsys):
    def drop_a_block(state):
        for name in [n for n in state if n.startswith("net.pretrained.layer2.1.")]:
            del state[name]

    src, dst = str(tmp_path / "bare.pth"), str(tmp_path / "ours.ckpt")
    write_full_zero_shot_checkpoint("resnet", src, hyper=False, state_edit=drop_a_block)
    assert main([src, dst]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot tell --backbone" in err and "pretrained.layer1.0.weight" in err, err
    # Given the backbone, the missing block is what is named.
    assert main([src, dst, "--backbone", "tiny_resnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing" in err and "pretrained.layer2.1.conv1.weight" in err, err


def test_an_explicit_arch_option_on_a_resnet_checkpoint_is_refused(tmp_path, capsys):
    src, dst = str(tmp_path / "official.ckpt"), str(tmp_path / "ours.ckpt")
    write_full_zero_shot_checkpoint("resnet", src)
    assert main([src, dst, "--arch-option", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--arch-option 1 was given" in err and err.count("\n") == 0, err
