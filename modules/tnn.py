"""Torch-style layers for LSeg on classic MindSpore primitives: the one place that knows which MindSpore runs.

The network is written against PyTorch's ``nn`` API (``Module.forward``, ``Conv2d``, ``BatchNorm2d``, ...) because it
is a port of the official PyTorch code and keeps its parameter names. This module provides that API in one of two
implementations, chosen once at import time by the environment variable ``LSEG_NN``:

* ``native``: the classes below, built on primitives that exist on MindSpore 2.0.0 and 2.7-2.10 on CPU, GPU and
  Ascend (``ops.Conv2D``, ``ops.Conv2DTranspose``, ``ops.BatchNorm``, ``ops.ResizeBilinearV2``, ``ops.MatMul``).
  ``mindspore.mint``'s layers are not used: in 2.10 they are Ascend-only (``Unsupported op [Conv2DExt] on CPU``).
* ``msadapter``: MSAdapter 0.1.0's ``torch.nn``. It imports only on MindSpore 2.0.0 (it needs
  ``mindspore.set_adapter_config``, which 2.7 removed), where it is the default, so that a legacy install behaves
  as it always did.

Both give the same parameter names (PyTorch's: ``weight``, ``bias``, ``running_mean``, ``running_var``), the same
PyTorch semantics (BatchNorm momentum 0.1 on the new statistic, eps 1e-5; LeakyReLU slope 0.01; bilinear resizing
with PyTorch's ``align_corners`` rule) and, on 2.0.0, the same outputs and training losses
(``tests/test_modules_tnn.py``). Initial values follow PyTorch's init rules but come from MindSpore's generator,
so one ``ms.set_seed`` gives different weights per backend and per MindSpore version.

The MindSpore version facts (:mod:`foundation.platform`) are imported from the foundation; the facts of the chosen
layer (:data:`STALE_GRAPH_READBACK`, :data:`GRAPH_AMP_LEVELS`) are stated here.
"""
import importlib
import importlib.util
import math
import os
from typing import Optional, Sequence, Tuple, Union

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Uniform, initializer

from foundation.platform import MINDSPORE_VERSION

BACKENDS = ("native", "msadapter")


class BackendError(RuntimeError):
    """``LSEG_NN`` names an unknown backend, or one that does not import on this MindSpore."""


def _msadapter_importable() -> bool:
    if importlib.util.find_spec("msadapter") is None:
        return False
    try:
        importlib.import_module("msadapter.pytorch")
    except Exception:  # msadapter's own failures on MindSpore >= 2.7 (missing private APIs)
        return False
    return True


def _choose_backend() -> str:
    requested = os.environ.get("LSEG_NN", "").strip().lower()
    if requested and requested not in BACKENDS:
        raise BackendError(f"LSEG_NN={requested!r} is not a backend; use one of {', '.join(BACKENDS)}")
    if requested == "native":
        return "native"
    if requested == "msadapter":
        if not _msadapter_importable():
            raise BackendError(f"LSEG_NN=msadapter, but msadapter does not import on mindspore {ms.__version__} "
                               "(it needs mindspore 2.0.0: LSEG_STACK=legacy); unset LSEG_NN to use the native layer")
        return "msadapter"
    return "msadapter" if MINDSPORE_VERSION < (2, 3) and _msadapter_importable() else "native"


BACKEND = _choose_backend()

# Facts of the chosen layer (``python -m bench.workarounds`` re-measures them on either stack):
# After GRAPH_MODE TrainOneStepCell steps the last msadapter conv's bias reads back (asnumpy, save_checkpoint) as its
# initial value unless its Parameters are re-created (encoding_custom.engine.refresh_parameters); the native layer
# reads back trained values on 2.0.0 and 2.10.0 without it.
STALE_GRAPH_READBACK = BACKEND == "msadapter"
# Mixed-precision levels that compile in GRAPH_MODE: msadapter's convs keep float32 weights under O2/O3 and fail type
# inference ("For primitive[Conv2D], the input type must be same"); the native layer compiles O1, O2 and O3.
GRAPH_AMP_LEVELS = ("O1",) if BACKEND == "msadapter" else ("O1", "O2", "O3")


