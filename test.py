"""Evaluate LSeg (pixAcc/mIoU), write coloured masks of the val images, or segment any image with any labels.

    python test.py --weights checkpoints/tiny_synthetic/best.ckpt --eval --device_target CPU
    python test.py --weights demo_e200.ckpt --eval --scales official --flip          # official PyTorch weights
    python test.py --weights W.ckpt --image cat.jpg --labels "cat,grass,sky,other"  # any labels
    python test.py --dataset pascal --fold all --weights checkpoints/pascal_fold{fold}.ckpt   # zero-shot, 4 folds

``--weights`` takes a train_custom.py checkpoint (architecture and label set read from it), a ``modules.weights``
checkpoint, or an official lang-seg PyTorch ``.ckpt`` (converted on the fly, no torch needed).

``--eval`` uses ``--eval_mode testval`` (full images, official multi-scale machinery; ``--scales``/``--flip``) or
``--eval_mode val`` (the centre crops the training validation uses: reproduces the figures in metrics.jsonl).
``--dataset pascal|coco|fss --fold K --nshot 0`` runs the fold's zero-shot test episodes by HSNet's protocol (as the
official ``test_lseg_zs.py``) and prints ``Fold K, 0-shot ==> mIoU xx.xx  FB-IoU xx.xx``; ``--fold all`` runs every fold
(``{fold}`` in ``--weights`` names each fold's checkpoint) and prints their mean, as the paper's table does.
Outputs go to ``--outdir`` (default ``outputs/<exp_name>/``): ``eval_log.txt`` (appended, with a per-class IoU
table), ``masks/`` (val predictions), ``<image>_mask.png`` / ``_index.png`` / ``_overlay.png`` / ``_legend.png`` /
``_legend.txt`` for ``--image`` (same-named inputs get their folder in the name), ``zero_shot_log.txt`` (appended: one
line per fold and the per-class IoU). Exit status: 0 done, 2 bad option
or input (one line naming it).
"""
import os
import signal
import sys
import threading
import time
from typing import List, Optional, Sequence

from clip_ms.labels import read_labels_argument
from encoding_custom.datasets.check import DataError, probe_sample_file
from encoding_custom.datasets.transforms import read_image
from encoding_custom.evaluation.evaluator import segment_image
from encoding_custom.tasks import OptionError, configure_context, create_task, make_output_folder
from encoding_custom.tasks.networks import load_network
from encoding_custom.visualisation.render import save_segmentation
from foundation.atomic import missing_folders, remove_empty_folders, write_failure
from foundation.checkpoint_file import CheckpointError
from foundation.images import PICTURE_SUFFIXES
from modules.weights import WeightsError
from options import parse_options


def parse_test_options(argv: Optional[Sequence[str]] = None):
    """test.py's options (``options.parse_options(purpose="test")``), validated (exits 2 naming the option)."""
    return parse_options(argv, purpose="test")


def labels_option(text: str) -> List[str]:
    """``--labels``: a label file or a comma-separated list, checked before any network runs (warnings printed).

    Raises:
        OptionError: naming ``--labels``: a path-like value naming no file, an empty or too long label, ...
    """
    try:
        labels, warnings = read_labels_argument(text, source="--labels")
    except ValueError as err:
        raise OptionError(str(err)) from err
    for warning in warnings:
        print("test.py: warning: %s" % warning, file=sys.stderr)
    return labels


def image_files(values: Sequence[str]) -> List[str]:
    """``--image`` values with each folder replaced by the pictures in it (sorted by name; other files skipped with
    a note).

    Raises:
        OptionError: naming a folder that holds no picture.
    """
    files = []
    for value in values:
        if not os.path.isdir(value):
            files.append(value)
            continue
        names = sorted(entry.name for entry in os.scandir(value) if entry.is_file())
        pictures = [name for name in names if name.lower().endswith(PICTURE_SUFFIXES)]
        if not pictures:
            raise OptionError("--image %s: a folder with no pictures in it (%s)" % (value, " ".join(PICTURE_SUFFIXES)))
        others = [name for name in names if name not in pictures]
        if others:
            print("test.py: note: --image %s: skipped %d file(s) that are not pictures: %s%s"
                  % (value, len(others), ", ".join(others[:5]), ", ..." if len(others) > 5 else ""), file=sys.stderr)
        files += [os.path.join(value, name) for name in pictures]
    return files


def check_image(path: str) -> None:
    """Prove that an ``--image`` file decodes (a reduced-scale decode); raises OptionError naming it if not."""
    try:
        probe_sample_file(path)
    except DataError as err:
        raise OptionError("--image: %s" % err) from err


