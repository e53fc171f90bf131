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


_FAKE_VENV_PYTHON = """#!/bin/bash
# Stands in for <venv>/bin/python: pip records its call and exits with $FAKE_PIP_RC, silently.
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "$*" >> "$FAKE_PIP_LOG"
    exit "${FAKE_PIP_RC:-0}"
fi
exit 0
"""

_FAKE_BASE_PYTHON = """#!/bin/bash
# Stands in for a Python 3.9 interpreter: answers the version probes and `-m venv DIR`.
case "$*" in
    *version_info*) echo 3.9 ;;
    *sys.version*) echo 3.9.99 ;;
    "-m venv "*) mkdir -p "$3/bin" && cp "$FAKE_VENV_PYTHON" "$3/bin/python" && chmod +x "$3/bin/python" ;;
    *) exit 1 ;;
esac
"""


def _fake_interpreters(tmp_path):
    base = tmp_path / "python3.9"
    base.write_text(_FAKE_BASE_PYTHON)
    base.chmod(0o755)
    venv_py = tmp_path / "venv-python"
    venv_py.write_text(_FAKE_VENV_PYTHON)
    venv_py.chmod(0o755)
    return {
        "PYTHON": str(base),
        "FAKE_VENV_PYTHON": str(venv_py),
        "FAKE_PIP_LOG": str(tmp_path / "pip.log"),
        "LSEG_VENV": str(tmp_path / "venv"),
    }


def _run_setup_strict(env_extra):
    """Sources the set-up the way run_tests.sh and .ci/run do: under `set -euo pipefail`."""
    env = {k: v for k, v in os.environ.items() if k not in ("LSEG_SKIP_SETUP",)}
    env.update(env_extra)
    script = 'set -euo pipefail; source scripts/setup_env.sh; lseg_setup; echo "LSEG_PYTHON=$LSEG_PYTHON"'
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_setup_fresh_install_under_pipefail_then_skips(tmp_path):
    # A quiet, successful pip prints nothing: the fresh-machine path CI takes.
    env = _fake_interpreters(tmp_path)
    first = _run_setup_strict(env)
    assert first.returncode == 0, first.stderr
    assert "installing requirements.txt" in first.stderr
    assert f"LSEG_PYTHON={tmp_path / 'venv' / 'bin' / 'python'}" in first.stdout
    pip_calls = (tmp_path / "pip.log").read_text().splitlines()
    assert len(pip_calls) == 1 and pip_calls[0].endswith("requirements.txt")
    assert (tmp_path / "venv" / ".lseg-requirements-stamp").read_text().startswith("3.9.99 ")

    second = _run_setup_strict(env)
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr
    assert len((tmp_path / "pip.log").read_text().splitlines()) == 1


def test_setup_failed_pip_records_nothing(tmp_path):
    env = _fake_interpreters(tmp_path)
    env["FAKE_PIP_RC"] = "1"
    res = _run_setup_strict(env)
    assert res.returncode != 0
    assert "pip install -r" in res.stderr and "failed" in res.stderr
    assert not (tmp_path / "venv" / ".lseg-requirements-stamp").exists()
