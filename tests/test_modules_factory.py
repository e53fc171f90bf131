"""modules.factory: building from option values, text-tower loading, telling checkpoint kinds apart, and
building the network any kind holds (load_lseg, also for files of the earlier layouts)."""
import json
import os
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from foundation.checkpoint_file import CheckpointError, check_resumable, load_checkpoint, save_checkpoint
from modules.convert import convert_official_checkpoint
from modules.factory import (
    OFFICIAL,
    TRAINING,
    WEIGHTS,
    ArgumentError,
    build_lseg,
    checkpoint_kind,
    load_lseg,
    load_text_encoder_weights,
)
from modules.weights import save_lseg_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "modules")
sys.path.insert(0, FIXTURES)
from support import load_parity, official_tiny_path, write_full_official_checkpoint  # noqa: E402

pytestmark = pytest.mark.both_stacks

LABELS = ["cat", "dog", "other"]


def tiny(seed: int, **kwargs):
    ms.set_seed(seed)
    np.random.seed(seed)
    return build_lseg("tiny_vit16", LABELS, text_config="tiny", **kwargs)


def weights_of(net):
    return {name: p.asnumpy().copy() for name, p in net.parameters_and_names() if name != "text_features_cache"}


def differing(a, b):
    return sorted(name for name in a if not np.array_equal(a[name], b[name]))


@pytest.mark.parametrize("argument, kwargs", [("backbone", {"backbone": "vit_huge"}),
                                              ("text_config", {"text_config": "RN50"})])
def test_build_names_the_unknown_argument(argument, kwargs):
    args = {"backbone": "tiny_vit16", "labels": LABELS, "text_config": "tiny", **kwargs}
    with pytest.raises(ArgumentError, match="^" + argument + ": .*" + list(kwargs.values())[0]) as caught:
        build_lseg(**args)
    assert caught.value.argument == argument
    assert caught.value.describe("--" + argument).startswith("--%s: " % argument)  # how a script names it


def test_text_encoder_weights_load_with_or_without_prefix_and_refresh_the_text_cache(tmp_path):
    source, target = tiny(1), tiny(2)
    source.set_train(False)
    target.set_train(False)
    images = ms.Tensor(np.random.RandomState(0).randn(1, 3, 64, 64).astype(np.float32))
    target(images)  # fills the text cache with the old tower's features
    for prefixed in (True, False):
        path = str(tmp_path / ("text_%s.ckpt" % prefixed))
        params = [{"name": p.name if prefixed else p.name[len("clip_pretrained."):], "data": p}
                  for p in source.clip_pretrained.get_parameters()]
        ms.save_checkpoint(params, path)
        load_text_encoder_weights(target, path)
        np.testing.assert_array_equal(target.encode_text(LABELS).asnumpy(), source.encode_text(LABELS).asnumpy())
    # the cached features were recomputed: the logits follow the new text tower
    features = target.encode_text(LABELS)
    np.testing.assert_allclose(target(images).asnumpy(), target(images, features).asnumpy(), rtol=1e-6, atol=1e-6)


def test_text_encoder_weights_that_do_not_fit_change_nothing(tmp_path):
    source, target = tiny(1), tiny(2)
    params = [{"name": p.name, "data": p} for p in source.clip_pretrained.get_parameters()]
    dropped = params[-1]["name"][len("clip_pretrained."):]
    path = str(tmp_path / "partial.ckpt")
    ms.save_checkpoint(params[:-1], path)
    before = weights_of(target)
    with pytest.raises(ArgumentError) as error:
        load_text_encoder_weights(target, path)
    assert error.value.describe("--clip_weights").startswith("--clip_weights: " + path)
    assert dropped in str(error.value)
    assert differing(before, weights_of(target)) == []


def momentum(net):
    return nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)


def test_checkpoint_kinds_are_told_apart_by_content_and_each_loads(tmp_path):
    source = tiny(1)
    weights_path = str(tmp_path / "weights.ckpt")
    training_path = str(tmp_path / "training.ckpt")
    save_lseg_checkpoint(source, weights_path)
    save_checkpoint(training_path, source, momentum(source), epoch=3, options=source.build_options())
    assert checkpoint_kind(official_tiny_path(1)) == OFFICIAL
    assert checkpoint_kind(weights_path) == WEIGHTS
    assert checkpoint_kind(training_path) == TRAINING
    expected = weights_of(source)
    for path in (weights_path, training_path):
        assert differing(expected, weights_of(tiny(2))) != []
        assert differing(expected, weights_of(load_lseg(path).network)) == [], path


