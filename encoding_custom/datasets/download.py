"""Resumable, verified downloads and safe zip/tar extraction for the data sets (no MindSpore import).

A download is written to ``<file>.part`` and only renamed to ``<file>`` once its SHA-1 or MD5 matches, so an
interrupted or corrupt download is never mistaken for a complete one. Re-running resumes a ``.part`` with an HTTP
Range request. A web page (``text/html``) is never taken for the file: Google Drive answers large files with a
confirmation page, whose form (``id``/``confirm``/``uuid``) :func:`download` follows once; any other page is an error
that says how to fetch the file by hand.
"""
import errno
import hashlib
import html
import html.parser
import http.client
import os
import re
import shutil
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Iterator, List, Optional, Tuple
from encoding_custom.progress import progress_bar


ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
ADE20K_SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
ADE20K_TEST_URL = "http://data.csail.mit.edu/places/ADEchallenge/release_test.zip"
ADE20K_TEST_SHA1 = "e05747892219d10e9243933371a497e905a4860c"

# Google Drive's direct download endpoint; ``confirm=t`` skips the "cannot scan for viruses" page of large files.
GOOGLE_DRIVE_DOWNLOAD_URL = "https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
GOOGLE_DRIVE_VIEW_URL = "https://drive.google.com/file/d/{file_id}/view"
ADE20K_MANUAL_HINT = "pass it with --zip (or an extracted copy with --download-dir)"

_CHUNK = 1 << 20
# A confirmation page is a few kB; more than this is not one.
_MAX_PAGE_BYTES = 1 << 20
# Files macOS archivers add beside the real members.
_ARCHIVE_JUNK = re.compile(r"(^|/)(__MACOSX(/|$)|\._[^/]*$|\.DS_Store$)")


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says what happened and what to do."""


class _WebPageInsteadOfFile(Exception):
    """The server answered with an HTML page (``text``) rather than the file."""

    def __init__(self, url: str, text: str):
        super().__init__(url)
        self.url, self.text = url, text


def file_digest(path: str, algorithm: str = "sha1", chunk: int = _CHUNK) -> str:
    """Hex digest of a file.

    Args:
        path: file to hash.
        algorithm: a :mod:`hashlib` name (``sha1``, ``md5``, ``sha256``).
        chunk: read size in bytes.

    Returns:
        lowercase hex digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_digest(sha1: Optional[str], md5: Optional[str]) -> Optional[Tuple[str, str]]:
    """``(algorithm, lowercase hex)`` to verify, SHA-1 first, or None when no checksum is known."""
    if sha1 is not None:
        return "sha1", sha1.lower()
    if md5 is not None:
        return "md5", md5.lower()
    return None


def verify_file(path: str, sha1: Optional[str] = None, md5: Optional[str] = None) -> None:
    """Check a file fetched by hand against its published checksum (nothing to do when none is known).

    Args:
        path: the file.
        sha1: expected hex SHA-1, or None.
        md5: expected hex MD5 (used when ``sha1`` is None), or None.

    Raises:
        DownloadError: naming the file, both digests; the file is left where it is.
    """
    expected = _expected_digest(sha1, md5)
    if expected is None:
        return
    algorithm, want = expected
    actual = file_digest(path, algorithm)
    if actual != want:
        raise DownloadError(f"checksum mismatch for {path}: {algorithm} {actual}, expected {want} (not the "
                            "official file, or damaged); fetch it again")


def google_drive_url(file_id: str) -> str:
    """The direct download URL of a Google Drive file id (see :data:`GOOGLE_DRIVE_DOWNLOAD_URL`)."""
    return GOOGLE_DRIVE_DOWNLOAD_URL.format(file_id=urllib.parse.quote(file_id, safe=""))


