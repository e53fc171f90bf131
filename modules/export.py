"""Command line: an LSeg network → MindIR for inference servers (MindSpore, MindSpore Lite; ATC → OM on Ascend).

    python -m modules.export --weights W.ckpt --labels "cat,grass,sky,other" --height 480 --width 480 --out lseg.mindir
    python -m modules.export --weights W.ckpt --dynamic_labels --height 480 --width 480 --out lseg_any_labels.mindir
    python -m modules.export --weights W.ckpt --labels "cat,grass,sky,other" --features_out labels.npy

``--weights`` takes every file our loaders read (a train_custom.py checkpoint, a ``modules.weights`` checkpoint, an
official lang-seg ``.ckpt``). The first form bakes the label set's text features into the graph (no text tower in
it): input ``images`` float32 (B, 3, H, W) normalised as in training (``(pixel / 255 - 0.5) / 0.5``), output logits
float32 (B, N_labels, H, W). ``--dynamic_labels`` exports a graph with a second input, ``text_features`` float32
(N, 512) for any N, made by the third form (``--features_out``: the text tower's raw features as ``.npy``), so one
exported model serves every label set. Running a MindIR (in GRAPH_MODE: MindSpore 2.0 refuses it in PyNative):

    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    graph = mindspore.nn.GraphCell(mindspore.load("lseg.mindir"))
    logits = graph(mindspore.Tensor(images))                       # or graph(images, Tensor(np.load("labels.npy")))

Exit status: 0 written; 2 a bad option, label or weights file (one ``python -m modules.export: error: ...`` line).
"""
import argparse
import glob
import os
import shutil
import sys
import time
from typing import List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from clip_ms.labels import read_labels_argument
from foundation.atomic import atomic_output, give_user_mode
from foundation.platform import DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES

from .factory import ArgumentError, load_lseg
from .weights import command_status


class StaticLabelsGraph(nn.Cell):
    """``images → logits`` for the label set the network holds (its ``text_features_cache``, a weight in the graph).

    Args:
        network: an LSegNet in eval mode with its labels set.
    """

    def __init__(self, network):
        super().__init__(auto_prefix=False)  # keep the network's parameter names (see docs/ARCHITECTURE.md)
        self.network = network

    def construct(self, images):
        return self.network(images)


class DynamicLabelsGraph(nn.Cell):
    """``(images, text_features (N, D)) → logits (B, N, H, W)``: the label set is an input.

    Args:
        network: an LSegNet in eval mode.
    """

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, images, text_features):
        return self.network(images, text_features)


def export_mindir(network, out: str, height: int, width: int, batch: int = 1,
                  dynamic_labels: bool = False) -> List[str]:
    """Write ``network`` as a MindIR file.

    Args:
        network: an LSegNet with its labels set (static form) — any labels for the dynamic form.
        out: target path (``.mindir`` is appended by MindSpore when missing).
        height, width: input size (multiples of 32).
        batch: images per call.
        dynamic_labels: export the ``(images, text_features)`` form with any number of labels.

    Returns:
        the files written (:func:`mindir_files`): ``<stem>.mindir``, or ``<stem>_graph.mindir`` (the one to load)
        and the weight files of ``<stem>_variables/`` when they exceed MindSpore's 1 GiB single-file limit
        (ViT-L/16: 1.3 GiB).

    Raises:
        ValueError: a size that is not a positive multiple of 32 or a batch < 1; ArgumentError (a ValueError) for
            ``dynamic_labels`` where the MindIR would crash this MindSpore
            (``foundation.platform.DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES``).
    """
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"height and width must be positive multiples of 32 (got {height}x{width})")
    if batch < 1:
        raise ValueError(f"batch must be >= 1 (got {batch})")
    if dynamic_labels and network.build_options()["arch_option"] != 0 and DYNAMIC_LABEL_COUNT_WITH_BLOCK_CRASHES:
        raise ArgumentError("dynamic_labels", "a network with the spatial regularisation block (arch_option %d) "
                            "crashes MindSpore %s when the label count changes; export one graph per label set "
                            "with fixed labels, or use the current stack (mindspore 2.10)"
                            % (network.build_options()["arch_option"], ms.__version__))
    network.set_train(False)
    network.sync_text_features()  # the graph holds the Parameter's value at export time
    images = ms.Tensor(np.zeros((batch, 3, height, width), np.float32))
    stem = out[:-len(".mindir")] if out.endswith(".mindir") else out
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    remove_mindir(stem)
    if dynamic_labels:
        dim = int(network.text_features_cache.shape[1])
        features = ms.Tensor(shape=[None, dim], dtype=ms.float32)  # any number of labels
        ms.export(DynamicLabelsGraph(network), images, features, file_name=stem, file_format="MINDIR")
    else:
        ms.export(StaticLabelsGraph(network), images, file_name=stem, file_format="MINDIR")
    written = mindir_files(stem)
    for path in written:  # MindSpore writes them read-only for the owner (0400)
        give_user_mode(path)
    return written


