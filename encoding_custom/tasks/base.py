"""What every data set kind offers a run (:class:`Task`), and the errors and set-up all of them share.

A task turns parsed options into the objects of one kind of run: the label list, the training and validation sets,
the loss and validation the trainer uses, and the evaluation test.py runs. ``train_custom.py`` and ``test.py`` call
these methods and never ask which kind they have.
"""
import argparse
import os
from typing import Dict, List, Optional, Tuple

from encoding_custom.engine.runtime import DeviceUnavailableError, configure_runtime
from encoding_custom.progress import set_progress
from modules.mixed_precision import low_precision_refusal


class OptionError(ValueError):
    """A command-line value is invalid; the message starts with the option's name."""


def configure_context(args: argparse.Namespace) -> None:
    """Device, mode, data-parallel group and seeds from the options (``encoding_custom.engine.configure_runtime``),
    and the progress bars (``--no-progress``).

    Args:
        args: parsed options; ``args.device_target`` becomes the device in use (``auto`` resolved).

    Raises:
        OptionError: naming ``--device_target`` (not on this machine) or ``--amp_dtype`` (not on this device).
    """
    set_progress(not getattr(args, "no_progress", False))
    try:
        args.device_target = configure_runtime(args.device_target, args.mode, device_id=args.device_id,
                                               seed=args.seed)
    except DeviceUnavailableError as err:
        raise OptionError("--" + str(err)) from err
    amp_dtype = getattr(args, "amp_dtype", "float16")
    refusal = low_precision_refusal(amp_dtype, args.device_target)
    if refusal:
        raise OptionError("--amp_dtype: %s (got %r)" % (refusal, amp_dtype))


def make_output_folder(outdir: str) -> None:
    """Create ``--outdir``; raises OptionError naming it when that is impossible."""
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        raise OptionError("--outdir: cannot create %s (%s)" % (outdir, err.strerror or err)) from err


class Task:
    """One data set kind, bound to a run's options.

    Training calls, in this order: :meth:`training_labels` (cheap checks first; decides the network's labels),
    :meth:`training_sets` (after the network is built), :meth:`trainer_parts`, :meth:`summary`. ``test.py`` without
    ``--image`` calls :meth:`evaluate`.

    Attributes:
        unit: what the validation set holds (``"images"``, ``"episodes"``).
        headline_metric: the metric printed before mIoU at the end of training.
    """

    unit = "images"
    headline_metric = "pixAcc"

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def training_labels(self) -> Tuple[List[str], Optional[List[int]]]:
        """Returns: ``(label names, ADE20K class indices or None)`` of the network to train."""
        raise NotImplementedError

    def training_sets(self, exp_dir: str, world_size: int, main_process: bool) -> Tuple[object, object]:
        """Returns: ``(training set, validation set)``; raises DataError / FileNotFoundError for bad data."""
        raise NotImplementedError

    def trainer_parts(self, net, labels: List[str], val_set) -> Tuple[object, Dict, Optional[int]]:
        """Returns: ``(loss, extra Trainer arguments, --max_train_images for the trainer or None)``."""
        raise NotImplementedError

    def summary(self, labels: List[str], val_set) -> str:
        """Returns: what is trained, for the start line (e.g. ``"150 labels"``)."""
        raise NotImplementedError

    def evaluate(self, outdir: str) -> None:
        """test.py without ``--image``: evaluate (or write masks) and append to the log in ``outdir``."""
        raise NotImplementedError
