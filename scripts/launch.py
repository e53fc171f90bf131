"""Start a data-parallel job on one machine with MindSpore's dynamic cluster: one scheduler + N workers.

Usage (from the repository root)::

    python -m scripts.launch --nproc 2 [--log_dir logs/launch] [--timeout 0] -- train_custom.py --preset tiny ...

Everything after ``--`` is the command each process runs; a leading ``*.py`` or ``-m module`` is run with this
Python. Each process gets ``MS_ROLE`` (``MS_SCHED`` or ``MS_WORKER``), ``MS_WORKER_NUM``, ``MS_SCHED_HOST`` and a
free ``MS_SCHED_PORT`` picked at run time; the script calls ``encoding_custom.engine.distributed.init_distributed``,
which lets the scheduler exit after forming the cluster.

Output of each process goes to its own file in ``--log_dir``: ``scheduler.log`` and ``worker_<k>.log`` (k = start
order). MindSpore assigns ranks by registration order, so the launcher reads the rank each worker announces and
links ``rank_<r>.log`` to that worker's file. When any process exits with a non-zero status, or is killed, the
launcher stops all others (SIGTERM, then SIGKILL after ``--grace`` seconds), prints which rank failed with its
one-line error (``<script>: error: ...``) or else the tail of its log, and exits non-zero; a failure while the
cluster forms (before every rank is up) restarts the cluster on a new port up to ``--start_retries`` times, unless
the process refused its input or device (exit status 2 or a one-line error: a restart would fail the same way).
Worker k gets ``DEVICE_ID=k``, as with msrun. ``--timeout`` bounds the whole job. Exit status: 0 when every worker
succeeded, the failing worker's status (128 + signal number when killed by a signal), 124 on timeout, 130 on Ctrl-C.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

# Matches encoding_custom.engine.distributed.RANK_ANNOUNCEMENT; kept literal so the launcher imports no MindSpore.
_RANK_LINE = re.compile(r"\[distributed\] rank (\d+) of (\d+) \(pid (\d+)\)")
# A script's own one-line verdict on its input or environment (``train_custom.py: error: ...``, argparse's form).
_ERROR_LINE = re.compile(r"^\S+: error: .+$", re.MULTILINE)
# Usage and input errors (argparse's status): the same on every retry.
EXIT_USAGE = 2
_POLL_SECONDS = 0.2
_TAIL_LINES = 15
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it; tiny race window before use).

    Args:
        host: interface to bind.

    Returns:
        port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _listening_ports() -> Optional[set]:
    """Local TCP ports in LISTEN state from /proc/net/tcp{,6}; None where /proc is unavailable."""
    ports, found = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        found = True
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def wait_until_listening(host: str, port: int, process: subprocess.Popen, timeout: float) -> bool:
    """Wait until something listens on ``port`` (the scheduler), the process dies, or ``timeout`` passes.

    Workers that start before the scheduler listens were seen here (mindspore 2.0, loaded machine) to fail their
    first registration and leave the cluster in an error state, so the launcher starts them only afterwards.

    Args:
        host: scheduler address (a connection probe is used only where /proc/net/tcp is unavailable).
        port: scheduler port.
        process: the scheduler; its exit ends the wait.
        timeout: seconds.

    Returns:
        True when the port is listening.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        ports = _listening_ports()
        if ports is not None:
            if port in ports:
                return True
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((host, port)) == 0:
                    return True
        time.sleep(0.1)
    return False


def build_command(user_command: Sequence[str], python: str = sys.executable) -> List[str]:
    """The argv one process runs: ``script.py args`` and ``-m module args`` get this Python in front.

    Args:
        user_command: the words after ``--``.
        python: interpreter for Python scripts/modules.

    Returns:
        argv list.

    Raises:
        ValueError: empty command.
    """
    words = list(user_command)
    if not words:
        raise ValueError("launch: no command given after '--' (e.g. -- train_custom.py --preset tiny)")
    if words[0].endswith(".py") or words[0] == "-m":
        return [python] + words
    return words


@dataclass
class Process:
    """One started process of the job.

    Attributes:
        role: "scheduler" or "worker".
        index: start order among workers (0 for the scheduler).
        popen: the running process.
        log_path: file receiving its stdout and stderr.
        rank: rank announced by the worker, None until seen.
    """

    role: str
    index: int
    popen: subprocess.Popen
    log_path: str
    rank: Optional[int] = None
    log_handle: object = field(default=None, repr=False)

    def describe(self) -> str:
        """Human name used in messages, e.g. ``rank 1 (worker 0, pid 123)``."""
        if self.role == "scheduler":
            return f"scheduler (pid {self.popen.pid})"
        if self.rank is None:
            return f"worker {self.index} (pid {self.popen.pid}, rank not yet announced)"
        return f"rank {self.rank} (worker {self.index}, pid {self.popen.pid})"


