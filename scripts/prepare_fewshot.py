"""Prepare a few-shot benchmark (PASCAL-5i, COCO-20i, FSS-1000) in HSNet's layout, or write a synthetic one.

Examples::

    python -m scripts.prepare_fewshot pascal                 # download (resumable, checksummed) + extract
    python -m scripts.prepare_fewshot pascal --archive pascal_aug=~/SegmentationClassAug.zip   # a hand-fetched file
    python -m scripts.prepare_fewshot coco --link /data/Datasets_HSN      # link an extracted copy (checked first)
    python -m scripts.prepare_fewshot pascal --synthetic      # a synthetic set in the same layout (tests, quick start)
    python -m scripts.prepare_fewshot fss --list              # the archives, their URLs and --archive names

The data root (``--root``, default ``../datasets``, the folder ``test.py --data_path`` reads by default) gets
``VOC2012/``, ``COCO2014/`` or ``FSS-1000/`` as HSNet's ``--datapath`` holds them
(:mod:`encoding_custom.fewshot.layout`). Sources are HSNet's README: the VOC2012 trainval tar (MD5 published by
torchvision's VOC data set) and COCO 2014 image zips (MD5s as published by several COCO loaders) from their hosts;
HSNet's SBD-augmented PASCAL masks, COCO masks and FSS-1000 from Google Drive (no published checksum; the
confirmation form of large files is followed; when Drive refuses, the message gives the page to fetch it from by
hand and the ``--archive NAME=PATH`` to pass). Each archive is extracted into a hidden folder beside its place and
renamed into place once complete, so a half-extracted folder never looks complete; a folder already in place is
kept. Every mode ends with the layout check against the split lists (every listed image with its mask).
Exit status: 0 when the layout is complete, 1 when not, 2 on a download/extraction/option error.
"""
import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

from encoding_custom.datasets.download import (
    GOOGLE_DRIVE_VIEW_URL,
    DownloadError,
    archive_names,
    download,
    extract_archive,
    find_content_root,
    google_drive_url,
    verify_file,
)
from encoding_custom.fewshot.benchmarks import SYNTHETIC_WRITERS
from encoding_custom.fewshot.benchmarks import write_synthetic as write_synthetic_set
from encoding_custom.fewshot.layout import (
    BENCHMARK_DIRS,
    BENCHMARKS,
    SYNTHETIC_SPLITS_FOLDER,
    FewShotDataError,
    benchmark_dir,
    check_fewshot_layout,
    own_splits_dir,
)
from foundation.atomic import missing_folders, remove_empty_folders

PROG = "prepare_fewshot"
MANUAL_HINT = "pass it with --archive {key}=PATH"


@dataclass(frozen=True)
class ArchiveSource:
    """One archive of a benchmark and where its content goes.

    Attributes:
        key: its ``--archive`` name.
        filename: file name in the data root (and under ``--mirror``).
        content: folder under the data root that receives the archive's content folder.
        pattern: regular expression of a member that locates the content folder (``find_content_root``).
        parents: levels up from that member's folder to the content folder.
        what: a few words for messages.
        url: direct URL, or None for a Google Drive file.
        drive_id: Google Drive file id (HSNet's links), or None.
        md5: published MD5, or None.
        marker: path under ``content`` whose presence means the content is in place (``""``: the folder itself;
            the VOC tar's ``JPEGImages``, since ``VOC2012/`` also receives the augmented masks).
    """
    key: str
    filename: str
    content: str
    pattern: str
    parents: int
    what: str
    url: Optional[str] = None
    drive_id: Optional[str] = None
    md5: Optional[str] = None
    marker: str = ""

    def source_url(self, mirror: Optional[str]) -> str:
        """The URL to fetch: ``<mirror>/<filename>``, the direct URL or Google Drive's download URL."""
        if mirror is not None:
            return mirror.rstrip("/") + "/" + self.filename
        return self.url if self.url is not None else google_drive_url(self.drive_id)

    def where(self) -> str:
        """Where a user fetches it by hand (the Drive page or the URL)."""
        return self.url if self.url is not None else GOOGLE_DRIVE_VIEW_URL.format(file_id=self.drive_id)


def _coco_images(subset: str, md5: str) -> ArchiveSource:
    return ArchiveSource(f"coco_{subset}", f"{subset}.zip", os.path.join("COCO2014", subset),
                         rf"COCO_{subset}_\d{{12}}\.jpg$", 0, f"COCO {subset} images",
                         url=f"http://images.cocodataset.org/zips/{subset}.zip", md5=md5)


