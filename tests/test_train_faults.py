"""Faults around a training run: one run per experiment folder, leftovers of killed writers, SIGINT/SIGTERM, a
missing device, a data-parallel launch that cannot start, a resumed run with another length."""
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import mindspore as ms
import pytest
from PIL import Image

import train_custom
from encoding_custom.datasets.synthetic import write_synthetic_ade20k
from encoding_custom.engine import (
    ExperimentBusyError,
    ExperimentLock,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    remove_stale_temp_files,
)
from encoding_custom.engine.losses import SegmentationLoss
from foundation.checkpoint_file import read_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "fixtures", "engine"))
from toys import NCLASS, ToySegData, ToySegNet  # noqa: E402

STACK_INDEPENDENT = ("locks, temp files and option errors of the scripts; what MindSpore takes part in (its SIGINT "
                     "handling with loader workers, its device probe) is marked both_stacks")

# Every wait on a child process is bounded by this (s); the runs take ~10-30 s on 2 loaded cores.
CHILD_TIMEOUT = 300


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    write_synthetic_ade20k(root, n_train=16, n_val=4, seed=3, size=(64, 96))
    return root


def _argv(root, checkpoints, exp="run", epochs=2):
    return ["--preset", "tiny", "--data_path", root, "--checkpoint_dir", str(checkpoints), "--exp_name", exp,
            "--mode", "pynative", "--base_size", "64", "--crop_size", "64", "--batch_size", "4",
            "--max_epochs", str(epochs), "--seed", "5"]


def _records(path):
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


# ----------------------------------------------------------------------------------------------- item 1: lock
def test_a_second_lock_on_one_folder_fails_at_once_naming_the_holder(tmp_path):
    with ExperimentLock(str(tmp_path / "exp")):
        with pytest.raises(ExperimentBusyError) as info:
            ExperimentLock(str(tmp_path / "exp")).acquire()
    message = str(info.value)
    assert str(tmp_path / "exp") in message and "pid %d" % os.getpid() in message
    with ExperimentLock(str(tmp_path / "exp")) as lock:  # released: free again, and a clean release is no takeover
        assert lock.takeover_message() is None


