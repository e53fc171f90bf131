"""modules.kernels: the fused softmax gradient equals its definition, the attention uses it on a CPU from MindSpore
2.10 on, it is built once into the cache (also by processes racing for it), and MindSpore's ops stay in charge, with
one warning, without a compiler, off a CPU and before MindSpore 2.10."""
import logging
import multiprocessing
import os
import shutil

import mindspore as ms
import numpy as np
import pytest

from foundation.platform import OWN_CPU_KERNELS_PAY
from modules import kernels
from modules.backbone import AttentionCore, AttentionCoreOpByOp

pytestmark = [pytest.mark.both_stacks,
              pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler")]


def softmax_rows(scores):
    exp = np.exp(scores - scores.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 17, 17), (1, 16, 33, 901)])
def test_the_softmax_kernel_is_the_softmax_gradient(shape):
    rng = np.random.RandomState(len(shape))
    probabilities = softmax_rows(rng.standard_normal(shape) * 3)
    grad = rng.standard_normal(shape)
    expected = probabilities * (grad - (grad * probabilities).sum(-1, keepdims=True))
    op = kernels.custom_op("softmax_grad", "SoftmaxGrad")  # on any stack
    got = op(ms.Tensor(probabilities.astype(np.float32)), ms.Tensor(grad.astype(np.float32))).asnumpy()
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_the_attention_uses_it_on_a_cpu_from_mindspore_2_10():
    core, op_by_op = AttentionCore(), AttentionCoreOpByOp()
    assert core.softmax_grad is kernels.softmax_grad_op() is op_by_op.softmax_grad
    assert (core.softmax_grad is not None) == OWN_CPU_KERNELS_PAY
    assert (core.fused_softmax is not None) == OWN_CPU_KERNELS_PAY


def _build(cache, queue):
    os.environ["LSEG_KERNEL_CACHE"] = cache
    kernels.build_kernel.cache_clear()
    queue.put(kernels.build_kernel("softmax_grad"))


def test_racing_processes_build_one_library_into_the_cache(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    libraries = {queue.get(timeout=120) for _ in workers}
    for worker in workers:
        worker.join(timeout=60)
    assert len(libraries) == 1 and os.path.dirname(libraries.pop()) == str(tmp_path)
    assert [name for name in os.listdir(tmp_path) if not name.startswith("softmax_grad-")] == []
    assert len(os.listdir(tmp_path)) == 1


def test_without_a_compiler_mindspores_ops_run_and_one_warning_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LSEG_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    kernels.build_kernel.cache_clear()
    kernels._custom_op.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="lseg.kernels"):
            assert kernels.build_kernel("softmax_grad") is None
            assert kernels.softmax_grad_op() is None
            core = AttentionCoreOpByOp()
        assert core.softmax_grad is None and core.fused_softmax is None
        assert [record.getMessage().split(":")[0] for record in caplog.records] == [
            "no C++ compiler (no-such-compiler) to build %s" % os.path.join(os.path.dirname(kernels.__file__),
                                                                          "softmax_grad.cc")]
        assert os.listdir(tmp_path) == []
    finally:
        kernels.build_kernel.cache_clear()
        kernels._custom_op.cache_clear()


def test_a_compile_error_names_the_source_and_leaves_no_file(tmp_path, monkeypatch, caplog):
    fake = tmp_path / "bin" / "fake-cxx"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\n"
                    "echo 'softmax_grad.cc:1: error: broken' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LSEG_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(fake))
    kernels.build_kernel.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="lseg.kernels"):
            assert kernels.build_kernel("softmax_grad") is None
        message = caplog.records[-1].getMessage()
        assert "softmax_grad.cc" in message and "error: broken" in message
        assert os.listdir(tmp_path / "cache") == []
    finally:
        kernels.build_kernel.cache_clear()


def test_other_devices_keep_mindspores_ops():
    assert all(kernels._custom_op(device, "softmax_grad", "SoftmaxGrad") is None for device in ("GPU", "Ascend"))
