"""The data set kinds a run trains or evaluates on, one registry and one interface (:class:`Task`).

``create_task(args)`` gives the task of ``--dataset``: ADE20K (:mod:`.segmentation`), a folder set of the user's own
(:mod:`.folder`) or a zero-shot benchmark (:mod:`.benchmark`). A new kind is a :class:`Task` subclass added to
:data:`TASKS`. What every kind shares (the network from the options, the device set-up, :class:`OptionError`) is in
:mod:`.networks` and :mod:`.base`.
"""
import argparse
from typing import Dict, Type

from encoding_custom.fewshot import BENCHMARKS
from encoding_custom.tasks.base import OptionError, Task, configure_context, make_output_folder
from encoding_custom.tasks.benchmark import ZeroShotBenchmarkTask
from encoding_custom.tasks.folder import FolderTask
from encoding_custom.tasks.segmentation import ADE20KTask

TASKS: Dict[str, Type[Task]] = {"ade20k": ADE20KTask, "folder": FolderTask,
                                **{name: ZeroShotBenchmarkTask for name in BENCHMARKS}}
DATASETS = tuple(TASKS)


def create_task(args: argparse.Namespace) -> Task:
    """Args: args: parsed options (``--dataset`` one of :data:`DATASETS`). Returns: the task bound to them."""
    return TASKS[args.dataset](args)


__all__ = ["TASKS", "DATASETS", "create_task", "Task", "OptionError", "configure_context", "make_output_folder",
           "ADE20KTask", "FolderTask", "ZeroShotBenchmarkTask"]