def _holder(path):
    """A child process that takes the experiment lock on ``path``, says so, and waits to be killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from encoding_custom.engine.experiment import ExperimentLock; "
                               "lock = ExperimentLock(sys.argv[1]).acquire(); print('held', flush=True); "
                               "time.sleep(600)", path], cwd=REPO, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([child.stdout], [], [], CHILD_TIMEOUT)
    assert ready and child.stdout.readline().strip() == "held"
    return child


def test_train_custom_refuses_a_folder_another_process_holds(data_root, tmp_path, capsys, monkeypatch):
    def training_network(*_args, **_kwargs):
        raise AssertionError("the network was built although the folder is taken")

    monkeypatch.setattr(train_custom, "training_network", training_network)
    holder = _holder(str(tmp_path / "ck" / "run"))
    try:
        assert train_custom.main(_argv(data_root, tmp_path / "ck")) == 2
    finally:
        holder.kill()
        holder.wait(timeout=30)
    err = capsys.readouterr().err
    assert "is in use by another run: pid %d" % holder.pid in err and str(tmp_path / "ck" / "run") in err
    assert not os.path.exists(tmp_path / "ck" / "run" / "metrics.jsonl")


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_message(data_root, tmp_path, capsys):
    child = _holder(str(tmp_path / "ck" / "run"))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=1)) == 0
    err = capsys.readouterr().err
    assert "taking over the lock of an earlier run that did not end cleanly (pid %d" % child.pid in err


def test_a_file_system_without_locks_runs_unprotected_with_a_warning(tmp_path, monkeypatch):
    def flock(_fd, _operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("encoding_custom.engine.experiment.fcntl.flock", flock)
    lock = ExperimentLock(str(tmp_path / "exp")).acquire()
    assert lock.takeover_message() == ("warning: %s: the file system does not support locks (No locks available): "
                                       "this run is not protected from a second one on the same folder"
                                       % (tmp_path / "exp"))
    lock.release()


# ----------------------------------------------------------------------------------- item 2: stale temp files
def test_temp_checkpoints_of_dead_writers_are_removed_at_the_next_start(data_root, tmp_path, capsys):
    exp = tmp_path / "ck" / "run"
    exp.mkdir(parents=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = ended.pid  # a writer that is gone (its pid is free until the system reuses it)
    stale = [exp / (".epoch_002.ckpt.tmp%d.ckpt" % dead), exp / (".last.ckpt.tmp%d.ckpt" % dead),
             exp / (".best.ckpt.tmp%d.k3j4h5.ckpt" % dead), exp / "data_check.json.x1y2.tmp",
             exp / (".data_check.json.tmp%d.a1b2.json" % dead)]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    (exp / "notes.tmp1.txt").write_text("not ours")
    (exp / ".notes.tmp1").write_text("not ours either")
    live = exp / (".converted.ckpt.tmp%d.zz99.ckpt" % os.getpid())  # e.g. modules.convert writing into the folder
    live.write_bytes(b"\0")
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=1)) == 0
    err = capsys.readouterr().err
    for path in stale:
        assert not path.exists() and "removed %s" % path in err
    assert (exp / "notes.tmp1.txt").exists() and (exp / ".notes.tmp1").exists() and live.exists()
    assert remove_stale_temp_files(str(tmp_path / "missing")) == []


# --------------------------------------------------------------------------------------- item 13: signals
def _toy_trainer(exp_dir, hook):
    net = ToySegNet()
    cfg = TrainConfig(lr=0.05, max_epochs=3, batch_size=4, exp_dir=str(exp_dir), progress=False, seed=7)
    return Trainer(net, SegmentationLoss(), ToySegData(24), cfg,
                   param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                   val_set=ToySegData(6, seed=1), nclass=NCLASS, step_hook=hook)


@pytest.mark.both_stacks
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_training_after_the_running_step(tmp_path, signum, capsys):
    sent = []

    def hook(trainer, epoch, index, step):
        if epoch == 1 and index == 2 and not sent:
            sent.append(step)
            os.kill(os.getpid(), signum)  # delivered now; the loop must finish this step and stop

    trainer = _toy_trainer(tmp_path, hook)
    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    err = info.value
    assert (err.signum, err.epoch, err.batch, err.last_epoch) == (signum, 2, 2, 1)
    assert err.last_checkpoint == os.path.join(str(tmp_path), "last.ckpt")
    assert trainer.global_step == sent[0]  # no step after the one that was running
    assert [r["epoch"] for r in _records(str(tmp_path / "metrics.jsonl"))] == [1]
    assert signal.getsignal(signum) is before  # the handlers of the caller are back
    assert "received: stopping after the current step" in capsys.readouterr().err


def test_a_signal_before_the_first_checkpoint_says_there_is_none(tmp_path, capsys):
    def hook(trainer, epoch, index, step):
        if index == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as info:
        _toy_trainer(tmp_path, hook).fit()
    assert info.value.last_checkpoint is None
    assert train_custom.report_interrupt(info.value, ["--preset", "tiny"]) == 143
    assert "no epoch had finished" in capsys.readouterr().err


def test_resume_command_drops_overwrite_and_old_resume_paths(monkeypatch):
    monkeypatch.delenv("LSEG_COMMAND", raising=False)
    command = train_custom.resume_command(["--preset", "tiny", "--overwrite", "--resume", "old/epoch_001.ckpt",
                                           "--exp_name", "my run"])
    assert command.endswith("--preset tiny --exp_name 'my run' --resume") and "old/epoch" not in command
    monkeypatch.setenv("LSEG_COMMAND", "bash train_custom.sh --max_epochs 3 --overwrite")
    assert train_custom.resume_command(["ignored"]) == "bash train_custom.sh --max_epochs 3 --resume"


@pytest.mark.parametrize("signum, workers, to_group", [
    (signal.SIGTERM, 0, False), pytest.param(signal.SIGINT, 2, True, marks=pytest.mark.both_stacks),
    (signal.SIGTERM, 2, True)])
def test_a_signal_to_a_real_run_exits_cleanly_with_the_resume_command(data_root, tmp_path, signum, workers, to_group):
    """SIGTERM to the process (a scheduler's kill), or a signal to its whole process group (Ctrl-C, ``scancel``,
    ``kill -- -PGID``) with data workers, which must neither die mid-task (the pool would wait for ever) nor print."""
    argv = _argv(data_root, tmp_path / "ck", epochs=40) + ["--workers", str(workers)]
    exp = tmp_path / "ck" / "run"
    proc = subprocess.Popen([sys.executable, "train_custom.py"] + argv, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + CHILD_TIMEOUT
        while time.time() < deadline and proc.poll() is None:
            if any(r.get("epoch") == 1 for r in _records(str(exp / "steps.jsonl"))):
                break  # epoch 1 is checkpointed and epoch 2 is running
            time.sleep(0.05)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # MindSpore turns a SIGINT that lands inside one of its calls into a SIGTERM to the process (see
    # StopSignals), so Ctrl-C ends with 130 or 143; a SIGTERM always with 143.
    assert proc.returncode in ((130, 143) if signum == signal.SIGINT else (143,)), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [line.strip() for line in err.splitlines()]
    assert sum("received: stopping after the current step" in line for line in lines) == 1
    # On a loaded machine epoch 2 may have been completed before the signal came: the message names what is there.
    completed = max(r["epoch"] for r in _records(str(exp / "metrics.jsonl")))
    assert completed >= 1 and "last good checkpoint: %s (epoch %d)" % (exp / "last.ckpt", completed) in lines
    command = next(line for line in lines if line.startswith("continue exactly with: "))
    assert command.endswith("--resume") and "--max_epochs 40" in command
    assert json.loads((exp / ".lock").read_text()).get("released")


# ------------------------------------------------------------------------------- item 15: resume with a new length
def test_resume_with_more_epochs_says_the_schedule_changes(data_root, tmp_path, capsys):
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=1)) == 0
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=2) + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "the checkpoint's run planned 1 epochs, this one 2: the poly lr schedule is recomputed for 2" in out


# ----------------------------------------------------------------------------------------- item 9: the device
@pytest.mark.both_stacks
def test_a_device_this_machine_lacks_is_one_line(data_root, tmp_path):
    if any(name.startswith("davinci") for name in os.listdir("/dev")):
        pytest.skip("this machine has an Ascend device")
    done = subprocess.run([sys.executable, "train_custom.py"] + _argv(data_root, tmp_path / "ck")
                          + ["--device_target", "Ascend"], cwd=REPO, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if line.startswith("train_custom.py: error:")]
    assert len(ours) == 1 and re.fullmatch(
        r"train_custom.py: error: --device_target 'Ascend' is not available here \(mindspore %s on this machine "
        r"offers: [A-Za-z, ]*CPU[A-Za-z, ]*\); pass one of those" % re.escape(ms.__version__), ours[0]), ours
    assert "Traceback" not in done.stderr and "[ERROR]" not in done.stderr  # MindSpore's probe logs are muted


@pytest.mark.both_stacks
def test_bfloat16_on_a_cpu_is_refused_in_one_line(data_root, tmp_path, capsys):
    status = train_custom.main(_argv(data_root, tmp_path / "ck") + ["--amp_level", "O1", "--amp_dtype", "bfloat16",
                                                                   "--device_target", "CPU"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("train_custom.py: error: --amp_dtype: mindspore %s has no bfloat16" % ms.__version__)
    assert err[0].endswith("(got 'bfloat16')") and not (tmp_path / "ck").exists()


def _launch_two(data_root, tmp_path, *extra):
    """``train_custom.sh --nproc 2``'s launcher on a tiny run; returns (exit status, stderr, seconds)."""
    command = [sys.executable, "-m", "scripts.launch", "--nproc", "2", "--log_dir", str(tmp_path / "logs"),
               "--grace", "5", "--", "train_custom.py", *_argv(data_root, tmp_path / "ck"), *extra]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    return done.returncode, done.stderr, time.monotonic() - started


