"""Prepare ADE20K (SceneParsing, ADEChallengeData2016) under the data root, or write a synthetic set.

Examples::

    python prepare_ade20k.py                          # download (resumable) + sha1 check + extract into ../datasets
    python prepare_ade20k.py --with-test              # also release_test.zip
    python prepare_ade20k.py --zip ~/ADEChallengeData2016.zip      # extract a zip fetched by hand
    python prepare_ade20k.py --download-dir /data/ade # link an existing extracted copy (or a folder holding the zip)
    python prepare_ade20k.py --synthetic 200          # synthetic set in the same layout (quick start, tests)

Every mode ends with a layout check (image/mask pairs per split: 20210/2000 for ADE20K, the stated counts for a
synthetic set). Exit status: 0 when the layout is complete, 1 when not, 2 on a download/extraction error.
"""
import argparse
import os
import sys

from encoding_custom.datasets.download import (
    ADE20K_SHA1,
    ADE20K_TEST_SHA1,
    ADE20K_TEST_URL,
    ADE20K_URL,
    DownloadError,
    download,
    extract_zip,
)
from encoding_custom.datasets.layout import BASE_DIR, SYNTHETIC_MARKER, check_layout
from encoding_custom.datasets.synthetic import write_synthetic_ade20k
from foundation.atomic import missing_folders, remove_empty_folders


def parse_args(argv=None):
    """Command-line options (see the module docstring).

    Args:
        argv: argument list (default ``sys.argv[1:]``).

    Returns:
        argparse.Namespace.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", default="../datasets",
                        help="data root; ADEChallengeData2016/ is created inside it (same default as lang-seg)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--download-dir", default=None,
                        help="existing folder holding ADEChallengeData2016/ (linked into --root) or "
                             "ADEChallengeData2016.zip (extracted)")
    source.add_argument("--zip", default=None, help="extract this ADEChallengeData2016.zip instead of downloading")
    source.add_argument("--synthetic", type=int, default=None, metavar="N",
                        help="write N synthetic training images (and --synthetic-val validation images)")
    parser.add_argument("--synthetic-val", type=int, default=None, metavar="M",
                        help="synthetic validation images (default: max(1, N // 5))")
    parser.add_argument("--synthetic-size", type=int, nargs=2, default=(96, 160), metavar=("MIN", "MAX"),
                        help="synthetic image side lengths are drawn from [MIN, MAX]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set")
    parser.add_argument("--with-test", action="store_true", help="also download and extract release_test.zip")
    parser.add_argument("--mirror", default=None,
                        help="base URL to fetch the zips from instead of data.csail.mit.edu (sha1 still checked)")
    parser.add_argument("--remove-zip", action="store_true", help="delete the zip after a successful extraction")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _url(official: str, mirror):
    """The official URL, or the same file name under ``mirror``."""
    if mirror is None:
        return official
    return mirror.rstrip("/") + "/" + official.rsplit("/", 1)[1]


def _link_existing(download_dir: str, root: str, progress: bool):
    """Link ``download_dir/ADEChallengeData2016`` into ``root``, or extract a zip found there."""
    download_dir = os.path.abspath(os.path.expanduser(download_dir))
    if os.path.basename(download_dir) == BASE_DIR:
        download_dir = os.path.dirname(download_dir)
    source = os.path.join(download_dir, BASE_DIR)
    link = os.path.join(root, BASE_DIR)
    if os.path.isdir(source):
        if os.path.abspath(link) == source:
            return
        if os.path.islink(link):
            os.remove(link)
        elif os.path.exists(link):
            raise DownloadError(f"{link} already exists and is not a link; remove it or use another --root")
        os.symlink(source, link)
        print(f"linked {link} -> {source}")
        return
    zip_path = os.path.join(download_dir, BASE_DIR + ".zip")
    if os.path.isfile(zip_path):
        extract_zip(zip_path, root, progress=progress)
        return
    raise DownloadError(f"--download-dir {download_dir}: neither {source}/ nor {zip_path} exists")


def _refuse_synthetic_target(root: str):
    """Real data must not be extracted over a synthetic set (its SYNTHETIC.json would misstate the counts)."""
    marker = os.path.join(root, BASE_DIR, SYNTHETIC_MARKER)
    if os.path.isfile(marker):
        raise DownloadError(f"{os.path.join(root, BASE_DIR)} holds a synthetic set ({marker}); delete that folder "
                            "or choose another --root before preparing the real ADE20K.")


def main(argv=None) -> int:
    """Run the preparation; returns the exit status (0 complete, 1 incomplete layout, 2 error)."""
    args = parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    progress = not args.no_progress
    created = missing_folders(root)
    try:
        os.makedirs(root, exist_ok=True)
        if args.synthetic is not None:
            n_val = max(1, args.synthetic // 5) if args.synthetic_val is None else args.synthetic_val
            info = write_synthetic_ade20k(root, args.synthetic, n_val, seed=args.seed,
                                          size=tuple(args.synthetic_size))
            print(f"wrote a synthetic set ({info['n_train']} train / {info['n_val']} val, classes "
                  f"{', '.join(info['class_names'])}) to {os.path.join(root, BASE_DIR)}")
        elif args.download_dir is not None:
            _link_existing(args.download_dir, root, progress)
        elif args.zip is not None:
            if not os.path.isfile(args.zip):
                raise DownloadError(f"--zip {args.zip}: no such file")
            _refuse_synthetic_target(root)
            extract_zip(args.zip, root, progress=progress)
        else:
            _refuse_synthetic_target(root)
            zip_path = download(_url(ADE20K_URL, args.mirror), os.path.join(root, BASE_DIR + ".zip"),
                                sha1=ADE20K_SHA1, timeout=args.timeout, progress=progress)
            extract_zip(zip_path, root, progress=progress)
            if args.remove_zip:
                os.remove(zip_path)
        if args.with_test:
            test_zip = download(_url(ADE20K_TEST_URL, args.mirror), os.path.join(root, "release_test.zip"),
                                sha1=ADE20K_TEST_SHA1, timeout=args.timeout, progress=progress)
            extract_zip(test_zip, root, progress=progress)
            if args.remove_zip:
                os.remove(test_zip)
    except (DownloadError, FileExistsError, ValueError) as error:
        remove_empty_folders(created)
        print(f"prepare_ade20k.py: error: {error}", file=sys.stderr)
        return 2
    report = check_layout(root)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
