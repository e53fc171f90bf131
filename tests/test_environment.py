"""The pinned stack imports and trains: mindspore + msadapter + mindcv, and the set-up script's error path."""
import os
import subprocess

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pinned_versions_import():
    import mindcv
    import mindspore
    import msadapter.pytorch  # noqa: F401

    assert mindspore.__version__ == "2.0.0"
    assert mindcv.__version__ == "0.3.0"


def test_msadapter_module_trains_with_train_one_step_cell():
    import mindspore as ms
    import msadapter.pytorch as torch
    import msadapter.pytorch.nn as tnn
    from mindspore import nn

    class Tiny(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = tnn.Linear(4, 8)
            self.fc2 = tnn.Linear(8, 1)

        def forward(self, x):
            return self.fc2(tnn.functional.relu(self.fc1(x)))

    net = Tiny()
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(16, 4).astype(np.float32))
    y = ms.Tensor(rng.randn(16, 1).astype(np.float32))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), nn.SGD(net.trainable_params(), 0.05))
    step.set_train()
    losses = [float(step(x, y).asnumpy()) for _ in range(3)]
    assert losses[2] < losses[1] < losses[0]


def _run_setup(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("LSEG_SKIP_SETUP",)}
    env.update(env_extra)
    return subprocess.run(
        ["bash", "-c", "source scripts/setup_env.sh && lseg_setup"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )


def test_setup_rejects_missing_python(tmp_path):
    res = _run_setup({"PYTHON": "/nonexistent/python3.9", "LSEG_VENV": str(tmp_path / "venv")})
    assert res.returncode != 0
    assert "PYTHON=/nonexistent/python3.9" in res.stderr
    assert "conda create -n lseg python=3.9" in res.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_stops_when_no_python39_is_findable(tmp_path):
    # An empty PATH and HOME: no python3.9 shim, no pyenv versions.
    res = _run_setup({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LSEG_VENV": str(tmp_path / "venv")})
    if os.path.exists("/usr/bin/python3.9") or os.path.exists("/usr/local/bin/python3.9"):
        import pytest

        pytest.skip("this machine has a system python3.9")
    assert res.returncode != 0
    assert "no Python 3.9 found" in res.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_second_run_skips_install():
    res = _run_setup({})
    assert res.returncode == 0, res.stderr
    assert "installing" not in res.stderr
