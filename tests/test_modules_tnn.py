"""modules.tnn: PyTorch semantics of every native layer against numpy, backend selection, and (on the legacy stack)
LSEG_NN=native against LSEG_NN=msadapter on the tiny LSegNet: names, logits and 5 training losses."""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from foundation import platform
from modules import tnn
from tests.mindspore_crashes import run_restarting_a_mindspore_2_0_crash

pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND_RUN = os.path.join(REPO, "tests", "fixtures", "modules", "tnn_backend_run.py")
AMP_RUN = os.path.join(REPO, "tests", "fixtures", "modules", "amp_graph_run.py")


def _conv2d_reference(x, weight, bias, stride, padding):
    """Direct cross-correlation (PyTorch Conv2d) in float64."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    batch, _, height, width = x.shape
    out_c, _, kh, kw = weight.shape
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = np.zeros((batch, out_c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, weight)
    return out + (0 if bias is None else bias[None, :, None, None])


def test_conv2d_matches_cross_correlation_and_has_torch_names_and_init():
    conv = tnn.NativeConv2d(3, 5, kernel_size=3, stride=2, padding=1)
    assert sorted(name for name, _ in conv.parameters_and_names()) == ["bias", "weight"]
    bound = 1 / np.sqrt(3 * 9)
    weight = conv.weight.asnumpy()
    assert weight.shape == (5, 3, 3, 3) and np.abs(weight).max() <= bound and np.abs(weight).max() > 0.5 * bound
    x = np.random.RandomState(0).randn(2, 3, 9, 7).astype(np.float32)
    expected = _conv2d_reference(x, weight, conv.bias.asnumpy(), stride=2, padding=1)
    np.testing.assert_allclose(conv(ms.Tensor(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    assert tnn.NativeConv2d(2, 2, 1, bias=False).bias is None


def test_conv_transpose2d_scatters_each_input_pixel_into_a_kernel_block():
    deconv = tnn.NativeConvTranspose2d(3, 4, kernel_size=2, stride=2)
    weight, bias = deconv.weight.asnumpy(), deconv.bias.asnumpy()
    assert weight.shape == (3, 4, 2, 2)
    assert np.abs(weight).max() <= 1 / np.sqrt(4 * 4)  # PyTorch: fan_in from dim 1 (out_channels) x kernel
    x = np.random.RandomState(1).randn(1, 3, 3, 5).astype(np.float32)
    expected = np.einsum("bchw,cokl->bohkwl", x, weight).reshape(1, 4, 6, 10) + bias[None, :, None, None]
    np.testing.assert_allclose(deconv(ms.Tensor(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_uses_batch_statistics_in_training_and_updates_running_ones_by_momentum():
    bn = tnn.NativeBatchNorm2d(2)
    assert [name for name, _ in bn.parameters_and_names()] == ["weight", "bias", "running_mean", "running_var"]
    assert [p.requires_grad for p in bn.get_parameters()] == [True, True, False, False]
    x = np.random.RandomState(2).randn(3, 2, 4, 5).astype(np.float32) * 2 + 1
    bn.train()
    out = bn(ms.Tensor(x)).asnumpy()
    per_channel = x.transpose(1, 0, 2, 3).reshape(2, -1)
    mean, biased = per_channel.mean(1), per_channel.var(1)
    normalised = (x - mean[None, :, None, None]) / np.sqrt(biased[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out, normalised, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.asnumpy(), 0.1 * mean, rtol=1e-5)
    batch_var = biased if platform.BN_CPU_BIASED_RUNNING_VAR else per_channel.var(1, ddof=1)
    np.testing.assert_allclose(bn.running_var.asnumpy(), 0.9 + 0.1 * batch_var, rtol=1e-5)
    bn.eval()
    running_mean, running_var = bn.running_mean.asnumpy(), bn.running_var.asnumpy()
    expected = (x - running_mean[None, :, None, None]) / np.sqrt(running_var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(bn(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)


def test_linear_acts_on_the_last_axis():
    linear = tnn.NativeLinear(6, 4)
    assert np.abs(linear.weight.asnumpy()).max() <= 1 / np.sqrt(6)
    x = np.random.RandomState(3).randn(2, 5, 6).astype(np.float32)
    expected = x @ linear.weight.asnumpy().T + linear.bias.asnumpy()
    out = linear(ms.Tensor(x)).asnumpy()
    assert out.shape == (2, 5, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_activations_identity_and_sequential_names():
    x = ms.Tensor(np.array([-2.0, -0.5, 0.0, 3.0], np.float32))
    np.testing.assert_allclose(tnn.NativeLeakyReLU()(x).asnumpy(), [-0.02, -0.005, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(tnn.NativeReLU()(x).asnumpy(), [0, 0, 0, 3])
    np.testing.assert_allclose(tnn.native_relu(x).asnumpy(), [0, 0, 0, 3])
    np.testing.assert_allclose(tnn.NativeTanh()(x).asnumpy(), np.tanh([-2.0, -0.5, 0.0, 3.0]), rtol=1e-6)
    np.testing.assert_array_equal(tnn.NativeIdentity()(x).asnumpy(), x.asnumpy())
    block = tnn.NativeSequential(tnn.NativeConv2d(3, 4, 1), tnn.NativeBatchNorm2d(4), tnn.NativeReLU())
    assert [p.name for p in block.get_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias",
                                                         "1.running_mean", "1.running_var"]
    assert block(ms.Tensor(np.ones((1, 3, 2, 2), np.float32))).shape == (1, 4, 2, 2)
    with pytest.raises(ValueError, match="negative_slope"):
        tnn.NativeLeakyReLU(2.0)


def _bilinear_reference(x, out_h, out_w, align_corners):
    """PyTorch's bilinear source coordinates, in float64."""
    height, width = x.shape[2:]

    def source(n_out, n_in):
        index = np.arange(n_out, dtype=np.float64)
        if align_corners:
            return index * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        return np.clip((index + 0.5) * n_in / n_out - 0.5, 0, None)

    ys, xs = source(out_h, height), source(out_w, width)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy) + bottom * wy