def write_earlier_layouts(net, optimizer, folder):
    """Files as the two earlier writers made them: (weights file, training file of format 1)."""
    weights, training = os.path.join(folder, "weights_v1.ckpt"), os.path.join(folder, "training_v1.ckpt")
    record = dict(net.build_options(), format_version=1, labels=["a", "b", "c"])
    ms.save_checkpoint([{"name": name, "data": ms.Tensor(p.asnumpy())} for name, p in net.parameters_and_names()
                        if name != "text_features_cache"], weights,
                       append_dict={"lseg_build_options": json.dumps(record)})
    entries = [{"name": p.name, "data": p} for p in net.get_parameters()]
    network_ids = {id(p) for p in net.get_parameters()}
    entries += [{"name": "optimizer." + p.name, "data": p} for p in optimizer.get_parameters()
                if id(p) not in network_ids]
    options = dict(net.build_options(), label_names=LABELS)
    ms.save_checkpoint(entries, training, append_dict={"lseg_ckpt_format": 1, "epoch": 4,
                                                       "options_json": json.dumps(options),
                                                       "metrics_json": json.dumps({"mIoU": 0.5})})
    return weights, training


def test_files_of_the_earlier_layouts_still_load_and_resume(tmp_path):
    source = tiny(1)
    optimizer = momentum(source)
    for moment in optimizer.moments:
        moment.set_data(ms.Tensor(np.full(moment.shape, 0.25, np.float32)))
    weights, training = write_earlier_layouts(source, optimizer, str(tmp_path))
    assert (checkpoint_kind(weights), checkpoint_kind(training)) == (WEIGHTS, TRAINING)
    expected = weights_of(source)
    loaded_weights, loaded_training = load_lseg(weights), load_lseg(training)
    assert loaded_weights.labels == ["a", "b", "c"] and loaded_training.labels == LABELS
    for loaded in (loaded_weights, loaded_training):
        assert differing(expected, weights_of(loaded.network)) == []
    with pytest.raises(CheckpointError, match="holds network weights without optimizer state"):
        check_resumable(weights)
    check_resumable(training)
    resumed = tiny(2)
    resumed_optimizer = momentum(resumed)
    record = load_checkpoint(training, resumed, resumed_optimizer)
    assert (record["epoch"], record["metrics"], record["options"]["label_names"]) == (4, {"mIoU": 0.5}, LABELS)
    assert all(np.all(moment.asnumpy() == 0.25) for moment in resumed_optimizer.moments)
    assert differing(expected, weights_of(resumed)) == []


def test_official_checkpoint_loads_with_parity_given_the_options_it_holds(tmp_path):
    arrays, meta = load_parity()
    src = str(tmp_path / "official1.ckpt")
    write_full_official_checkpoint(1, src)
    options = convert_official_checkpoint(src, str(tmp_path / "ours.ckpt")).build_options()
    net = load_lseg(src, labels=meta["labels_a"], backbone=options["backbone"], arch_option=options["arch_option"],
                    block_depth=options["block_depth"], activation=options["activation"],
                    text_config=options["text_config"]).network
    assert net.build_options() == options
    net.set_train(False)
    logits = net(ms.Tensor(arrays["images_a"])).asnumpy()
    reference = arrays["arch1_logits_a"]
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


def test_weights_files_record_labels_only_when_told(tmp_path):
    """A converted official file (the ADE20K model) records no label list: loaders use the 150 ADE20K names, not the
    placeholder list the conversion built the network with."""
    net = tiny(1)
    plain, labelled = str(tmp_path / "plain.ckpt"), str(tmp_path / "labelled.ckpt")
    save_lseg_checkpoint(net, plain)
    save_lseg_checkpoint(net, labelled, labels=["cat", "grass"])
    assert load_lseg(plain).labels is None and len(load_lseg(plain).network.labels) == 150
    loaded = load_lseg(labelled)
    assert loaded.labels == ["cat", "grass"] and loaded.network.labels == ["cat", "grass"]
    official, converted = str(tmp_path / "official0.ckpt"), str(tmp_path / "converted.ckpt")
    write_full_official_checkpoint(0, official)
    convert_official_checkpoint(official, converted)
    assert load_lseg(converted).labels is None
