"""Test helper (not a test module): run a MindSpore 2.0 child process that MindSpore itself may kill by a signal.

MindSpore 2.0.0 has killed a child by SIGSEGV before it printed anything a few times in full CI runs (the O1 AMP
compile probe, a cross-stack checkpoint read); each of those children passed every time it ran alone. Such a child is
started once more; any other failure counts at once, and MindSpore 2.10 children are never restarted. Children run
with ``-X faulthandler``, so a crash leaves the Python stack it happened in on stderr; the first crash's stderr is
kept on the result (``crashed_first``) for the failure message of the second.
"""
import subprocess
from typing import List, Optional


def run_restarting_a_mindspore_2_0_crash(command: List[str], mindspore_2_0: bool,
                                         **kwargs) -> subprocess.CompletedProcess:
    """Args: command: ``[python, ...]`` (``-X faulthandler`` is added after the interpreter); mindspore_2_0: whether
    that interpreter runs MindSpore 2.0; kwargs: for ``subprocess.run`` (``capture_output=True, text=True`` added).

    Returns: the last run's result, with ``crashed_first`` the first run's stderr when it was killed by a signal.
    """
    command = [command[0], "-X", "faulthandler"] + list(command[1:])
    crashed: Optional[str] = None
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, **kwargs)
        if result.returncode >= 0 or not mindspore_2_0 or crashed is not None:
            break
        crashed = f"signal {-result.returncode}:\n{result.stderr[-3000:]}"
    result.crashed_first = crashed
    return result