def _coco_masks(subset: str, drive_id: str) -> ArchiveSource:
    return ArchiveSource(f"coco_masks_{subset}", f"coco_masks_{subset}.zip",
                         os.path.join("COCO2014", "annotations", subset), rf"COCO_{subset}_\d{{12}}\.png$", 0,
                         f"HSNet's COCO {subset} masks", drive_id=drive_id)


SOURCES: Dict[str, List[ArchiveSource]] = {
    "pascal": [
        ArchiveSource("pascal_voc", "VOCtrainval_11-May-2012.tar", "VOC2012", r"(?:^|/)JPEGImages/[^/]+\.jpg$", 1,
                      "PASCAL VOC2012 trainval",
                      url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                      md5="6cd6e144f989b92b3379bac3b3de84fd", marker="JPEGImages"),
        ArchiveSource("pascal_aug", "SegmentationClassAug.zip", os.path.join("VOC2012", "SegmentationClassAug"),
                      r"[^/]+\.png$", 0, "SBD-augmented masks (SegmentationClassAug)",
                      drive_id="10zxG2VExoEZUeyQl_uXga2OWHjGeZaf2"),
    ],
    "coco": [
        _coco_images("train2014", "0da8c0bd3d6becc4dcb32757491aca88"),
        _coco_images("val2014", "a3d79f5ed8d289b7a7554ce06a5782b3"),
        _coco_masks("train2014", "1cwup51kcr4m7v9jO14ArpxKMA4O3-Uge"),
        _coco_masks("val2014", "1PNw4U3T2MhzAEBWGGgceXvYU3cZ7mJL1"),
    ],
    "fss": [
        ArchiveSource("fss", "FSS-1000.zip", "FSS-1000", r"[^/]+/[^/]+\.jpg$", 1, "FSS-1000 images and masks",
                      drive_id="1Fn-cUESMMF1pQy8Xff-vPQvXJdZoUlP3"),
    ],
}
# The generators that take image counts (FSS-1000's takes categories and images per category: its defaults).
COUNTED_SYNTHETIC = ("pascal", "coco")


class PrepareError(RuntimeError):
    """A wrong option or a data root in the way; one line for ``prepare_fewshot: error:``."""


def parse_args(argv=None):
    """Command-line options (see the module docstring).

    Args:
        argv: argument list (default ``sys.argv[1:]``).

    Returns:
        argparse.Namespace with ``benchmark`` resolved from the positional or ``--benchmark``.
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("benchmark_positional", nargs="?", choices=BENCHMARKS, metavar="BENCHMARK",
                        help="pascal, coco or fss (or --benchmark)")
    parser.add_argument("--benchmark", choices=BENCHMARKS, default=None, help="pascal, coco or fss")
    parser.add_argument("--root", default="../datasets",
                        help="data root: gets VOC2012/, COCO2014/ or FSS-1000/ (HSNet's --datapath)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--link", default=None, metavar="SRC",
                        help="link an extracted copy (a folder holding VOC2012/ etc., or that folder), checked first")
    source.add_argument("--synthetic", action="store_true", help="write a synthetic set in the same layout")
    source.add_argument("--list", action="store_true", help="list the archives, their URLs and --archive names")
    source.add_argument("--check", action="store_true",
                        help="only check the layout under --root (every file the split lists name), change nothing")
    parser.add_argument("--archive", action="append", default=[], metavar="NAME=PATH",
                        help="use this hand-fetched archive for NAME instead of downloading it (repeatable)")
    parser.add_argument("--synthetic-train", type=int, default=None, metavar="N",
                        help="synthetic training images (default: the generator's)")
    parser.add_argument("--synthetic-val", type=int, default=None, metavar="M",
                        help="synthetic validation images (default: the generator's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set")
    parser.add_argument("--splits-dir", "--splits_dir", dest="splits_dir", default=None,
                        help="check against these split lists (a folder holding pascal/, coco/ or fss/; default: "
                             "the root's own fewshot_splits/, else HSNet's packaged lists)")
    parser.add_argument("--mirror", default=None,
                        help="base URL holding every archive under its file name (checksums still checked)")
    parser.add_argument("--remove-archive", action="store_true",
                        help="delete each downloaded archive after a successful extraction")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    parser.add_argument("--retries", type=int, default=2,
                        help="resumptions of a cut download within one run (a later run resumes too)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.benchmark_positional and args.benchmark and args.benchmark_positional != args.benchmark:
        parser.error(f"--benchmark {args.benchmark} contradicts the positional benchmark {args.benchmark_positional}")
    args.benchmark = args.benchmark or args.benchmark_positional
    if args.benchmark is None:
        parser.error(f"the benchmark is required: one of {', '.join(BENCHMARKS)} (positional or --benchmark)")
    if args.retries < 0:
        parser.error(f"--retries: must be >= 0 (got {args.retries})")
    if args.timeout <= 0:
        parser.error(f"--timeout: must be positive (got {args.timeout})")
    for option in ("synthetic_train", "synthetic_val"):
        if getattr(args, option) is not None and getattr(args, option) < 0:
            parser.error(f"--{option.replace('_', '-')}: must be >= 0 (got {getattr(args, option)})")
    return args


def parse_archives(values: List[str], benchmark: str) -> Dict[str, str]:
    """``--archive NAME=PATH`` values → ``{NAME: absolute PATH}``, each NAME one of the benchmark's archives.

    Raises:
        PrepareError: a malformed value, an unknown name or a missing file (names it).
    """
    keys = [source.key for source in SOURCES[benchmark]]
    archives = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not path:
            raise PrepareError(f"--archive {value}: expected NAME=PATH with NAME one of {', '.join(keys)}")
        if key not in keys:
            raise PrepareError(f"--archive {value}: {key!r} is not an archive of {benchmark} "
                               f"(one of {', '.join(keys)})")
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise PrepareError(f"--archive {value}: no such file {path}")
        archives[key] = path
    return archives


def list_sources(benchmark: str) -> str:
    """The benchmark's archives: ``--archive`` name, where to fetch it, checksum, and where it goes."""
    lines = [f"{benchmark}: archives (fetch by hand, then --archive NAME=PATH)"]
    for source in SOURCES[benchmark]:
        checksum = f"md5 {source.md5}" if source.md5 else "no published checksum"
        lines.append(f"  {source.key}: {source.what}\n    {source.where()}\n    {checksum}; content -> "
                     f"<root>/{source.content}")
    return "\n".join(lines)


