"""Fast tests of encoding_custom.engine.distributed (single process) and scripts/launch.py (with a MindSpore-free
fake worker). The real 2-worker MindSpore cluster is exercised in test_distributed_cluster.py."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from encoding_custom.engine import distributed as dist
from encoding_custom.engine.data import BatchLoader, epoch_indices
from encoding_custom.evaluation.metrics import SegmentationMetric
from scripts import launch

pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_WORKER = os.path.join(REPO, "tests", "fixtures", "distributed", "fake_worker.py")


# ---------------------------------------------------------------- sharding

@pytest.mark.parametrize("n_items,world", [(12, 2), (13, 2), (17, 4)])
def test_training_shards_are_disjoint_equal_sized_and_follow_the_epoch_permutation(n_items, world):
    shards = [epoch_indices(n_items, 3, 5, rank=r, world_size=world) for r in range(world)]
    per_rank = n_items // world
    assert all(len(shard) == per_rank for shard in shards)
    union = np.concatenate(shards)
    assert len(set(union.tolist())) == per_rank * world
    single = epoch_indices(n_items, 3, 5, rank=0, world_size=1)
    assert sorted(single.tolist()) == list(range(n_items))  # one device's order is a permutation of the set
    # Step s of per-device batch b on W ranks covers exactly the items a single device of batch b*W sees at step s,
    # so the ranks together take a prefix of the single-device permutation.
    batch = 1
    for step in range(per_rank // batch):
        together = sorted(np.concatenate([shard[step * batch:(step + 1) * batch] for shard in shards]).tolist())
        assert together == sorted(single[step * batch * world:(step + 1) * batch * world].tolist())


def test_training_order_is_reseeded_per_epoch_and_reproducible():
    epoch0 = epoch_indices(40, 0, 1, rank=1, world_size=2).tolist()
    epoch1 = epoch_indices(40, 1, 1, rank=1, world_size=2).tolist()
    assert epoch0 != epoch1
    assert epoch_indices(40, 0, 1, rank=1, world_size=2).tolist() == epoch0
    assert epoch_indices(40, 0, 2, rank=1, world_size=2).tolist() != epoch0
    assert len(epoch0) == 20


def test_evaluation_shards_cover_every_item_exactly_once():
    n_items, world = 7, 3
    shards = [dist.shard_for_evaluation(n_items, rank=r, world_size=world) for r in range(world)]
    assert [len(s) for s in shards] == [3, 2, 2]
    assert sorted(i for s in shards for i in s.tolist()) == list(range(n_items))
    assert dist.shard_for_evaluation(n_items, 1, world).tolist() == [1, 4]


class _IndexItems:
    """10 items whose image and mask are filled with their own index (a batch tells which items it holds)."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return np.full((3, 2, 2), index, np.float32), np.full((2, 2), index, np.int32)


def test_rank_shards_plug_into_the_engine_batch_loader_as_its_sampler():
    def rank1_training_order(epoch):
        return epoch_indices(10, epoch, 0, rank=1, world_size=2)

    loader = BatchLoader(_IndexItems(), batch_size=2, sampler=rank1_training_order)
    seen = [int(mask[0, 0, 0]) for _, mask in loader.iterate(epoch=4)]
    assert seen == rank1_training_order(4)[0:4:2].tolist()  # 5 items: two full batches, the fifth dropped
    evaluation = BatchLoader(_IndexItems(), batch_size=2, drop_last=False,
                             sampler=lambda epoch: dist.shard_for_evaluation(10, rank=1, world_size=3))
    seen = [mask[:, 0, 0].tolist() for _, mask in evaluation.iterate(epoch=0)]
    assert seen == [[1, 4], [7]]  # every item of the shard, the last batch smaller


def test_invalid_rank_is_an_error_naming_it():
    with pytest.raises(ValueError, match="rank 2 is outside a world of size 2"):
        dist.shard_for_evaluation(10, rank=2, world_size=2)


# ---------------------------------------------------------------- single-process behaviour

