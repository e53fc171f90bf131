"""Resumable, verified downloads and safe zip extraction for ADE20K (no MindSpore import).

A download is written to ``<file>.part`` and only renamed to ``<file>`` once its SHA-1 matches, so an interrupted
or corrupt download is never mistaken for a complete one. Re-running resumes a ``.part`` with an HTTP Range request.
"""
import errno
import hashlib
import http.client
import os
import shutil
import socket
import urllib.error
import urllib.request
import zipfile
from typing import Optional

from tqdm import tqdm

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
ADE20K_SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
ADE20K_TEST_URL = "http://data.csail.mit.edu/places/ADEchallenge/release_test.zip"
ADE20K_TEST_SHA1 = "e05747892219d10e9243933371a497e905a4860c"

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says what happened and what to do."""


def sha1_of(path: str, chunk: int = _CHUNK) -> str:
    """Hex SHA-1 of a file.

    Args:
        path: file to hash.
        chunk: read size in bytes.

    Returns:
        40-character lowercase hex digest.
    """
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_free_space(folder: str, needed: int, what: str):
    """Raise a DownloadError if ``folder``'s file system has fewer than ``needed`` free bytes."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {what} in {folder}: need {needed / 1e9:.2f} GB more, "
            f"{free / 1e9:.2f} GB free. Free some space or choose another --root, then re-run.")


def _verify_and_finish(part_path: str, target: str, sha1: Optional[str]) -> str:
    """Rename a fully downloaded ``.part`` to ``target`` if its sha1 matches; otherwise quarantine it."""
    if sha1 is not None:
        actual = sha1_of(part_path)
        if actual != sha1.lower():
            bad_path = target + ".sha1-mismatch"
            os.replace(part_path, bad_path)
            raise DownloadError(
                f"checksum mismatch for {target}: sha1 {actual}, expected {sha1}. The file was moved to "
                f"{bad_path} (not used). Re-run to download it again; if it keeps failing the server or a proxy "
                "is altering the file: fetch it by hand and pass it with --zip.")
    os.replace(part_path, target)
    return target


def download(url: str, target: str, sha1: Optional[str] = None, timeout: float = 30.0, retries: int = 2,
             progress: bool = True) -> str:
    """Download ``url`` to ``target``, resuming ``target + '.part'`` and verifying the SHA-1.

    An existing ``target`` whose sha1 matches is reused without network access. Data arrive in
    ``target.part``; a cut connection is resumed with an HTTP ``Range`` request up to ``retries`` times in this
    call, and the ``.part`` is kept for the next run if it still fails.

    Args:
        url: http(s) URL.
        target: final file path.
        sha1: expected hex SHA-1, or None to skip verification.
        timeout: socket timeout in seconds for connecting and for each read.
        retries: extra attempts after a cut connection within this call.
        progress: show a tqdm bar.

    Returns:
        ``target``.

    Raises:
        DownloadError: server unreachable (offline), HTTP error, disk full, or checksum mismatch; the message
            names the file and the next step.
    """
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(target) and (sha1 is None or sha1_of(target) == sha1.lower()):
        return target
    part_path = target + ".part"
    attempts = 0
    while True:
        try:
            if _download_once(url, part_path, timeout, progress, folder):
                return _verify_and_finish(part_path, target, sha1)
        except DownloadError:
            raise
        except (ConnectionError, socket.timeout, urllib.error.URLError, OSError, http.client.HTTPException) as error:
            if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                raise DownloadError(
                    f"disk full while writing {part_path}; the partial download is kept. Free some space "
                    "(or choose another --root) and re-run to resume.") from error
            have = os.path.getsize(part_path) if os.path.exists(part_path) else 0
            reason = getattr(error, "reason", error)
            if attempts >= retries:
                if have == 0 and isinstance(error, urllib.error.URLError):
                    raise DownloadError(
                        f"cannot reach {url} ({reason}). Are you offline? Re-run when the network is back, or "
                        "download the file by hand and pass it with --zip (or an extracted copy with "
                        "--download-dir).") from error
                raise DownloadError(
                    f"download of {url} interrupted ({reason}); {have} bytes kept in {part_path} (incomplete). "
                    "Re-run the same command to resume.") from error
            attempts += 1


def _download_once(url: str, part_path: str, timeout: float, progress: bool, folder: str) -> bool:
    """One HTTP request appending to ``part_path``. Returns True when the file is complete."""
    have = os.path.getsize(part_path) if os.path.exists(part_path) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "lseg-mindspore/prepare_ade20k"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            # The server has nothing past our offset: the .part already holds the whole file.
            return True
        raise DownloadError(f"HTTP {error.code} {error.reason} for {url}; check the URL or try again later.") \
            from error
    with response:
        status = response.status
        if status == 200 and have:
            have = 0  # the server ignored the Range header: start over
        elif status not in (200, 206):
            raise DownloadError(f"unexpected HTTP status {status} for {url}")
        remaining = response.headers.get("Content-Length")
        remaining = int(remaining) if remaining is not None else None
        if remaining is not None:
            _check_free_space(folder, remaining, os.path.basename(part_path[:-len(".part")]))
        total = have + remaining if remaining is not None else None
        received = 0
        with open(part_path, "ab" if have else "wb") as handle, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=os.path.basename(part_path[:-len(".part")]), disable=not progress) as bar:
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                handle.write(block)
                received += len(block)
                bar.update(len(block))
        if remaining is not None and received < remaining:
            raise ConnectionError(f"connection closed after {received} of {remaining} bytes")
    return True


def extract_zip(zip_path: str, destination: str, progress: bool = True) -> list:
    """Extract a zip archive into ``destination``, checking it first.

    Args:
        zip_path: the archive.
        destination: folder to extract into (created if needed).
        progress: show a tqdm bar over members.

    Returns:
        sorted list of the archive's top-level names (e.g. ``["ADEChallengeData2016"]``).

    Raises:
        DownloadError: if the file is not a valid zip, a member is corrupt (CRC error), a member would land
            outside ``destination``, or the disk fills up; the message names the file.
    """
    os.makedirs(destination, exist_ok=True)
    destination_real = os.path.realpath(destination)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            needed = sum(member.file_size for member in members)
            _check_free_space(destination, needed, f"the contents of {zip_path}")
            for member in tqdm(members, desc=f"extract {os.path.basename(zip_path)}", unit="file",
                               disable=not progress):
                out_path = os.path.realpath(os.path.join(destination, member.filename))
                if not out_path.startswith(destination_real + os.sep) and out_path != destination_real:
                    raise DownloadError(f"{zip_path}: member {member.filename!r} would be written outside "
                                        f"{destination}; refusing to extract this archive.")
                archive.extract(member, destination)
            return sorted({member.filename.split("/")[0] for member in members})
    except zipfile.BadZipFile as error:
        raise DownloadError(
            f"{zip_path} is not a valid zip or is corrupt ({error}). Delete it and download it again "
            "(the official sha1 is checked on download).") from error
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while extracting {zip_path} into {destination}. Free some space "
                                "and re-run.") from error
        raise
    except Exception as error:  # zlib.error and similar from corrupt members
        if isinstance(error, DownloadError):
            raise
        raise DownloadError(f"{zip_path}: corrupt archive member ({error}). Delete it and download it "
                            "again.") from error