def _refuse_synthetic_target(root: str, benchmark: str):
    """Real data must not land beside a synthetic set's lists (the check would use the synthetic lists)."""
    lists = own_splits_dir(root, benchmark)
    if lists is not None:
        raise PrepareError(f"{root} holds a synthetic {benchmark} set (its lists: "
                           f"{os.path.join(lists, benchmark)}); delete it or choose another --root")


def prepare_source(source: ArchiveSource, root: str, archive: Optional[str], mirror: Optional[str], timeout: float,
                   remove_archive: bool, progress: bool, retries: int = 2) -> None:
    """Bring one archive's content into ``<root>/<source.content>``: fetch (or take ``archive``), verify, extract.

    Args:
        source: the archive.
        root: the data root.
        archive: a hand-fetched file for it, or None to download.
        mirror: base URL replacing the official hosts, or None.
        timeout: network timeout in seconds.
        remove_archive: delete a downloaded archive after the extraction.
        progress: progress bars.
        retries: resumptions of a cut download within this call.

    Raises:
        DownloadError: download, checksum or extraction failure (one line naming the file).
    """
    final = os.path.join(root, source.content)
    if os.path.isdir(os.path.join(final, source.marker)):
        print(f"{os.path.join(final, source.marker)} is in place; not extracted again (delete it to redo it)")
        return
    hint = MANUAL_HINT.format(key=source.key)
    if archive is not None:
        verify_file(archive, md5=source.md5)
        path = archive
    else:
        if source.drive_id is not None and mirror is None:
            print(f"{source.what}: from Google Drive ({source.where()})")
        path = download(source.source_url(mirror), os.path.join(root, source.filename), md5=source.md5,
                        timeout=timeout, retries=retries, progress=progress,
                        manual_hint=f"{hint} (page: {source.where()})")
    prefix = find_content_root(archive_names(path), source.pattern, source.parents)
    if prefix is None:
        raise DownloadError(f"{path}: no member matches {source.pattern!r}; is it the {source.what} archive "
                            f"({source.where()})?")
    staging = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.partial")
    if os.path.isdir(staging):
        shutil.rmtree(staging)  # a killed extraction's leftovers
    extract_archive(path, staging, prefix, progress=progress)
    _move_into(staging, final)
    print(f"extracted {source.what} into {final}")
    if remove_archive and archive is None:
        os.remove(path)


def _move_into(staging: str, final: str):
    """Rename a finished extraction into place; into an existing folder entry by entry, keeping what is there."""
    if not os.path.exists(final):
        os.replace(staging, final)
        return
    for name in os.listdir(staging):
        if not os.path.exists(os.path.join(final, name)):
            os.replace(os.path.join(staging, name), os.path.join(final, name))
    shutil.rmtree(staging)


def _replace_link(link: str, source: str):
    """``link`` → ``source`` as a symlink, replacing an older link; anything else in the way is an error."""
    if os.path.islink(link):
        os.remove(link)
    elif os.path.exists(link):
        raise PrepareError(f"{link} already exists and is not a link; remove it or use another --root")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(source, link)
    print(f"linked {link} -> {source}")


