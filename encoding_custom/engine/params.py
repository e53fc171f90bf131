"""Re-create a network's Parameters so GRAPH_MODE updates are visible outside the training graph.

Measured here (mindspore 2.0.0 + msadapter 0.1.0, CPU): after ``TrainOneStepCell`` steps in GRAPH_MODE, the bias of
the *last* msadapter ``nn.Linear``/``Conv2d`` is updated inside the training graph but every read outside it —
``asnumpy()``, ``save_checkpoint``, and even another compiled graph of the same network — still sees its initial
value, while PyNative shows it trained. ``Parameter.set_data`` does not help; replacing each Parameter object by a
fresh ``mindspore.Parameter`` holding the same value does (graph and PyNative then agree bit for bit).

Re-measured 2026-12-01 (``python -m bench.workarounds stale_readback``): still so with msadapter on 2.0.0
(``classifier.bias`` stale); no stale parameter with the native layer of ``modules.tnn`` on 2.0.0 or 2.10.0. The
Trainer therefore calls this only where ``modules.tnn.STALE_GRAPH_READBACK`` is set (the msadapter layer).
"""
from typing import Dict

import mindspore as ms
from mindspore import nn


def refresh_parameters(network: nn.Cell) -> Dict[int, ms.Parameter]:
    """Replace every Parameter of ``network`` (recursively) by a fresh one with the same name, value and
    ``requires_grad``; a Parameter shared by several cells stays shared.

    Call it once after building the network and before building the optimizer or any training cell.

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
            params[key] = new
    return replaced
