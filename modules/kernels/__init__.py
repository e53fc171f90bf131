"""CPU kernels of our own, for the steps MindSpore's CPU backend runs slowly, called through ``ops.Custom("aot")``.

The C++ source sits beside this file and is compiled with the system's C++ compiler (``$CXX``, else ``g++``) the first
time a process asks for it on a CPU device, into a cache folder keyed by the source, compiler and flags
(``$LSEG_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/lseg_mindspore/kernels``, else ``~/.cache/...``). Without a compiler
the callers keep MindSpore's own ops (same results, slower and, compiled, heavier); one warning says so. GPU and
Ascend use MindSpore's ops: their ``aot`` kernels would be CUDA or Ascend C. So does MindSpore before 2.10, where
the kernels do not pay (:data:`foundation.platform.OWN_CPU_KERNELS_PAY`).
"""
import functools
import hashlib
import logging
import os
import shutil
import subprocess
from typing import Optional

import mindspore as ms
from mindspore import ops

from foundation.atomic import atomic_output
from foundation.platform import OWN_CPU_KERNELS_PAY

_HERE = os.path.dirname(os.path.abspath(__file__))
# -fopenmp-simd: `omp simd` vectorises each row's sum (16x901x901: 13 ms without it, 7.6 ms with it) without
# OpenMP's threads, which would contend with MindSpore's kernel pool (rows over 2 threads: 5.8 ms, and the ViT-L
# step no faster). No -march: the cached library must run on any CPU of its architecture.
_FLAGS = ("-O3", "-fopenmp-simd", "-shared", "-fPIC", "-std=c++11")
_log = logging.getLogger("lseg.kernels")


def kernel_cache_dir() -> str:
    """Returns: the folder compiled kernels are kept in (created on first build)."""
    if os.environ.get("LSEG_KERNEL_CACHE"):
        return os.path.abspath(os.path.expanduser(os.environ["LSEG_KERNEL_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lseg_mindspore", "kernels")


def _compiler_identity(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=None)
def build_kernel(name: str) -> Optional[str]:
    """Compile ``<name>.cc`` of this folder once per source, compiler and flags.

    Args:
        name: the source's stem, e.g. ``"softmax_grad"``.

    Returns:
        the shared library's path, or None (and one warning) when no C++ compiler could build it. Concurrent
        processes (data-parallel ranks) may build it at once: each writes its own temporary file and renames it
        into place.
    """
    compiler = os.environ.get("CXX", "g++")
    compiler_path = shutil.which(compiler)
    source = os.path.join(_HERE, name + ".cc")
    identity = _compiler_identity(compiler_path) if compiler_path else ""
    if not identity:
        _log.warning("no C++ compiler (%s) to build %s: MindSpore's own ops run instead (a CPU training step is "
                     "slower and, compiled, heavier; set CXX to a compiler's name)", compiler, source)
        return None
    with open(source, "rb") as handle:
        digest = hashlib.sha256(handle.read() + " ".join(_FLAGS).encode() + identity.encode()).hexdigest()[:16]
    library = os.path.join(kernel_cache_dir(), "%s-%s.so" % (name, digest))
    if os.path.isfile(library):
        return library
    try:
        with atomic_output(library) as temporary:
            result = subprocess.run([compiler_path, *_FLAGS, "-o", temporary, source], capture_output=True,
                                    text=True, timeout=300)
            if result.returncode != 0:  # the compiler's first error line names the cause
                lines = (result.stderr or result.stdout or "exit status %d" % result.returncode).strip().splitlines()
                raise RuntimeError(next((line for line in lines if "error" in line), lines[-1]))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _log.warning("could not build %s into %s (%s): MindSpore's own ops run instead (a CPU training step is "
                     "slower and, compiled, heavier)", source, library, error)
        return None
    return library


def softmax_grad_op() -> Optional[ops.Custom]:
    """The fused softmax gradient for the current device, or None where MindSpore's ops should run.

    Returns:
        on a CPU device with a C++ compiler, ``op(P, dP) -> P ∘ (dP − rowsum(dP ∘ P))`` over the last axis
        (float32 in and out, any shape, output shaped as P), one primitive shared by its callers; else None.
    """
    return _custom_op(ms.get_context("device_target"), "softmax_grad", "SoftmaxGrad")


def custom_op(source: str, function: str) -> Optional[ops.Custom]:
    """``function`` of ``<source>.cc`` as an ``aot`` primitive whose output is shaped and typed as its first input,
    on any MindSpore version (the network asks through :func:`softmax_grad_op`); None when it cannot be built."""
    library = build_kernel(source)
    if library is None:
        return None
    return ops.Custom(library + ":" + function, out_shape=lambda first, second: first,
                      out_dtype=lambda first, second: first, func_type="aot")


@functools.lru_cache(maxsize=None)
def _custom_op(device_target: str, source: str, function: str) -> Optional[ops.Custom]:
    """One primitive per kernel and device, where the kernels pay."""
    if device_target != "CPU" or not OWN_CPU_KERNELS_PAY:
        return None
    return custom_op(source, function)


__all__ = ["kernel_cache_dir", "build_kernel", "custom_op", "softmax_grad_op"]
