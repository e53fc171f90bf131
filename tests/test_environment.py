"""The pinned stack imports and trains (mindspore + mindcv, and msadapter on the legacy stack), and the set-up
script's stack selection, interpreter search and error paths."""
import os
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK = os.environ.get("LSEG_STACK", "current")
# What each stack's requirements file pins (requirements.txt / requirements-legacy.txt).
PINNED = {"current": {"mindspore": "2.10.0", "numpy": "1.26.4"}, "legacy": {"mindspore": "2.0.0", "numpy": "1.23.5"}}


def test_pinned_versions_import():
    import mindcv
    import mindspore

    assert mindspore.__version__ == PINNED[STACK]["mindspore"]
    assert np.__version__ == PINNED[STACK]["numpy"]
    assert mindcv.__version__ == "0.3.0"
    if STACK == "legacy":
        import msadapter.pytorch  # noqa: F401


def test_requirements_pin_every_line_exactly():
    for name in ("requirements.txt", "requirements-legacy.txt"):
        with open(os.path.join(REPO, name)) as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), (name, [x for x in lines if "==" not in x])


def test_torch_style_module_trains_with_train_one_step_cell():
    import mindspore as ms
    from mindspore import nn

    from modules import tnn

    class Tiny(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = tnn.Linear(4, 8)
            self.fc2 = tnn.Linear(8, 1)

        def forward(self, x):
            return self.fc2(tnn.relu(self.fc1(x)))

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


@pytest.mark.parametrize("stack, hint", [("current", "conda create -n lseg python=3.11"),
                                         ("legacy", "conda create -n lseg39 python=3.9")])
def test_setup_rejects_missing_python(tmp_path, stack, hint):
    res = _run_setup({"LSEG_STACK": stack, "PYTHON": "/nonexistent/python", "LSEG_VENV": str(tmp_path / "venv")})
    assert res.returncode != 0
    assert "PYTHON=/nonexistent/python" in res.stderr and f"(stack {stack})" in res.stderr
    assert hint in res.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_rejects_an_interpreter_of_the_other_stack(tmp_path):
    env = _fake_interpreters(tmp_path, "3.9")
    res = _run_setup(dict(env, LSEG_STACK="current"))
    assert res.returncode != 0
    assert "is not a working Python 3.11 or 3.10 interpreter (stack current)" in res.stderr


def test_setup_rejects_an_unknown_stack(tmp_path):
    res = _run_setup({"LSEG_STACK": "newest", "LSEG_VENV": str(tmp_path / "venv")})
    assert res.returncode != 0
    assert "LSEG_STACK=newest is not a stack; use current (default) or legacy" in res.stderr


@pytest.mark.parametrize("stack, wanted", [("current", "3.11 or 3.10"), ("legacy", "3.9")])
def test_setup_stops_when_no_python_is_findable(tmp_path, stack, wanted):
    # An empty PATH and HOME: no pythonX.Y shim, no pyenv versions.
    for version in wanted.split(" or "):
        if os.path.exists(f"/usr/bin/python{version}") or os.path.exists(f"/usr/local/bin/python{version}"):
            pytest.skip(f"this machine has a system python{version}")
    res = _run_setup({"LSEG_STACK": stack, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                      "LSEG_VENV": str(tmp_path / "venv")})
    assert res.returncode != 0
    assert f"no Python {wanted} found for the {stack} stack" in res.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_finds_pyenv_interpreters_in_preference_order(tmp_path):
    for version in ("3.9.18", "3.10.13", "3.11.7"):
        folder = tmp_path / ".pyenv" / "versions" / version / "bin"
        folder.mkdir(parents=True)
        fake = folder / "python"
        fake.write_text(f"#!/bin/bash\necho {version.rsplit('.', 1)[0]}\n")
        fake.chmod(0o755)
    script = 'source scripts/setup_env.sh; _lseg_find_python 3.11 3.10; _lseg_find_python 3.10; _lseg_find_python 3.9'
    res = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.stdout.split() == [str(tmp_path / ".pyenv/versions" / v / "bin/python")
                                  for v in ("3.11.7", "3.10.13", "3.9.18")]


def test_setup_second_run_skips_install():
    res = _run_setup({"LSEG_STACK": STACK})
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
# Stands in for a Python $FAKE_VERSION interpreter: answers the version probes and `-m venv DIR`.
case "$*" in
    *version_info*) echo "$FAKE_VERSION" ;;
    *sys.version*) echo "$FAKE_VERSION.99" ;;
    "-m venv "*) mkdir -p "$3/bin" && cp "$FAKE_VENV_PYTHON" "$3/bin/python" && chmod +x "$3/bin/python" ;;
    *) exit 1 ;;
esac
"""


def _fake_interpreters(tmp_path, version):
    base = tmp_path / "python-fake"
    base.write_text(_FAKE_BASE_PYTHON)
    base.chmod(0o755)
    venv_py = tmp_path / "venv-python"
    venv_py.write_text(_FAKE_VENV_PYTHON)
    venv_py.chmod(0o755)
    return {
        "PYTHON": str(base),
        "FAKE_VERSION": version,
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


@pytest.mark.parametrize("stack, version, requirements", [("current", "3.11", "requirements.txt"),
                                                          ("legacy", "3.9", "requirements-legacy.txt")])
def test_setup_fresh_install_under_pipefail_then_skips(tmp_path, stack, version, requirements):
    # A quiet, successful pip prints nothing: the fresh-machine path CI takes.
    env = dict(_fake_interpreters(tmp_path, version), LSEG_STACK=stack)
    first = _run_setup_strict(env)
    assert first.returncode == 0, first.stderr
    assert f"installing {requirements}" in first.stderr
    assert f"LSEG_PYTHON={tmp_path / 'venv' / 'bin' / 'python'}" in first.stdout
    pip_calls = (tmp_path / "pip.log").read_text().splitlines()
    assert len(pip_calls) == 1 and pip_calls[0].endswith("/" + requirements)
    assert (tmp_path / "venv" / ".lseg-requirements-stamp").read_text().startswith(f"{version}.99 ")

    second = _run_setup_strict(env)
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr
    assert len((tmp_path / "pip.log").read_text().splitlines()) == 1


def test_setup_failed_pip_records_nothing(tmp_path):
    env = dict(_fake_interpreters(tmp_path, "3.11"), LSEG_STACK="current", FAKE_PIP_RC="1")
    res = _run_setup_strict(env)
    assert res.returncode != 0
    assert "pip install -r" in res.stderr and "failed" in res.stderr
    assert not (tmp_path / "venv" / ".lseg-requirements-stamp").exists()