@pytest.mark.both_stacks
def test_a_launch_whose_workers_cannot_start_ends_at_once_with_their_error(data_root, tmp_path):
    # The scheduler forms no device, the workers refuse theirs: msrun's scheduler waited 10 minutes here.
    if any(name.startswith("davinci") for name in os.listdir("/dev")):
        pytest.skip("this machine has an Ascend device")
    status, err, seconds = _launch_two(data_root, tmp_path, "--device_target", "Ascend")
    assert status == 2, err
    assert seconds < 60, f"the launch took {seconds:.0f} s to give up"
    errors = [line for line in err.splitlines() if line.startswith("train_custom.py: error:")]
    assert len(errors) == 1 and "--device_target 'Ascend' is not available here" in errors[0], err
    assert re.search(r"launch: worker [01] \(pid \d+, rank not yet announced\) exited with status 2; stopping the "
                     r"other processes:\n", err), err
    assert "Traceback" not in err and "restarting" not in err  # a refused device is not retried
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs[-1].startswith("worker_") and "attempt1" not in logs
    assert _processes_naming(str(tmp_path)) == []  # the scheduler and the other worker were stopped too


def _processes_naming(text):
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(os.path.join("/proc", entry, "cmdline"), "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.both_stacks
def test_a_launch_with_a_bad_option_prints_it_once(data_root, tmp_path):
    status, err, _ = _launch_two(data_root, tmp_path, "--batch_size", "0")
    assert status == 2
    assert err.splitlines() == [
        err.splitlines()[0],  # "launch: scheduler on 127.0.0.1:<port>, 2 worker(s), logs in ..."
        re.search(r"launch: scheduler \(pid \d+\) exited with status 2; no worker started:", err).group(0),
        "train_custom.py: error: --batch_size: must be >= 1 (got 0)",
        "launch: its whole output is in %s" % (tmp_path / "logs" / "scheduler.log")]
    assert not (tmp_path / "logs" / "worker_0.log").exists()


def test_amp_with_accumulation_trains_on_the_cpu_the_auto_device_picked(data_root, tmp_path, capsys):
    """The official ViT-L recipe accumulates 2 micro-batches; with --amp_level it was refused (by the Trainer with
    accumulation, and on the CPU by the options): encoding_custom.engine.train_step does both, on every device.
    Over 20 s (18-24 s in CI on 2 cores): a whole train_custom.py run, its GRAPH_MODE step compiled for both values
    of apply_update."""
    argv = _argv(data_root, tmp_path / "ck") + ["--device_target", "auto", "--amp_level", "O1",
                                                "--accumulate_grad_batches", "2", "--batch_size", "2"]
    assert train_custom.main(argv) == 0, capsys.readouterr().err
    records = _records(str(tmp_path / "ck" / "run" / "metrics.jsonl"))
    assert records[-1]["loss_scale"] > 0 and records[-1]["skipped_steps"] >= 0


def test_too_few_images_for_one_step_is_one_line(data_root, tmp_path, capsys):
    assert train_custom.main(_argv(data_root, tmp_path / "ck") + ["--max_train_images", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train_custom.py: error: Trainer: 3 training images give 0 batches of 4")


def test_resume_refuses_a_network_other_than_the_checkpoints(data_root, tmp_path, capsys):
    """Depth, activation and arch 1 vs 2 have no parameters of their own: the strict load alone cannot see them."""
    block = ["--arch_option", "1", "--block_depth", "2"]
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=1) + block + ["--activation", "tanh"]) == 0
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=2) + block[:3] + ["3", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("train_custom.py: error: --resume: %s was trained with --block_depth 2, --activation tanh; this "
                   "run builds --block_depth 3, --activation lrelu: pass the checkpoint's values"
                   % (tmp_path / "ck" / "run" / "last.ckpt"))


# ------------------------------------------------------------------------------------- item 4: the data check
def test_bad_training_data_stops_before_training_or_is_skipped_on_request(tmp_path, capsys):
    root = str(tmp_path / "data")
    write_synthetic_ade20k(root, n_train=16, n_val=4, seed=3, size=(64, 96))
    masks = os.path.join(root, "ADEChallengeData2016", "annotations", "training")
    bad = sorted(os.listdir(masks))[3]
    Image.new("L", (10, 10)).save(os.path.join(masks, bad))  # a mask of the wrong size
    assert train_custom.main(_argv(root, tmp_path / "ck")) == 2
    err = capsys.readouterr().err
    assert "bad data in" in err and os.path.splitext(bad)[0] in err
    assert not os.path.exists(tmp_path / "ck" / "run" / "steps.jsonl")  # stopped before the first step
    shutil.rmtree(tmp_path / "ck")
    assert train_custom.main(_argv(root, tmp_path / "ck", epochs=1) + ["--skip_bad_samples"]) == 0
    captured = capsys.readouterr()
    assert os.path.splitext(bad)[0] in captured.err and "15 train" in captured.out


# ------------------------------------------------------------------------------ item 10: bad --weights / --resume
@pytest.mark.parametrize("option", ["--weights", "--resume"])
def test_a_damaged_checkpoint_is_one_line_naming_it(data_root, tmp_path, capsys, option):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"\x0a\x05hello this is not a checkpoint")
    assert train_custom.main(_argv(data_root, tmp_path / "ck") + [option, str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train_custom.py: error: ") and str(damaged) in err


# ------------------------------------------------------------------------------ a full disk
def _mount_small_disk(folder) -> bool:
    """A 2 MB tmpfs at ``folder`` where this machine lets the test mount one (root with CAP_SYS_ADMIN)."""
    os.makedirs(folder, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0 if shutil.which("mount") else False


@pytest.mark.both_stacks  # how mindspore.save_checkpoint fails and what it leaves differ by version
def test_a_full_disk_is_one_line_with_the_sizes_and_leaves_no_partial_file(data_root, tmp_path, capsys, monkeypatch):
    """A real 2 MB tmpfs where the machine allows mounting one, else a writer that raises ENOSPC as MindSpore's does
    after leaving its partial file; either way the first checkpoint does not fit."""
    disk = tmp_path / "small_disk"
    mounted = _mount_small_disk(disk)
    try:
        if not mounted:
            def full(parameters, name, **kwargs):
                with open(os.path.splitext(name)[0] + ".tmp", "wb") as partial:  # MindSpore writes <stem>.tmp first
                    partial.write(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(ms, "save_checkpoint", full)
        assert train_custom.main(_argv(data_root, disk, epochs=1)) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("[CRITICAL]")]  # MindSpore's own log line
        assert re.fullmatch(r"train_custom.py: error: no space left in %s while writing epoch_001.ckpt: a "
                            r"checkpoint needs \d+\.\d MB, \d+\.\d MB are free; no partial file was kept"
                            % re.escape(str(disk / "run")), lines[-2]), err
        assert lines[-1] == "  no epoch had finished, so there is no checkpoint: free some space and start again"
        assert not [name for name in os.listdir(disk / "run") if ".tmp" in name or name.endswith(".ckpt")]
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_disk_full_after_a_checkpoint_names_it_and_the_resume_command(data_root, tmp_path, capsys, monkeypatch):
    save = ms.save_checkpoint
    calls = []

    def full_at_the_second_epoch(parameters, name, **kwargs):
        calls.append(name)
        if "epoch_002" in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(parameters, name, **kwargs)

    monkeypatch.setattr(ms, "save_checkpoint", full_at_the_second_epoch)
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=2)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    last = str(tmp_path / "ck" / "run" / "last.ckpt")
    assert lines[-2] == "  last good checkpoint: %s" % last
    assert lines[-1].startswith("  free some space, then continue exactly with: ") and lines[-1].endswith(" --resume")
    monkeypatch.setattr(ms, "save_checkpoint", save)
    assert read_checkpoint(last)[2]["epoch"] == 1


def test_a_disk_full_while_logging_keeps_every_log_line_whole(data_root, tmp_path, capsys, monkeypatch):
    """metrics.jsonl of epoch 2 gets half its line on disk, then ENOSPC: the half line is cut off again."""
    write = os.write

    def full_at_the_second_metrics_line(descriptor, data):
        target = os.readlink("/proc/self/fd/%d" % descriptor)
        if target.endswith("metrics.jsonl") and b'"epoch": 2' in bytes(data):
            write(descriptor, bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(descriptor, data)

    monkeypatch.setattr(os, "write", full_at_the_second_metrics_line)
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=2)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    run = tmp_path / "ck" / "run"
    assert re.fullmatch(r"train_custom.py: error: no space left in %s while writing metrics.jsonl: a checkpoint needs "
                        r"\d+\.\d MB, \d+\.\d MB are free; no partial file was kept" % re.escape(str(run)),
                        lines[-3]), lines
    assert lines[-2] == "  last good checkpoint: %s" % (run / "last.ckpt")
    monkeypatch.setattr(os, "write", write)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in records if "event" not in r] == [1]
    assert train_custom.main(_argv(data_root, tmp_path / "ck", epochs=2) + ["--resume"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in records if "event" not in r] == [1, 2]
