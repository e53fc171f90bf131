"""Trainer on a toy torch-style network: learns, logs the poly lr every step, resumes exactly after an interruption,
accumulation equals the larger batch, AMP works with accumulation (an overflowing group is skipped), NaN stops
cleanly, the epoch end is a named hook list and its printed line goes through the ``lseg.train`` logger."""
import json
import logging
import os
import sys

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from encoding_custom.engine import NonFiniteLossError, TrainConfig, Trainer, callbacks, poly_lr
from encoding_custom.engine.losses import SegmentationLoss
from foundation.checkpoint_file import load_checkpoint
from modules import tnn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from toys import NCLASS, ToySegData, ToySegNet  # noqa: E402

pytestmark = pytest.mark.both_stacks


class _Interrupt(Exception):
    pass


def _trainer(exp_dir, epochs=3, accumulate=1, batch=4, n_train=24, net=None, hook=None, train_set=None, lr=0.05,
             amp_level="O0", progress=False, stop_after_epoch=None):
    ms.set_seed(0)
    net = net or ToySegNet()
    cfg = TrainConfig(lr=lr, max_epochs=epochs, batch_size=batch, accumulate_grad_batches=accumulate,
                      exp_dir=str(exp_dir), progress=progress, seed=7, keep_last=2, amp_level=amp_level,
                      stop_after_epoch=stop_after_epoch)
    return Trainer(net, SegmentationLoss(), train_set or ToySegData(n_train), cfg,
                   param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                   val_set=ToySegData(6, seed=1), nclass=NCLASS, step_hook=hook)


