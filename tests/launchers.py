"""Test helper (not a test module): start a 2-worker data-parallel job and read each rank's log whichever launcher
wrote it.

* ``scripts.launch`` (both stacks): what ``train_custom.sh --nproc N`` runs on one machine; logs ``worker_<k>.log``
  plus ``rank_<r>.log`` links;
* ``msrun`` (MindSpore 2.3+, the current stack): MindSpore's own launcher, the README's route for several hosts;
  logs ``worker_<k>.log`` and ``scheduler.log``, rank order decided by MindSpore.
"""
import os
import signal
import subprocess
import sys
from typing import List, Optional, Sequence

from foundation.platform import HAS_MSRUN
from scripts.launch import find_free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the README's msrun command takes it from: beside the interpreter (another one on PATH may belong to another
# MindSpore).
_MSRUN_BESIDE = os.path.join(os.path.dirname(sys.executable), "msrun")
MSRUN = _MSRUN_BESIDE if HAS_MSRUN and os.path.exists(_MSRUN_BESIDE) else None
# MindSpore's own launcher where this stack has it, else ours.
NATIVE_LAUNCHER = "msrun" if MSRUN else "scripts.launch"


def data_parallel_command(nproc: int, log_dir: str, script_and_args: Sequence[str], timeout_s: int,
                          start_retries: Optional[int] = None, launcher: str = "scripts.launch") -> List[str]:
    """The command line starting ``script_and_args`` on ``nproc`` CPU workers.

    Args:
        nproc: workers.
        log_dir: the launcher's log folder.
        script_and_args: what every process runs.
        timeout_s: the launcher's bound on the whole job.
        start_retries: scripts.launch's ``--start_retries`` (None: its default); msrun has no such restarts.
        launcher: "scripts.launch" or "msrun" (only where :data:`MSRUN` exists).

    Returns:
        argv list.
    """
    if launcher == "msrun":
        assert MSRUN, "msrun exists on MindSpore 2.3+ only"
        return [MSRUN, f"--worker_num={nproc}", f"--local_worker_num={nproc}", "--master_addr=127.0.0.1",
                f"--master_port={find_free_port()}", f"--log_dir={log_dir}", "--join=True",
                f"--cluster_time_out={timeout_s}", *script_and_args]
    retries = [] if start_retries is None else ["--start_retries", str(start_retries)]
    return [sys.executable, "-m", "scripts.launch", "--nproc", str(nproc), "--log_dir", log_dir, "--timeout",
            str(timeout_s), "--grace", "5", *retries, "--", *script_and_args]


def launcher_env() -> dict:
    """msrun starts ``python`` from PATH: put this interpreter's folder first (train_custom.sh does the same)."""
    return dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def run_data_parallel(nproc: int, log_dir: str, script_and_args: Sequence[str], timeout_s: int,
                      start_retries: Optional[int] = None, launcher: str = "scripts.launch"):
    """Run the job to its end (the whole process group is killed if it outlives ``timeout_s`` + 60 s).

    Args: as :func:`data_parallel_command`.

    Returns: ``(CompletedProcess-like returncode, stdout, stderr)`` as a ``subprocess.CompletedProcess``.
    """
    command = data_parallel_command(nproc, log_dir, script_and_args, timeout_s, start_retries, launcher)
    process = subprocess.Popen(command, cwd=REPO, env=launcher_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s + 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        stderr += f"\n[test] {launcher} job killed after {timeout_s + 60} s"
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def rank_logs(log_dir: str) -> dict:
    """Returns: ``{rank: log text}`` for every worker log that announces its rank."""
    found = {}
    for name in sorted(os.listdir(log_dir)):
        if not name.startswith("worker_"):
            continue
        with open(os.path.join(log_dir, name), errors="replace") as handle:
            text = handle.read()
        for line in text.splitlines():
            if line.startswith("[distributed] rank "):
                found[int(line.split()[2])] = text
                break
    return found


def all_logs(log_dir: str) -> str:
    """Every log of the job, for assertion messages."""
    parts = []
    for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
        with open(os.path.join(log_dir, name), errors="replace") as handle:
            parts.append(f"--- {name}\n{handle.read()[-3000:]}")
    return "\n".join(parts)