class _ConfirmationPageParser(html.parser.HTMLParser):
    """Collects the forms (action, method, hidden inputs) and ``confirm=`` links of a page, and its title."""

    def __init__(self):
        super().__init__()
        self.forms: List[Tuple[str, str, List[Tuple[str, str]]]] = []
        self.confirm_links: List[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append((attributes.get("action") or "", (attributes.get("method") or "get").lower(), []))
        elif tag == "input" and self.forms and (attributes.get("type") or "").lower() == "hidden":
            if attributes.get("name"):
                self.forms[-1][2].append((attributes["name"], attributes.get("value") or ""))
        elif tag == "a" and "confirm=" in (attributes.get("href") or ""):
            self.confirm_links.append(attributes["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def confirmation_url(page: str, page_url: str) -> Optional[str]:
    """The URL a download-confirmation page (Google Drive's "download anyway") leads to, if it has one.

    Args:
        page: the HTML text.
        page_url: the URL that answered with it (relative actions are resolved against it).

    Returns:
        the URL of the first GET form with a hidden ``confirm`` or ``uuid`` field (its hidden fields as the query),
        else of the first ``confirm=`` link, else None.
    """
    parser = _ConfirmationPageParser()
    parser.feed(page)
    for action, method, fields in parser.forms:
        names = {name for name, _ in fields}
        if method == "get" and names & {"confirm", "uuid"}:
            target = urllib.parse.urljoin(page_url, html.unescape(action))
            return target.split("?", 1)[0] + "?" + urllib.parse.urlencode(fields)
    if parser.confirm_links:
        return urllib.parse.urljoin(page_url, html.unescape(parser.confirm_links[0]))
    return None


def _page_title(page: str) -> str:
    parser = _ConfirmationPageParser()
    parser.feed(page)
    return " ".join(parser.title.split()) or "no title"


def _check_free_space(folder: str, needed: int, what: str):
    """Raise a DownloadError if ``folder``'s file system has fewer than ``needed`` free bytes."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space for {what} in {folder}: need {needed / 1e9:.2f} GB more, "
            f"{free / 1e9:.2f} GB free. Free some space or choose another --root, then re-run.")


def _verify_and_finish(part_path: str, target: str, expected: Optional[Tuple[str, str]], manual_hint: str) -> str:
    """Rename a fully downloaded ``.part`` to ``target`` if its checksum matches; otherwise quarantine it."""
    if expected is not None:
        algorithm, want = expected
        actual = file_digest(part_path, algorithm)
        if actual != want:
            bad_path = f"{target}.{algorithm}-mismatch"
            os.replace(part_path, bad_path)
            raise DownloadError(
                f"checksum mismatch for {target}: {algorithm} {actual}, expected {want}. The file was moved to "
                f"{bad_path} (not used). Re-run to download it again; if it keeps failing the server or a proxy "
                f"is altering the file: fetch it by hand and {manual_hint}.")
    os.replace(part_path, target)
    return target


def download(url: str, target: str, sha1: Optional[str] = None, timeout: float = 30.0, retries: int = 2,
             progress: bool = True, md5: Optional[str] = None, manual_hint: str = ADE20K_MANUAL_HINT) -> str:
    """Download ``url`` to ``target``, resuming ``target + '.part'`` and verifying the SHA-1 (or MD5).

    An existing ``target`` whose checksum matches (or any existing ``target`` when no checksum is given) is reused
    without network access. Data arrive in ``target.part``; a cut connection is resumed with an HTTP ``Range``
    request up to ``retries`` times in this call, and the ``.part`` is kept for the next run if it still fails.
    An HTML answer never touches the ``.part``: a confirmation page's form is followed once (Google Drive), any
    other page is an error.

    Args:
        url: http(s) URL.
        target: final file path.
        sha1: expected hex SHA-1, or None.
        timeout: socket timeout in seconds for connecting and for each read.
        retries: extra attempts after a cut connection within this call.
        progress: show a tqdm bar.
        md5: expected hex MD5, checked when ``sha1`` is None (some data sets publish only MD5); None to skip.
        manual_hint: how the calling command takes a hand-fetched file, for the error messages
            (``"pass it with --archive NAME=PATH"``).

    Returns:
        ``target``.

    Raises:
        DownloadError: server unreachable (offline), HTTP error, a web page instead of the file, disk full, or
            checksum mismatch; the message names the file and the next step.
    """
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    expected = _expected_digest(sha1, md5)
    if os.path.isfile(target) and (expected is None or file_digest(target, expected[0]) == expected[1]):
        return target
    part_path = target + ".part"
    attempts = 0
    followed_page = False
    while True:
        try:
            if _download_once(url, part_path, timeout, progress, folder):
                return _verify_and_finish(part_path, target, expected, manual_hint)
        except DownloadError:
            raise
        except _WebPageInsteadOfFile as page:
            next_url = None if followed_page else confirmation_url(page.text, page.url)
            if next_url is None:
                raise DownloadError(
                    f"{url} answered with a web page ({_page_title(page.text)!r}) instead of "
                    f"{os.path.basename(target)} (a download quota, a sign-in or a confirmation page). Open the "
                    f"URL in a browser, save the file and {manual_hint}.") from None
            url, followed_page = next_url, True
            continue
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
                        f"download the file by hand and {manual_hint}.") from error
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
        if response.headers.get_content_type() == "text/html":
            raise _WebPageInsteadOfFile(response.geturl(), response.read(_MAX_PAGE_BYTES).decode("utf-8", "replace"))
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
                progress_bar(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
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


def _is_junk(name: str) -> bool:
    return bool(_ARCHIVE_JUNK.search(name))


class _Archive:
    """A zip or tar archive seen as ``(name, is_dir, size)`` members with one way to read them.

    Args:
        path: the archive.
        kind: ``zip``, ``tar`` or None (by content).

    Raises:
        DownloadError: not an archive of that kind, or unreadable; the message names the file.
    """

    def __init__(self, path: str, kind: Optional[str] = None):
        self.path = path
        if kind is None:
            kind = "zip" if zipfile.is_zipfile(path) else "tar" if _is_tar(path) else None
            if kind is None:
                raise DownloadError(f"{path} is neither a zip nor a tar archive (or it is truncated/corrupt). "
                                    "Delete it and fetch it again.")
        self.kind = kind
        try:
            if kind == "zip":
                self._zip = zipfile.ZipFile(path)
                self._members = self._zip.infolist()
            else:
                self._tar = tarfile.open(path)
                self._members = self._tar.getmembers()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise DownloadError(
                f"{path} is not a valid {kind} or is corrupt ({error}). Delete it and download it again "
                "(the official checksum is checked on download where one is published).") from error

    def members(self) -> Iterator[Tuple[object, str, bool, int]]:
        """``(member, name, is_dir, size)``; tar links and devices are refused (they could point anywhere)."""
        for member in self._members:
            if self.kind == "zip":
                yield member, member.filename, member.is_dir(), member.file_size
            else:
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{self.path}: member {member.name!r} is a link or special file; "
                                        "refusing to extract this archive.")
                yield member, member.name + ("/" if member.isdir() else ""), member.isdir(), member.size

    def names(self) -> List[str]:
        """Member names (directories end in ``/``), archive order."""
        return [name for _, name, _, _ in self.members()]

    def open(self, member):
        """A binary stream of a file member."""
        return self._zip.open(member) if self.kind == "zip" else self._tar.extractfile(member)

    def close(self):
        (self._zip if self.kind == "zip" else self._tar).close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_tar(path: str) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def archive_names(archive_path: str) -> List[str]:
    """Member names of a zip or tar archive (directories end in ``/``), without extracting.

    Args:
        archive_path: the archive.

    Returns:
        the names in archive order.

    Raises:
        DownloadError: not a readable zip/tar; the message names the file.
    """
    with _Archive(archive_path) as archive:
        return archive.names()


def find_content_root(names: List[str], pattern: str, parents: int = 0) -> Optional[str]:
    """The folder inside an archive that holds its content, found from one kind of member.

    The first member (macOS junk skipped) whose name matches ``pattern`` gives its folder, ``parents`` levels up:
    e.g. ``(?:^|/)JPEGImages/[^/]+\\.jpg$`` with ``parents=1`` finds ``VOCdevkit/VOC2012`` in the VOC tar.

    Args:
        names: member names (:func:`archive_names`).
        pattern: regular expression searched in each name.
        parents: levels to go up from the matching member's folder.

    Returns:
        the folder (``""`` for the archive's top, no trailing ``/``), or None when no member matches.
    """
    regex = re.compile(pattern)
    for name in names:
        if not _is_junk(name) and not name.endswith("/") and regex.search(name):
            parts = name.split("/")[:-1]
            if parents > len(parts):
                return None
            return "/".join(parts[:len(parts) - parents])
    return None


def extract_archive(archive_path: str, destination: str, prefix: str = "", progress: bool = True,
                    kind: Optional[str] = None) -> List[str]:
    """Extract the members of a zip or tar under ``prefix`` into ``destination``, ``prefix`` stripped.

    Members outside ``prefix`` and macOS junk (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped; a member that
    would land outside ``destination`` or a tar link refuses the whole archive before anything is written.

    Args:
        archive_path: the archive.
        destination: folder to extract into (created if needed).
        prefix: folder inside the archive whose content goes to ``destination`` (``""`` = everything).
        progress: show a tqdm bar over members.
        kind: ``zip``/``tar`` to insist on one, None to tell by content.

    Returns:
        sorted top-level names written into ``destination``.

    Raises:
        DownloadError: not a valid archive, a corrupt member (CRC error, truncated tar), a member outside
            ``destination``, no member under ``prefix``, or a full disk; the message names the file.
    """
    prefix = prefix.strip("/")
    lead = prefix + "/" if prefix else ""
    os.makedirs(destination, exist_ok=True)
    destination_real = os.path.realpath(destination)
    try:
        with _Archive(archive_path, kind) as archive:
            selected = []
            for member, name, is_dir, size in archive.members():
                if _is_junk(name) or not name.startswith(lead) or name == lead:
                    continue
                relative = name[len(lead):]
                out_path = os.path.realpath(os.path.join(destination, relative))
                if not out_path.startswith(destination_real + os.sep) and out_path != destination_real:
                    raise DownloadError(f"{archive_path}: member {name!r} would be written outside "
                                        f"{destination}; refusing to extract this archive.")
                selected.append((member, relative, is_dir, size, out_path))
            if not selected:
                raise DownloadError(f"{archive_path}: no member under {prefix!r}; not the expected archive")
            _check_free_space(destination, sum(item[3] for item in selected), f"the contents of {archive_path}")
            with progress_bar(total=len(selected), desc=f"extract {os.path.basename(archive_path)}", unit="file",
                              disable=not progress) as bar:
                for member, _, is_dir, _, out_path in selected:
                    bar.update(1)
                    if is_dir:
                        os.makedirs(out_path, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(out_path), exist_ok=True)
                    with archive.open(member) as source, open(out_path, "wb") as target:
                        shutil.copyfileobj(source, target, _CHUNK)
            return sorted({relative.split("/")[0] for _, relative, _, _, _ in selected})
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise DownloadError(f"disk full while extracting {archive_path} into {destination}. Free some space "
                                "and re-run.") from error
        raise
    except DownloadError:
        raise
    except Exception as error:  # zlib.error, BadZipFile (CRC), tarfile.ReadError/EOFError of truncated members
        raise DownloadError(f"{archive_path}: corrupt archive member ({error}). Delete it and download it "
                            "again.") from error


def extract_zip(zip_path: str, destination: str, progress: bool = True) -> list:
    """Extract a zip archive into ``destination``, checking it first (:func:`extract_archive` of a zip).

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
    return extract_archive(zip_path, destination, progress=progress, kind="zip")
