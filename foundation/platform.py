"""What the installed MindSpore can and cannot do: the version facts every layer above branches on, in one place.

Each fact names what differs and how it was established; the measurements are in bench/PERFORMANCE.md. Importing
this module caps oneDNN at AVX2 where that is needed (see :data:`ONEDNN_ISA_CAPPED`), so it is imported before any
CPU op runs (``modules.tnn`` imports it, and the scripts, tests and bench import ``modules.tnn`` first).
"""
import os
import platform
from typing import Tuple

import mindspore as ms


def version_tuple(text: str) -> Tuple[int, ...]:
    """Args: text: a version string such as ``"2.10.0"`` or ``"2.0.0rc1"``. Returns: its first three numbers."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


MINDSPORE_VERSION: Tuple[int, ...] = version_tuple(ms.__version__)

# ops.BatchNorm on CPU updates running_var with the biased batch variance before 2.3 and with the unbiased one
# (PyTorch's rule) after.
BN_CPU_BIASED_RUNNING_VAR = MINDSPORE_VERSION < (2, 3)

# MindSpore 2.7+ runs CPU convolutions through oneDNN 3.x, which on AVX-512 CPUs picks its reference kernel for the
# NCHW layouts MindSpore passes (hundreds of times slower); capped at AVX2 it takes its gemm convolution. oneDNN reads
# the cap when it first runs a kernel, and a value the user set is kept. Measured on 2.10 (bench/PERFORMANCE.md,
# "Product and convolution routes"): 3x3 conv 0.18 s capped, 21.6 s not; no AVX-512 level avoids the reference kernel,
# NHWC is GPU-only, and the ViT's matmuls are 10-22 % faster capped, so every route keeps the cap.
ONEDNN_ISA_CAPPED = (MINDSPORE_VERSION >= (2, 7) and platform.machine().lower() in ("x86_64", "amd64")
                     and "ONEDNN_MAX_CPU_ISA" not in os.environ and "DNNL_MAX_CPU_ISA" not in os.environ)
if ONEDNN_ISA_CAPPED:
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

# msrun, MindSpore's dynamic-cluster launcher, ships with 2.3+.
HAS_MSRUN = MINDSPORE_VERSION >= (2, 3)
# Before 2.10 the cluster's rpc client clears its reply slot after sending a request, so a reply that arrives in
# between is lost and a worker's start hangs (encoding_custom.engine.distributed.cluster_start_affinity works around
# it); 2.10 clears it before sending.
CLUSTER_CLIENT_LOSES_FAST_REPLIES = MINDSPORE_VERSION < (2, 10)
# Before 2.10 a MindIR exported with the label count as an input segfaults when it is called with another count than
# at its first call and the network has the spatial regularisation block.
DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES = MINDSPORE_VERSION < (2, 10)
# Before 2.10, PyNative passes a Cell's own ``bprop`` the output of the Cell's first call as ``out`` in every later
# call (its inputs and ``dout`` are the call's own).
PYNATIVE_BPROP_GETS_FIRST_OUTPUT = MINDSPORE_VERSION < (2, 10)
# On 2.10 the CPU backend's compiled training graph keeps the transients of the softmax's gradient as it expands it;
# a kernel of our own (modules.kernels) takes the ViT-L step from 18.8 to 15.1 GiB and makes it about 1 s faster. On
# 2.0 the same step kept 1 GiB more with it (15.2 against 14.2 GiB) and ran no faster, so it runs from 2.10 on.
OWN_CPU_KERNELS_PAY = MINDSPORE_VERSION >= (2, 10)


__all__ = ["version_tuple", "MINDSPORE_VERSION", "BN_CPU_BIASED_RUNNING_VAR", "ONEDNN_ISA_CAPPED", "HAS_MSRUN",
           "CLUSTER_CLIENT_LOSES_FAST_REPLIES", "DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES",
           "PYNATIVE_BPROP_GETS_FIRST_OUTPUT", "OWN_CPU_KERNELS_PAY"]