def _status_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _tail(path: str, lines: int = _TAIL_LINES) -> str:
    try:
        with open(path, "r", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError as error:
        return f"(cannot read {path}: {error})\n"


def _error_line(path: str) -> Optional[str]:
    """The last one-line error (``<script>: error: ...``) the process wrote to its log, None if it wrote none."""
    try:
        with open(path, "r", errors="replace") as handle:
            found = _ERROR_LINE.findall(handle.read())
    except OSError:
        return None
    return found[-1] if found else None


def _report(process: Process, what: str, out) -> Optional[str]:
    """Print why ``process`` ended: its one-line error when it wrote one (returned), else the tail of its log."""
    line = _error_line(process.log_path)
    if line:
        print(f"launch: {process.describe()} {what}:\n{line}\nlaunch: its whole output is in {process.log_path}",
              file=out, flush=True)
    else:
        print(f"launch: {process.describe()} {what}.\nlaunch: its log {process.log_path} ends with:\n"
              f"{_tail(process.log_path)}", file=out, flush=True)
    return line


def _read_rank(process: Process) -> None:
    if process.role != "worker" or process.rank is not None:
        return
    try:
        with open(process.log_path, "r", errors="replace") as handle:
            match = _RANK_LINE.search(handle.read())
    except OSError:
        return
    if match:
        process.rank = int(match.group(1))
        link = os.path.join(os.path.dirname(process.log_path), f"rank_{process.rank}.log")
        try:
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.basename(process.log_path), link)
        except OSError:
            pass  # a file system without symlinks: the mapping is still printed


