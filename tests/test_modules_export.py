"""python -m modules.export (issue 16 item 1): MindIR graphs whose logits equal the network's, from every kind of
checkpoint we read, with the labels baked in or as an input; bad input is one line. MindIR graphs run in
GRAPH_MODE (MindSpore 2.0 refuses them in PyNative); everything else runs in PyNative, the mode the command itself
runs in (MindSpore's default on both stacks): the reference network's logits do not need a graph compile of their
own (one costs 3-4 s here)."""
import contextlib
import io
import os
import stat
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from foundation import platform
from foundation.atomic import user_file_mode
from foundation.checkpoint_file import save_checkpoint
from modules.export import main as export_main
from modules.export import mindir_files
from modules.factory import build_lseg, load_lseg
from modules.weights import save_lseg_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures", "modules"))
from background_commands import runs_for_test  # noqa: E402
from support import write_full_official_checkpoint  # noqa: E402

STACK_INDEPENDENT = ("which checkpoint kind a network came from changes only the loader (tested per stack in "
                     "test_modules_factory and test_cross_stack): the legacy stack exports the training kind and "
                     "both dynamic forms (arch options 0 and 1)")

LABELS = ["cat", "grass", "sky"]


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{kind: path}: a training checkpoint, a modules.weights checkpoint and the official tiny fixture."""
    folder = tmp_path_factory.mktemp("export")
    ms.set_seed(3)
    net = build_lseg("tiny_vit16", ["a", "b"], arch_option=1, block_depth=2, text_config="tiny")
    training = str(folder / "training.ckpt")
    save_checkpoint(training, net, epoch=1, options={"backbone": "tiny_vit16", "arch_option": 1, "block_depth": 2,
                                                     "activation": "lrelu", "text_config": "tiny"})
    weights = str(folder / "weights.ckpt")
    save_lseg_checkpoint(net, weights)
    official = str(folder / "official.ckpt")
    write_full_official_checkpoint(0, official)  # the official format, with a tiny CLIP text tower
    return {"training": training, "weights": weights, "official": official}


def images(batch=1, height=64, width=96):
    return np.random.RandomState(0).uniform(-1, 1, (batch, 3, height, width)).astype(np.float32)


def graph_logits(path, *inputs):
    """Returns: the outputs of the MindIR at ``path`` for each tuple of numpy ``inputs``, as numpy arrays.

    The GraphCell loads and runs in GRAPH_MODE (MindSpore 2.0 refuses it in PyNative); PyNative is restored after.
    """
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        graph = nn.GraphCell(ms.load(path))
        return [graph(*[ms.Tensor(array) for array in arrays]).asnumpy() for arrays in inputs]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def earlier_export_in_both_layouts(folder):
    """Leaves in ``folder`` what an earlier, larger export to ``folder/lseg`` would have: the split layout's
    ``lseg_graph.mindir`` and ``lseg_variables/``."""
    (folder / "lseg_graph.mindir").write_bytes(b"an earlier, larger model")
    (folder / "lseg_variables").mkdir()
    (folder / "lseg_variables" / "data_0").write_bytes(b"its weights")


@pytest.fixture(scope="module")
def static_export(checkpoints, tmp_path_factory):
    """kind -> (exit status, stdout, MindIR path) of ``python -m modules.export --labels cat,grass,sky --height 64
    --width 96`` from that kind of checkpoint, made once when first asked for (an export compiles the network: ~4 s).

    The "weights" export writes ``lseg.mindir`` where an earlier export left the split layout
    (:func:`earlier_export_in_both_layouts`): test_an_export_replaces_what_an_earlier_one_left_in_either_layout
    checks what is left of it, test_static_mindir_logits_equal_the_networks the graph it wrote.
    """
    made = {}

    def export(kind):
        if kind not in made:
            folder = tmp_path_factory.mktemp("static_" + kind)
            if kind == "weights":
                earlier_export_in_both_layouts(folder)
            out = str(folder / "lseg.mindir")
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                status = export_main(["--weights", checkpoints[kind], "--labels", ",".join(LABELS), "--height", "64",
                                      "--width", "96", "--out", out])
            made[kind] = (status, printed.getvalue(), out)
        return made[kind]

    return export


@pytest.mark.parametrize("kind", [pytest.param("training", marks=pytest.mark.both_stacks), "weights", "official"])
def test_static_mindir_logits_equal_the_networks(checkpoints, static_export, kind):
    status, printed, out = static_export(kind)
    assert status == 0
    assert "wrote %s: images -> logits of 3 labels, input (1, 3, 64, 96)" % out in printed
    net = load_lseg(checkpoints[kind], LABELS).network
    net.set_train(False)
    x = images()
    reference = net(ms.Tensor(x)).asnumpy()  # PyNative
    [logits] = graph_logits(out, (x,))
    assert logits.shape == (1, 3, 64, 96)
    assert relative_error(logits, reference) <= 1e-5


@pytest.mark.both_stacks
@pytest.mark.parametrize("kind", ["official", "training"])  # arch option 0 / 1
def test_dynamic_mindir_takes_the_features_of_any_label_set(checkpoints, kind, tmp_path, capsys):
    out = str(tmp_path / "any.mindir")
    status = export_main(["--weights", checkpoints[kind], "--dynamic_labels", "--height", "64", "--width", "64",
                          "--batch", "2", "--out", out])
    if kind == "training" and platform.DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES:
        assert status == 2 and "crashes MindSpore %s when the label count changes" % ms.__version__ in \
            capsys.readouterr().err
        return
    assert status == 0
    x = images(batch=2, height=64, width=64)
    label_sets = (LABELS, ["a road", "a car", "a tree", "the sky", "a person"])
    inputs, references = [], []
    for labels in label_sets:  # PyNative: the features the command writes, the network's logits for those labels
        features_path = str(tmp_path / ("features_%d.npy" % len(labels)))
        assert export_main(["--weights", checkpoints[kind], "--labels", ",".join(labels),
                            "--features_out", features_path]) == 0
        features = np.load(features_path)
        net = load_lseg(checkpoints[kind], labels).network
        net.set_train(False)
        assert features.shape == (len(labels), net.text_features_cache.shape[1]) and features.dtype == np.float32
        references.append(net(ms.Tensor(x)).asnumpy())
        inputs.append((x, features))
    # One graph, both label counts.
    for labels, logits, reference in zip(label_sets, graph_logits(out, *inputs), references):
        assert logits.shape == (2, len(labels), 64, 64)
        assert relative_error(logits, reference) <= 1e-5


@pytest.mark.parametrize("argv, message", [
    (["--height", "64", "--width", "64"], "--labels is required (or --dynamic_labels"),
    (["--labels", "a,b", "--height", "100"], "height and width must be positive multiples of 32 (got 100x480)"),
    (["--labels", "labels_missing.txt"], "--labels: label file 'labels_missing.txt' does not exist"),
])
def test_bad_input_is_one_line(checkpoints, argv, message, tmp_path, capsys):
    assert export_main(["--weights", checkpoints["weights"], "--out", str(tmp_path / "x.mindir")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m modules.export: error: ") and message in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "x.mindir")


@pytest.fixture(scope="module", autouse=True)
def bad_weights_command(request, tmp_path_factory):
    """``python -m modules.export --weights <an empty file> --labels a`` from the repository, started in the
    background when the module starts (background_commands), if this session runs the test that reads it."""
    def commands():
        bad = tmp_path_factory.mktemp("bad_weights") / "bad.ckpt"
        bad.write_bytes(b"")
        return [("export", [sys.executable, "-m", "modules.export", "--weights", str(bad), "--labels", "a"])]

    runs = runs_for_test(request, "test_runs_as_a_module_and_names_a_bad_weights_file", commands, REPO)
    yield runs
    if runs is not None:
        runs.close()


@pytest.mark.both_stacks
def test_runs_as_a_module_and_names_a_bad_weights_file(bad_weights_command):
    done = bad_weights_command.result("export")  # python -m modules.export --weights <bad> --labels a
    bad = done.args[4]
    assert os.path.getsize(bad) == 0
    assert done.returncode == 2
    assert "python -m modules.export: error: %s: empty file (0 bytes), not a checkpoint" % bad in done.stderr
    assert "Traceback" not in done.stderr


def test_mindir_files_finds_the_single_file_and_the_split_form(tmp_path):
    single = tmp_path / "small.mindir"
    single.write_bytes(b"g")
    assert mindir_files(str(tmp_path / "small")) == [str(single)]
    # Above 1 GiB of parameters mindspore.export writes <stem>_graph.mindir + <stem>_variables/data_*.
    (tmp_path / "big_graph.mindir").write_bytes(b"g")
    (tmp_path / "big_variables").mkdir()
    (tmp_path / "big_variables" / "data_0").write_bytes(b"w")
    split = [str(tmp_path / "big_graph.mindir"), str(tmp_path / "big_variables" / "data_0")]
    assert mindir_files(str(tmp_path / "big")) == split
    with pytest.raises(FileNotFoundError, match="none.mindir nor"):
        mindir_files(str(tmp_path / "none"))


def test_an_export_replaces_what_an_earlier_one_left_in_either_layout(static_export):
    # The "weights" export of static_export wrote lseg.mindir into a folder holding an earlier split-layout export.
    status, _, out = static_export("weights")
    assert status == 0
    stem = out[:-len(".mindir")]
    folder = os.path.dirname(out)
    assert mindir_files(stem) == [out]
    assert not os.path.exists(os.path.join(folder, "lseg_graph.mindir"))
    assert not os.path.exists(os.path.join(folder, "lseg_variables"))


def test_the_mindir_gets_the_users_mode_and_features_go_into_a_new_folder(static_export, checkpoints, tmp_path,
                                                                          capsys):
    status, _, out = static_export("weights")
    assert status == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == user_file_mode()  # MindSpore writes it 0400
    features = str(tmp_path / "new" / "folder" / "features.npy")
    assert export_main(["--weights", checkpoints["weights"], "--labels", "a,b", "--features_out", features]) == 0
    assert np.load(features).shape[0] == 2 and stat.S_IMODE(os.stat(features).st_mode) == user_file_mode()
    blocked = str(tmp_path / "a_file")
    open(blocked, "w").close()
    inside = os.path.join(blocked, "features.npy")
    assert export_main(["--weights", checkpoints["weights"], "--labels", "a,b", "--features_out", inside]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m modules.export: error: %s: cannot write (" % inside) and err.count("\n") == 1
