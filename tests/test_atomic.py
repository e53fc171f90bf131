"""foundation.atomic: the one atomic writer and the clean-up of dead writers' temporary files."""
import os
import stat
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from foundation.atomic import append_text, atomic_output, is_dead_writers_temporary, user_file_mode, write_failure
from modules.factory import build_lseg, load_lseg
from modules.weights import WeightsError, save_lseg_checkpoint

STACK_INDEPENDENT = ("atomic writes, renames and the clean-up are file-system code; the test of how "
                     "mindspore.save_checkpoint names its file is marked both_stacks")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "cache.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["cache.json"]
    with atomic_output(str(target)) as temporary, open(temporary, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["cache.json"]


@pytest.mark.both_stacks
def test_a_full_disk_names_the_target_not_the_temporary_and_leaves_nothing(tmp_path):
    target = tmp_path / "curves.png"
    with pytest.raises(OSError) as raised:
        with atomic_output(str(target)) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise OSError(28, "No space left on device", temporary)
    assert raised.value.errno == 28 and raised.value.filename == str(target)
    assert os.listdir(tmp_path) == []
    assert write_failure(raised.value, "unused").startswith("no space left in %s while writing curves.png (" % tmp_path)
    assert write_failure(PermissionError(13, "Permission denied", "/x/y.png"), "out") == \
        "cannot write /x/y.png: Permission denied"


def test_an_append_is_whole_or_cut_off_again(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    append_text(str(log), '{"epoch": 1}\n')
    write = os.write

    def half_then_full(descriptor, data):
        write(descriptor, bytes(data)[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError) as raised:
        append_text(str(log), '{"epoch": 2}\n')
    monkeypatch.setattr(os, "write", write)
    assert raised.value.errno == 28 and raised.value.filename == str(log)
    assert log.read_text() == '{"epoch": 1}\n'
    append_text(str(log), "über\n")
    assert log.read_text(encoding="utf-8") == '{"epoch": 1}\nüber\n'


def test_a_writer_that_appends_an_extension_gets_a_temporary_name_with_it(tmp_path):
    """mindspore.save_checkpoint appends .ckpt to names that lack it: without suffix=".ckpt" the empty temporary
    file would be renamed over the target and the weights left in a hidden file."""
    target = tmp_path / "lseg_tiny"
    with atomic_output(str(target), suffix=".ckpt") as temporary:
        ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones((64, 64), np.float32))}], temporary)
    assert os.listdir(tmp_path) == ["lseg_tiny"] and target.stat().st_size > 64 * 64 * 4


def test_weights_files_must_be_named_ckpt(tmp_path):
    net = build_lseg("tiny_vit16", ["a", "b"], text_config="tiny")
    with pytest.raises(WeightsError, match=r"lseg_tiny.weights: a MindSpore checkpoint's name must end in .ckpt"):
        save_lseg_checkpoint(net, str(tmp_path / "lseg_tiny.weights"))
    save_lseg_checkpoint(net, str(tmp_path / "lseg_tiny.ckpt"))
    assert os.listdir(tmp_path) == ["lseg_tiny.ckpt"]
    assert load_lseg(str(tmp_path / "lseg_tiny.ckpt")).network.build_options() == net.build_options()


def test_only_temporaries_of_writers_that_are_gone_count_as_dead():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert is_dead_writers_temporary(".epoch_001.ckpt.tmp%d.ab12.ckpt" % ended.pid)
    assert is_dead_writers_temporary(".last.ckpt.tmp%d.ckpt" % ended.pid)  # the name before the random part
    assert is_dead_writers_temporary("data_check.json.x1y2.tmp")
    assert is_dead_writers_temporary(".curves.png.tmp%d.x9z8.png" % ended.pid)  # the training curves
    assert is_dead_writers_temporary(".epoch_001.ckpt.tmp%d.ab12.tmp" % ended.pid)  # MindSpore's, behind ours
    assert not is_dead_writers_temporary(".epoch_001.ckpt.tmp%d.ab12.ckpt" % os.getpid())  # alive: still writing
    assert not is_dead_writers_temporary("epoch_001.ckpt") and not is_dead_writers_temporary(".notes.tmp1")


def test_written_files_get_the_users_mode_not_the_temporarys_or_mindspores(tmp_path):
    """mkstemp makes the temporary 0600 and mindspore.save_checkpoint makes its file 0400; the result is the mode any
    file the user creates gets (0666 less the umask)."""
    old_mask = os.umask(0o027)
    try:
        assert user_file_mode() == 0o640
        plain = str(tmp_path / "notes.json")
        with atomic_output(plain) as temporary:
            with open(temporary, "w") as handle:
                handle.write("{}")
        checkpoint = str(tmp_path / "net.ckpt")
        save_lseg_checkpoint(build_lseg("tiny_vit16", ["a", "b"], text_config="tiny"), checkpoint)
        assert [stat.S_IMODE(os.stat(path).st_mode) for path in (plain, checkpoint)] == [0o640, 0o640]
    finally:
        os.umask(old_mask)