def _stop(processes: Sequence[Process], grace: float) -> None:
    """SIGTERM every live process group, then SIGKILL what is still alive after ``grace`` seconds."""
    live = [p for p in processes if p.popen.poll() is None]
    for process in live:
        try:
            os.killpg(process.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.popen.poll() is None for p in live):
        time.sleep(_POLL_SECONDS)
    for process in live:
        if process.popen.poll() is None:
            try:
                os.killpg(process.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.popen.wait()


def _start(role: str, index: int, command: List[str], env: dict, log_dir: str) -> Process:
    name = "scheduler.log" if role == "scheduler" else f"worker_{index}.log"
    log_path = os.path.join(log_dir, name)
    handle = open(log_path, "w")
    # A new session per process: stopping it also stops whatever it started (data-loader workers).
    popen = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Process(role=role, index=index, popen=popen, log_path=log_path, log_handle=handle)


class _StartupFailed(Exception):
    """A worker failed before every worker announced its rank: no training ran, the cluster may be retried."""


def launch(command: Sequence[str], nproc: int, log_dir: str, host: str = "127.0.0.1", port: int = 0,
           timeout: float = 0.0, grace: float = 10.0, scheduler_grace: float = 30.0,
           scheduler_start_timeout: float = 120.0, start_retries: int = 2, out=sys.stderr) -> int:
    """Run ``command`` as one scheduler + ``nproc`` workers and supervise them until done, failed or timed out.

    If a worker fails while the cluster is forming (before every worker announced its rank, so before any
    training), the whole cluster is restarted on a new port, up to ``start_retries`` times. This is a last resort,
    not the cure for load: mindspore 2.0 losing a registration reply when every CPU is busy ("The state of the
    cluster is error" 30 s into the start) recurred on restarts at the rate of first starts (6 of 21 starts under 4
    busy loops on 2 cores, three in a row once); ``encoding_custom.engine.distributed.cluster_start_affinity``
    removes its cause. The failed attempt's logs are kept in ``<log_dir>/attempt<k>/``.

    Args:
        command: argv each process runs (see :func:`build_command`).
        nproc: number of workers (devices).
        log_dir: folder for ``scheduler.log``, ``worker_<k>.log`` and ``rank_<r>.log`` links (created).
        host: scheduler address (127.0.0.1 for one machine).
        port: scheduler port for the first attempt; 0 picks a free one (retries always pick a free one).
        timeout: seconds after which the whole job (all attempts) is stopped; 0 = no limit.
        grace: seconds between SIGTERM and SIGKILL when stopping processes.
        scheduler_grace: seconds the scheduler may take to finish after all workers succeeded.
        scheduler_start_timeout: seconds to wait for the scheduler to listen before starting the workers.
        start_retries: cluster restarts allowed after start-up failures.
        out: stream for the launcher's own messages.

    Returns:
        exit status (see the module docstring).

    Raises:
        ValueError: ``nproc`` < 1.
    """
    if nproc < 1:
        raise ValueError(f"launch: --nproc must be >= 1, got {nproc}")
    os.makedirs(log_dir, exist_ok=True)
    interrupted: List[int] = []

    def on_signal(signum, _frame):
        interrupted.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        for attempt in range(1, start_retries + 2):
            try:
                return _run_cluster(command, nproc, log_dir, host, port or find_free_port(host), timeout, grace,
                                    scheduler_grace, scheduler_start_timeout, started, interrupted, out)
            except _StartupFailed as failure:
                if attempt > start_retries:
                    return failure.args[0]
                kept = os.path.join(log_dir, f"attempt{attempt}")
                os.makedirs(kept, exist_ok=True)
                for name in os.listdir(log_dir):
                    path = os.path.join(log_dir, name)
                    if name.endswith(".log"):
                        if os.path.islink(path):
                            os.remove(path)
                        else:
                            os.replace(path, os.path.join(kept, name))
                print(f"launch: the cluster failed while forming (no training ran); restarting it on a new port "
                      f"(retry {attempt}/{start_retries}, logs of this attempt in {kept}).", file=out, flush=True)
                port = 0
        return 1  # not reached: the last attempt returns or re-raises
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_cluster(command: Sequence[str], nproc: int, log_dir: str, host: str, port: int, timeout: float,
                 grace: float, scheduler_grace: float, scheduler_start_timeout: float, started: float,
                 interrupted: List[int], out) -> int:
    """One attempt of :func:`launch`; raises :class:`_StartupFailed` (holding the exit status) when a worker fails
    before all ranks are announced."""
    # PYTHONFAULTHANDLER: a process MindSpore crashes (MindSpore 2.0 has segfaulted at exit after a finished run)
    # leaves the Python stack of the crash in its log.
    base_env = dict(os.environ, MS_WORKER_NUM=str(nproc), MS_SCHED_HOST=host, MS_SCHED_PORT=str(port),
                    PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # A rank table or MPI variables in the caller's shell would make MindSpore pick another start-up path.
    for name in ("RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH", "OMPI_COMM_WORLD_SIZE", "MS_NODE_ID"):
        base_env.pop(name, None)
    print(f"launch: scheduler on {host}:{port}, {nproc} worker(s), logs in {log_dir}", file=out, flush=True)
    processes: List[Process] = []
    try:
        processes.append(_start("scheduler", 0, list(command), dict(base_env, MS_ROLE="MS_SCHED"), log_dir))
        if not wait_until_listening(host, port, processes[0].popen, scheduler_start_timeout):
            status = processes[0].popen.poll()
            state = _status_text(status) if status is not None else \
                f"is not listening on {host}:{port} after {scheduler_start_timeout:g} s"
            _report(processes[0], f"{state}; no worker started", out)
            return _exit_status(status) if status else 1
        for index in range(nproc):
            # DEVICE_ID: worker k uses this machine's device k (Ascend/GPU), as msrun assigns them.
            processes.append(_start("worker", index, list(command),
                                    dict(base_env, MS_ROLE="MS_WORKER", DEVICE_ID=str(index)), log_dir))
        workers = [p for p in processes if p.role == "worker"]
        scheduler = processes[0]
        workers_done_at = None
        while True:
            for process in workers:
                _read_rank(process)
            workers_ok = all(p.popen.poll() == 0 for p in workers)
            # A scheduler failing after every worker succeeded (e.g. its own shutdown) does not fail the job.
            failed = [p for p in processes if p.popen.poll() not in (None, 0)
                      and not (workers_ok and p.role == "scheduler")]
            if failed:
                # A worker killed by a signal is the likeliest root cause; then any worker; then the scheduler.
                culprit = min(failed, key=lambda p: (p.role != "worker", p.popen.returncode >= 0))
                code = culprit.popen.returncode
                error_line = _report(culprit, f"{_status_text(code)}; stopping the other processes", out)
                _stop(processes, grace)
                status = _exit_status(code) or 1
                # Restarting helps a cluster that failed to form, not a script that refused its input or device.
                refused = code == EXIT_USAGE or error_line is not None
                if any(p.rank is None for p in workers) and code > 0 and not refused:
                    raise _StartupFailed(status)
                return status
            if scheduler.popen.poll() == 0 and not workers_ok:
                for process in workers:
                    _read_rank(process)  # an announcement written just before the scheduler exited
                if any(p.rank is None for p in workers):
                    # mindspore 2.0's scheduler exits with status 0 when it has declared registered workers timed
                    # out ("The total number of timed out node is 2" from its exit handler), while those workers
                    # keep retrying to register for ~7 minutes: seen here as a start that hung until --timeout.
                    print(f"launch: the {scheduler.describe()} exited before every worker announced its rank, so "
                          f"the cluster cannot form; stopping the workers.\n"
                          f"launch: its log {scheduler.log_path} ends with:\n{_tail(scheduler.log_path)}",
                          file=out, flush=True)
                    _stop(processes, grace)
                    raise _StartupFailed(1)
            if interrupted:
                print(f"launch: received {signal.Signals(interrupted[0]).name}; stopping all processes.",
                      file=out, flush=True)
                _stop(processes, grace)
                return EXIT_INTERRUPTED
            if timeout and time.monotonic() - started > timeout:
                running = ", ".join(p.describe() for p in processes if p.popen.poll() is None)
                print(f"launch: timed out after {timeout:g} s; stopping {running}.", file=out, flush=True)
                _stop(processes, grace)
                return EXIT_TIMEOUT
            if workers_ok:
                workers_done_at = workers_done_at or time.monotonic()
                if scheduler.popen.poll() is not None:
                    if scheduler.popen.returncode != 0:
                        print(f"launch: note: the scheduler {_status_text(scheduler.popen.returncode)} after all "
                              f"workers succeeded (see {scheduler.log_path}).", file=out, flush=True)
                    break
                if time.monotonic() - workers_done_at > scheduler_grace:
                    print("launch: all workers succeeded; the scheduler did not exit, stopping it.",
                          file=out, flush=True)
                    _stop([scheduler], grace)
                    break
            time.sleep(_POLL_SECONDS)
        ranks = ", ".join(f"rank {p.rank} -> {os.path.basename(p.log_path)}" for p in
                          sorted(workers, key=lambda p: (p.rank is None, p.rank or 0)))
        print(f"launch: all {nproc} worker(s) succeeded in {time.monotonic() - started:.1f} s ({ranks}).",
              file=out, flush=True)
        return 0
    finally:
        _stop(processes, grace)  # no-op when all have exited; guarantees no orphan on unexpected errors
        for process in processes:
            if process.log_handle is not None:
                process.log_handle.close()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the launcher's options; the words after ``--`` become ``args.command``.

    Args:
        argv: argument list (``sys.argv[1:]`` by default).

    Returns:
        Namespace with nproc, log_dir, host, port, timeout, start_retries, grace, command.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(prog="python -m scripts.launch",
                                     description="Data-parallel launcher (MindSpore dynamic cluster, one machine).",
                                     epilog="Example: python -m scripts.launch --nproc 2 -- train_custom.py "
                                            "--preset tiny")
    parser.add_argument("--nproc", type=int, default=int(os.environ.get("DEVICE_NUM", "1")),
                        help="number of worker processes/devices (default: $DEVICE_NUM or 1)")
    parser.add_argument("--log_dir", default=os.path.join("logs", "launch"),
                        help="folder for scheduler.log, worker_<k>.log and rank_<r>.log (default logs/launch)")
    parser.add_argument("--host", default="127.0.0.1", help="scheduler address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="scheduler port (default: a free port)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="stop the whole job after this many seconds (default 0 = no limit)")
    parser.add_argument("--start_retries", type=int, default=2,
                        help="restarts of the whole cluster when a worker fails before all ranks are up "
                             "(no training ran yet; default 2)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping processes (default 10)")
    args = parser.parse_args(own)
    if args.nproc < 1:
        parser.error(f"--nproc must be >= 1, got {args.nproc}")
    if args.start_retries < 0:
        parser.error(f"--start_retries must be >= 0, got {args.start_retries}")
    if args.timeout < 0:
        parser.error(f"--timeout must be >= 0, got {args.timeout}")
    if not command:
        parser.error("give the command to run after '--', e.g. -- train_custom.py --preset tiny")
    args.command = command
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point.

    Args:
        argv: argument list (``sys.argv[1:]`` by default).

    Returns:
        exit status.
    """
    args = parse_args(argv)
    return launch(build_command(args.command), args.nproc, args.log_dir, host=args.host, port=args.port,
                  timeout=args.timeout, grace=args.grace, start_retries=args.start_retries)


if __name__ == "__main__":
    sys.exit(main())