def test_accessors_without_a_cluster():
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process(), dist.is_distributed()) == (0, 1, True,
                                                                                                         False)
    assert dist.global_batch_size(4) == 4 and dist.global_batch_size(4, world_size=8) == 32


def test_launcher_environment_detection():
    assert not dist.launched_distributed({})
    assert dist.launched_distributed({"MS_ROLE": "MS_WORKER"})
    assert dist.launched_distributed({"OMPI_COMM_WORLD_SIZE": "8"})
    assert dist.launched_distributed({"RANK_TABLE_FILE": "/x/hccl_8p.json", "RANK_SIZE": "8"})
    assert not dist.launched_distributed({"RANK_TABLE_FILE": "/x/hccl_1p.json", "RANK_SIZE": "1"})
    with pytest.raises(ValueError, match="RANK_SIZE must be an integer, got 'eight'"):
        dist.launched_distributed({"RANK_TABLE_FILE": "/x/hccl_8p.json", "RANK_SIZE": "eight"})


def test_init_distributed_is_a_no_op_without_a_launcher(monkeypatch):
    import mindspore as ms
    for name in ("MS_ROLE", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    context = dist.init_distributed("CPU")
    assert context == dist.DistributedContext(0, 1, False, "") and context.is_main
    assert ms.get_context("mode") == ms.PYNATIVE_MODE
    with pytest.raises(ValueError, match="device_target"):
        dist.init_distributed("TPU")


def test_cluster_cpu_split_gives_the_scheduler_its_own_cpu():
    assert dist.cluster_cpu_split({0, 1, 2, 3}, "MS_SCHED") == {3}
    assert dist.cluster_cpu_split({0, 1, 2, 3}, "MS_WORKER") == {0, 1, 2}
    assert dist.cluster_cpu_split({4, 9}, "MS_WORKER") == {4}
    assert dist.cluster_cpu_split({5}, "MS_SCHED") is None and dist.cluster_cpu_split({5}, "MS_WORKER") is None


needs_two_cpus = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                    reason="needs Linux CPU affinity and 2+ CPUs")


@needs_two_cpus
def test_cluster_start_affinity_keeps_workers_off_the_scheduler_cpu_during_init_only():
    allowed = os.sched_getaffinity(0)
    seen = {}

    def record_thread_affinity():
        seen["thread"] = os.sched_getaffinity(0)

    with dist.cluster_start_affinity("MS_WORKER") as cpus:
        seen["inside"] = os.sched_getaffinity(0)
        started_inside = threading.Thread(target=record_thread_affinity)  # stands for MindSpore's rpc threads
        started_inside.start()
        started_inside.join()
    assert cpus == allowed - {max(allowed)} == seen["inside"] == seen["thread"]
    assert os.sched_getaffinity(0) == allowed  # the caller (later compute threads) gets every CPU back
    with dist.cluster_start_affinity("MS_WORKER", enabled=False) as cpus:
        assert cpus is None and os.sched_getaffinity(0) == allowed


@needs_two_cpus
def test_cluster_start_affinity_leaves_the_scheduler_on_its_cpu():
    allowed = os.sched_getaffinity(0)
    try:
        with dist.cluster_start_affinity("MS_SCHED") as cpus:
            pass
        assert cpus == {max(allowed)} == os.sched_getaffinity(0)
    finally:
        os.sched_setaffinity(0, allowed)


def test_rank_zero_only_runs_on_rank_zero(monkeypatch):
    calls = []
    guarded = dist.rank_zero_only(lambda value: calls.append(value) or "written")
    assert guarded(1) == "written"
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert guarded(2) is None
    assert calls == [1]


def test_all_reduce_counts_single_process_and_errors():
    counts = np.array([[0, 5], [2 ** 40, 7]])
    assert np.array_equal(dist.all_reduce_counts(counts), counts)
    with pytest.raises(ValueError, match="integer counts"):
        dist.all_reduce_counts(np.array([0.5]))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*60\)"):
        dist.all_reduce_counts(np.array([-1]))


