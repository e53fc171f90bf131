"""Prepare your own data for ``--dataset folder``: check a folder set, convert colour masks, or write a synthetic set.

Examples::

    python -m scripts.prepare_folder check /data/mine                 # layout, every bad file, class statistics
    python -m scripts.prepare_folder convert --images VOC2012/JPEGImages --masks VOC2012/SegmentationClass \\
        --split train --names voc_names.txt --out /data/voc               # palette PNGs (PASCAL VOC style)
    python -m scripts.prepare_folder convert --images imgs/ --masks colour_masks/ --split val \\
        --colours colours.txt --out /data/mine                            # RGB masks with a "R G B name" table
    python -m scripts.prepare_folder synthetic /tmp/mine --names "sky,草地,café,road" --train 24 --val 8

The layout is in README.md ("Your own data"). Exit status: 0 good, 1 the check found problems, 2 bad input.
"""
import argparse
import os
import sys

from encoding_custom.datasets.check import DataError, check_data
from encoding_custom.datasets.colour_masks import convert_folder, read_colour_table
from encoding_custom.datasets.folder import SPLITS, class_statistics, folder_labels, folder_layout, read_class_names
from encoding_custom.datasets.folder_synthetic import write_synthetic_folder
from foundation.labels import parse_labels

PROG = "prepare_folder"


def parse_args(argv=None) -> argparse.Namespace:
    """Args: argv: the command line (default ``sys.argv[1:]``). Returns: the options."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check a folder set and print its class statistics")
    check.add_argument("root", help="the set's folder (holding labels.txt, images/, annotations/)")
    check.add_argument("--ignore_index", type=int, default=None, help="the mask value of ignored pixels (255)")
    check.add_argument("--reduce_zero_label", action="store_true", help="mask value 0 means unlabelled")
    check.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")

    convert = commands.add_parser("convert", help="colour masks (palette or RGB) -> a folder set's index masks")
    convert.add_argument("--images", required=True, help="folder of the images")
    convert.add_argument("--masks", required=True, help="folder of the colour masks (.png)")
    convert.add_argument("--split", choices=SPLITS, required=True, help="the split they become")
    convert.add_argument("--out", required=True, help="the folder set to write (created)")
    table = convert.add_mutually_exclusive_group(required=True)
    table.add_argument("--colours", help="RGB masks: a table, one 'R G B name' line per class, in label order")
    table.add_argument("--names", help="palette masks: the class names by palette index (a file, one per line)")
    convert.add_argument("--ignore_index", type=int, default=255, help="the mask value of ignored pixels")

    synthetic = commands.add_parser("synthetic", help="write a learnable synthetic folder set (quick start, tests)")
    synthetic.add_argument("root", help="the folder to write")
    synthetic.add_argument("--names", required=True, help='class names: "a,b,c" or a file, one per line')
    synthetic.add_argument("--train", type=int, default=24, help="training images")
    synthetic.add_argument("--val", type=int, default=8, help="validation images")
    synthetic.add_argument("--look", type=int, default=0, help="the set's style: sets of other looks differ")
    synthetic.add_argument("--seed", type=int, default=0, help="seed of the images")
    return parser.parse_args(argv)


def run_check(args) -> int:
    """The layout and every pair checked, then the class statistics; 0 when the set is good, else 1."""
    layout = folder_layout(args.root, ignore_value=args.ignore_index, reduce_zero_label=args.reduce_zero_label)
    report = check_data(layout, SPLITS, progress=args.progress)
    print(report.summary())
    print(class_statistics(layout, folder_labels(args.root), progress=args.progress).table())
    if report.ok:
        print(f"{layout.folder}: ready for --dataset folder --data_path {layout.folder}")
        return 0
    print(f"{PROG}: problems in {layout.folder}:\n{report.message()}", file=sys.stderr)
    return 1


def run_convert(args) -> int:
    """Colour masks to index masks; 0 when done."""
    colours = read_colour_table(args.colours) if args.colours else None
    names = read_class_names(args.names) if args.names else None
    count = convert_folder(args.images, args.masks, args.out, args.split, colours=colours, names=names,
                           ignore_value=args.ignore_index)
    print(f"wrote {count} image/mask pairs to {os.path.join(args.out, 'images', args.split)} and "
          f"{os.path.join(args.out, 'annotations', args.split)}; check them with: python -m scripts.prepare_folder "
          f"check {args.out}")
    return 0


def run_synthetic(args) -> int:
    """A synthetic folder set; 0 when written."""
    names = read_class_names(args.names) if os.path.isfile(args.names) else parse_labels(args.names, "--names")
    info = write_synthetic_folder(args.root, names, args.train, args.val, seed=args.seed, look=args.look)
    print(f"wrote a synthetic folder set ({info['n_train']} train / {info['n_val']} val, labels "
          f"{', '.join(names)}) to {args.root}")
    return 0


def main(argv=None) -> int:
    """Run one command; returns the exit status."""
    args = parse_args(argv)
    try:
        return {"check": run_check, "convert": run_convert, "synthetic": run_synthetic}[args.command](args)
    except (DataError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