def mindir_files(stem: str) -> List[str]:
    """The files ``mindspore.export(..., file_name=stem, file_format="MINDIR")`` wrote, the one to load first.

    Above 1 GiB of parameters (ViT-L/16: 1.3 GiB) MindSpore writes ``<stem>_graph.mindir`` plus the weights in
    ``<stem>_variables/data_*`` instead of ``<stem>.mindir`` (both stacks, log line "Parameters in the net capacity
    exceeds 1G, save MindIR model and parameters separately"); ``mindspore.load`` of the graph file reads the
    variables folder beside it.

    Args:
        stem: the ``file_name`` given to ``mindspore.export`` (no ``.mindir``).

    Returns:
        list of file paths: the file to ``mindspore.load``, then the weight files, if separate.

    Raises:
        FileNotFoundError: naming both candidates when neither form is there.
    """
    if os.path.exists(stem + ".mindir"):
        return [stem + ".mindir"]
    graph = stem + "_graph.mindir"
    if not os.path.exists(graph):
        raise FileNotFoundError(f"no MindIR at {stem}.mindir nor {graph}")
    return [graph] + sorted(glob.glob(os.path.join(stem + "_variables", "*")))


def remove_mindir(stem: str) -> None:
    """Delete what an earlier export to ``stem`` left (either layout), so :func:`mindir_files` finds this one's."""
    for path in (stem + ".mindir", stem + "_graph.mindir"):
        if os.path.isfile(path):
            os.remove(path)
    if os.path.isdir(stem + "_variables"):
        shutil.rmtree(stem + "_variables")


def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m modules.export``."""
    parser = argparse.ArgumentParser(prog="python -m modules.export", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help="our .ckpt (training or modules.weights) or an official one")
    parser.add_argument("--labels", default=None,
                        help='label set: "cat,grass,sky,other" or a text file (required unless --dynamic_labels)')
    parser.add_argument("--dynamic_labels", action="store_true",
                        help="export (images, text_features) -> logits, for any label set")
    parser.add_argument("--height", type=int, default=480, help="input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=480, help="input width (multiple of 32)")
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--out", default=None, help="MindIR to write (default lseg.mindir)")
    parser.add_argument("--features_out", default=None,
                        help="instead of a graph, write the labels' text features (N, D) float32 .npy")
    return parser


def _labels(value: str) -> List[str]:
    labels, warnings = read_labels_argument(value, source="--labels")
    for warning in warnings:
        print(f"python -m modules.export: warning: {warning}", file=sys.stderr)
    return labels


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Args: argv: argument list (default ``sys.argv[1:]``). Returns: the exit status (0 written, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def export() -> int:
        if args.labels is None and not args.dynamic_labels:
            raise ValueError("--labels is required (or --dynamic_labels for a graph that takes the labels' features)")
        labels = _labels(args.labels) if args.labels is not None else ["other"]
        started = time.time()
        net = load_lseg(args.weights, labels).network
        if args.features_out is not None:
            features = net.encode_text(labels).asnumpy().astype(np.float32)
            with atomic_output(args.features_out, suffix=".npy") as temporary:
                np.save(temporary, features)
            print(f"wrote {args.features_out}: text features {features.shape} of {len(labels)} labels")
            return 0
        written = export_mindir(net, args.out or "lseg.mindir", args.height, args.width, batch=args.batch,
                                dynamic_labels=args.dynamic_labels)
        form = "(images, text_features) -> logits" if args.dynamic_labels else \
            f"images -> logits of {len(labels)} labels"
        weights = f" (weights in {os.path.dirname(written[1])}/)" if len(written) > 1 else ""
        print(f"wrote {written[0]}{weights}: {form}, input ({args.batch}, 3, {args.height}, {args.width}), "
              f"{sum(os.path.getsize(name) for name in written) / 2 ** 20:.1f} MiB in {time.time() - started:.1f} s")
        return 0

    return command_status(parser.prog, export, 2, writing=args.features_out or args.out or "lseg.mindir")


if __name__ == "__main__":
    sys.exit(main())