# ---------------------------------------------------------------------------------------------------- native layer
def _pair(value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def _uniform_parameter(shape: Tuple[int, ...], bound: float, name: str) -> Parameter:
    """U(-bound, bound), the distribution PyTorch's default init gives conv/linear weights and biases."""
    return Parameter(initializer(Uniform(scale=bound), shape, ms.float32), name=name)


class _TorchModuleAPI:
    """The ``torch.nn.Module`` methods the project uses, on top of a MindSpore Cell."""

    def train(self, mode: bool = True):
        """Training mode for this module and every sub-module (BatchNorm uses batch statistics). Returns self."""
        self.set_train(mode)
        return self

    def eval(self):
        """Inference mode (BatchNorm uses running statistics). Returns self."""
        return self.train(False)

    def parameters(self, recurse: bool = True):
        """Yields: the Parameters, as ``torch.nn.Module.parameters``."""
        yield from self.get_parameters(expand=recurse)

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yields: ``(name, Parameter)`` pairs with full dotted names."""
        for name, param in self.parameters_and_names(expand=recurse):
            yield (prefix + "." + name if prefix else name), param


class Module(_TorchModuleAPI, nn.Cell):
    """``torch.nn.Module`` on a MindSpore Cell: subclasses define ``forward``; ``construct`` calls it.

    Parameters are MindSpore Parameters named by attribute path (``block.conv.weight``), so
    ``parameters_and_names()``, ``save_checkpoint`` and optimisers see PyTorch's names.
    """

    def __init__(self):
        super().__init__(auto_prefix=True)

    def construct(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")


class Conv2d(Module):
    """2-D convolution, ``torch.nn.Conv2d`` semantics (zero padding) and init (U(+-1/sqrt(fan_in))).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: int or (h, w).
        groups: channel groups.
        bias: add a learned bias.

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H', W').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        kernel, stride, padding, dilation = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.groups = groups
        bound = 1.0 / math.sqrt((in_channels // groups) * kernel[0] * kernel[1])
        self.weight = _uniform_parameter((out_channels, in_channels // groups) + kernel, bound, "weight")
        self.bias = _uniform_parameter((out_channels,), bound, "bias") if bias else None
        self._conv = ops.Conv2D(out_channel=out_channels, kernel_size=kernel, mode=1, pad_mode="pad",
                                pad=(padding[0], padding[0], padding[1], padding[1]), stride=stride,
                                dilation=dilation, group=groups)
        self._bias_add = ops.BiasAdd()

    def forward(self, x):
        out = self._conv(x, self.weight)
        if self.bias is not None:
            out = self._bias_add(out, self.bias)
        return out


class ConvTranspose2d(Module):
    """2-D transposed convolution, ``torch.nn.ConvTranspose2d`` (no output_padding), weight (in, out/groups, kh, kw).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, padding, dilation: int or (h, w).
        groups: channel groups.
        bias: add a learned bias.

    Shapes: (B, in, H, W) -> (B, out, (H-1)*stride - 2*padding + dilation*(k-1) + 1, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, dilation=1):
        super().__init__()
        kernel, stride, padding, dilation = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        # PyTorch takes fan_in from dim 1 of the weight, which for a transposed conv is out_channels / groups.
        bound = 1.0 / math.sqrt((out_channels // groups) * kernel[0] * kernel[1])
        self.weight = _uniform_parameter((in_channels, out_channels // groups) + kernel, bound, "weight")
        self.bias = _uniform_parameter((out_channels,), bound, "bias") if bias else None
        pad_mode = "valid" if padding == (0, 0) else "pad"
        self._deconv = ops.Conv2DTranspose(out_channel=in_channels, kernel_size=kernel, mode=1, pad_mode=pad_mode,
                                           pad=(padding[0], padding[0], padding[1], padding[1]), stride=stride,
                                           dilation=dilation, group=groups)
        self._bias_add = ops.BiasAdd()

    def forward(self, x):
        batch, _, height, width = x.shape
        out_h = (height - 1) * self.stride[0] - 2 * self.padding[0] + self.dilation[0] * (self.kernel_size[0] - 1) + 1
        out_w = (width - 1) * self.stride[1] - 2 * self.padding[1] + self.dilation[1] * (self.kernel_size[1] - 1) + 1
        out = self._deconv(x, self.weight, (batch, self.out_channels, out_h, out_w))
        if self.bias is not None:
            out = self._bias_add(out, self.bias)
        return out


class BatchNorm2d(Module):
    """``torch.nn.BatchNorm2d``: batch statistics in training, running ones in eval; running = 0.9 old + 0.1 new.

    ``running_var`` takes the unbiased batch variance (PyTorch) on MindSpore 2.7+, the biased one on 2.0.0 CPU
    (``foundation.platform.BN_CPU_BIASED_RUNNING_VAR``); outputs use the biased variance everywhere, as PyTorch does.

    Args:
        num_features: channels.
        eps: added to the variance.
        momentum: weight of the new batch statistic in the running averages.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(Tensor(np.ones(num_features, np.float32)), name="weight")
        self.bias = Parameter(Tensor(np.zeros(num_features, np.float32)), name="bias")
        self.running_mean = Parameter(Tensor(np.zeros(num_features, np.float32)), name="running_mean",
                                      requires_grad=False)
        self.running_var = Parameter(Tensor(np.ones(num_features, np.float32)), name="running_var",
                                     requires_grad=False)
        # MindSpore's momentum is the weight of the new statistic, PyTorch's convention.
        self._bn_train = ops.BatchNorm(is_training=True, epsilon=eps, momentum=momentum, data_format="NCHW")
        self._bn_infer = ops.BatchNorm(is_training=False, epsilon=eps, data_format="NCHW")

    def forward(self, x):
        if self.training:
            return self._bn_train(x, self.weight, self.bias, self.running_mean, self.running_var)[0]
        return self._bn_infer(x, self.weight, self.bias, self.running_mean, self.running_var)[0]


class Linear(Module):
    """``torch.nn.Linear`` on the last axis, weight (out, in), init U(+-1/sqrt(in)).

    Shapes: (..., in_features) -> (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = _uniform_parameter((out_features, in_features), bound, "weight")
        self.bias = _uniform_parameter((out_features,), bound, "bias") if bias else None
        self._matmul = ops.MatMul(transpose_b=True)
        self._bias_add = ops.BiasAdd()

    def forward(self, x):
        leading = x.shape[:-1]
        out = self._matmul(ops.reshape(x, (-1, self.in_features)), self.weight)
        if self.bias is not None:
            out = self._bias_add(out, self.bias)
        return ops.reshape(out, leading + (self.out_features,))


class _Elementwise(Module):
    """One element-wise primitive as a module; subclasses name it in ``PRIMITIVE``."""

    PRIMITIVE = None

    def __init__(self):
        super().__init__()
        self._op = self.PRIMITIVE()

    def forward(self, x):
        return self._op(x)


class ReLU(_Elementwise):
    """max(x, 0)."""

    PRIMITIVE = ops.ReLU


class LeakyReLU(Module):
    """``torch.nn.LeakyReLU``: x if x > 0 else slope * x, slope 0.01 (MindSpore's ``nn.LeakyReLU`` defaults to 0.2).

    Args:
        negative_slope: slope for x < 0, in [0, 1].
    """

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not 0.0 <= negative_slope <= 1.0:
            raise ValueError(f"negative_slope must be in [0, 1], got {negative_slope}")
        self.negative_slope = float(negative_slope)
        self._maximum = ops.Maximum()

    def forward(self, x):
        return self._maximum(x * self.negative_slope, x)


class Tanh(_Elementwise):
    """tanh(x)."""

    PRIMITIVE = ops.Tanh


class MaxPool2d(Module):
    """``torch.nn.MaxPool2d`` (padding acts as -inf: padded cells never win), without dilation or ceil mode.

    Args:
        kernel_size, stride, padding: ints, as torch (stride defaults to kernel_size).

    Shapes: (B, C, H, W) -> (B, C, floor((H + 2p - k) / s) + 1, ...).
    """

    def __init__(self, kernel_size: int, stride: Optional[int] = None, padding: int = 0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        # pad_mode "pad" places the padding like torch (p on every side); "same" would put it all at the end.
        self._pool = nn.MaxPool2d(kernel_size=kernel_size, stride=self.stride, pad_mode="pad", padding=padding)

    def forward(self, x):
        return self._pool(x)


class Identity(Module):
    """Returns its input."""

    def forward(self, x):
        return x


class Sequential(_TorchModuleAPI, nn.SequentialCell):
    """Runs its modules in order; children are named ``0``, ``1``, ... as in PyTorch.

    Args:
        *modules: the layers.
    """

    def __init__(self, *modules):
        super().__init__(list(modules))


_relu_primitive = ops.ReLU()


def relu(x):
    """max(x, 0), ``F.relu``."""
    return _relu_primitive(x)


def interpolate(x, size: Optional[Tuple[int, int]] = None, scale_factor: Optional[float] = None,
                       mode: str = "bilinear", align_corners: bool = False):
    """Bilinear resize of (B, C, H, W) with ``torch.nn.functional.interpolate`` semantics.

    Args:
        x: (B, C, H, W).
        size: (H', W'); or None with ``scale_factor`` (output floor(H * s), floor(W * s)).
        scale_factor: float multiplier when ``size`` is None.
        mode: only ``"bilinear"``.
        align_corners: PyTorch's flag (False: half-pixel centres).

    Returns:
        (B, C, H', W').
    """
    if mode != "bilinear":
        raise ValueError(f"interpolate supports mode 'bilinear' only, got {mode!r}")
    if size is None:
        if scale_factor is None:
            raise ValueError("interpolate needs size or scale_factor")
        size = (int(x.shape[2] * scale_factor), int(x.shape[3] * scale_factor))  # int() floors positive sizes
    resize = ops.ResizeBilinearV2(align_corners=align_corners, half_pixel_centers=not align_corners)
    return resize(x, (int(size[0]), int(size[1])))


def tensor(array) -> Tensor:
    """A MindSpore Tensor holding ``array`` (numpy or nested lists)."""
    return Tensor(np.asarray(array))


# --------------------------------------------------------------------------------------------- the chosen backend
# The native classes stay reachable as Native* whatever the backend (tests use them).
NativeModule, NativeConv2d, NativeConvTranspose2d, NativeBatchNorm2d, NativeLinear = (
    Module, Conv2d, ConvTranspose2d, BatchNorm2d, Linear)
NativeReLU, NativeLeakyReLU, NativeTanh, NativeIdentity, NativeSequential = ReLU, LeakyReLU, Tanh, Identity, Sequential
NativeMaxPool2d = MaxPool2d
native_relu, native_interpolate, native_tensor = relu, interpolate, tensor
# msadapter's Conv2d and Linear call these functional products (modules.mixed_precision casts around them).
functional_conv2d = functional_linear = None

if BACKEND == "msadapter":
    _torch, _tnn, _F = (importlib.import_module(name) for name in ("msadapter.pytorch", "msadapter.pytorch.nn",
                                                   "msadapter.pytorch.nn.functional"))
    Module = _tnn.Module
    Conv2d = _tnn.Conv2d
    ConvTranspose2d = _tnn.ConvTranspose2d
    BatchNorm2d = _tnn.BatchNorm2d
    Linear = _tnn.Linear
    ReLU = _tnn.ReLU
    LeakyReLU = _tnn.LeakyReLU
    Tanh = _tnn.Tanh
    Identity = _tnn.Identity
    MaxPool2d = _tnn.MaxPool2d
    Sequential = _tnn.Sequential
    relu = _F.relu
    functional_conv2d, functional_linear = _F.conv2d, _F.linear
    interpolate = _F.interpolate
    tensor = _torch.tensor


def describe() -> str:
    """Returns: one line naming the MindSpore version and the layer backend (printed by the scripts at start)."""
    return f"mindspore {ms.__version__}, torch-style layer: {BACKEND}"


__all__ = ["BACKEND", "BACKENDS", "BackendError", "STALE_GRAPH_READBACK", "GRAPH_AMP_LEVELS", "describe", "Module",
           "Conv2d", "ConvTranspose2d", "BatchNorm2d", "Linear", "ReLU", "LeakyReLU", "Tanh", "MaxPool2d", "Identity",
           "Sequential", "relu", "interpolate", "tensor"]