def link_existing(source_root: str, root: str, benchmark: str, splits_dir: Optional[str] = None) -> Optional[str]:
    """Link an extracted copy's benchmark folder (and a synthetic copy's lists) into ``root`` after checking it.

    Args:
        source_root: a folder holding ``VOC2012/`` (etc.), or that folder itself.
        root: the data root.
        benchmark: ``pascal``, ``coco`` or ``fss``.
        splits_dir: lists to check the copy against (default: its own, else the packaged ones).

    Returns:
        None when linked, else the copy's layout report text (incomplete: nothing is linked).
    """
    source_root = os.path.abspath(os.path.expanduser(source_root))
    if os.path.basename(source_root) == BENCHMARK_DIRS[benchmark]:
        source_root = os.path.dirname(source_root)
    if not os.path.isdir(benchmark_dir(source_root, benchmark)):
        raise PrepareError(f"--link {source_root}: no {BENCHMARK_DIRS[benchmark]}/ folder in it")
    report = check_fewshot_layout(source_root, benchmark, splits_dir)
    if not report.ok:
        return report.summary()
    if os.path.realpath(source_root) == os.path.realpath(root):
        return None
    _replace_link(benchmark_dir(root, benchmark), benchmark_dir(source_root, benchmark))
    lists = own_splits_dir(source_root, benchmark)
    if lists is not None:
        _replace_link(os.path.join(root, SYNTHETIC_SPLITS_FOLDER, benchmark), os.path.join(lists, benchmark))
    return None


def write_synthetic(root: str, benchmark: str, n_train: Optional[int], n_val: Optional[int], seed: int) -> str:
    """Write the benchmark's synthetic set into ``root`` (its lists in ``<root>/fewshot_splits``).

    Raises:
        PrepareError: no generator for the benchmark yet, or a real set is in the way.
    """
    if benchmark not in SYNTHETIC_WRITERS:
        raise PrepareError(f"--synthetic: no synthetic generator for {benchmark} yet (available: "
                           f"{', '.join(SYNTHETIC_WRITERS)})")
    if os.path.isdir(benchmark_dir(root, benchmark)) and own_splits_dir(root, benchmark) is None:
        raise PrepareError(f"{benchmark_dir(root, benchmark)} holds a real data set; choose another --root "
                           "for the synthetic one")
    counts = {name: value for name, value in (("n_train", n_train), ("n_val", n_val)) if value is not None}
    if counts and benchmark not in COUNTED_SYNTHETIC:
        raise PrepareError(f"--synthetic-train/--synthetic-val: not for {benchmark} (its synthetic set has a few "
                           "categories of 10 images each)")
    splits_dir = write_synthetic_set(benchmark, root, seed=seed, **counts)
    print(f"wrote a synthetic {benchmark} set to {benchmark_dir(root, benchmark)} (lists in {splits_dir})")
    return splits_dir


def main(argv=None) -> int:
    """Run the preparation; returns the exit status (0 complete, 1 incomplete layout, 2 error)."""
    args = parse_args(argv)
    if args.list:
        print(list_sources(args.benchmark))
        return 0
    root = os.path.abspath(os.path.expanduser(args.root))
    progress = not args.no_progress
    created = missing_folders(root)
    try:
        if args.archive and (args.link or args.synthetic or args.check):
            raise PrepareError("--archive: only with a download (not with --link, --synthetic or --check)")
        archives = parse_archives(args.archive, args.benchmark)
        if args.splits_dir is not None and not os.path.isdir(os.path.join(args.splits_dir, args.benchmark)):
            raise PrepareError(f"--splits-dir {args.splits_dir}: no {args.benchmark}/ folder in it")
        if not args.check:  # --check only reports the layout (below)
            os.makedirs(root, exist_ok=True)
        if args.synthetic:
            write_synthetic(root, args.benchmark, args.synthetic_train, args.synthetic_val, args.seed)
        elif args.link is not None:
            incomplete = link_existing(args.link, root, args.benchmark, args.splits_dir)
            if incomplete is not None:
                remove_empty_folders(created)
                print(incomplete)
                print(f"{PROG}: error: --link {args.link}: the copy is incomplete (above); nothing linked",
                      file=sys.stderr)
                return 1
        elif not args.check:
            _refuse_synthetic_target(root, args.benchmark)
            for source in SOURCES[args.benchmark]:
                prepare_source(source, root, archives.get(source.key), args.mirror, args.timeout,
                               args.remove_archive, progress, args.retries)
        report = check_fewshot_layout(root, args.benchmark, args.splits_dir)
    except (DownloadError, PrepareError, FewShotDataError, FileExistsError, ValueError) as error:
        remove_empty_folders(created)
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
