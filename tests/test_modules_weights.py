"""modules.weights / modules.convert: strict official conversion, our checkpoint format, ViT initialisation,
and the official parameter layout of both real backbones."""
import glob
import json
import os
import re
import sys

import mindspore as ms
import numpy as np
import pytest

from modules import BackboneConfig, LevelResample, LSegNet
from modules.convert import main as convert_main
from modules.factory import load_lseg
from modules.pretrained import init_backbone_from_pretrained
from modules.weights import (
    WeightsError,
    assign_checkpoint_arrays,
    expected_parameters,
    read_lseg_checkpoint,
    save_lseg_checkpoint,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "modules")
sys.path.insert(0, FIXTURES)
from background_commands import runs_for_test  # noqa: E402
from support import check_official_layout, load_parity, write_full_official_checkpoint  # noqa: E402
from vit_layout import vit_values_not_reinitialised  # noqa: E402

pytestmark = pytest.mark.both_stacks

ARRAYS, META = load_parity()


def params_of(net):
    return {name: p.asnumpy() for name, p in net.parameters_and_names() if name != "text_features_cache"}


# ------------------------------------------------------------------------------------------ official conversion
def test_conversion_reports_missing_unexpected_and_mismatched_names(tmp_path, capsys):
    src, dst = str(tmp_path / "official.ckpt"), str(tmp_path / "ours.ckpt")
    write_full_official_checkpoint(
        1, src, drop=["net.scratch.layer2_rn.weight"],
        extra={"net.scratch.layer5_rn.weight": np.zeros((16, 8, 3, 3), np.float16),
               "net.pretrained.act_postprocess3.3.bias": np.zeros((33,), np.float16)})
    assert convert_main([src, dst]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1, "one line: " + message
    assert message.startswith(f"python -m modules.convert: error: {src}: checkpoint does not match the network: ")
    assert "missing (1): scratch.layer2_rn.weight;" in message
    assert "unexpected (1): scratch.layer5_rn.weight;" in message
    assert "shape mismatch (1): pretrained.act_postprocess3.to_level_width.bias: checkpoint (33,) vs network (32,)" \
        in message
    assert not os.path.exists(dst)


def test_float32_and_float16_official_checkpoints_convert_to_the_same_weights(tmp_path):
    half, single = str(tmp_path / "half.ckpt"), str(tmp_path / "single.ckpt")
    write_full_official_checkpoint(2, half)
    write_full_official_checkpoint(2, single, dtype=np.float32)
    assert convert_main([half, str(tmp_path / "a.ckpt")]) == 0
    assert convert_main([single, str(tmp_path / "b.ckpt")]) == 0
    options_a, weights_a, _ = read_lseg_checkpoint(str(tmp_path / "a.ckpt"))
    options_b, weights_b, _ = read_lseg_checkpoint(str(tmp_path / "b.ckpt"))
    assert options_a == options_b
    assert options_a["arch_option"] == 2 and options_a["activation"] == "tanh" and options_a["block_depth"] == 3
    assert options_a["backbone"] == "tiny_vit16" and options_a["text_config"] == "tiny"
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        np.testing.assert_array_equal(weights_a[name], weights_b[name], err_msg=name)
    assert "clip_pretrained.token_embedding.weight" in weights_a
    assert not any(".visual." in name or name.endswith("logit_scale") for name in weights_a)


def test_options_are_inferred_without_hyper_parameters_and_flags_override(tmp_path, capsys):
    from clip_ms.torch_archive import load_torch_file
    from tests.fixtures.torch_writer import save_torch_file
    src = str(tmp_path / "official.ckpt")
    write_full_official_checkpoint(1, src)
    checkpoint = load_torch_file(src)
    del checkpoint["hyper_parameters"]
    save_torch_file(src, checkpoint)
    dst = str(tmp_path / "ours.ckpt")
    # A head block is present but arch 1 and 2 have the same weights: the converter must ask, not guess.
    assert convert_main([src, dst]) == 2
    assert "pass --arch-option" in capsys.readouterr().err
    assert convert_main([src, dst, "--arch-option", "1", "--block-depth", "2"]) == 0
    options = read_lseg_checkpoint(dst)[0]
    assert (options["backbone"], options["arch_option"], options["block_depth"], options["activation"]) == \
        ("tiny_vit16", 1, 2, "lrelu")
    assert options["text_config"] == "tiny"


def test_official_checkpoint_with_the_wrong_architecture_flag_fails(tmp_path, capsys):
    src = str(tmp_path / "official.ckpt")
    write_full_official_checkpoint(0, src)
    assert convert_main([src, str(tmp_path / "x.ckpt"), "--arch-option", "2"]) == 2
    assert "scratch.head_block.label_conv.conv.weight" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ our format
def tiny(arch_option=0, **kwargs):
    return LSegNet("tiny_vit16", labels=["cat", "dog"], text_config="tiny", arch_option=arch_option, **kwargs)


def test_save_load_round_trip_restores_every_weight_and_the_outputs(tmp_path):
    source = tiny(arch_option=1, block_depth=2)
    source.set_train(False)
    path = str(tmp_path / "net.ckpt")
    save_lseg_checkpoint(source, path, extra={"epoch": 7})
    target = tiny(arch_option=1, block_depth=2)
    target.set_train(False)
    options, arrays, resumable = read_lseg_checkpoint(path)
    assign_checkpoint_arrays(target, path, options, arrays)
    assert options["extra"] == {"epoch": 7} and not resumable
    expected = params_of(source)
    for name, value in params_of(target).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    x = ms.Tensor(np.random.RandomState(0).randn(1, 3, 64, 64).astype(np.float32))
    np.testing.assert_array_equal(target(x).asnumpy(), source(x).asnumpy())
    rebuilt = load_lseg(path, labels=["cat", "dog"]).network
    assert rebuilt.build_options() == source.build_options()
    assert glob.glob(str(tmp_path / ".*tmp*")) == []


def test_loading_into_a_network_built_with_other_options_fails_clearly(tmp_path):
    path = str(tmp_path / "net.ckpt")
    save_lseg_checkpoint(tiny(arch_option=1, block_depth=2), path)
    other = tiny(arch_option=2, block_depth=2, activation="tanh")
    before = params_of(other)
    with pytest.raises(WeightsError) as error:
        assign_checkpoint_arrays(other, path, *read_lseg_checkpoint(path)[:2])
    assert "arch_option: checkpoint 1 vs network 2" in str(error.value)
    assert "activation: checkpoint 'lrelu' vs network 'tanh'" in str(error.value)
    after = params_of(other)
    assert all(np.array_equal(after[name], before[name]) for name in before)


def test_non_lseg_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "plain.ckpt")
    ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones(3, np.float32))}], path)
    with pytest.raises(WeightsError, match="not an LSegNet checkpoint"):
        read_lseg_checkpoint(path)
    absent = str(tmp_path / "absent.ckpt")
    with pytest.raises(WeightsError, match="^" + re.escape(absent + ": no such file") + "$"):
        read_lseg_checkpoint(absent)


