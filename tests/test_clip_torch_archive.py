"""clip_ms.torch_archive: reading real torch.save / torch.jit.save files without torch, files of the test writer
(tests/fixtures/torch_writer.py) read back exactly, bad files."""
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from clip_ms.torch_archive import (
    TorchArchiveError,
    TorchScriptObject,
    UnresolvedObject,
    find_state_dict,
    load_torch_file,
)
from tests.fixtures.torch_writer import make_torchscript_object, save_torch_file, save_torchscript_like

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "clip_ms")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "expected.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", ["eager_zip.pt", "eager_legacy.pt"])
def test_real_torch_save_files_read_exactly(name, expected):
    obj = load_torch_file(os.path.join(FIXTURES, name))
    state = obj["state_dict"]
    assert isinstance(state, OrderedDict)
    names = [k[4:] for k in expected if k.startswith("obj/")]
    assert list(state) == names
    for key in names:
        want = expected["obj/" + key]
        assert state[key].dtype == want.dtype, key
        assert state[key].shape == want.shape, key
        np.testing.assert_array_equal(state[key], want, err_msg=key)
        assert state[key].flags["C_CONTIGUOUS"]
    assert state["layer.half"].dtype == np.float16
    assert state["layer.bf16"].dtype == np.float32  # bfloat16 widened exactly
    assert state["view.transposed"].shape == (6, 4)
    assert state["scalar"].shape == ()
    assert obj["epoch"] == 3 and obj["global_step"] == 1234 and obj["lr"] == 0.004
    assert obj["hyper_parameters"] == {"backbone": "clip_vitl16_384", "widths": [1, 2], "pair": (1, "a"),
                                       "none": None}
    assert obj["blob"] == b"\x00\x01"
    assert isinstance(obj["hparams_attr"], UnresolvedObject) and isinstance(obj["hparams_attr"], dict)
    assert dict(obj["hparams_attr"]) == {"lr": 0.1, "layers": [1, 2]}
    assert obj["hparams_attr"].get("lr") == 0.1
    assert obj["labels"].list_items == ["wall", "sky"]
    assert obj["args"].qualified_name == "argparse.Namespace"
    assert obj["args"].backbone == "clip_vitl16_384" and obj["args"].base_lr == 0.004
    assert list(find_state_dict(obj)) == names


def test_real_torchscript_archive_gives_state_dict_in_torch_order(expected):
    state = load_torch_file(os.path.join(FIXTURES, "scripted.pt"))
    names = [k[4:] for k in expected if k.startswith("jit/")]
    assert list(state) == names  # parameters + buffers only: the plain `mask` attribute is not there
    assert not any(k.endswith("mask") for k in state)
    for key in names:
        assert state[key].dtype == expected["jit/" + key].dtype, key
        np.testing.assert_array_equal(state[key], expected["jit/" + key], err_msg=key)
    assert state["blocks.1.proj.weight"].dtype == np.float16


def test_torchscript_objects_mode_keeps_the_module_tree():
    root = load_torch_file(os.path.join(FIXTURES, "scripted.pt"), torchscript="objects")
    assert isinstance(root, TorchScriptObject)
    assert root.qualified_name.startswith("__torch__")
    block = root.blocks
    assert isinstance(block, TorchScriptObject)
    assert root.blocks.state["0"].mask.shape == (3, 3)
    assert find_state_dict(root)["head"].shape == (4, 2)


def test_writer_round_trip_all_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    state = OrderedDict([
        ("f32", rng.standard_normal((3, 4)).astype(np.float32)),
        ("f16", rng.standard_normal(5).astype(np.float16)),
        ("f64", rng.standard_normal((2, 1, 2))),
        ("i64", np.array([-1, 2 ** 40], dtype=np.int64)),
        ("i32", np.arange(3, dtype=np.int32)),
        ("b", np.array([True, False])),
        ("u8", np.arange(4, dtype=np.uint8)),
        ("zero_d", np.array(1.5, dtype=np.float32)),
        ("empty", np.zeros((0, 2), dtype=np.float32)),
        ("strided", np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]),
    ])
    obj = {"state_dict": state, "meta": {"epoch": 2, "big": -2 ** 70, "f": 0.5, "s": "é", "raw": b"\xff",
                                         "l": [None, True, (1,)]}}
    path = tmp_path / "roundtrip.pt"
    for as_param in (False, True):
        save_torch_file(path, obj, tensors_as_parameters=as_param)
        back = load_torch_file(path)
        assert back["meta"] == obj["meta"]
        assert list(back["state_dict"]) == list(state)
        for key, value in state.items():
            assert back["state_dict"][key].dtype == value.dtype
            np.testing.assert_array_equal(back["state_dict"][key], value)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "archive/data.pkl" in names and "archive/version" in names
        for info in archive.infolist():
            if info.filename.startswith("archive/data/"):
                data_start = info.header_offset + 30 + len(info.filename) + len(info.extra)
                assert data_start % 64 == 0, info.filename  # torch's mmap loader needs aligned storages


