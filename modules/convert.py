"""Command line: official lang-seg checkpoint -> our MindSpore checkpoint (no torch needed).

    python -m modules.convert demo_e200.ckpt lseg_vitl16.ckpt
    python -m modules.convert SRC DST --backbone clip_vitb32_384 --arch-option 0
    python -m modules.convert fold0.ckpt lseg_zs_rn101_fold0.ckpt     # a released zero-shot fold checkpoint

Zero-shot checkpoints (lang-seg ``LSegModuleZS``: ``LSegNetZS`` with a ViT, ``LSegRNNetZS`` with ``clip_resnet101``)
convert the same way: the backbone is read from ``hyper_parameters`` or, without them, from the weights (the ViT's
patch embedding, the ResNet's stem width, stage planes and block counts); the ``arch_option``/``block_depth`` those
modules record are ignored, as the official zero-shot networks ignore them.

Options missing from the checkpoint's ``hyper_parameters`` are inferred from its weights; a flag the checkpoint
contradicts is refused (both values named), and ``--arch-option`` / ``--block-depth`` are required when the weights
cannot tell them (the spatial regularisation block without ``hyper_parameters``).
Exit status: 0 written; 1 the source cannot be converted or the destination cannot be written, with one
``python -m modules.convert: error: <file>: <what is wrong>`` line on stderr (missing, unreadable, empty,
truncated, not a torch file, a checkpoint of something else, an option to give, or the missing / unexpected /
shape-mismatched names); 2 a usage error (argparse).
"""
import argparse
import sys

import numpy as np

from .config import BACKBONES
from .lseg import TEXT_CACHE_NAME
from .weights import WeightsError, WeightsOptionError, convert_official_checkpoint


def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m modules.convert``."""
    parser = argparse.ArgumentParser(prog="python -m modules.convert",
                                     description="Convert an official lang-seg .ckpt into an LSegNet MindSpore .ckpt")
    parser.add_argument("src", help="official PyTorch-Lightning checkpoint (or a bare state_dict file)")
    parser.add_argument("dst", help="MindSpore checkpoint to write")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None)
    parser.add_argument("--arch-option", type=int, choices=(0, 1, 2), default=None)
    parser.add_argument("--block-depth", type=int, default=None)
    parser.add_argument("--activation", choices=("lrelu", "tanh", "relu"), default=None)
    parser.add_argument("--text-config", default=None, help="clip_ms.TEXT_CONFIGS key (default: inferred)")
    return parser


def main(argv=None) -> int:
    """Args: argv: argument list (default sys.argv[1:]). Returns: process exit status (0 ok, 1 failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        net = convert_official_checkpoint(args.src, args.dst, backbone=args.backbone, arch_option=args.arch_option,
                                          block_depth=args.block_depth, activation=args.activation,
                                          text_config=args.text_config, labels=["other"])
    except WeightsOptionError as error:
        print(f"{parser.prog}: error: {error.describe('--' + error.option.replace('_', '-'))}", file=sys.stderr)
        return 1
    except WeightsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # writing dst (reading src raises WeightsError): permissions, a directory, a full disk
        print(f"{parser.prog}: error: {args.dst}: cannot write ({error.strerror or error})", file=sys.stderr)
        return 1
    count = sum(int(np.prod(p.shape)) for p in net.get_parameters() if p.name != TEXT_CACHE_NAME)
    print(f"wrote {args.dst}: {net.build_options()} ({count} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
