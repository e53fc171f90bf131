"""tests/mindspore_crashes.py restarts a child MindSpore 2.0 killed by a signal once, and nothing else."""
import sys

from tests.mindspore_crashes import run_restarting_a_mindspore_2_0_crash

# Dies by SIGSEGV on its first run (no marker file yet), prints "ok" on the next.
CRASH_ONCE = """
import os, signal, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGSEGV)
print("ok")
"""


def test_a_mindspore_2_0_child_killed_by_a_signal_runs_once_more(tmp_path):
    result = run_restarting_a_mindspore_2_0_crash([sys.executable, "-c", CRASH_ONCE, str(tmp_path / "m")], True,
                                                  timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert result.crashed_first.startswith("signal 11:") and "Fatal Python error" in result.crashed_first


def test_a_mindspore_2_10_crash_and_an_ordinary_failure_count_at_once(tmp_path):
    crashed = run_restarting_a_mindspore_2_0_crash([sys.executable, "-c", CRASH_ONCE, str(tmp_path / "m")], False,
                                                   timeout=60)
    assert crashed.returncode == -11 and crashed.crashed_first is None
    failing = run_restarting_a_mindspore_2_0_crash([sys.executable, "-c", "import sys; sys.exit(3)"], True, timeout=60)
    assert failing.returncode == 3 and failing.crashed_first is None
