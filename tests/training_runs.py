"""Test helper (not a test module): a train_custom.py process killed mid-run, and the comparison of two runs'
checkpoints, for the resume tests."""
import json
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kill_during_second_epoch(argv: Sequence[str], exp_dir: str, timeout_s: float = 240) -> None:
    """Run ``train_custom.py argv`` in a process of its own and SIGKILL it once an optimizer step of its second epoch
    is logged (``steps.jsonl``), before epoch 2's checkpoint exists.

    Args:
        argv: the training options (writing to ``exp_dir``); exp_dir: the run's experiment folder.
        timeout_s: how long to wait for that step.
    """
    steps_path = os.path.join(exp_dir, "steps.jsonl")
    proc = subprocess.Popen([sys.executable, "train_custom.py"] + list(argv), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline and proc.poll() is None:
            if os.path.isfile(steps_path):
                with open(steps_path) as handle:
                    if any(json.loads(line)["epoch"] == 1 for line in handle if line.strip()):
                        break  # an optimizer step of the second epoch is done: kill mid-epoch
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not os.path.exists(os.path.join(exp_dir, "epoch_002.ckpt")), "the kill came too late"


def assert_same_weights(want_path: str, got_path: str) -> None:
    """Every tensor of two checkpoints agrees (rtol 1e-5, atol 1e-6), the epoch counter aside."""
    import mindspore as ms

    want, got = ms.load_checkpoint(want_path), ms.load_checkpoint(got_path)
    for name, value in want.items():
        if hasattr(value, "asnumpy") and name != "epoch":
            np.testing.assert_allclose(got[name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
