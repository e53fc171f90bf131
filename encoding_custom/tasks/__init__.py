"""The data set kinds a run trains or evaluates on, one registry and one interface (:class:`Task`).

``create_task(args)`` gives the task of ``--dataset``: ADE20K (:mod:`.segmentation`), a folder set of the user's own
(:mod:`.folder`) or a zero-shot benchmark (:mod:`.benchmark`); several ADE20K / folder sets at once
(``--dataset ade20k,folder``) are one :class:`MultiSetTask` (:mod:`.multi_set`). A new kind is a :class:`Task`
subclass added to :data:`TASKS`. What every kind shares (the network from the options, the device set-up,
:class:`OptionError`) is in :mod:`.networks` and :mod:`.base`.
"""
import argparse
from typing import Dict, List, Type

from encoding_custom.fewshot import BENCHMARKS
from encoding_custom.tasks.base import OptionError, Task, configure_context, make_output_folder
from encoding_custom.tasks.benchmark import ZeroShotBenchmarkTask
from encoding_custom.tasks.folder import FolderTask
from encoding_custom.tasks.multi_set import MultiSetTask, check_multi_set_options
from encoding_custom.tasks.segmentation import ADE20KTask

TASKS: Dict[str, Type[Task]] = {"ade20k": ADE20KTask, "folder": FolderTask,
                                **{name: ZeroShotBenchmarkTask for name in BENCHMARKS}}
DATASETS = tuple(TASKS)
COMBINABLE = ("ade20k", "folder")  # the kinds several of which train together


def dataset_kinds(value: str) -> List[str]:
    """``--dataset``'s kinds: one of :data:`DATASETS`, or several of :data:`COMBINABLE` comma-separated.

    Raises:
        OptionError: naming ``--dataset``: an unknown kind, or a kind that trains alone among several.
    """
    kinds = [kind.strip() for kind in value.split(",")]
    unknown = [kind for kind in kinds if kind not in DATASETS]
    if unknown:
        raise OptionError("--dataset: unknown data set kind %s; choose from %s, or several of %s comma-separated "
                          "(got %r)" % (", ".join(map(repr, unknown)), ", ".join(DATASETS), ", ".join(COMBINABLE),
                                        value))
    return kinds


def create_task(args: argparse.Namespace) -> Task:
    """Args: args: parsed options (``--dataset`` as :func:`dataset_kinds` takes it). Returns: the task bound to them.
    """
    if "," in args.dataset:
        return MultiSetTask(args, TASKS)
    return TASKS[args.dataset](args)


__all__ = ["TASKS", "DATASETS", "COMBINABLE", "dataset_kinds", "check_multi_set_options", "create_task", "Task",
           "OptionError", "configure_context", "make_output_folder", "ADE20KTask", "FolderTask", "MultiSetTask",
           "ZeroShotBenchmarkTask"]
