"""Checkpoints: saved == trained (graph and PyNative), atomic writes survive SIGKILL, strict loading, rotation."""
import os
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import CheckpointManager, TrainConfig, Trainer
from encoding_custom.engine.losses import SegmentationLoss
from foundation.checkpoint_file import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from toys import ToySegData, ToySegNet  # noqa: E402

pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(HERE)


def _train_toy(tmp_path, epochs=1):
    net = ToySegNet()
    initial = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    cfg = TrainConfig(lr=0.05, max_epochs=epochs, batch_size=4, exp_dir=str(tmp_path / "exp"), progress=False,
                      options={"note": "toy"})
    trainer = Trainer(net, SegmentationLoss(), ToySegData(16), cfg,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)])
    trainer.fit()
    return net, trainer, initial


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_saved_equals_trained_and_every_param_moved(tmp_path, mode):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    net, trainer, initial = _train_toy(tmp_path)
    stored, opt_state, meta = read_checkpoint(trainer.checkpoints.last_path)
    for name, before in initial.items():
        saved = stored[name].asnumpy()
        assert np.abs(saved - before).max() > 1e-6, "%s was saved with its initial value (%s mode)" % (name, mode)
    images = ms.Tensor(ToySegData(2, seed=5).images)
    net.set_train(False)
    trained_out = net(images).asnumpy()
    fresh = ToySegNet()
    fresh.set_train(False)
    meta = load_checkpoint(trainer.checkpoints.last_path, fresh)
    np.testing.assert_allclose(fresh(images).asnumpy(), trained_out, rtol=1e-6, atol=1e-6)
    assert meta["epoch"] == 1 and meta["options"] == {"note": "toy"} and meta["format"] == FORMAT_VERSION
    assert int(opt_state["global_step"].asnumpy().reshape(-1)[0]) == 4
    assert any(name.startswith("moments.") and np.abs(v.asnumpy()).max() > 0 for name, v in opt_state.items())


def test_strict_load_names_file_and_parameter(tmp_path):
    net = ToySegNet()
    path = save_checkpoint(str(tmp_path / "a.ckpt"), net, epoch=3)
    wider = ToySegNet(width=6)
    with pytest.raises(CheckpointError, match="a.ckpt.*shape mismatch.*conv1.bias"):
        load_checkpoint(path, wider)
    no_bn = ToySegNet(batch_norm=False)
    with pytest.raises(CheckpointError, match="unknown to the network.*bn1"):
        load_checkpoint(path, no_bn)
    with pytest.raises(CheckpointError, match="without optimizer state, so it cannot be resumed"):
        _, trainer, _ = _train_toy(tmp_path)
        load_checkpoint(path, ToySegNet(), trainer.optimizer)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        load_checkpoint(str(broken), ToySegNet())
    with pytest.raises(CheckpointError, match="nope.ckpt: no such file$"):
        load_checkpoint(str(tmp_path / "nope.ckpt"), ToySegNet())


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    net = ToySegNet()
    path = save_checkpoint(str(tmp_path / "c.ckpt"), net, epoch=1)

    def torn_write(entries, name, append_dict=None):
        with open(name, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", torn_write)
    with pytest.raises(OSError):
        save_checkpoint(path, net, epoch=2)
    monkeypatch.undo()
    assert read_checkpoint(path)[2]["epoch"] == 1
    assert os.listdir(str(tmp_path)) == ["c.ckpt"]


_SAVER = r"""
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests/fixtures/engine")
import mindspore as ms
ms.set_context(device_target="CPU")
from toys import ToySegNet
from foundation.checkpoint_file import save_checkpoint
net = ToySegNet(width=64)
epoch = 0
while True:
    epoch += 1
    save_checkpoint(sys.argv[2], net, epoch=epoch)
    print(epoch, flush=True)
"""


def test_sigkill_during_saves_never_leaves_a_torn_checkpoint(tmp_path):
    target = str(tmp_path / "last.ckpt")
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, REPO, target], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # at least one complete save before the kill
        time.sleep(0.7)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    meta = load_checkpoint(target, ToySegNet(width=64))
    assert meta["epoch"] >= 1


def test_manager_keeps_last_k_and_best(tmp_path):
    net = ToySegNet()
    manager = CheckpointManager(str(tmp_path), keep_last=2, writer=True)
    scores = [0.1, 0.5, 0.3, 0.2]
    for epoch, score in enumerate(scores, start=1):
        manager.save(net, None, epoch, metrics={"mIoU": score}, is_best=score == max(scores[:epoch]))
    assert sorted(os.listdir(str(tmp_path))) == ["best.ckpt", "epoch_003.ckpt", "epoch_004.ckpt", "last.ckpt"]
    assert read_checkpoint(manager.best_path)[2]["metrics"]["mIoU"] == 0.5
    assert read_checkpoint(manager.last_path)[2]["epoch"] == 4
    silent = CheckpointManager(str(tmp_path / "other"), keep_last=2, writer=False)
    assert silent.save(net, None, 1) is None and not os.path.exists(str(tmp_path / "other"))
