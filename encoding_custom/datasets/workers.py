"""What every forked helper process of ours (data loading, the data check) does first.

A terminal's Ctrl-C and a scheduler's ``scancel`` / ``kill -- -PGID`` signal the whole process group. A pool
worker that dies of it mid-task is replaced by ``multiprocessing.Pool``, but the task it held never returns, so the
parent waits in ``imap`` forever (seen with SIGTERM to the group and 2 loader workers); a worker that got SIGINT
prints its own KeyboardInterrupt traceback. And a forked worker inherits the trainer's stop-after-this-step handlers
(``engine.StopSignals``), with which ``Pool.terminate``'s SIGTERM would not end it. So workers leave the process
group (group signals reach only the parent, which decides when to stop and then ends the pool), ignore SIGINT, and
take SIGTERM's default action (``Pool.terminate`` still ends them).
"""
import os
import signal


def detach_worker() -> None:
    """Pool ``initializer`` part: own process group, SIGINT ignored, SIGTERM default. Call in the child only."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


__all__ = ["detach_worker"]
