"""Process set-up shared by training and evaluation: device, execution mode, data-parallel group, seeds."""
import random
from typing import Optional

import mindspore as ms
import numpy as np

from .distributed import init_distributed

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def configure_runtime(device_target: str, mode: str, device_id: Optional[int] = None, seed: int = 0) -> None:
    """Set MindSpore's device and execution mode, join a data-parallel job if a launcher started this process,
    and seed ``random``, numpy and MindSpore.

    Args:
        device_target: ``"Ascend"``, ``"GPU"`` or ``"CPU"``.
        mode: ``"graph"`` or ``"pynative"``.
        device_id: device to use on this host (None: MindSpore's default or the launcher's ``DEVICE_ID``).
        seed: seed of all three generators (equal on every rank, so every rank builds the same initial weights).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)} (got {mode!r})")
    ms.set_context(mode=MODES[mode], device_target=device_target)
    if device_id is not None:
        ms.set_context(device_id=device_id)
    init_distributed(device_target, mode=MODES[mode])
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)


__all__ = ["configure_runtime"]
