"""clip_ms.convert: OpenAI TorchScript / state_dict / Lightning checkpoints -> MindSpore .ckpt of the text tower."""
import os
import subprocess
import sys
from collections import OrderedDict

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from clip_ms import CLIPTextEncoder, TextConfig, text_parameter_shapes
from clip_ms.convert import (
    ConversionError,
    convert_file,
    infer_text_config,
    load_text_tower,
    main,
    text_tower_from_state_dict,
)
from clip_ms.torch_archive import TorchArchiveError
from tests.fixtures.torch_writer import save_torch_file

pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "clip_ms")
TOY = TextConfig(vocab_size=1000, context_length=77, width=32, heads=2, layers=2, embed_dim=64)


@pytest.fixture(scope="module")
def openai_expected():
    with np.load(os.path.join(FIXTURES, "openai_tiny_expected.npz")) as data:
        return {k: data[k] for k in data.files}


def ckpt_arrays(path):
    return {name: param.asnumpy() for name, param in ms.load_checkpoint(str(path)).items()}


def encoder_from_ckpt(path, cfg):
    encoder = CLIPTextEncoder(cfg)
    load_text_tower(encoder, ckpt_arrays(path))
    return encoder


@pytest.mark.parametrize("source", ["openai_tiny_jit.pt", "openai_tiny_legacy.pth"])
def test_openai_files_convert_and_match_openai_encode_text(tmp_path, source, openai_expected):
    dst = tmp_path / "text.ckpt"
    cfg, tower = convert_file(os.path.join(FIXTURES, source), dst)
    assert cfg.width == 32 and cfg.layers == 2 and cfg.vocab_size == 1000 and cfg.embed_dim == 64
    saved = ckpt_arrays(dst)
    assert list(saved) == list(text_parameter_shapes(TOY)) == list(tower)
    for name, value in saved.items():
        assert value.dtype == np.float32, name  # float16 weights of the TorchScript file are cast
        np.testing.assert_array_equal(value, openai_expected["sd/" + name], err_msg=name)
    encoder = encoder_from_ckpt(dst, TOY)
    features = encoder(Tensor(openai_expected["ids"])).asnumpy()
    expected = openai_expected["features"]
    assert np.abs(features - expected).max() / np.abs(expected).max() < 1e-5


def test_round_trip_from_our_encoder_through_a_torch_file(tmp_path):
    source = CLIPTextEncoder("tiny")
    weights = OrderedDict((name, source.parameters_dict()[name].asnumpy().astype(np.float16))
                          for name in text_parameter_shapes(source.cfg))
    full = OrderedDict(weights)
    full["visual.proj"] = np.zeros((4, 4), np.float16)
    full["logit_scale"] = np.array(4.6, np.float32)
    src, dst = tmp_path / "ViT-tiny.pt", tmp_path / "tiny.ckpt"
    save_torch_file(src, full, tensors_as_parameters=True)
    assert main([str(src), str(dst), "--config", "tiny"]) == 0
    restored = encoder_from_ckpt(dst, "tiny")
    for name, value in weights.items():
        np.testing.assert_array_equal(restored.parameters_dict()[name].asnumpy(), value.astype(np.float32))
    assert all(not p.requires_grad for p in restored.get_parameters())
    ids = np.zeros((2, 77), np.int32)
    ids[:, :4] = [[49406, 320, 1125, 49407], [49406, 9, 49407, 0]]
    reference = CLIPTextEncoder("tiny")
    load_text_tower(reference, {k: v.astype(np.float32) for k, v in weights.items()})
    np.testing.assert_array_equal(restored(Tensor(ids)).asnumpy(), reference(Tensor(ids)).asnumpy())


def test_lightning_checkpoint_with_lseg_prefix(tmp_path, openai_expected):
    tower = {k[3:]: v for k, v in openai_expected.items() if k.startswith("sd/")}
    state = OrderedDict(("net.clip_pretrained." + k, v.astype(np.float16)) for k, v in tower.items())
    state["net.clip_pretrained.visual.conv1.weight"] = np.zeros((2, 3, 1, 1), np.float16)
    state["net.clip_pretrained.logit_scale"] = np.array(4.6, np.float32)
    state["net.pretrained.model.cls_token"] = np.zeros((1, 1, 8), np.float32)
    state["net.scratch.head1.weight"] = np.zeros((4, 4), np.float32)
    ckpt = {"epoch": 10, "global_step": 100, "state_dict": state, "hyper_parameters": {"backbone": "clip_vitb32_384"}}
    src, dst = tmp_path / "lseg.ckpt.pt", tmp_path / "clip_text.ckpt"
    save_torch_file(src, ckpt)
    convert_file(src, dst)  # prefix "net.clip_pretrained." detected
    saved = ckpt_arrays(dst)
    assert list(saved) == list(tower)
    np.testing.assert_array_equal(saved["text_projection"], tower["text_projection"].astype(np.float16)
                                  .astype(np.float32))
    # The library entry point modules' converter uses:
    again = text_tower_from_state_dict(state, TOY, prefix="net.clip_pretrained.")
    assert list(again) == list(tower)


