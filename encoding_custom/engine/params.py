"""Re-create a network's Parameters so GRAPH_MODE updates are visible outside the training graph.

With msadapter's layers on MindSpore 2.0, the bias of the last ``nn.Linear``/``Conv2d`` trained in GRAPH_MODE reads
back (``asnumpy()``, ``save_checkpoint``, another compiled graph) as its initial value; replacing each Parameter by a
fresh one holding the same value fixes it (``Parameter.set_data`` does not). The native layer of ``modules.tnn`` is
not affected, so the Trainer calls this only where ``modules.tnn.STALE_GRAPH_READBACK`` is set;
``python -m bench.workarounds stale_readback`` re-checks it (bench/PERFORMANCE.md, "Version facts").
"""
from typing import Dict

import mindspore as ms
import numpy as np
from mindspore import nn


def refresh_parameters(network: nn.Cell) -> Dict[int, ms.Parameter]:
    """Replace every Parameter of ``network`` (recursively) by a fresh one with the same name, value and
    ``requires_grad``; a Parameter shared by several cells stays shared.

    Call it once after building the network and before building the optimizer or any training cell. Each replaced
    Parameter is emptied (0 elements): a caller's parameter list taken before the call would otherwise keep a second
    copy of every weight alive while the optimizer is built (1.5 GiB for ViT-L, then held by the C allocator), and a
    stale Parameter used by mistake fails on its shape instead of reading old values.

    Args:
        network: any Cell (msadapter modules and plain MindSpore cells alike).

    Returns:
        ``{id(old parameter): new parameter}``, to translate parameter lists taken before the call.
    """
    replaced: Dict[int, ms.Parameter] = {}
    for _, cell in network.cells_and_names():
        params = cell._params  # the Cell's own parameter table; attribute access reads from it
        for key in list(params.keys()):
            old = params[key]
            if old is None:
                continue
            new = replaced.get(id(old))
            if new is None:
                new = ms.Parameter(ms.Tensor(old.asnumpy()), name=old.name, requires_grad=old.requires_grad)
                replaced[id(old)] = new
                old.set_data(ms.Tensor(np.zeros((0,)), old.dtype), slice_shape=True)
            params[key] = new
    return replaced