def test_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    net = tiny()
    path = str(tmp_path / "net.ckpt")
    save_lseg_checkpoint(net, path)
    original = open(path, "rb").read()

    def broken(params, name, **kwargs):
        with open(name, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", broken)
    with pytest.raises(OSError, match="disk full"):
        save_lseg_checkpoint(net, path)
    assert open(path, "rb").read() == original
    assert sorted(os.listdir(tmp_path)) == ["net.ckpt"]


# ------------------------------------------------------------------------------------------ ViT initialisation
W16 = BackboneConfig(name="w16_test", image_size=64, patch_size=16, width=16, depth=4, heads=2, hooks=(0, 1, 2, 3),
                     level_widths=(8, 8, 16, 16),
                     level_resample=(LevelResample("up", 4), LevelResample("up", 2), LevelResample("none"),
                                     LevelResample("down", 2)),
                     features=8, out_dim=64)


def w16_net():
    return LSegNet(W16, labels=["cat"], text_config="tiny")


def timm_state():
    from clip_ms.torch_archive import find_state_dict, load_torch_file
    path = os.path.join(FIXTURES, "timm_vit_w16.pth")
    return find_state_dict(load_torch_file(path), path=path)


def check_vit_matches_timm(net):
    from modules.backbone import resize_pos_embed
    weights = params_of(net)
    state = timm_state()
    np.testing.assert_array_equal(weights["pretrained.model.blocks.2.attn.qkv.weight"],
                                  state["blocks.2.attn.qkv.weight"])
    np.testing.assert_array_equal(weights["pretrained.model.blocks.3.norm2.gamma"], state["blocks.3.norm2.weight"])
    np.testing.assert_array_equal(weights["pretrained.model.patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    # The fixture was trained on a 2x2 grid (32 px); the network's grid is 4x4: resized bilinearly.
    assert state["pos_embed"].shape == (1, 5, 16) and weights["pretrained.model.pos_embed"].shape == (1, 17, 16)
    resized = resize_pos_embed(ms.Tensor(state["pos_embed"]), 4, 4).asnumpy()
    np.testing.assert_allclose(weights["pretrained.model.pos_embed"], resized, atol=1e-6)
    np.testing.assert_array_equal(weights["pretrained.model.pos_embed"][:, 0], state["pos_embed"][:, 0])


def test_init_from_timm_pth_and_jax_npz_agree(tmp_path):
    from_pth, from_jax, from_named_npz = w16_net(), w16_net(), w16_net()
    untouched = params_of(from_pth)["pretrained.act_postprocess1.readout_project.weight"].copy()
    loaded = init_backbone_from_pretrained(from_pth, os.path.join(FIXTURES, "timm_vit_w16.pth"))
    assert "pretrained.model.blocks.0.attn.qkv.weight" in loaded and len(loaded) == 4 * 12 + 6
    check_vit_matches_timm(from_pth)
    np.testing.assert_array_equal(params_of(from_pth)["pretrained.act_postprocess1.readout_project.weight"], untouched)
    init_backbone_from_pretrained(from_jax, os.path.join(FIXTURES, "timm_vit_w16_jax.npz"))
    check_vit_matches_timm(from_jax)
    named = str(tmp_path / "named.npz")
    np.savez(named, **timm_state())
    init_backbone_from_pretrained(from_named_npz, named)
    check_vit_matches_timm(from_named_npz)


def test_init_from_mindcv_checkpoint_and_mismatch_errors(tmp_path):
    source = w16_net()
    init_backbone_from_pretrained(source, os.path.join(FIXTURES, "timm_vit_w16.pth"))
    vit_only = [{"name": name[len("pretrained.model."):], "data": ms.Tensor(p.asnumpy())}
                for name, p in source.parameters_and_names() if name.startswith("pretrained.model.")]
    path = str(tmp_path / "mindcv_vit.ckpt")
    ms.save_checkpoint(vit_only, path)
    target = w16_net()
    init_backbone_from_pretrained(target, path)
    check_vit_matches_timm(target)
    with pytest.raises(WeightsError, match="shape mismatch"):
        init_backbone_from_pretrained(tiny(), os.path.join(FIXTURES, "timm_vit_w16.pth"))


# ------------------------------------------------------------------------------------------ real backbones
def official_layout(backbone):
    with open(os.path.join(FIXTURES, "official_keys.json")) as handle:
        return json.load(handle)[backbone]["entries"]


def check_real_backbone(backbone):
    with vit_values_not_reinitialised():  # the checks read names and shapes only (see vit_layout)
        net = LSegNet(backbone, labels=["cat"], arch_option=1, block_depth=2, text_config="ViT-B/32")
    layout = official_layout(backbone)
    check_official_layout(layout, expected_parameters(net), where=backbone)
    return net, layout


def test_clip_vitb32_384_has_exactly_the_official_parameter_layout():
    net, layout = check_real_backbone("clip_vitb32_384")
    assert layout["pretrained.act_postprocess1.4.weight"] == [96, 96, 8, 8]
    count = sum(int(np.prod(s)) for n, s in expected_parameters(net).items())
    assert count == sum(int(np.prod(s)) for n, s in layout.items() if not n.endswith("num_batches_tracked")
                        and not n.startswith("clip_pretrained.logit_scale"))


@pytest.mark.slow
def test_clip_vitl16_384_has_exactly_the_official_parameter_layout():
    check_real_backbone("clip_vitl16_384")


def test_layout_check_detects_a_wrong_backbone():
    net = LSegNet("tiny_vit16", labels=["cat"], arch_option=1, block_depth=2, text_config="tiny")
    with pytest.raises(WeightsError, match="shape mismatch"):
        check_official_layout(official_layout("clip_vitb32_384"), expected_parameters(net))


@pytest.fixture(scope="module", autouse=True)
def convert_command(request, tmp_path_factory):
    """``python -m modules.convert <official arch-0 checkpoint> <destination>`` from the repository, started in the
    background when the module starts (background_commands), if this session runs the test that reads it."""
    def commands():
        folder = tmp_path_factory.mktemp("convert_command")
        src, dst = str(folder / "official.ckpt"), str(folder / "ours.ckpt")
        write_full_official_checkpoint(0, src)
        return [("convert", [sys.executable, "-m", "modules.convert", src, dst])]

    runs = runs_for_test(request, "test_convert_runs_as_a_module_from_the_command_line", commands,
                         os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    yield runs
    if runs is not None:
        runs.close()


def test_convert_runs_as_a_module_from_the_command_line(convert_command):
    result = convert_command.result("convert")  # python -m modules.convert <official arch-0 checkpoint> <dst>
    dst = result.args[-1]
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "'arch_option': 0" in result.stdout
    assert read_lseg_checkpoint(dst)[0]["backbone"] == "tiny_vit16"