def test_all_reduce_counts_is_exact_through_float32_limbs(monkeypatch):
    """Simulate 3 ranks: the limb split/rebuild must reproduce int64 sums far beyond float32's 2**24."""
    rank_values = [np.array([2 ** 45 + 3, 123456789, 0]), np.array([2 ** 33 + 1, 987654321, 5]),
                   np.array([2 ** 50 - 1, 1, 16777217])]
    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)

    def fake_float_all_reduce(limbs):
        assert limbs.dtype == np.float32 and limbs.max() < 2 ** 12
        mask = (1 << 12) - 1
        per_rank = [np.stack([(v >> (12 * i)) & mask for i in range(5)]).astype(np.float32) for v in rank_values]
        return np.sum(per_rank, axis=0, dtype=np.float32)

    monkeypatch.setattr(dist, "_all_reduce_sum_float", fake_float_all_reduce)
    assert np.array_equal(dist.all_reduce_counts(rank_values[0]), np.sum(rank_values, axis=0))


def test_all_reduce_metric_keeps_types_and_names_missing_attributes():
    metric = SegmentationMetric(3)
    metric.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, -1]]))
    before = metric.get()
    assert dist.all_reduce_metric(metric) is metric
    assert metric.get() == before
    assert isinstance(metric.total_correct, int) and metric.total_inter.dtype == np.int64

    class Partial:
        total_correct = 1

    with pytest.raises(AttributeError, match="'total_label'"):
        dist.all_reduce_metric(Partial())


# ---------------------------------------------------------------- launcher (fake workers, no MindSpore)

def _run_launcher(tmp_path, rank0="ok", rank1="ok", timeout=60.0, nproc=2, scheduler="ok", extra=(),
                  start_retries=0):
    claims = tmp_path / "claims"
    claims.mkdir()
    out = io.StringIO()
    command = launch.build_command([FAKE_WORKER, "--claims_dir", str(claims), "--rank0", rank0, "--rank1", rank1,
                                    "--scheduler", scheduler, *extra])
    started = time.monotonic()
    status = launch.launch(command, nproc, str(tmp_path / "logs"), timeout=timeout, grace=1.0,
                           start_retries=start_retries, out=out)
    return status, out.getvalue(), time.monotonic() - started, claims


def test_launcher_success_passes_the_cluster_environment_and_links_rank_logs(tmp_path):
    status, message, _, claims = _run_launcher(tmp_path)
    assert status == 0, message
    envs = [json.loads((claims / f"env_{r}.json").read_text()) for r in range(2)]
    ports = {env["MS_SCHED_PORT"] for env in envs}
    assert len(ports) == 1 and int(ports.pop()) > 0
    assert all(env["MS_ROLE"] == "MS_WORKER" and env["MS_WORKER_NUM"] == "2" and env["MS_SCHED_HOST"] == "127.0.0.1"
               for env in envs)
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["rank_0.log", "rank_1.log", "scheduler.log", "worker_0.log",
                                                      "worker_1.log"]
    assert "rank 1 acting" in (logs / "rank_1.log").read_text()
    assert "all 2 worker(s) succeeded" in message


def _pids_of(logs_dir):
    pids = []
    for name in ("worker_0.log", "worker_1.log"):
        text = (logs_dir / name).read_text()
        pids.append(int(text.split("(pid ")[1].split(")")[0]))
    return pids


