"""Issue 8 acceptance on CPU: MindSpore's dynamic cluster (scheduler + 2 workers on 127.0.0.1, free port) running
tests/fixtures/distributed/toy_train.py, started by MindSpore's own launcher where the stack has one (msrun on the
current stack, the README's route for several hosts; scripts/launch.py on the legacy one; tests/launchers.py).

* both workers end with identical weights, equal (float tolerance) to one process trained in PyNative on the
  concatenated batches — which also proves the checkpoint holds the trained values (biases included);
* exactly one checkpoint and one log are written (by rank 0);
* the sharded, all-reduced validation equals a single-process evaluation of the saved checkpoint;
* killing one worker under scripts/launch.py ends the whole job within bounded time, non-zero, naming the rank.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "tests", "fixtures", "distributed", "toy_train.py")
sys.path.insert(0, os.path.dirname(TOY))
import toy_train  # noqa: E402
from launchers import NATIVE_LAUNCHER, all_logs, rank_logs, run_data_parallel  # noqa: E402

pytestmark = pytest.mark.both_stacks

JOB_TIMEOUT_S = 240  # the launcher's own bound; a healthy run takes ~30 s here


def _scripts_launch(tmp_path, *toy_args, nproc=2):
    return [sys.executable, "-m", "scripts.launch", "--nproc", str(nproc), "--log_dir", str(tmp_path / "logs"),
            "--timeout", str(JOB_TIMEOUT_S), "--grace", "5", "--", TOY, "--out_dir", str(tmp_path / "out"),
            *toy_args]


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    """One launcher run: 2 workers × batch 2, 2 epochs of 12 images (6 steps), validation on 7 images."""
    tmp_path = tmp_path_factory.mktemp("dist")
    result = run_data_parallel(2, str(tmp_path / "logs"), [TOY, "--out_dir", str(tmp_path / "out"), "--dump_dir",
                                                            str(tmp_path / "dump"), "--batch_size", "2", "--epochs",
                                                            "2"], JOB_TIMEOUT_S, launcher=NATIVE_LAUNCHER)
    assert result.returncode == 0, result.stderr[-3000:] + all_logs(str(tmp_path / "logs"))
    return tmp_path


def test_both_workers_hold_identical_weights(two_worker_run):
    rank0 = np.load(two_worker_run / "dump" / "rank0.npz")
    rank1 = np.load(two_worker_run / "dump" / "rank1.npz")
    assert sorted(rank0.files) == sorted(rank1.files) and len(rank0.files) == 4
    for name in rank0.files:
        assert np.array_equal(rank0[name], rank1[name]), name


def test_rank0_alone_writes_one_checkpoint_and_one_log(two_worker_run):
    assert sorted(os.listdir(two_worker_run / "out")) == ["log.jsonl", "toy.ckpt"]
    records = [json.loads(line) for line in (two_worker_run / "out" / "log.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["world_size"] == 2
    assert len(records[0]["losses"]) == 6  # 12 images / (2 devices × 2) × 2 epochs
    worker_logs = rank_logs(str(two_worker_run / "logs"))
    assert sorted(worker_logs) == [0, 1]

    def progress_lines(text):
        return [line for line in text.splitlines() if re.match(r"epoch \d+ step \d+ loss", line)]
    assert len(progress_lines(worker_logs[0])) == 6 and progress_lines(worker_logs[1]) == []


def _reference_single_process():
    """One PyNative process, batch 4 (= 2 devices × 2): the data-parallel run must reproduce it."""
    net = toy_train.build_net(0)
    initial = toy_train.parameters_as_numpy(net)
    losses = toy_train.train(net, toy_train.ToySegmentationSet(12, 0), epochs=2, batch_size=4, base_lr=2.0, seed=0,
                             log=lambda line: None)
    return initial, toy_train.parameters_as_numpy(net), losses


def test_checkpoint_equals_single_process_training_on_the_concatenated_batch(two_worker_run):
    import mindspore as ms
    initial, reference, _ = _reference_single_process()
    saved = {name: value.asnumpy() for name, value in ms.load_checkpoint(
        str(two_worker_run / "out" / "toy.ckpt")).items()}
    assert sorted(saved) == sorted(reference)
    for name in reference:
        # Every tensor moved (a stale, untrained value would equal the initial one) and matches the reference.
        assert np.abs(reference[name] - initial[name]).max() > 1e-3, name
        np.testing.assert_allclose(saved[name], reference[name], rtol=0, atol=2e-6, err_msg=name)


def test_sharded_validation_equals_single_process_evaluation_of_the_checkpoint(two_worker_run):
    import mindspore as ms
    net = toy_train.build_net(123)  # different weights, all overwritten by the checkpoint
    not_loaded, unused = ms.load_param_into_net(net, ms.load_checkpoint(str(two_worker_run / "out" / "toy.ckpt")))
    assert not_loaded == [] and unused == []
    val_set = toy_train.ToySegmentationSet(7, 1)
    metric = toy_train.evaluate(net, val_set, range(len(val_set)))
    record = json.loads((two_worker_run / "out" / "log.jsonl").read_text().splitlines()[0])
    assert (record["total_correct"], record["total_label"]) == (metric.total_correct, metric.total_label) == (
        metric.total_correct, 7 * 8 * 8)
    pix_acc, miou = metric.get()
    assert record["pixAcc"] == pytest.approx(pix_acc, abs=1e-12)
    assert record["mIoU"] == pytest.approx(miou, abs=1e-12)
    # Each rank evaluated only its shard (4 and 3 images), and the reduction restored the full counts.
    shard_lines = [line for text in rank_logs(str(two_worker_run / "logs")).values()
                   for line in text.splitlines() if "val pixels" in line]
    assert sorted(shard_lines) == ["rank 0: evaluated 256 of 448 val pixels", "rank 1: evaluated 192 of 448 val pixels"]


def test_killing_one_worker_stops_the_job_and_names_the_rank(tmp_path):
    launcher = subprocess.Popen(_scripts_launch(tmp_path, "--epochs", "200", "--step_sleep", "0.5"), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rank_log = {r: tmp_path / "logs" / f"rank_{r}.log" for r in (0, 1)}
    deadline = time.monotonic() + JOB_TIMEOUT_S
    try:
        # Wait until rank 0 has trained a few steps (so the victim is inside the all-reducing training loop).
        while time.monotonic() < deadline:
            if launcher.poll() is not None:
                pytest.fail(f"the job ended before the kill: {launcher.communicate()}")
            if rank_log[0].exists() and "step 3 loss" in rank_log[0].read_text() and rank_log[1].exists():
                break
            time.sleep(0.5)
        else:
            pytest.fail("rank 0 never reached step 3")
        announcement = next(line for line in rank_log[1].read_text().splitlines() if "[distributed] rank 1" in line)
        victim = int(announcement.split("(pid ")[1].rstrip(")"))
        survivor_line = next(line for line in rank_log[0].read_text().splitlines() if "[distributed] rank 0" in line)
        survivor = int(survivor_line.split("(pid ")[1].rstrip(")"))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = launcher.communicate(timeout=60)
        elapsed = time.monotonic() - killed_at
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 128 + signal.SIGKILL
    assert "launch: rank 1 (worker" in stderr and "was killed by SIGKILL" in stderr, stderr
    assert elapsed < 30, f"the job took {elapsed:.1f} s to stop after the kill"
    with pytest.raises(ProcessLookupError):
        os.kill(survivor, 0)
