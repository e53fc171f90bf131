"""Case 6: MindIR export of the eval network, then the MindIR loaded and run as a server runs it."""
import os
import time
from typing import Dict

import numpy as np

from bench.cases.random_network import build_random_network, image_tensor
from bench.cases.variant import CaseContext
from bench.timing import measure, wait_until_computed


def max_relative_difference(values: np.ndarray, reference: np.ndarray) -> float:
    """``max |values - reference| / max |reference|``, the measure ``tests/test_modules_export.py`` bounds.

    Args:
        values: array to check.
        reference: array of the same shape it should equal.

    Returns:
        float (0.0 for identical arrays).
    """
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(values.astype(np.float64) - reference).max() / scale)


def case_export(ctx: CaseContext) -> Dict[str, object]:
    """Case 6: ``modules.export.export_mindir`` of the eval network, then the MindIR as a server runs it
    (``mindspore.load`` + ``nn.GraphCell``, GRAPH_MODE: MindSpore 2.0 refuses a MindIR in PyNative).
    ``params["labels"]``: ``"static"`` bakes the label set's text features into the graph (``images -> logits``);
    ``"dynamic"`` takes them as a second input (``(images, net.encode_text(labels)) -> logits``).

    Everything runs in this one process, after the network was built (as ``python -m modules.export`` does);
    the network's own forward on the same input, compiled once, is the reference of the logits.

    Returns: timing (per forward of the loaded graph; ``warmup_s[0]`` = its first call, which compiles it),
    ``export_s``, ``mindir_mib`` (size of all its files), ``mindir_files`` (their names, see
    ``modules.export.mindir_files``), ``load_s`` (``mindspore.load`` + ``GraphCell``), ``first_call_s``,
    ``logits_max_rel_diff`` (graph vs network, see :func:`max_relative_difference`), build time, output shape,
    label count.
    """
    import mindspore as ms
    from mindspore import nn

    from modules.export import export_mindir

    params = ctx.params
    net, labels, build_s = build_random_network(params)
    net.set_train(False)
    height, width = params["image_hw"]
    batch = int(params["batch"])
    dynamic = params["labels"] == "dynamic"
    images = image_tensor(batch, height, width, params["backbone"])
    start = time.perf_counter()
    files = export_mindir(net, os.path.join(ctx.workdir, "lseg.mindir"), height, width, batch=batch,
                          dynamic_labels=dynamic)
    export_s = time.perf_counter() - start
    mindir_mib = sum(os.path.getsize(name) for name in files) / 2**20
    inputs = (images, net.encode_text(labels)) if dynamic else (images,)
    reference = net(*inputs).asnumpy()
    start = time.perf_counter()
    graph = nn.GraphCell(ms.load(files[0]))
    load_s = time.perf_counter() - start
    outputs = []

    def run_once():
        logits = graph(*inputs)
        wait_until_computed(logits)
        outputs[:] = [logits]  # only the last call's logits are kept: ViT-L's are 138 MB

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    logits = outputs[-1].asnumpy()
    if logits.shape != reference.shape:
        raise RuntimeError(f"{ctx.variant}: MindIR logits {logits.shape}, network logits {reference.shape}")
    return {"timing": timing, "build_s": build_s, "export_s": export_s, "mindir_mib": mindir_mib, "load_s": load_s,
            "first_call_s": timing["warmup_s"][0] if timing["warmup_s"] else None,
            "logits_max_rel_diff": max_relative_difference(logits, reference), "output_shape": list(logits.shape),
            "n_labels": len(labels), "mindir_files": [os.path.relpath(name, ctx.workdir) for name in files]}