def load_image(path: str):
    """``--image`` file as a normalised float32 (3, H, W); raises OptionError naming it if unreadable."""
    try:
        return read_image(path)
    except ValueError as err:
        raise OptionError("--image: %s" % err) from err


def output_stems(paths: Sequence[str]) -> List[str]:
    """One distinct output name per ``--image``: the file's stem, with as many parent folders as it takes to tell
    equal stems apart (``a/cat.jpg`` → ``a_cat``, ``b/cat.jpg`` → ``b_cat``); what folders cannot tell apart (a file
    given twice, ``cat.jpg`` beside ``cat.png``) gets the first free ``_2``, ``_3``.

    Args:
        paths: the ``--image`` values, in order.

    Returns:
        one name per path, all different.
    """
    parts = [os.path.normpath(os.path.abspath(path)).split(os.sep) for path in paths]
    stems = [os.path.splitext(p[-1])[0] for p in parts]
    for depth in range(2, max(len(p) for p in parts) + 1):
        clashing = {stem for stem in stems if stems.count(stem) > 1}
        if not clashing:
            break
        folders = {tuple(p[:-1]) for p, stem in zip(parts, stems) if stem in clashing}
        if len(folders) == 1:
            break  # the clashing files share their folder: no parent name separates them
        stems = ["_".join(p[-depth:-1] + [os.path.splitext(p[-1])[0]]).lstrip("_") if stem in clashing else stem
                 for stem, p in zip(stems, parts)]
    used: set = set()
    unique = []
    for stem in stems:
        name, copy = stem, 1
        while name in used or (name != stem and name in stems):  # "cat_2" may be another input's own stem
            copy += 1
            name = "%s_%d" % (stem, copy)
        used.add(name)
        unique.append(name)
    return unique


class Interrupted(Exception):
    """A SIGINT or SIGTERM (MindSpore turns a Ctrl-C that lands inside one of its calls into a SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum, _frame):
    raise Interrupted(signum)


def threading_is_main() -> bool:
    """Signal handlers can be installed from the main thread only (tests may call main() from another)."""
    return threading.current_thread() is threading.main_thread()


def files_written_since(folder: str, started: float) -> List[str]:
    """Args: folder: an output folder (may not exist); started: a ``time.time()``. Returns: its files written since."""
    if not os.path.isdir(folder):
        return []
    return sorted(entry.path for entry in os.scandir(folder) if entry.is_file() and entry.stat().st_mtime >= started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Args: argv: the arguments (default ``sys.argv[1:]``). Returns: the exit status (0 ok, 2 bad option or
    input, 1 an output that cannot be written, 130 / 143 interrupted by SIGINT / SIGTERM)."""
    args = parse_test_options(argv)
    outdir = args.outdir or os.path.join("outputs", args.exp_name)
    started = time.time()
    created = missing_folders(outdir)  # removed again if this run fails before writing into them
    previous = {}
    if threading_is_main():
        previous = {number: signal.signal(number, _interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        configure_context(args)
        image_labels = labels_option(args.labels) if args.image else None
        args.image = image_files(args.image) if args.image else None
        for path in args.image or []:
            check_image(path)  # every input decodes before the first is segmented; each is read when its turn comes
        if not args.image:
            create_task(args).evaluate(outdir)  # --eval, val masks or a zero-shot test, as --dataset says
            return 0
        net, _, _ = load_network(args)
        net.set_train(False)
        make_output_folder(outdir)
        for path, stem in zip(args.image, output_stems(args.image)):
            image = load_image(path)
            try:
                prediction = segment_image(net, image, image_labels, base_size=args.base_size,
                                           crop_size=args.crop_size)
                written = save_segmentation(path, image_labels, prediction, outdir, stem=stem)
            except ValueError as err:  # segment_image / save_segmentation name the input that does not fit
                raise OptionError("--image %s: %s" % (path, err)) from err
            for output in written:
                print("wrote %s" % output)
    except (OptionError, WeightsError, CheckpointError, DataError, FileNotFoundError) as err:
        remove_empty_folders(created)
        print("test.py: error: %s" % err, file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as stop:  # what was written stays (each output is complete)
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        written = files_written_since(outdir, started)
        remove_empty_folders(created)
        print("\ntest.py: interrupted by %s: %s; the rest was not done"
              % (signal.Signals(signum).name, "%d complete file(s) written to %s" % (len(written), outdir)
                 if written else "nothing written"), file=sys.stderr)
        return 128 + signum
    except OSError as err:  # a full disk, a folder it may not write: every file written before stays complete
        written = files_written_since(outdir, started)
        remove_empty_folders(created)
        print("test.py: error: %s; %s" % (write_failure(err, outdir), "%d complete file(s) written to %s are kept"
                                          % (len(written), outdir) if written else "nothing was written"),
              file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