@pytest.mark.parametrize("align_corners", [True, False])
def test_interpolate_follows_pytorch_coordinates(align_corners):
    x = np.random.RandomState(4).randn(1, 2, 5, 7).astype(np.float32)
    out = tnn.native_interpolate(ms.Tensor(x), size=(9, 4), align_corners=align_corners).asnumpy()
    np.testing.assert_allclose(out, _bilinear_reference(x, 9, 4, align_corners), rtol=1e-5, atol=1e-5)
    doubled = tnn.native_interpolate(ms.Tensor(x), scale_factor=2, align_corners=align_corners)
    assert doubled.shape == (1, 2, 10, 14)
    with pytest.raises(ValueError, match="bilinear"):
        tnn.native_interpolate(ms.Tensor(x), size=(2, 2), mode="nearest")


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_graph_mode_mixed_precision_compiles_exactly_the_levels_the_layer_claims(level, tmp_path):
    """``tnn.GRAPH_AMP_LEVELS`` is what options.py lets through; the others must really fail (msadapter). Every level
    that compiles casts (its logits move by float16 rounding) and writes nothing into the working folder."""
    # Own process, working folder tmp_path; a MindSpore 2.0 crash is restarted once (tests/mindspore_crashes.py).
    result = run_restarting_a_mindspore_2_0_crash([sys.executable, AMP_RUN, level],
                                                  platform.MINDSPORE_VERSION < (2, 10), cwd=tmp_path, timeout=600,
                                                  env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, (result.crashed_first or "") + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if level not in tnn.GRAPH_AMP_LEVELS:
        assert not report["compiled"] and "Conv2D" in report["error"]
        return
    assert report["compiled"], report["error"]
    assert 0 < report["max_abs_diff"] <= 0.02 * report["max_abs_reference"]  # float16 rounding, not a bug
    assert os.listdir(tmp_path) == []


def _import_tnn(env_value):
    env = dict(os.environ, LSEG_NN=env_value)
    return subprocess.run([sys.executable, "-c", "from modules import tnn; print(tnn.BACKEND)"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_unknown_backend_is_refused_in_one_line():
    result = _import_tnn("torchy")
    assert result.returncode != 0
    assert "LSEG_NN='torchy' is not a backend; use one of native, msadapter" in result.stderr


def test_native_is_the_default_where_msadapter_cannot_import():
    if platform.MINDSPORE_VERSION < (2, 3):
        assert tnn.BACKEND == (os.environ.get("LSEG_NN") or "msadapter")
        return
    assert tnn.BACKEND == "native"
    result = _import_tnn("msadapter")
    assert result.returncode != 0
    assert f"msadapter does not import on mindspore {ms.__version__}" in result.stderr


def _backend_run(backend, mode, weights, out):
    env = dict(os.environ, LSEG_NN=backend)
    result = subprocess.run([sys.executable, BACKEND_RUN, mode, str(weights), str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


@pytest.mark.skipif(platform.MINDSPORE_VERSION >= (2, 3), reason="msadapter imports on the legacy stack only "
                                                             "(MindSpore 2.0.0); this is the current stack")
@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_native_layer_equals_msadapter_on_the_legacy_stack(tmp_path, mode):
    weights = tmp_path / "weights.npz"
    adapter = _backend_run("msadapter", mode, weights, tmp_path / "msadapter.npz")
    native = _backend_run("native", mode, weights, tmp_path / "native.npz")
    assert str(adapter["backend"]) == "msadapter" and str(native["backend"]) == "native"
    assert list(native["names"]) == list(adapter["names"]) and len(native["names"]) == 204
    scale = np.abs(adapter["logits"]).max()
    assert np.abs(native["logits"] - adapter["logits"]).max() <= 1e-6 * scale
    np.testing.assert_allclose(native["losses"], adapter["losses"], rtol=1e-6)
    assert adapter["losses"][-1] < adapter["losses"][0]
    for key in adapter.files:
        if key.startswith("w:"):
            np.testing.assert_allclose(native[key], adapter[key], rtol=1e-5, atol=1e-6, err_msg=key)