def test_strict_listing_of_missing_unexpected_and_mismatched(openai_expected):
    tower = OrderedDict((k[3:], v) for k, v in openai_expected.items() if k.startswith("sd/"))
    assert list(text_tower_from_state_dict(tower, TOY)) == list(tower)
    broken = OrderedDict(tower)
    del broken["ln_final.bias"]
    del broken["transformer.resblocks.1.mlp.c_fc.weight"]
    broken["transformer.resblocks.2.ln_1.weight"] = np.ones(32, np.float32)
    broken["text_projection"] = np.zeros((32, 16), np.float32)
    broken["positional_embedding"] = broken["positional_embedding"].astype(np.int64)
    with pytest.raises(ConversionError) as info:
        text_tower_from_state_dict(broken, TOY, source="broken.pt")
    message = str(info.value)
    assert message.startswith("broken.pt does not match the CLIP text tower")
    assert "missing (2): ln_final.bias, transformer.resblocks.1.mlp.c_fc.weight" in message
    assert "unexpected (1): transformer.resblocks.2.ln_1.weight" in message
    assert "shape mismatch (1): text_projection (32, 16) (expected (32, 64))" in message
    assert "not floating point (1): positional_embedding dtype int64" in message
    with pytest.raises(ConversionError, match="unknown --config 'ViT-H/14'"):
        text_tower_from_state_dict(tower, "ViT-H/14")


def test_config_mismatch_and_wrong_encoder(openai_expected):
    tower = OrderedDict((k[3:], v) for k, v in openai_expected.items() if k.startswith("sd/"))
    with pytest.raises(ConversionError, match=r"token_embedding.weight \(1000, 32\) \(expected \(49408, 32\)\)"):
        text_tower_from_state_dict(tower, "tiny")
    with pytest.raises(ConversionError, match="do not fit the encoder"):
        load_text_tower(CLIPTextEncoder("tiny"), tower)
    cfg = infer_text_config({"x." + k: v for k, v in tower.items()}, prefix="x.")
    assert (cfg.vocab_size, cfg.width, cfg.layers, cfg.embed_dim, cfg.context_length) == (1000, 32, 2, 64, 77)


def test_bad_sources(tmp_path):
    not_zip = tmp_path / "ViT-B-32.pt"
    not_zip.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(TorchArchiveError, match="ViT-B-32.pt"):
        convert_file(not_zip, tmp_path / "out.ckpt")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(open(os.path.join(FIXTURES, "openai_tiny_jit.pt"), "rb").read()[:50000])
    with pytest.raises(TorchArchiveError, match="cut.pt"):
        convert_file(truncated, tmp_path / "out.ckpt")
    no_clip = tmp_path / "resnet.pt"
    save_torch_file(no_clip, {"conv1.weight": np.zeros((2, 3, 1, 1), np.float32)})
    with pytest.raises(ConversionError, match="resnet.pt holds no CLIP text tower"):
        convert_file(no_clip, tmp_path / "out.ckpt")
    with pytest.raises(ConversionError, match="must end in .ckpt"):
        convert_file(os.path.join(FIXTURES, "openai_tiny_jit.pt"), tmp_path / "out.bin")
    assert not (tmp_path / "out.ckpt").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp_")]


def test_command_line(tmp_path):
    dst = tmp_path / "text.ckpt"
    env = dict(os.environ, PYTHONPATH=REPO)
    ok = subprocess.run([sys.executable, "-m", "clip_ms.convert", os.path.join(FIXTURES, "openai_tiny_jit.pt"),
                         str(dst)], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "wrote %s: 29 tensors" % dst in ok.stdout
    assert dst.exists()
    bad = subprocess.run([sys.executable, "-m", "clip_ms.convert", os.path.join(FIXTURES, "openai_tiny_jit.pt"),
                          str(tmp_path / "b.ckpt"), "--config", "ViT-B/32"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "shape mismatch" in bad.stderr and "missing (120)" in bad.stderr
    assert not (tmp_path / "b.ckpt").exists()
