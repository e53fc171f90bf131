"""What a benchmark variant is (:class:`Variant`), what its function receives (:class:`CaseContext`) and the private
work directory it runs in."""
import dataclasses
import shutil
import tempfile
from typing import Callable, Dict, Optional


@dataclasses.dataclass
class CaseContext:
    """What a variant function gets.

    Args:
        variant: the variant's full name, e.g. ``"forward/graph/cached"``.
        quick: True for the tiny smoke configuration.
        device_target: MindSpore device target ("CPU", "GPU", "Ascend").
        mode: "pynative", "graph" or None (variant does not use a MindSpore mode).
        warmup: untimed calls before timing.
        repeats: timed calls.
        params: the variant's configuration for this run (quick or full).
        workdir: a private temporary directory, removed after the variant.
    """

    variant: str
    quick: bool
    device_target: str
    mode: Optional[str]
    warmup: int
    repeats: int
    params: Dict[str, object]
    workdir: str


@dataclasses.dataclass(frozen=True)
class Variant:
    """One benchmark variant: the unit that runs in one fresh process.

    Args:
        name: "case/..." unique name used on the command line.
        case: case key (first component of the name).
        title: one-line description for the table.
        func: ``func(CaseContext) -> dict`` doing the measurement; the dict holds at least ``timing``
            (:func:`bench.timing.measure`) and becomes the record's ``result``.
        mode: "pynative", "graph" or None.
        full: parameters of the full run (may hold ``warmup``/``repeats``/``timeout_s``).
        quick: parameters of the ``--quick`` run (same keys).
        in_quick: part of the default ``--quick`` set. The smoke run covers every case and every code path
            (PyNative and GRAPH_MODE, text cached and encoded per call) but not every combination, because each
            GRAPH_MODE variant pays a 10-30 s compilation even for the tiny network.
    """

    name: str
    case: str
    title: str
    func: Callable[[CaseContext], Dict[str, object]]
    mode: Optional[str]
    full: Dict[str, object]
    quick: Dict[str, object]
    in_quick: bool = True

    def params(self, quick: bool) -> Dict[str, object]:
        """Args: quick (bool). Returns: a copy of the quick or full parameter dict."""
        return dict(self.quick if quick else self.full)


def make_workdir() -> str:
    """Returns: a fresh private temporary directory for one variant."""
    return tempfile.mkdtemp(prefix="lseg-bench-")


def remove_workdir(path: str) -> None:
    """Args: path: a directory from :func:`make_workdir`, removed with everything in it."""
    shutil.rmtree(path, ignore_errors=True)
