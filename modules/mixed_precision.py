"""Mixed precision O1 that reaches LSeg's layers: convolutions and matrix products compute in float16 (or bfloat16),
everything else stays float32, as MindSpore's O1 does for its own ``nn`` layers.

MindSpore's O1 (``ms.amp.auto_mixed_precision(net, "O1")``) casts what its source rewrite finds in each Cell's
``construct``; the torch-style layers define ``forward``, so it casts nothing of ours (bench/PERFORMANCE.md, "Mixed
precision O1"). Here the products are found on the built network instead: every convolution or matrix-product
primitive a layer holds is replaced by :class:`LowPrecisionProduct` (inputs cast down, result cast back to float32),
and the msadapter layers that call functional products are given a ``forward`` that casts. Parameters, their names
and their dtype (float32) are unchanged, so checkpoints, optimizers and loss scaling see the same network; it works
in PyNative and GRAPH_MODE alike and on both stacks.
"""
from typing import Optional

import mindspore as ms
from mindspore import nn, ops
from mindspore.ops import Primitive

from modules import tnn

# bfloat16 exists from MindSpore 2.3 (not on the legacy 2.0.0).
LOW_PRECISION_DTYPES = {"float16": ms.float16, **({"bfloat16": ms.bfloat16} if hasattr(ms, "bfloat16") else {})}
# The primitive products of MindSpore's O1 white list that LSeg's layers use (tnn's native Conv2d/ConvTranspose2d/
# Linear, MindSpore's nn.Dense, MindCV's attention, msadapter's ConvTranspose2d).
LOW_PRECISION_PRIMITIVES = (ops.Conv2D, ops.Conv2DTranspose, ops.MatMul, ops.BatchMatMul)


class LowPrecisionProduct(nn.Cell):
    """A product primitive run in a lower float type: ``(x, w, *rest) -> float32(product(low(x), low(w), *rest))``.

    Args:
        product: the primitive (Conv2D, Conv2DTranspose, MatMul, BatchMatMul).
        dtype: ``ms.float16`` or ``ms.bfloat16``.
    """

    def __init__(self, product: Primitive, dtype):
        super().__init__(auto_prefix=False)
        self.product = product
        self.dtype = dtype

    def construct(self, x, w, *rest):
        return ops.cast(self.product(ops.cast(x, self.dtype), ops.cast(w, self.dtype), *rest), ms.float32)


class LowPrecisionConv2d(tnn.Conv2d):
    """msadapter's Conv2d (it calls a functional convolution) with the product in ``low_dtype``."""

    def forward(self, input):
        out = tnn.functional_conv2d(ops.cast(input, self.low_dtype), ops.cast(self.weight, self.low_dtype), None,
                                    self.stride, self.padding, self.dilation, self.groups)
        out = ops.cast(out, ms.float32)
        return out if self.bias is None else out + ops.reshape(self.bias, (1, -1, 1, 1))


class LowPrecisionLinear(tnn.Linear):
    """msadapter's Linear (it calls a functional product) with the product in ``low_dtype``."""

    def forward(self, input):
        out = tnn.functional_linear(ops.cast(input, self.low_dtype), ops.cast(self.weight, self.low_dtype))
        out = ops.cast(out, ms.float32)
        return out if self.bias is None else out + self.bias


def compute_products_in_low_precision(network: nn.Cell, dtype_name: str = "float16") -> int:
    """Make every convolution and matrix product of ``network`` compute in a lower float type (O1), in place.

    Args:
        network: any Cell (an LSegNet, or the loss cell that holds one).
        dtype_name: a key of :data:`LOW_PRECISION_DTYPES`.

    Returns:
        how many products were changed (0: nothing to cast, e.g. a network without products).
    """
    dtype = LOW_PRECISION_DTYPES[dtype_name]
    swapped = {tnn.Conv2d: LowPrecisionConv2d, tnn.Linear: LowPrecisionLinear} if tnn.BACKEND == "msadapter" else {}
    changed = 0
    for _, cell in list(network.cells_and_names()):
        if isinstance(cell, LowPrecisionProduct):  # already cast (a second call changes nothing)
            continue
        if type(cell) in swapped:
            cell.low_dtype = dtype
            cell.__class__ = swapped[type(cell)]
            changed += 1
            continue
        for name, value in list(vars(cell).items()):
            if isinstance(value, LOW_PRECISION_PRIMITIVES):
                cell._primitives.pop(name, None)  # pylint: disable=protected-access
                setattr(cell, name, LowPrecisionProduct(value, dtype))
                changed += 1
    return changed


def low_precision_refusal(dtype_name: str, device_target: str) -> Optional[str]:
    """Why ``dtype_name`` cannot be the low float type on ``device_target`` with this MindSpore, or None.

    Args:
        dtype_name: "float16" or "bfloat16"; device_target: "CPU", "GPU" or "Ascend" (resolved, not "auto").

    Returns:
        a reason for the user, or None when the type is usable.
    """
    if dtype_name not in LOW_PRECISION_DTYPES:
        return "mindspore %s has no %s (it came in 2.3); use float16" % (ms.__version__, dtype_name)
    if dtype_name == "bfloat16" and device_target == "CPU":
        # Measured on 2.10: "Select CPU operator[MatMul] fail! Unsupported data type!" (Conv2D, BatchMatMul alike).
        return ("mindspore %s has no bfloat16 CPU kernels for convolutions and matrix products; use float16 on CPU "
                "(bfloat16 is for Ascend)" % ms.__version__)
    return None


def apply_mixed_precision(network: nn.Cell, level: str, dtype_name: str = "float16") -> nn.Cell:
    """The network to train at a mixed-precision level.

    Args:
        network: any Cell.
        level: ``"O0"`` (float32, unchanged), ``"O1"`` (:func:`compute_products_in_low_precision`, in place: the
            network itself then runs its products in the low type, in validation too, as 16-bit training does in
            PyTorch), ``"O2"``/``"O3"`` (MindSpore's ``auto_mixed_precision``: the network cast to the low type,
            BatchNorm kept float32 at O2).
        dtype_name: a key of :data:`LOW_PRECISION_DTYPES` (:func:`low_precision_refusal` says where each runs).

    Returns:
        the Cell to train: ``network`` for O0/O1, MindSpore's wrapper for O2/O3.
    """
    if level == "O0":
        return network
    if level == "O1":
        compute_products_in_low_precision(network, dtype_name)
        return network
    if dtype_name == "float16":
        return ms.amp.auto_mixed_precision(network, level)  # MindSpore 2.0's takes no dtype
    return ms.amp.auto_mixed_precision(network, level, dtype=LOW_PRECISION_DTYPES[dtype_name])


__all__ = ["LOW_PRECISION_DTYPES", "LOW_PRECISION_PRIMITIVES", "LowPrecisionProduct", "LowPrecisionConv2d",
           "LowPrecisionLinear", "compute_products_in_low_precision", "low_precision_refusal", "apply_mixed_precision"]
