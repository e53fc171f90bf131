"""Check a segmentation set (ADE20K, a plain folder set: any :class:`SegmentationLayout`) before training, and the
errors a bad sample raises.

What a training run needs from every split: each image has its mask and each mask its image, both decode, the mask
holds class values (a single-channel PIL mode, values the layout allows: ``layout.value_rule()``) and has the image's
size.
:func:`check_data` verifies all of it for the train and val splits in one pass, in a process pool, with a tqdm bar
on stderr, and lists every bad file grouped by problem (:class:`DataCheckError`); ``skip_bad_samples=True`` instead
returns the stems to leave out (``SegmentationSet(..., exclude=...)``), so the dataset is built once with its
final file list and the data order (which depends on the dataset length only) is the same at every start.

JPEGs are decoded at 1/8 scale (``Image.draft``): about half the cost of a full decode, and it still reads every
entropy-coded byte, so it fails exactly where the training decode fails (a header and end-marker check does not);
bench/PERFORMANCE.md has the figures. Results are cached by ``(path, size, mtime)`` (``cache_path``), so a resumed
run only re-checks the files that changed.

During training the same helpers guard every sample (:meth:`SegmentationSet.load_pair`): a file that turned bad
after the check raises a one-line :class:`BadSampleError` naming it, never an error from inside MindSpore. There is
no substitution mid-epoch: the check is the contract, and silently replacing a sample would change the batches a
resumed run sees and hide a failing disk.

No MindSpore import: the check runs before any framework work, and its pool workers stay light.
"""
import contextlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from encoding_custom.progress import progress_bar
from foundation.atomic import atomic_output

from encoding_custom.datasets.layout import SegmentationLayout, as_layout, list_pairs
from encoding_custom.datasets.workers import detach_worker

MASK_MODES = ("L", "P", "I", "I;16")  # single-channel modes whose pixel values are the class values
CACHE_VERSION = 2
MAX_LISTED = 20

# Problem kinds, in report order, with the heading of their group in the report.
PROBLEMS = {
    "image_without_mask": "images without a mask",
    "mask_without_image": "masks without an image",
    "missing_file": "files that vanished while checking",
    "unreadable_image": "images that cannot be decoded (corrupt, truncated or not an image)",
    "unreadable_mask": "masks that cannot be decoded (corrupt, truncated or not an image)",
    "mask_mode": "masks that are not single-channel class maps",
    "size_mismatch": "image/mask pairs of different sizes",
    "mask_values": "masks with values outside the class range",
}

_CHUNK = 32  # pairs per pool task: large enough to amortise the IPC, small enough for a smooth bar


class DataError(ValueError):
    """Base class of the data faults raised by this module (bad input, never a bug)."""


class DataCheckError(DataError):
    """The data check found problems; the message lists every bad file, grouped by problem (several lines).

    Attributes:
        report: the :class:`DataCheckReport` (None when raised for the listing alone).
    """

    def __init__(self, message: str, report: Optional["DataCheckReport"] = None):
        super().__init__(message)
        self.report = report