def _read(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_trains_logs_lr_every_step_and_writes_outputs(tmp_path):
    trainer = _trainer(tmp_path / "run", epochs=3, accumulate=2, lr=0.2)
    history = trainer.fit()
    assert trainer.steps_per_epoch == 3  # 24 images / batch 4 = 6 micro-batches / 2
    assert history[-1]["mIoU"] > history[0]["mIoU"] + 0.1 and history[-1]["mIoU"] > 0.5
    steps = _read(str(tmp_path / "run" / "steps.jsonl"))
    assert [s["global_step"] for s in steps] == list(range(9))
    for s in steps:
        assert s["lrs"][0] == pytest.approx(poly_lr(0.2, s["global_step"], 3, 3))
        assert s["lrs"][1] == pytest.approx(poly_lr(2.0, s["global_step"], 3, 3))
    metrics = _read(str(tmp_path / "run" / "metrics.jsonl"))
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and metrics == history
    names = set(os.listdir(str(tmp_path / "run")))
    assert {"last.ckpt", "best.ckpt", "epoch_002.ckpt", "epoch_003.ckpt", "curves.png"} <= names
    assert "epoch_001.ckpt" not in names  # keep_last=2
    with Image.open(str(tmp_path / "run" / "curves.png")) as png:
        assert png.size[0] > png.size[1] > 100 and len(set(png.convert("L").getdata())) > 2


@pytest.mark.parametrize("mode, accumulate", [("pynative", 1), ("graph", 2)])
def test_resume_after_mid_epoch_interruption_reproduces_the_run(tmp_path, mode, accumulate):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    full = _trainer(tmp_path / "full", accumulate=accumulate)
    full.fit()

    def kill_mid_epoch_two(trainer, epoch, index, global_step):
        if epoch == 1 and index == 3:
            raise _Interrupt()

    interrupted = _trainer(tmp_path / "cut", accumulate=accumulate, hook=kill_mid_epoch_two)
    with pytest.raises(_Interrupt):
        interrupted.fit()
    # A new process: different initial weights, which the checkpoint must fully replace.
    ms.set_seed(123)
    resumed = _trainer(tmp_path / "cut", accumulate=accumulate, net=ToySegNet())
    resumed.resume(str(tmp_path / "cut" / "last.ckpt"))
    assert resumed.start_epoch == 1 and resumed.global_step == full.steps_per_epoch
    resumed.fit()
    full_steps = _read(str(tmp_path / "full" / "steps.jsonl"))
    cut_steps = _read(str(tmp_path / "cut" / "steps.jsonl"))
    assert [(s["global_step"], s["lrs"]) for s in cut_steps] == [(s["global_step"], s["lrs"]) for s in full_steps]
    np.testing.assert_allclose([s["loss"] for s in cut_steps], [s["loss"] for s in full_steps], rtol=1e-5)
    want, got = _weights(full.network), _weights(resumed.network)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [m["epoch"] for m in _read(str(tmp_path / "cut" / "metrics.jsonl"))] == [1, 2, 3]


def test_accumulation_equals_the_larger_batch_without_batch_norm(tmp_path):
    big = _trainer(tmp_path / "big", epochs=1, batch=8, n_train=16, net=ToySegNet(batch_norm=False))
    ms.set_seed(0)
    small = _trainer(tmp_path / "small", epochs=1, batch=4, accumulate=2, n_train=16,
                     net=ToySegNet(batch_norm=False))
    # Same start: copy the big run's initial weights into the small run's network.
    for p_small, p_big in zip(small.network.get_parameters(), big.network.get_parameters()):
        p_small.set_data(ms.Tensor(p_big.asnumpy()))
    big.fit()
    small.fit()
    assert big.global_step == small.global_step == 2
    for name, value in _weights(big.network).items():
        np.testing.assert_allclose(_weights(small.network)[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_two_micro_batches_of_one_equal_one_batch_of_two_and_the_checkpoint_holds_them(tmp_path, mode):
    """Exact for a network without batch norm (BN normalises a batch of 2 with other statistics than two batches
    of 1) and images with equally many labelled pixels (the loss is a mean over them: the mean of two per-image means
    is then the mean over both), so one step of either must give the same weights up to float32 rounding."""
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    pair = _trainer(tmp_path / "pair", epochs=1, batch=2, n_train=2, net=ToySegNet(batch_norm=False))
    singles = _trainer(tmp_path / "singles", epochs=1, batch=1, accumulate=2, n_train=2,
                       net=ToySegNet(batch_norm=False))
    for p_singles, p_pair in zip(singles.network.get_parameters(), pair.network.get_parameters()):
        p_singles.set_data(ms.Tensor(p_pair.asnumpy()))
    start = _weights(pair.network)
    pair.fit()
    singles.fit()
    assert pair.global_step == singles.global_step == 1
    trained = _weights(singles.network)
    for name, value in _weights(pair.network).items():
        assert not np.array_equal(value, start[name]), name  # one real step
        assert np.abs(trained[name] - value).max() <= 1e-6, name
    saved = ToySegNet(batch_norm=False)
    load_checkpoint(str(tmp_path / "singles" / "last.ckpt"), saved)
    for name, value in _weights(saved).items():
        np.testing.assert_array_equal(value, trained[name], err_msg=name)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_amp_o1_with_accumulation_is_built_and_trains(tmp_path, mode):
    """Accumulation 2 with AMP O1 (the official recipe's pair) builds, compiles and runs on CPU: the loss-scale
    overflow check of AccumulatingTrainStep has a CPU form (MindSpore's has not, see test_engine_train_step)."""
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    trainer = _trainer(tmp_path / "amp", epochs=2, accumulate=2, n_train=16, amp_level="O1")
    start = _weights(trainer.network)
    trainer.fit()
    steps = _read(str(tmp_path / "amp" / "steps.jsonl"))
    assert trainer.steps_per_epoch == 2 and [s["global_step"] for s in steps] == [0, 1, 2, 3]
    assert all(np.isfinite(s["loss"]) for s in steps)
    assert float(trainer.train_step.scale_sense.asnumpy()) == 2.0 ** 16  # no overflow on this data
    trained = _weights(trainer.network)
    assert any(not np.array_equal(trained[name], value) for name, value in start.items())
    saved = ToySegNet()
    load_checkpoint(str(tmp_path / "amp" / "last.ckpt"), saved)
    for name, value in _weights(saved).items():
        np.testing.assert_array_equal(value, trained[name], err_msg=name)


def test_amp_skips_the_group_of_an_overflowing_micro_batch_and_goes_on(tmp_path):
    data = ToySegData(16, nan_at=(0, 3))  # image 3 is NaN in epoch 1: its micro-batch overflows
    trainer = _trainer(tmp_path / "amp", epochs=1, accumulate=2, n_train=16, train_set=data, amp_level="O1")
    nan_batch = [i for i, b in enumerate(trainer.loader.batch_indices(0)) if 3 in b][0]
    trainer.fit()
    steps = _read(str(tmp_path / "amp" / "steps.jsonl"))
    assert [s["batch"] for s in steps] == [b for b in (1, 3) if b // 2 != nan_batch // 2]  # that group: no step
    assert [s["global_step"] for s in steps] == [0]
    assert int(trainer.optimizer.global_step.asnumpy().reshape(-1)[0]) == 1
    assert float(trainer.train_step.scale_sense.asnumpy()) == 2.0 ** 15  # lowered once, for the skipped group
    assert "event" not in _read(str(tmp_path / "amp" / "metrics.jsonl"))[-1]
    # The checkpoint's record counts the skipped step and keeps the scale: a resume accepts it and goes on exactly.
    resumed = _trainer(tmp_path / "amp", epochs=2, accumulate=2, n_train=16, train_set=data, amp_level="O1")
    resumed.resume(str(tmp_path / "amp" / "last.ckpt"))
    assert (resumed.start_epoch, resumed.global_step, resumed.skipped_steps) == (1, 1, 1)
    assert float(resumed.train_step.scale_sense.asnumpy()) == 2.0 ** 15
    resumed.fit()
    assert resumed.global_step == 3 and int(resumed.optimizer.global_step.asnumpy().reshape(-1)[0]) == 3


@pytest.mark.skipif("O2" not in tnn.GRAPH_AMP_LEVELS, reason="O2 does not compile in GRAPH_MODE with this layer")
def test_amp_o2_with_accumulation_trains_in_graph_mode(tmp_path, graph_mode):
    """O2 casts the network to float16 (on CPU too: its logits differ from O0's), so this exercises float16
    gradients under the loss scale."""
    trainer = _trainer(tmp_path / "o2", epochs=1, accumulate=2, n_train=16, amp_level="O2")
    trainer.fit()
    assert trainer.global_step == 2 and all(np.isfinite(s["loss"]) for s in trainer.step_log)


def test_the_epoch_end_is_a_named_hook_list_that_takes_more_hooks(tmp_path):
    seen = []

    class Spy(callbacks.EpochEndHook):
        name = "spy"

        def on_epoch_end(self, trainer, record):
            seen.append((dict(record), os.path.isfile(str(tmp_path / "run" / "last.ckpt"))))

    trainer = _trainer(tmp_path / "run", epochs=2, n_train=8)
    assert [hook.name for hook in trainer.epoch_end_hooks] == ["validation", "metrics.jsonl", "checkpoint",
                                                              "curves.png", "epoch line"]
    trainer.epoch_end_hooks.append(Spy())
    trainer.fit()
    lines = _read(str(tmp_path / "run" / "metrics.jsonl"))
    assert [record for record, _ in seen] == lines and all(after_checkpoint for _, after_checkpoint in seen)
    assert [list(line) for line in lines] == [["epoch", "global_step", "train_loss", "lrs", "time_s", "world_size",
                                               "pixAcc", "mIoU", "best_mIoU"]] * 2


def test_the_epoch_line_goes_through_the_train_logger_to_stdout_on_rank_0_only(tmp_path, capsys, monkeypatch):
    received = []
    handler = logging.Handler()
    handler.emit = lambda record: received.append(record.getMessage())
    logging.getLogger("lseg.train").addHandler(handler)
    try:
        trainer = _trainer(tmp_path / "run", epochs=1, n_train=8, progress=True)
        trainer.fit()
        line = "epoch 1/1: train_loss %.4f, pixAcc %.4f, mIoU %.4f -> %s" % (
            trainer.history[0]["train_loss"], trainer.history[0]["pixAcc"], trainer.history[0]["mIoU"],
            str(tmp_path / "run" / "epoch_001.ckpt"))
        assert line + "\n" in capsys.readouterr().out and received == [line]
        monkeypatch.setattr(callbacks, "is_main_process", lambda: False)  # what ranks > 0 see
        callbacks.LogEpochLine().on_epoch_end(trainer, trainer.history[0])
        assert capsys.readouterr().out == ""
    finally:
        logging.getLogger("lseg.train").removeHandler(handler)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    data = ToySegData(16, nan_at=(1, 5))  # epoch 2 (0-based 1) meets a NaN image
    trainer = _trainer(tmp_path / "nan", epochs=3, n_train=16, train_set=data)
    order = trainer.loader.batch_indices(1)
    batch_with_nan = [i for i, b in enumerate(order) if 5 in b][0]
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 2, batch %d (optimizer step %d)" % (batch_with_nan, 4 + batch_with_nan) in message
    assert "last.ckpt" in message
    meta = load_checkpoint(str(tmp_path / "nan" / "last.ckpt"), ToySegNet())
    assert meta["epoch"] == 1
    records = _read(str(tmp_path / "nan" / "metrics.jsonl"))
    assert records[-1]["event"] == "stopped" and not os.path.exists(str(tmp_path / "nan" / "epoch_002.ckpt"))


def test_too_little_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="accumulate_grad_batches=4"):
        _trainer(tmp_path / "small", n_train=8, batch=4, accumulate=4)


def test_fresh_run_refuses_an_existing_run_unless_overwrite(tmp_path, capsys):
    first = _trainer(tmp_path / "run", epochs=1, n_train=8)
    first.fit()
    again = _trainer(tmp_path / "run", epochs=1, n_train=8)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        again.fit()
    again.config.overwrite = True
    capsys.readouterr()
    again.fit()
    assert [m["epoch"] for m in _read(str(tmp_path / "run" / "metrics.jsonl"))] == [1]
    assert ("--overwrite: deleted the earlier run's 3 checkpoint(s) in %s (the last: best.ckpt) and its logs"
            % (tmp_path / "run")) in capsys.readouterr().err  # what quickstart.sh, which passes it, deletes


def test_evaluation_is_sharded_by_rank_and_all_reduced(monkeypatch):
    from encoding_custom.engine import distributed, evaluate
    from encoding_custom.engine import trainer as trainer_module

    data = ToySegData(5, seed=2)
    seen, reduced = [], []

    def predict(images):
        seen.extend(float(img[0, 0, 0]) for img in images)
        return np.zeros(images.shape[:1] + images.shape[2:], np.int64)

    monkeypatch.setattr(distributed, "get_rank", lambda: 1)
    # The sharding asks the distributed module, the evaluation loop the names it imported from it.
    for module in (distributed, trainer_module):
        monkeypatch.setattr(module, "get_world_size", lambda: 2)
    monkeypatch.setattr(trainer_module, "all_reduce_metric", lambda metric: reduced.append(metric) or metric)
    metric = evaluate(predict, data, NCLASS, batch_size=2)
    assert seen == [float(data.images[i][0, 0, 0]) for i in (1, 3)]  # rank 1 of 2: items 1 and 3
    assert reduced == [metric]


def test_stop_after_epoch_keeps_the_long_schedule_and_a_resume_continues_it(tmp_path):
    """The official zero-shot recipe: poly over 200 epochs, stopped after 4 (here: over 3, stopped after 1)."""
    full = _trainer(tmp_path / "full")
    full.fit()
    stopped = _trainer(tmp_path / "cut", stop_after_epoch=1)
    assert [r["epoch"] for r in stopped.fit()] == [1]
    steps = _read(str(tmp_path / "cut" / "steps.jsonl"))
    assert [s["lrs"] for s in steps] == [s["lrs"] for s in _read(str(tmp_path / "full" / "steps.jsonl"))][:len(steps)]
    ms.set_seed(123)
    resumed = _trainer(tmp_path / "cut", net=ToySegNet())
    resumed.resume(str(tmp_path / "cut" / "last.ckpt"))
    assert [r["epoch"] for r in resumed.fit()] == [1, 2, 3]  # the history read back from metrics.jsonl
    want, got = _weights(full.network), _weights(resumed.network)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