def _assert_gone(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("action,expected_status,expected_words",
                         [("fail", 3, "exited with status 3"), ("kill", 128 + 9, "was killed by SIGKILL")])
def test_one_failing_worker_stops_the_job_and_is_named(tmp_path, action, expected_status, expected_words):
    status, message, elapsed, _ = _run_launcher(tmp_path, rank0="hang", rank1=action)
    assert status == expected_status
    assert "launch: rank 1 (worker" in message and expected_words in message
    assert "stopping the other processes" in message
    assert elapsed < 20, f"the hanging rank 0 was not stopped promptly ({elapsed:.1f} s)"
    _assert_gone(_pids_of(tmp_path / "logs"))


def test_workers_start_only_once_the_scheduler_listens_and_a_dead_scheduler_is_reported(tmp_path):
    status, message, elapsed, claims = _run_launcher(tmp_path, scheduler="fail")
    assert status == 2
    assert "launch: scheduler (pid" in message and "exited with status 2; no worker started" in message
    assert "failing on purpose" in message  # the tail of its log
    assert list(claims.iterdir()) == [] and not (tmp_path / "logs" / "worker_0.log").exists()


def test_a_failure_while_the_cluster_forms_restarts_it_on_a_new_port(tmp_path):
    status, message, _, claims = _run_launcher(tmp_path, extra=["--startup_fail_once"], start_retries=1)
    assert status == 0, message
    assert "(pid " in message and "rank not yet announced)" in message
    assert "restarting it on a new port (retry 1/1" in message
    ports = [int(line.split("127.0.0.1:")[1].split(",")[0]) for line in message.splitlines()
             if "scheduler on" in line]
    assert len(ports) == 2 and ports[0] != ports[1]
    kept = (tmp_path / "logs" / "attempt1")
    assert any("failing during start-up" in p.read_text() for p in kept.glob("worker_*.log"))
    assert sorted(p.name for p in claims.glob("exit_*")) == sorted(f"exit_{ports[1]}_{r}" for r in range(2))


def test_start_up_failures_beyond_the_retries_fail_the_job(tmp_path):
    status, message, _, _ = _run_launcher(tmp_path, extra=["--startup_fail_once"], start_retries=0)
    assert status == 1 and "restarting" not in message
    assert "(pid " in message and "rank not yet announced)" in message


def test_a_scheduler_that_exits_before_the_cluster_forms_fails_the_start_at_once(tmp_path):
    status, message, elapsed, _ = _run_launcher(tmp_path, scheduler="vanish", extra=["--hang_before_rank"])
    assert status == 1
    assert "the scheduler (pid" in message and "exited before every worker announced its rank" in message
    assert elapsed < 20, f"the waiting workers were not stopped promptly ({elapsed:.1f} s)"
    _assert_gone(_pids_of(tmp_path / "logs"))


def test_timeout_stops_everything(tmp_path):
    status, message, elapsed, _ = _run_launcher(tmp_path, rank0="hang", rank1="hang", timeout=2.0)
    assert status == launch.EXIT_TIMEOUT
    assert "timed out after 2 s" in message and "rank 0" in message and "rank 1" in message
    assert elapsed < 15
    _assert_gone(_pids_of(tmp_path / "logs"))


def test_launcher_command_line(tmp_path):
    assert launch.build_command(["train_custom.py", "--preset", "tiny"], python="py") == ["py", "train_custom.py",
                                                                                        "--preset", "tiny"]
    assert launch.build_command(["-m", "pkg.mod"], python="py") == ["py", "-m", "pkg.mod"]
    assert launch.build_command(["bash", "x.sh"]) == ["bash", "x.sh"]
    args = launch.parse_args(["--nproc", "3", "--timeout", "5", "--", "train_custom.py", "--nproc", "9"])
    assert (args.nproc, args.timeout, args.command) == (3, 5.0, ["train_custom.py", "--nproc", "9"])
    for bad in (["--nproc", "0", "--", "x.py"], ["--nproc", "2"], ["--timeout", "-1", "--", "x.py"]):
        with pytest.raises(SystemExit):
            launch.parse_args(bad)
    assert 0 < launch.find_free_port() < 65536


def test_launcher_module_entry_point_exit_status(tmp_path):
    """``python -m scripts.launch`` as a user runs it: the failing rank's status comes back to the shell."""
    claims = tmp_path / "claims"
    claims.mkdir()
    result = subprocess.run([sys.executable, "-m", "scripts.launch", "--nproc", "2", "--grace", "1",
                             "--start_retries", "0", "--log_dir", str(tmp_path / "logs"), "--timeout", "60", "--",
                             FAKE_WORKER, "--claims_dir",
                             str(claims), "--rank0", "fail", "--rank1", "hang"],
                            cwd=REPO, capture_output=True, text=True, timeout=90)
    assert result.returncode == 3
    assert "launch: rank 0 (worker" in result.stderr


def test_broadcast_from_rank0_packs_chunks_and_copies_rank0_values(monkeypatch):
    """Simulated rank 1 of 2: after the broadcast its parameters hold rank 0's values, float and integer alike."""
    import mindspore as ms
    from mindspore import nn

    class Net(nn.Cell):
        def __init__(self, offset):
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3) + offset), name="w")
            self.bias = ms.Parameter(ms.Tensor(np.array([0.5, -0.25], np.float32) + offset), name="b")
            self.steps = ms.Parameter(ms.Tensor(np.array([7 + int(offset)], np.int32)), name="steps",
                                      requires_grad=False)

    rank0, rank1 = Net(0.0), Net(100.0)
    root_values = {p.name: p.asnumpy().copy() for p in rank0.get_parameters()}
    collectives = []

    def fake_float_all_reduce(local):
        # rank 0 contributes its packed values; this (rank 1) process contributes zeros.
        assert not local.any()
        collectives.append(local.size)
        packed = np.concatenate([root_values[n].ravel() for n in ("w", "b")]).astype(np.float32)
        start = sum(collectives[:-1])
        return packed[start:start + local.size]

    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "_all_reduce_sum_float", fake_float_all_reduce)
    monkeypatch.setattr(dist, "all_reduce_counts", lambda values: np.asarray(values) + root_values["steps"])
    monkeypatch.setattr(dist, "_BROADCAST_CHUNK_ELEMENTS", 6)  # forces w and b into separate collectives
    assert dist.broadcast_from_rank0(rank1) == 3
    assert collectives == [6, 2]
    for param in rank1.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), root_values[param.name])
        assert param.asnumpy().dtype == root_values[param.name].dtype