class BadSampleError(DataError, OSError):
    """One data file is missing, undecodable or wrong; the message is one line naming it.

    An ``OSError`` too, so callers that catch file errors keep working. Picklable with its fields (raised in
    loader worker processes).

    Args:
        problem: a key of :data:`PROBLEMS`.
        path: the bad file.
        detail: what is wrong with it.
    """

    def __init__(self, problem: str, path: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.problem = problem
        self.path = path
        self.detail = detail

    def __reduce__(self):
        return type(self), (self.problem, self.path, self.detail)

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


# --------------------------------------------------------------------------------------------- per-file checks
@contextlib.contextmanager
def _decoding(path: str, problem: str) -> Iterator[None]:
    """Turn any failure to open/decode ``path`` into a :class:`BadSampleError` of kind ``problem``."""
    if not os.path.isfile(path):
        raise BadSampleError("missing_file", path, "file missing")
    try:
        yield
    except BadSampleError:
        raise
    # Pillow reports corrupt data as OSError, SyntaxError, EOFError, zlib.error, struct.error, ValueError...
    # depending on where the damage is; every one of them means "this file is unusable".
    except Exception as error:
        raise BadSampleError(problem, path, f"cannot decode: {error}") from error


def read_sample_file(path: str, mode: Optional[str] = None, problem: str = "unreadable_image") -> Image.Image:
    """Open and fully decode an image.

    Args:
        path: image file.
        mode: PIL mode to convert to (``"RGB"``), or None to keep the file's mode (masks).
        problem: problem kind of a decoding failure (``"unreadable_image"`` or ``"unreadable_mask"``).

    Returns:
        the decoded PIL image, detached from the file.

    Raises:
        BadSampleError: naming the missing or undecodable file.
    """
    with _decoding(path, problem):
        with Image.open(path) as handle:
            handle.load()
            return handle.convert(mode) if mode else handle.copy()


def probe_sample_file(path: str, problem: str = "unreadable_image") -> Tuple[Tuple[int, int], str]:
    """Decode an image at reduced scale (JPEG: 1/8 with ``Image.draft``) to prove it decodes; cheaper than a read.

    Args:
        path: image file.
        problem: problem kind of a decoding failure.

    Returns:
        ``((width, height), PIL mode)`` of the full-size image.

    Raises:
        BadSampleError: naming the missing or undecodable file.
    """
    with _decoding(path, problem):
        with Image.open(path) as handle:
            size, mode = handle.size, handle.mode
            handle.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            handle.load()
            return size, mode


def check_mask(mask: Image.Image, path: str, layout: SegmentationLayout) -> None:
    """A mask must be a single-channel class map with the values ``layout`` allows.

    Args:
        mask: the decoded PIL mask.
        path: its file (for the message).
        layout: the set's layout (number of classes, how they are stored, the ignored value).

    Raises:
        BadSampleError: ``mask_mode`` (e.g. an RGB colour-coded mask) or ``mask_values`` naming ``path``.
    """
    if mask.mode not in MASK_MODES:
        hint = (": a colour-coded mask? masks hold the class value of each pixel"
                if mask.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr") else "")
        raise BadSampleError("mask_mode", path, f"mask must be single-channel (PIL mode L or P), got mode "
                                                f"{mask.mode}{hint}")
    values = np.asarray(mask)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > layout.highest_value:  # the min/max first: the common good mask costs no more
        outside = np.unique(values[layout.outside_values(values)])
        if outside.size:
            shown = ", ".join(str(int(value)) for value in outside[:5]) + (" ..." if outside.size > 5 else "")
            raise BadSampleError("mask_values", path, f"mask values must be {layout.value_rule()}, found {shown}")


def check_sizes(image_size: Tuple[int, int], mask_size: Tuple[int, int], image_path: str, mask_path: str) -> None:
    """Image and mask must have the same size.

    Args:
        image_size, mask_size: ``(width, height)``.
        image_path, mask_path: the files (for the message).

    Raises:
        BadSampleError: ``size_mismatch`` naming both files (``path`` is the mask).
    """
    if tuple(image_size) != tuple(mask_size):
        raise BadSampleError("size_mismatch", mask_path,
                             f"size {mask_size[0]}x{mask_size[1]} differs from its image {image_path} "
                             f"({image_size[0]}x{image_size[1]}, WxH)")


def check_pair(image_path: str, mask_path: str, layout: SegmentationLayout) -> List[Tuple[str, str, str]]:
    """Every problem of one image/mask pair (the image at reduced scale, the mask fully decoded).

    Args:
        image_path, mask_path: the pair.
        layout: the set's layout (the mask values it allows).

    Returns:
        list of ``(problem, path, detail)``, empty when the pair is good.
    """
    problems, image_size, mask_size = [], None, None
    try:
        image_size, _ = probe_sample_file(image_path, "unreadable_image")
    except BadSampleError as error:
        problems.append((error.problem, error.path, error.detail))
    try:
        mask = read_sample_file(mask_path, None, "unreadable_mask")
        mask_size = mask.size
        check_mask(mask, mask_path, layout)
    except BadSampleError as error:
        problems.append((error.problem, error.path, error.detail))
    if image_size is not None and mask_size is not None:
        try:
            check_sizes(image_size, mask_size, image_path, mask_path)
        except BadSampleError as error:
            problems.append((error.problem, error.path, error.detail))
    return problems


# ------------------------------------------------------------------------------------------------------- report
def file_stem(path: str) -> str:
    """``ADE_train_00000001`` for ``.../ADE_train_00000001.jpg``: what identifies a pair within its split."""
    return os.path.splitext(os.path.basename(path))[0]


UNPAIRED = ("image_without_mask", "mask_without_image")


@dataclass
class SplitCheck:
    """The check of one split.

    Attributes:
        split: ``"train"`` or ``"val"``.
        image_folder: the split's image folder.
        n_pairs: complete image/mask pairs found.
        problems: problem kind -> list of ``(path, detail)``, in file order.
        fatal: a problem no skipping can help (missing or empty split), else None.
    """
    split: str
    image_folder: str
    n_pairs: int = 0
    problems: Dict[str, List[Tuple[str, str]]] = field(default_factory=dict)
    fatal: Optional[str] = None

    def add(self, problem: str, path: str, detail: str) -> None:
        """Record one problem of ``path``."""
        self.problems.setdefault(problem, []).append((path, detail))

    def bad_stems(self, paired_only: bool = False) -> List[str]:
        """Sorted stems of the files with a problem: what ``skip_bad_samples`` leaves out.

        Args:
            paired_only: only the complete pairs with a problem (not the unpaired files).
        """
        return sorted({file_stem(path) for problem, entries in self.problems.items()
                       if not (paired_only and problem in UNPAIRED) for path, _ in entries})

    def n_usable(self) -> int:
        """Complete pairs without a problem."""
        return self.n_pairs - len(self.bad_stems(paired_only=True))


def list_split(source, split: str, missing_ok: bool = True) -> Tuple[List[Tuple[str, str]], SplitCheck]:
    """The pairs of a split and its unpaired files (listing only, no decoding).

    Args:
        source: a :class:`SegmentationLayout`, or the ADE20K data root.
        split: ``"train"`` or ``"val"``.
        missing_ok: a missing image folder is a fatal problem of the result; False: raise.

    Returns:
        ``(pairs, check)``: sorted ``(image, mask)`` paths and a :class:`SplitCheck` holding the unpaired files
        (``image_without_mask`` / ``mask_without_image``, each naming the existing file) or a fatal problem when
        the folder is missing or holds no images.

    Raises:
        FileNotFoundError: naming the image folder when it is missing and not ``missing_ok``.
    """
    layout = as_layout(source)
    image_folder, mask_folder = layout.folders(split)
    check = SplitCheck(split, image_folder)
    try:
        pairs, images_without_mask, masks_without_image = list_pairs(layout, split)
    except FileNotFoundError as error:
        if not missing_ok:
            raise
        check.fatal = str(error)
        return [], check
    for image_path in images_without_mask:
        check.add("image_without_mask", image_path,
                  f"no mask {os.path.join(mask_folder, file_stem(image_path) + '.png')}")
    image_names = "|".join(layout.image_extensions)
    for mask_path in masks_without_image:
        check.add("mask_without_image", mask_path,
                  f"no image {os.path.join(image_folder, file_stem(mask_path))}.{image_names.replace('.', '')}")
    if not pairs and not images_without_mask:
        check.fatal = (f"split {split!r} is empty: no {' '.join(layout.image_extensions)} images in "
                       f"{image_folder}")
    check.n_pairs = len(pairs)
    return pairs, check


def format_problems(checks: Sequence[SplitCheck], layout: SegmentationLayout, max_listed: int = MAX_LISTED,
                    relative_to: Optional[str] = None) -> str:
    """The problems of some splits as readable lines: per split and problem a count and the first files.

    Args:
        checks: split checks.
        layout: the set's layout (the heading of the value-range group).
        max_listed: files named per problem group.
        relative_to: a folder the caller's heading names; paths under it are shown relative to it.

    Returns:
        the text (no trailing newline); empty when there is no problem.
    """
    prefix = os.path.join(relative_to, "") if relative_to else None

    def shown(text: str) -> str:
        return text.replace(prefix, "") if prefix else text

    lines = []
    for check in checks:
        if check.fatal:
            lines.append(f"{check.split}: {check.fatal}")
        for problem, heading in PROBLEMS.items():
            entries = check.problems.get(problem, [])
            if not entries:
                continue
            if problem == "mask_values":
                heading = f"masks with values outside 0..{layout.highest_value}" + (
                    "" if layout.ignore_value is None else f" and {layout.ignore_value}")
            lines.append(f"{check.split}: {len(entries)} {heading}:")
            lines += [f"    {shown(path)}: {shown(detail)}" for path, detail in entries[:max_listed]]
            if len(entries) > max_listed:
                lines.append(f"    ... and {len(entries) - max_listed} more")
    return "\n".join(lines)


@dataclass
class DataCheckReport:
    """Result of :func:`check_data`.

    Attributes:
        layout: the set checked.
        splits: split name -> :class:`SplitCheck`.
        seconds: wall time of the check.
        n_cached: pairs whose result came from the cache.
    """
    layout: SegmentationLayout
    splits: Dict[str, SplitCheck] = field(default_factory=dict)
    seconds: float = 0.0
    n_cached: int = 0

    @property
    def ok(self) -> bool:
        """True when no split has a problem."""
        return not any(check.fatal or check.problems for check in self.splits.values())

    def excluded(self, split: str) -> List[str]:
        """Stems of the bad files of ``split`` (for ``SegmentationSet(..., exclude=...)``), sorted."""
        return self.splits[split].bad_stems()

    def message(self, max_listed: int = MAX_LISTED) -> str:
        """Every problem, grouped per split and problem (several lines; paths relative to :attr:`folder`)."""
        return format_problems(list(self.splits.values()), self.layout, max_listed, self.folder)

    @property
    def folder(self) -> str:
        """The set's folder (``ADEChallengeData2016`` for ADE20K)."""
        return self.layout.folder

    def summary(self) -> str:
        """One line: pairs per split, bad ones, time, cache use."""
        parts = [f"{name} {check.n_pairs} pairs ({len(check.bad_stems())} bad)" for name, check in self.splits.items()]
        return (f"data check of {self.folder}: " + ", ".join(parts)
                + f" in {self.seconds:.1f} s ({self.n_cached} from cache)")


# -------------------------------------------------------------------------------------------------------- cache
def _signature(image_path: str, mask_path: str) -> Optional[List[int]]:
    """``[image size, image mtime_ns, mask size, mask mtime_ns]``, or None if a file is gone."""
    try:
        image_stat, mask_stat = os.stat(image_path), os.stat(mask_path)
    except OSError:
        return None
    return [image_stat.st_size, image_stat.st_mtime_ns, mask_stat.st_size, mask_stat.st_mtime_ns]


def _load_cache(cache_path: Optional[str], rule: str) -> Dict[str, list]:
    """The cached ``{"image|mask": [signature, problems]}``; empty when absent, unreadable or for other settings."""
    if not cache_path or not os.path.isfile(cache_path):
        return {}
    try:
        with open(cache_path, encoding="utf-8") as handle:
            cache = json.load(handle)
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a re-check
    if not isinstance(cache, dict) or cache.get("version") != CACHE_VERSION or cache.get("rule") != rule:
        return {}
    pairs = cache.get("pairs")
    return pairs if isinstance(pairs, dict) else {}


def _save_cache(cache_path: str, rule: str, pairs: Dict[str, list]) -> None:
    """Write the cache atomically (concurrent ranks never read half a file; each has its own temporary name)."""
    with atomic_output(cache_path) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        json.dump({"version": CACHE_VERSION, "rule": rule, "pairs": pairs}, stream)


# -------------------------------------------------------------------------------------------------------- check
def _check_chunk(task):
    """Pool task: ``(layout, [(image, mask), ...])`` -> list of problem lists, one per pair."""
    layout, pairs = task
    return [check_pair(image, mask, layout) for image, mask in pairs]


def default_workers() -> int:
    """CPUs this process may use (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_pairs(pairs: Sequence[Tuple[str, str]], layout: SegmentationLayout, workers: int,
                 bar) -> List[List[Tuple[str, str, str]]]:
    """Problems of every pair, in the order of ``pairs``; a fork pool when there is more than one chunk."""
    chunks = [(layout, list(pairs[start:start + _CHUNK])) for start in range(0, len(pairs), _CHUNK)]
    results = []
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            results += _check_chunk(chunk)
            bar.update(len(chunk[1]))
        return results
    # fork, as engine.BatchLoader: children start at once and do not import MindSpore again
    context = multiprocessing.get_context("fork")
    with context.Pool(min(workers, len(chunks)), initializer=detach_worker) as pool:
        for chunk_results in pool.imap(_check_chunk, chunks):
            results += chunk_results
            bar.update(len(chunk_results))
    return results


def check_data(source, splits: Sequence[str] = ("train", "val"), cache_path: Optional[str] = None,
               workers: Optional[int] = None, progress: bool = True) -> DataCheckReport:
    """Check every image/mask pair of some splits; never raises for bad data (see :func:`verify_data`).

    Args:
        source: a :class:`SegmentationLayout` (its mask rule: the raw files, before any ``--classes``
            renumbering), or the ADE20K data root.
        splits: splits to check.
        cache_path: JSON file of earlier results keyed by ``(path, size, mtime)``; read if present, rewritten
            after the check. None: no cache.
        workers: processes decoding in parallel; default :func:`default_workers`.
        progress: show a tqdm bar on stderr.

    Returns:
        the :class:`DataCheckReport`.
    """
    start = time.perf_counter()
    layout = as_layout(source)
    report = DataCheckReport(layout)
    workers = default_workers() if workers is None else max(1, int(workers))
    listed = {split: list_split(layout, split) for split in splits}
    cache = _load_cache(cache_path, layout.cache_key)
    problems_of, fresh_cache, todo = {}, {}, []
    for pairs, _ in listed.values():
        for image_path, mask_path in pairs:
            key = f"{image_path}|{mask_path}"
            signature = _signature(image_path, mask_path)
            entry = cache.get(key)
            if signature is not None and isinstance(entry, list) and len(entry) == 2 and entry[0] == signature:
                problems_of[key], fresh_cache[key] = entry[1], entry
                report.n_cached += 1
            else:
                todo.append((key, signature, image_path, mask_path))
    total = sum(len(pairs) for pairs, _ in listed.values())
    with progress_bar(total=total, initial=report.n_cached, desc="checking data", unit="pair",
                      disable=not progress) as bar:
        results = _check_pairs([(image, mask) for _, _, image, mask in todo], layout, workers, bar)
    for (key, signature, _, _), problems in zip(todo, results):
        problems_of[key] = [list(problem) for problem in problems]
        if signature is not None:  # a file that vanished is re-checked next time
            fresh_cache[key] = [signature, problems_of[key]]
    for split, (pairs, check) in listed.items():
        for image_path, mask_path in pairs:
            for problem, path, detail in problems_of[f"{image_path}|{mask_path}"]:
                check.add(problem, path, detail)
        report.splits[split] = check
    if cache_path:
        try:
            _save_cache(cache_path, layout.cache_key, fresh_cache)
        except OSError as error:  # only costs a re-check next time; atomic_output left no partial file
            print("note: the data check's cache %s was not written (%s): the next start checks every file again"
                  % (cache_path, error.strerror or error), file=sys.stderr)
    report.seconds = time.perf_counter() - start
    return report


def verify_data(source, splits: Sequence[str] = ("train", "val"), skip_bad_samples: bool = False,
                cache_path: Optional[str] = None, workers: Optional[int] = None, progress: bool = True,
                quiet: bool = False) -> DataCheckReport:
    """The check before training: stop on any bad file, or (``skip_bad_samples``) warn and leave them out.

    Args:
        source, splits, cache_path, workers: as :func:`check_data`.
        skip_bad_samples: print a warning listing the bad files on stderr instead of raising; build the datasets
            with ``exclude=report.excluded(split)``.
        progress: the tqdm bar and a one-line summary on stderr.
        quiet: print nothing at all (the other ranks of a multi-device run).

    Returns:
        the :class:`DataCheckReport`.

    Raises:
        DataCheckError: listing every bad file grouped by problem; with ``skip_bad_samples`` only for what
            skipping cannot help: a missing or empty split, or a split whose every pair is bad.
    """
    progress = progress and not quiet
    report = check_data(source, splits, cache_path=cache_path, workers=workers, progress=progress)
    if progress:
        print(report.summary(), file=sys.stderr, flush=True)
    if report.ok:
        return report
    hopeless = [check for check in report.splits.values() if check.fatal or check.n_usable() == 0]
    entries = [(path, detail) for check in report.splits.values() for found in check.problems.values()
               for path, detail in found]
    if not skip_bad_samples and len(entries) == 1 and not any(check.fatal for check in report.splits.values()):
        path, detail = entries[0]  # one bad file: one line naming it
        inside = os.path.join(report.folder, "")
        raise DataCheckError(f"bad data in {report.folder}: {path.replace(inside, '')}: {detail.replace(inside, '')} "
                             f"(fix or remove it, or pass --skip_bad_samples to train without it)", report)
    if not skip_bad_samples or hopeless:
        if skip_bad_samples:
            reason = ("nothing to train on even with --skip_bad_samples:\n"
                      + format_problems(hopeless, report.layout, relative_to=report.folder))
        else:
            reason = (report.message() + "\n(fix or remove these files, or pass --skip_bad_samples to train "
                      "without them)")
        raise DataCheckError(f"bad data in {report.folder}:\n{reason}", report)
    if not quiet:
        counts = ", ".join(f"{len(check.bad_stems())} {name}" for name, check in report.splits.items()
                           if check.bad_stems())
        print(f"warning: --skip_bad_samples: leaving out {counts} bad sample(s):\n{report.message()}",
              file=sys.stderr, flush=True)
    return report