def test_torchscript_like_writer_and_reader(tmp_path):
    rng = np.random.default_rng(2)
    lin = make_torchscript_object("__torch__.torch.nn.modules.linear.Linear",
                                  {"weight": rng.standard_normal((2, 3)).astype(np.float16),
                                   "bias": rng.standard_normal(2).astype(np.float16), "training": False},
                                  parameters=["weight", "bias"])
    root = make_torchscript_object("__torch__.model.Net",
                                   {"extra": np.ones(2, np.float32), "lin": lin, "scale": np.zeros(1, np.float32),
                                    "training": False, "note": "x"},
                                   parameters=["scale"], buffers=["extra"])
    path = tmp_path / "script.pt"
    save_torchscript_like(path, root)
    state = load_torch_file(path)
    assert list(state) == ["scale", "extra", "lin.weight", "lin.bias"]
    np.testing.assert_array_equal(state["lin.weight"], lin.weight)
    assert state["lin.weight"].dtype == np.float16


def test_unknown_globals_are_never_called(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > %s" % (tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    obj = load_torch_file(path)
    assert isinstance(obj["x"], UnresolvedObject)
    assert obj["x"].qualified_name.endswith("system")
    assert not (tmp_path / "pwned").exists()


def _expect_error(path, *fragments):
    with pytest.raises(TorchArchiveError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_bad_files_give_clear_errors(tmp_path):
    _expect_error(tmp_path / "missing.pt", "no such file")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _expect_error(empty, "empty")
    text = tmp_path / "text.pt"
    text.write_text("hello, I am not a checkpoint\n")
    _expect_error(text, "not a torch checkpoint")
    wrong_pickle = tmp_path / "plain.pkl"
    wrong_pickle.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    _expect_error(wrong_pickle, "magic number")
    no_data = tmp_path / "nodata.pt"
    with zipfile.ZipFile(no_data, "w") as archive:
        archive.writestr("archive/other.txt", "x")
    _expect_error(no_data, "data.pkl")
    missing_storage = tmp_path / "nostorage.pt"
    save_torch_file(missing_storage, {"w": np.ones(3, np.float32)})
    with zipfile.ZipFile(missing_storage) as src, zipfile.ZipFile(tmp_path / "cut.pt", "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("archive/data/"):
                dst.writestr(info.filename, src.read(info.filename))
    _expect_error(tmp_path / "cut.pt", "archive/data/0", "missing")


@pytest.mark.parametrize("name", ["eager_zip.pt", "eager_legacy.pt", "scripted.pt"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_real_files_give_clear_errors(tmp_path, name, fraction):
    data = open(os.path.join(FIXTURES, name), "rb").read()
    cut = tmp_path / ("cut_" + name)
    cut.write_bytes(data[: int(len(data) * fraction)])
    _expect_error(cut)


def test_find_state_dict_lightning_and_errors():
    weights = OrderedDict([("a.weight", np.ones(2, np.float32)), ("a.bias", np.zeros(2, np.float32))])
    assert list(find_state_dict({"state_dict": weights, "epoch": 1})) == ["a.weight", "a.bias"]
    assert list(find_state_dict({"model": weights})) == ["a.weight", "a.bias"]
    mixed = {"a.weight": np.ones(2, np.float32), "a.bias": np.zeros(2, np.float32), "step": 3}
    assert list(find_state_dict(mixed)) == ["a.weight", "a.bias"]  # non-array entries dropped
    with pytest.raises(TorchArchiveError, match="top-level keys: epoch, lr"):
        find_state_dict({"epoch": 1, "lr": 0.1}, path="ckpt.pt")


def test_torchscript_class_without_declarations_falls_back_to_array_attributes(tmp_path):
    root = make_torchscript_object("__torch__.model.Old", {"w": np.ones(2, np.float32), "note": 3})
    path = tmp_path / "old.pt"
    save_torchscript_like(path, root)
    # Rewrite the code file as an archive without __parameters__/__buffers__ lines (older exporters).
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "old2.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if "/code/" in info.filename:
                data = b"class Old(Module):\n  w : Tensor\n"
            dst.writestr(info.filename, data)
    assert list(load_torch_file(tmp_path / "old2.pt")) == ["w"]
    assert list(load_torch_file(path)) == []  # declared: no parameters, no buffers


def test_torch_file_format_tells_zip_legacy_and_other_files_apart(tmp_path):
    from clip_ms.torch_archive import torch_file_format

    assert torch_file_format(os.path.join(FIXTURES, "eager_zip.pt")) == "zip"
    assert torch_file_format(os.path.join(FIXTURES, "openai_tiny_jit.pt")) == "zip"
    assert torch_file_format(os.path.join(FIXTURES, "eager_legacy.pt")) == "legacy"
    for name, content in (("text.ckpt", b"PLAIN text"), ("empty.ckpt", b"")):
        (tmp_path / name).write_bytes(content)
        assert torch_file_format(str(tmp_path / name)) is None