def test_broadcast_from_rank0_is_a_no_op_on_one_device():
    from mindspore import nn
    assert dist.broadcast_from_rank0(nn.Dense(2, 2)) == 0


def test_broadcast_batchnorm_statistics_selects_only_running_statistics(monkeypatch):
    from mindspore import nn

    from modules import tnn

    seen = []
    monkeypatch.setattr(dist, "broadcast_from_rank0",
                        lambda network, select=None: seen.extend(p.name for p in network.get_parameters()
                                                                 if select(p)) or len(seen))
    block = tnn.Sequential(tnn.Conv2d(3, 4, 1), tnn.BatchNorm2d(4))
    assert dist.broadcast_batchnorm_statistics(block) == 2
    assert sorted(seen) == ["1.running_mean", "1.running_var"]
    seen.clear()
    dist.broadcast_batchnorm_statistics(nn.SequentialCell([nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)]))
    assert sorted(seen) == ["1.moving_mean", "1.moving_variance"]


def test_ctrl_c_on_the_launcher_stops_every_process(tmp_path):
    claims = tmp_path / "claims"
    claims.mkdir()
    launcher = subprocess.Popen([sys.executable, "-m", "scripts.launch", "--nproc", "2", "--grace", "1",
                                 "--log_dir", str(tmp_path / "logs"), "--", FAKE_WORKER, "--claims_dir",
                                 str(claims), "--rank0", "hang", "--rank1", "hang"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(claims.glob("env_*.json"))) < 2:
        time.sleep(0.1)
    assert len(list(claims.glob("env_*.json"))) == 2, "the fake workers did not start"
    time.sleep(0.5)  # let the launcher read both rank announcements
    launcher.send_signal(signal.SIGINT)
    _, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == launch.EXIT_INTERRUPTED
    assert "received SIGINT; stopping all processes" in stderr
    _assert_gone(_pids_of(tmp_path / "logs"))
