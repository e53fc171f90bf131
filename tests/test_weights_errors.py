"""Bad weights files and official architecture options (issue 13, items 10 and 11).

Every bad file given as ``--weights`` (modules.factory / modules.weights), to ``python -m modules.convert`` or to
``--resume`` (foundation.checkpoint_file.load_checkpoint) must end in one exception of one type whose message starts
with the file's path and says what is wrong, and the command line must print one stderr line, no traceback and no
MindSpore ERROR log line. Official checkpoints with the spatial regularisation block need ``block_depth`` when
their weights cannot tell it, and refuse explicit options they contradict.
"""
import builtins
import errno
import io
import os
import pickle
import re
import sys
import zipfile

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from PIL import Image

import test as test_script
from clip_ms.torch_archive import TorchArchiveError, load_torch_file
from foundation import platform
from foundation.checkpoint_file import (
    CheckpointError,
    check_resumable,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from modules.convert import build_lseg_from_official, convert_official_checkpoint
from modules.convert import main as convert_main
from modules.factory import build_lseg, checkpoint_kind, load_lseg
from modules.pretrained import init_backbone_from_pretrained
from modules.weights import (
    RecordedOptionConflict,
    WeightsError,
    WeightsOptionError,
    load_mindspore_checkpoint,
    read_lseg_checkpoint,
    save_lseg_checkpoint,
)
from tests.fixtures.torch_writer import save_torch_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures", "modules"))
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from background_commands import BackgroundRuns, selected_tests  # noqa: E402
from support import load_parity, official_tiny_path, write_full_official_checkpoint  # noqa: E402
from toys import ToySegNet  # noqa: E402

STACK_INDEPENDENT = ("our structural check reads a weights file before MindSpore does and names what is wrong; "
                     "the two tests of MindSpore's own reading and logging are marked both_stacks, and loading that "
                     "reaches MindSpore is tested per stack in test_modules_factory and test_cross_stack")

ARRAYS, META = load_parity()
LABELS = ["cat", "dog", "other"]


def tiny(**kwargs):
    return build_lseg("tiny_vit16", LABELS, text_config="tiny", **kwargs)


def weights_of(net):
    return {name: p.asnumpy().copy() for name, p in net.parameters_and_names() if name != "text_features_cache"}


# ------------------------------------------------------------------------------------------ bad files
def write_bad_files(folder):
    """Returns: case name -> (path, regex the message must match right after "<path>: ")."""
    folder = str(folder)
    files = {}

    def add(name, expected, data=None):
        path = os.path.join(folder, name + ".ckpt")
        if data is not None:
            with open(path, "wb") as handle:
                handle.write(data)
        files[name] = (path, expected)
        return path

    add("empty", r"empty file \(0 bytes\), not a checkpoint$", b"")
    random_bytes = np.random.RandomState(0).bytes(4096)
    assert random_bytes[:1] not in (b"\x0a", b"\x80", b"P")  # neither protobuf, pickle nor zip by chance
    add("random", r"not a MindSpore checkpoint: unrecognised content \(first bytes ac0a7f8c2faac497\)$", random_bytes)
    add("text", r"not a MindSpore checkpoint: a text file \(starts with 'model: lseg", b"model: lseg\nepochs: 3\n" * 9)
    whole = os.path.join(folder, "whole_lseg.ckpt")
    save_lseg_checkpoint(tiny(), whole)
    with open(whole, "rb") as handle:
        data = handle.read()
    add("truncated", r"truncated: entry \d+ \([\w.]+\) ends at byte \d+, the file has %d bytes$" % (len(data) // 2),
        data[:len(data) // 2])
    with open(official_tiny_path(0), "rb") as handle:
        official = handle.read()
    add("truncated_official", r"damaged zip archive .*the file is probably truncated$", official[:len(official) // 2])
    zipped = add("zip", r"zip archive has no <folder>/data.pkl record, so it is not a torch.save/torch.jit.save file "
                        r"\(records: notes.txt\)$")
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    dense = add("dense", r"a MindSpore checkpoint of something else, not an LSegNet checkpoint .*; "
                         r"its entries: weight, bias$")
    ms.save_checkpoint(nn.Dense(3, 4), dense)
    os.makedirs(add("directory", r"is a directory, not a checkpoint file$"))
    add("absent", r"no such file$")
    return files


BAD = ["empty", "random", "text", "truncated", "truncated_official", "zip", "dense", "directory", "absent"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return write_bad_files(tmp_path_factory.mktemp("bad"))


def assert_message(error, path, expected):
    message = str(error)
    assert "\n" not in message, message
    assert message.startswith(path + ": "), message
    assert re.search(expected, message[len(path) + 2:]), message


@pytest.mark.parametrize("case", BAD)
def test_bad_weights_file_is_one_weights_error_naming_the_file(bad_files, case):
    path, expected = bad_files[case]
    with pytest.raises(WeightsError) as error:
        load_lseg(path)
    assert_message(error.value, path, expected)
    if case not in ("truncated_official", "zip"):  # torch files: checkpoint_kind says "official", reading fails
        with pytest.raises(WeightsError) as error:
            checkpoint_kind(path)
        assert_message(error.value, path, expected)


@pytest.mark.parametrize("case", BAD)
def test_bad_file_as_our_weights_format_names_the_file(bad_files, case):
    """The reader of our weights format (read_lseg_checkpoint)."""
    path, expected = bad_files[case]
    if case in ("truncated_official", "zip"):
        expected = r"a PyTorch file \(an official lang-seg checkpoint\?\), not our MindSpore .ckpt"
    with pytest.raises(WeightsError) as error:
        read_lseg_checkpoint(path)
    assert_message(error.value, path, expected)


@pytest.mark.parametrize("case", BAD)
def test_bad_file_given_to_resume_is_one_checkpoint_error_naming_the_file(bad_files, case):
    path, expected = bad_files[case]
    if case in ("truncated_official", "zip"):
        expected = r"not a MindSpore checkpoint: a zip archive \(torch.save writes these"
    if case == "dense":
        expected = r"not a checkpoint of ours \(no lseg_record entry; it holds 2 entries such as bias, weight\)"
    net = ToySegNet()
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, net, optimizer)
    assert_message(error.value, path, expected)


_LOAD_EACH = r"""
import os
import sys
sys.path.insert(0, sys.argv[1])
from modules import tnn
from foundation.checkpoint_file import CheckpointError, load_checkpoint
from modules.factory import build_lseg, load_lseg
from modules.weights import WeightsError
net = build_lseg("tiny_vit16", ["cat", "other"], text_config="tiny")
for path in sys.argv[2:]:
    for load in (lambda: load_lseg(path), lambda: load_checkpoint(path, net)):
        try:
            load()
        except (WeightsError, CheckpointError) as error:
            print(type(error).__name__, str(error).startswith(path + ": "), flush=True)
# Skip interpreter teardown: MindSpore 2.10's Cell.__del__ then prints "Exception ignored" tracebacks to stderr.
os._exit(0)
"""


@pytest.mark.both_stacks
def test_mindspore_logs_nothing_for_bad_files(bad_files, command_runs):
    """MindSpore's load_checkpoint logs its own ERROR line on stderr ("May not have permission to read it"); the
    structure check must stop every bad file before it. A separate process: MindSpore's logger writes to the stderr
    of the process, which pytest's capture does not see in-process."""
    paths = [bad_files[case][0] for case in BAD]
    result = command_runs.result("load_each")  # python -c _LOAD_EACH REPO <the paths>
    assert result.args[-len(paths):] == paths
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["WeightsError True", "CheckpointError True"] * len(paths)


@pytest.mark.both_stacks
def test_the_structure_check_accepts_every_checkpoint_mindspore_writes(tmp_path):
    """No false alarm: our format with and without optimizer state, and crc_check files load."""
    net = ToySegNet()
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    path = save_checkpoint(str(tmp_path / "train.ckpt"), net, optimizer, epoch=2, options={"note": "x"})
    fresh = ToySegNet()
    assert load_checkpoint(path, fresh, nn.Momentum(fresh.trainable_params(), 0.1, 0.9))["epoch"] == 2
    source = tiny()
    save_lseg_checkpoint(source, str(tmp_path / "weights.ckpt"))
    target = load_lseg(str(tmp_path / "weights.ckpt")).network
    assert weights_of(target).keys() == weights_of(source).keys()
    if platform.MINDSPORE_VERSION >= (2, 1):  # save_checkpoint(crc_check=True) appends a CRC record
        crc = str(tmp_path / "crc.ckpt")
        ms.save_checkpoint(net, crc, crc_check=True)
        assert load_checkpoint(crc, ToySegNet())["format"] is None


# ------------------------------------------------------------------------------------------ command lines
def convert_command(src, dst, *flags):
    return [sys.executable, "-m", "modules.convert", src, dst, *flags]


_ALREADY_CONVERTED = "test_convert_command_names_an_already_converted_checkpoint_and_a_wrong_backbone"
_CLIP_CONVERT = "test_clip_convert_command_prints_one_line_for_a_directory_and_a_mismatch"
COMMAND_TESTS = {  # command key -> (the test that reads its run, that test's parameter id)
    "load_each": ("test_mindspore_logs_nothing_for_bad_files", None),
    **{("convert", case): ("test_convert_command_prints_one_line_for_a_bad_file", case) for case in BAD},
    "already_converted": (_ALREADY_CONVERTED, None),
    "wrong_backbone": (_ALREADY_CONVERTED, None),
    "clip_directory": (_CLIP_CONVERT, None),
    "clip_mismatch": (_CLIP_CONVERT, None),
}


def command_line(key, folder, bad_files):
    """Returns: the argument list of the command ``key`` (:data:`COMMAND_TESTS`); ``folder`` holds its outputs."""
    if key == "load_each":
        return [sys.executable, "-c", _LOAD_EACH, REPO, *[bad_files[case][0] for case in BAD]]
    if key[0] == "convert":
        return convert_command(bad_files[key[1]][0], os.path.join(folder, "out_%s.ckpt" % key[1]))
    if key == "already_converted":
        return convert_command(os.path.join(folder, "ours.ckpt"), os.path.join(folder, "out.ckpt"))
    if key == "wrong_backbone":
        return convert_command(official_tiny_path(0), os.path.join(folder, "out_b32.ckpt"), "--backbone",
                               "clip_vitb32_384")
    src, flags = {"clip_directory": (folder, []),
                  "clip_mismatch": (os.path.join(HERE, "fixtures", "clip_ms", "openai_tiny_jit.pt"),
                                    ["--config", "ViT-B/32"])}[key]
    return [sys.executable, "-m", "clip_ms.convert", src, os.path.join(folder, key + ".ckpt"), *flags]


@pytest.fixture(scope="module", autouse=True)
def command_runs(request, tmp_path_factory):
    """The processes of the tests this session runs here (:data:`COMMAND_TESTS`), started in the background when the
    module starts (:class:`background_commands.BackgroundRuns`); a test waits for its own: ``.result(key)``."""
    selected = selected_tests(request)
    keys = [key for key, test in COMMAND_TESTS.items() if test in selected]
    if not keys:
        yield None
        return
    folder = str(tmp_path_factory.mktemp("commands"))
    if "already_converted" in keys:
        save_lseg_checkpoint(tiny(), os.path.join(folder, "ours.ckpt"))  # a checkpoint of ours, for that command
    bad = request.getfixturevalue("bad_files")
    runs = BackgroundRuns([(key, command_line(key, folder, bad)) for key in keys], REPO, OMP_NUM_THREADS="1")
    yield runs
    runs.close()


@pytest.mark.parametrize("case", BAD)
def test_convert_command_prints_one_line_for_a_bad_file(bad_files, command_runs, case):
    path, expected = bad_files[case]
    result = command_runs.result(("convert", case))  # python -m modules.convert <path> <dst>
    dst = result.args[-1]
    assert result.args[-2:] == [path, dst]
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line: no traceback, no MindSpore [ERROR] log line
    prefix = "python -m modules.convert: error: " + path + ": "
    assert result.stderr.startswith(prefix), result.stderr
    assert re.search(expected, result.stderr[len(prefix):]), result.stderr
    assert not os.path.exists(dst)


def test_convert_command_names_an_already_converted_checkpoint_and_a_wrong_backbone(command_runs):
    result = command_runs.result("already_converted")  # python -m modules.convert <ours> <dst>
    ours = result.args[-2]
    assert read_lseg_checkpoint(ours)[0]["backbone"] == "tiny_vit16"  # saved by save_lseg_checkpoint (command_runs)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (f"python -m modules.convert: error: {ours}: already a MindSpore checkpoint of ours, "
                             "not an official lang-seg PyTorch checkpoint; load it as it is\n")
    src = official_tiny_path(0)
    result = command_runs.result("wrong_backbone")  # python -m modules.convert <src> <dst> --backbone clip_vitb32_384
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (f"python -m modules.convert: error: {src}: --backbone clip_vitb32_384 was given, but the "
                             "checkpoint's is tiny_vit16: pretrained.model.patch_embed.proj.weight has shape "
                             "(32, 3, 16, 16)\n")


# ------------------------------------------------------------------------------------------ unreadable files
def deny_reading(monkeypatch, path):
    """Opening ``path`` raises PermissionError (EACCES), as a mode-000 file does for a normal user.

    The tests run as root, which reads mode-000 files, so ``open`` itself is replaced: the builtin (numpy, MindSpore,
    our readers) and ``io.open`` (zipfile). Every other file opens as usual.
    """
    denied = os.path.realpath(path)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)


DENIED = "cannot read (Permission denied)"


@pytest.fixture(scope="module")
def readable_files(tmp_path_factory):
    """One file of every kind a weights option reads: kind -> path."""
    folder = tmp_path_factory.mktemp("readable")
    net = tiny()
    paths = {"weights": str(folder / "weights.ckpt"), "training": str(folder / "training.ckpt"),
             "official": str(folder / "official.ckpt"), "vit.npz": str(folder / "vit.npz"),
             "vit.pth": str(folder / "vit.pth")}
    save_lseg_checkpoint(net, paths["weights"])
    save_checkpoint(paths["training"], net, epoch=1, options=net.build_options())
    write_full_official_checkpoint(0, paths["official"])
    vit = {"cls_token": np.zeros((1, 1, 32), np.float32)}
    np.savez(paths["vit.npz"], **vit)
    save_torch_file(paths["vit.pth"], vit)
    return paths


@pytest.mark.parametrize("kind", ["weights", "training", "official"])
def test_an_unreadable_weights_file_is_one_line_naming_it(readable_files, monkeypatch, kind):
    path = readable_files[kind]
    deny_reading(monkeypatch, path)
    for load in (lambda: load_lseg(path), lambda: checkpoint_kind(path),
                 lambda: read_lseg_checkpoint(path)):
        with pytest.raises(WeightsError) as error:
            load()
        assert str(error.value) == f"{path}: {DENIED}"


def test_an_unreadable_checkpoint_given_to_resume_is_one_checkpoint_error(readable_files, monkeypatch):
    path = readable_files["training"]
    deny_reading(monkeypatch, path)
    net = tiny()
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    for read in (lambda: check_resumable(path), lambda: read_checkpoint(path),
                 lambda: load_checkpoint(path, net, optimizer)):
        with pytest.raises(CheckpointError) as error:
            read()
        assert str(error.value) == f"{path}: {DENIED}"


def test_an_unreadable_torch_file_is_one_torch_archive_error(readable_files, monkeypatch):
    path = readable_files["official"]
    deny_reading(monkeypatch, path)
    with pytest.raises(TorchArchiveError) as error:
        load_torch_file(path)
    assert str(error.value) == f"{path}: {DENIED}"


def test_convert_command_blames_an_unreadable_source_not_the_destination(readable_files, monkeypatch, capsys,
                                                                          tmp_path):
    src, dst = readable_files["official"], str(tmp_path / "out.ckpt")
    deny_reading(monkeypatch, src)
    assert convert_main([src, dst]) == 2
    assert capsys.readouterr().err == f"python -m modules.convert: error: {src}: {DENIED}\n"
    assert not os.path.exists(dst)


@pytest.mark.parametrize("kind", ["vit.npz", "vit.pth", "weights"])  # "weights": a .ckpt, as MindCV's ViTs
def test_unreadable_vit_weights_are_one_line_naming_the_file(readable_files, monkeypatch, kind):
    path = readable_files[kind]
    deny_reading(monkeypatch, path)
    with pytest.raises(WeightsError) as error:
        build_lseg("tiny_vit16", LABELS, text_config="tiny", vit_weights=path)
    assert str(error.value) == f"{path}: {DENIED}"


# ------------------------------------------------------------------------------------------ bad --vit_weights
def write_bad_vit_files(folder):
    """Returns: case name -> (path, regex the message must match right after "<path>: ")."""
    folder = str(folder)
    files = {}

    def add(name, expected, data=None):
        path = os.path.join(folder, name)
        if data is not None:
            with open(path, "wb") as handle:
                handle.write(data)
        files[name] = (path, expected)
        return path

    numpy_pickle = (r"not a readable .npz \(ValueError: Cannot load file containing pickled data when "
                    r"allow_pickle=False\)$")
    add("pickled.npz", numpy_pickle, pickle.dumps({"cls_token": [0.0]}))
    add("text.npz", numpy_pickle, b"cls_token = 0\n")
    add("empty.npz", r"not a readable .npz \(empty file, 0 bytes\)$", b"")
    whole = io.BytesIO()
    np.savez(whole, cls_token=np.zeros((1, 1, 32), np.float32), pos_embed=np.zeros((1, 5, 32), np.float32))
    add("truncated.npz", r"not a readable .npz \(BadZipFile: File is not a zip file\)$",
        whole.getvalue()[:len(whole.getvalue()) // 2])
    objects = io.BytesIO()
    np.savez(objects, cls_token=np.array([{"weights": 1}], dtype=object))
    add("objects.npz", r"not a readable .npz \(ValueError: Object arrays cannot be loaded when allow_pickle=False\)$",
        objects.getvalue())
    single = io.BytesIO()
    np.save(single, np.zeros((2, 3), np.float32))
    add("single_array.npz", r"not a readable .npz \(a single .npy array of shape \(2, 3\), not an archive\)$",
        single.getvalue())
    jax = io.BytesIO()
    np.savez(jax, **{"embedding/kernel": np.zeros((16, 16, 3, 32), np.float32)})
    add("jax_partial.npz", r"an original JAX ViT .npz \(embedding/kernel\) without its embedding/bias array$",
        jax.getvalue())
    add("empty.pth", r"empty file$", b"")
    add("text.pth", r"not a torch checkpoint: neither a zip archive nor a pickle stream", b"cls_token = 0\n")
    timm = os.path.join(folder, "whole.pth")
    save_torch_file(timm, {"cls_token": np.zeros((1, 1, 32), np.float32), "pos_embed": np.zeros((1, 5, 32),
                                                                                                np.float32)})
    with open(timm, "rb") as handle:
        data = handle.read()
    add("truncated.pth", r"damaged zip archive .*the file is probably truncated$", data[:len(data) // 2])
    return files


BAD_VIT = ["pickled.npz", "text.npz", "empty.npz", "truncated.npz", "objects.npz", "single_array.npz",
           "jax_partial.npz", "empty.pth", "text.pth", "truncated.pth"]


@pytest.fixture(scope="module")
def bad_vit_files(tmp_path_factory):
    return write_bad_vit_files(tmp_path_factory.mktemp("bad_vit"))


@pytest.fixture(scope="module")
def tiny_net():
    return tiny()


@pytest.mark.parametrize("case", BAD_VIT)
def test_a_bad_vit_weights_file_is_one_weights_error_naming_it(bad_vit_files, tiny_net, case):
    path, expected = bad_vit_files[case]
    with pytest.raises(WeightsError) as error:
        init_backbone_from_pretrained(tiny_net, path)
    assert_message(error.value, path, expected)


def test_mindspore_refusing_a_well_formed_file_is_the_same_line_for_weights_and_training(readable_files,
                                                                                         monkeypatch):
    """Both readers share foundation.checkpoint_file.load_raw_checkpoint: MindSpore's error type and first line."""
    path = readable_files["weights"]

    def refuse(*args, **kwargs):
        raise RuntimeError("For 'load_checkpoint', the checkpoint file is damaged.\n----- C++ Call Stack -----")

    monkeypatch.setattr(ms, "load_checkpoint", refuse)
    expected = (f"{path}: unreadable MindSpore checkpoint (RuntimeError: For 'load_checkpoint', the checkpoint file "
                "is damaged.)")
    with pytest.raises(CheckpointError) as training_error:
        read_checkpoint(path)
    with pytest.raises(WeightsError) as weights_error:
        load_mindspore_checkpoint(path)
    assert str(training_error.value) == str(weights_error.value) == expected


# ------------------------------------------------------------------------------------------ another backbone
def test_a_backbone_the_checkpoint_contradicts_is_refused_naming_both(tmp_path):
    weights, training = str(tmp_path / "weights.ckpt"), str(tmp_path / "training.ckpt")
    source = tiny()
    save_lseg_checkpoint(source, weights)
    save_checkpoint(training, source, nn.Momentum(source.trainable_params(), 0.1, 0.9), epoch=1,
                    options=source.build_options())
    for path in (weights, training):
        with pytest.raises(RecordedOptionConflict) as error:
            load_lseg(path, backbone="clip_vitb32_384")
        assert error.value.describe("--backbone") == (f"--backbone: 'clip_vitb32_384' given, but {path} was trained "
                                                      "with 'tiny_vit16'; drop the option to use the checkpoint's")
    official = str(tmp_path / "official.ckpt")
    write_full_official_checkpoint(0, official)
    with pytest.raises(WeightsOptionError) as error:
        load_lseg(official, backbone="clip_vitb32_384")
    assert error.value.option == "backbone"
    assert str(error.value) == (f"{official}: backbone clip_vitb32_384 was given, but the checkpoint's is tiny_vit16: "
                                "pretrained.model.patch_embed.proj.weight has shape (32, 3, 16, 16)")


def test_a_record_that_does_not_fit_the_parameters_lists_the_mismatching_ones(tmp_path):
    path = str(tmp_path / "lying.ckpt")
    source = tiny()
    save_checkpoint(path, source, options=dict(source.build_options(), backbone="clip_vitb32_384",
                                               text_config="ViT-B/32"))
    with pytest.raises(WeightsError) as error:
        load_lseg(path)
    assert_message(error.value, path, r"checkpoint does not match the network: .*shape mismatch \(\d+\): "
                                      r"pretrained.model.cls_token: checkpoint \(1, 1, 32\) vs network \(1, 1, 768\)")


# ------------------------------------------------------------------------------------------ official options
def without_hyper_parameters(src, dst):
    checkpoint = load_torch_file(src)
    del checkpoint["hyper_parameters"]
    save_torch_file(dst, checkpoint)
    return dst


@pytest.fixture(scope="module")
def official_arch2(tmp_path_factory):
    """(with hyper_parameters, without): full official arch-2 checkpoints (block_depth 3, tanh, as trained)."""
    folder = tmp_path_factory.mktemp("arch2")
    with_hyper = str(folder / "official2.ckpt")
    write_full_official_checkpoint(2, with_hyper)
    return with_hyper, without_hyper_parameters(with_hyper, str(folder / "official2_bare.ckpt"))


def arch2_logits(net):
    """Returns: the logits of the fixture's arch-2 case ("b": one 96x64 image, per-call labels)."""
    net.set_train(False)
    return net(ms.Tensor(ARRAYS["images_b"]), net.text_features(META["labels_b"])).asnumpy()


def relative_error(ours, reference):
    return np.abs(ours - reference).max() / np.abs(reference).max()


def test_official_block_without_hyper_parameters_requires_arch_option_then_block_depth(official_arch2):
    _, bare = official_arch2
    with pytest.raises(WeightsOptionError) as error:
        build_lseg_from_official(bare)
    assert error.value.option == "arch_option"
    assert error.value.describe("--arch_option") == (
        f"{bare}: cannot tell --arch_option 1 from 2: the checkpoint has no hyper_parameters and its weights hold the "
        "spatial regularisation block (scratch.head_block.label_conv.conv.weight), which both build with the same "
        "parameters; pass --arch_option")
    with pytest.raises(WeightsOptionError) as error:
        build_lseg_from_official(bare, arch_option=2)
    assert error.value.option == "block_depth"
    assert str(error.value).startswith(f"{bare}: block_depth is required: the checkpoint has no hyper_parameters")
    assert error.value.describe("--block_depth").startswith(f"{bare}: --block_depth is required")


def test_official_block_depth_given_reproduces_the_official_logits_and_depth_matters(official_arch2):
    _, bare = official_arch2
    reference = ARRAYS["arch2_logits_b"]
    net = build_lseg_from_official(bare, arch_option=2, block_depth=3, activation="tanh")
    assert net.build_options()["block_depth"] == 3
    assert relative_error(arch2_logits(net), reference) <= 1e-4
    # What the old silent default built: the same weights at depth 0 give other logits.
    shallow = build_lseg_from_official(bare, arch_option=2, block_depth=0, activation="tanh")
    assert relative_error(arch2_logits(shallow), reference) > 0.05


def test_test_py_passes_the_block_options_to_the_official_converter(official_arch2, tmp_path, capsys):
    """Issue 13 item 11 from the command line: test.py --weights <official arch-2 file without hyper_parameters>."""
    _, bare = official_arch2
    image = str(tmp_path / "photo.png")
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 56, 3), np.uint8)).save(image)
    base = ["--weights", bare, "--image", image, "--labels", "cat,other", "--device_target", "CPU", "--mode",
            "pynative", "--base_size", "64", "--crop_size", "64", "--outdir", str(tmp_path / "out")]
    assert test_script.main(base + ["--arch_option", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("test.py: error: %s: --block_depth is required" % bare) and len(err.splitlines()) == 1
    assert test_script.main(base + ["--arch_option", "2", "--block_depth", "3", "--activation", "tanh"]) == 0
    assert os.path.isfile(tmp_path / "out" / "photo_mask.png")


def test_explicit_options_the_checkpoint_contradicts_are_refused_naming_both_values(official_arch2):
    with_hyper, bare = official_arch2
    cases = [
        (with_hyper, {"block_depth": 2}, "block_depth", "block_depth 2 was given, but the checkpoint's "
                                                        "hyper_parameters say 3"),
        (with_hyper, {"arch_option": 1}, "arch_option", "arch_option 1 was given, but the checkpoint's "
                                                        "hyper_parameters say 2"),
        (with_hyper, {"activation": "relu"}, "activation", "activation relu was given, but the checkpoint's "
                                                           "hyper_parameters say tanh"),
        (bare, {"arch_option": 0}, "arch_option",
         "arch_option 0 was given, but the checkpoint's is 1 or 2: its weights hold the spatial regularisation block "
         "(scratch.head_block.label_conv.conv.weight) of arch options 1 and 2"),
        (official_tiny_path(0), {"arch_option": 2}, "arch_option",
         "arch_option 2 was given, but the checkpoint's is 0: its weights hold no spatial regularisation block "
         "(scratch.head_block.label_conv.conv.weight absent)"),
    ]
    for path, explicit, option, message in cases:
        with pytest.raises(WeightsOptionError) as error:
            convert_official_checkpoint(path, path + ".out.ckpt", **explicit)
        assert error.value.option == option
        assert str(error.value) == f"{path}: {message}"
        assert not os.path.exists(path + ".out.ckpt")
    # Values that agree with the checkpoint are accepted.
    net = build_lseg_from_official(with_hyper, arch_option=2, block_depth=3, activation="tanh")
    assert relative_error(arch2_logits(net), ARRAYS["arch2_logits_b"]) <= 1e-4


def test_load_lseg_takes_the_explicit_options_of_an_official_checkpoint(official_arch2):
    """train_custom.py/test.py path: the options given reach the one loader."""
    _, bare = official_arch2
    with pytest.raises(WeightsOptionError) as error:
        load_lseg(bare, arch_option=2)
    assert error.value.option == "block_depth"
    net = load_lseg(bare, labels=META["labels_a"], arch_option=2, block_depth=3, activation="tanh").network
    assert relative_error(arch2_logits(net), ARRAYS["arch2_logits_b"]) <= 1e-4


def test_a_training_checkpoint_of_another_block_depth_is_refused(tmp_path):
    source = tiny(arch_option=2, block_depth=3, activation="tanh")
    path = str(tmp_path / "training.ckpt")
    save_checkpoint(path, source, nn.Momentum(source.trainable_params(), 0.1, 0.9), epoch=1,
                    options=source.build_options())
    with pytest.raises(RecordedOptionConflict) as error:
        load_lseg(path, block_depth=1)
    assert error.value.describe("--block_depth") == (f"--block_depth: 1 given, but {path} was trained with 3; drop "
                                                     "the option to use the checkpoint's")


def test_convert_command_asks_for_the_block_depth_with_its_own_flag_spelling(official_arch2, tmp_path, capsys):
    _, bare = official_arch2
    dst = str(tmp_path / "ours.ckpt")
    assert convert_main([bare, dst, "--arch-option", "2"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert message.startswith(f"python -m modules.convert: error: {bare}: --block-depth is required: ")
    assert "pass the --block-depth it was trained with" in message
    assert convert_main([bare, dst, "--arch-option", "2", "--block-depth", "3", "--activation", "tanh"]) == 0
    net = load_lseg(dst, labels=META["labels_a"]).network
    assert relative_error(arch2_logits(net), ARRAYS["arch2_logits_b"]) <= 1e-4


def test_clip_convert_command_prints_one_line_for_a_directory_and_a_mismatch(command_runs):
    clip_fixture = os.path.join(HERE, "fixtures", "clip_ms", "openai_tiny_jit.pt")
    directory = command_runs.result("clip_directory").args[3]  # python -m clip_ms.convert <folder> <dst>
    assert os.path.isdir(directory)
    for key, src, expected in [("clip_directory", directory, f"{directory}: is a directory, not a checkpoint file"),
                               ("clip_mismatch", clip_fixture, "missing (120)")]:
        result = command_runs.result(key)
        assert result.args[3] == src
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"python -m clip_ms.convert: error: {src}")
        assert expected in result.stderr
