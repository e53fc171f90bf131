"""prepare_ade20k.py and encoding_custom.datasets.download against a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import os
import shutil
import socket
import threading
import time
import zipfile
from collections import namedtuple

import numpy as np
import pytest

import prepare_ade20k
from encoding_custom.datasets import download as download_module
from encoding_custom.datasets.download import DownloadError, download, extract_zip
from encoding_custom.datasets.layout import check_layout
from encoding_custom.datasets.synthetic import write_synthetic_ade20k


class _FileServer:
    """Serves ``files`` (name → bytes) with HTTP Range support; ``cut_after[name]`` bytes on the next request only."""

    def __init__(self, files):
        self.files = files
        self.cut_after = {}
        self.range_headers = []
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                range_header = self.headers.get("Range")
                server.range_headers.append(range_header)
                start = 0
                if range_header and not server.ignore_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    data = np.random.default_rng(3).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()
    return data, hashlib.sha1(data).hexdigest()


@pytest.fixture
def server(payload):
    file_server = _FileServer({"file.zip": payload[0]})
    yield file_server
    file_server.close()


def test_download_resumes_a_cut_download_on_the_next_run(tmp_path, server, payload):
    data, sha1 = payload
    target = str(tmp_path / "file.zip")
    server.cut_after["file.zip"] = 100_000
    with pytest.raises(DownloadError, match=r"file\.zip\.part.*resume"):
        download(server.url + "/file.zip", target, sha1=sha1, retries=0, timeout=5, progress=False)
    assert not os.path.exists(target), "a cut download must never appear complete"
    kept = os.path.getsize(target + ".part")
    assert 0 < kept < len(data)

    assert download(server.url + "/file.zip", target, sha1=sha1, retries=0, timeout=5, progress=False) == target
    assert server.range_headers[-1] == f"bytes={kept}-"
    assert open(target, "rb").read() == data
    assert not os.path.exists(target + ".part")


def test_download_retries_a_cut_within_one_call(tmp_path, server, payload):
    data, sha1 = payload
    target = str(tmp_path / "file.zip")
    server.cut_after["file.zip"] = 50_000
    download(server.url + "/file.zip", target, sha1=sha1, retries=1, timeout=5, progress=False)
    assert server.range_headers[0] is None and server.range_headers[1].startswith("bytes=")
    assert open(target, "rb").read() == data


def test_download_restarts_when_the_server_ignores_range(tmp_path, server, payload):
    data, sha1 = payload
    target = str(tmp_path / "file.zip")
    with open(target + ".part", "wb") as handle:
        handle.write(b"stale bytes from another file")
    server.ignore_range = True
    download(server.url + "/file.zip", target, sha1=sha1, timeout=5, progress=False)
    assert server.range_headers == ["bytes=29-"]  # asked to resume, got the whole file (200) and started over
    assert open(target, "rb").read() == data


def test_download_reuses_a_verified_file_without_network(tmp_path, payload):
    data, sha1 = payload
    target = tmp_path / "file.zip"
    target.write_bytes(data)
    # Port 9 on 127.0.0.1 is not served: any network access would fail.
    assert download("http://127.0.0.1:9/file.zip", str(target), sha1=sha1, progress=False) == str(target)


def test_download_rejects_a_bad_checksum(tmp_path, server):
    target = str(tmp_path / "file.zip")
    with pytest.raises(DownloadError, match="checksum mismatch.*file.zip"):
        download(server.url + "/file.zip", target, sha1="0" * 40, timeout=5, progress=False)
    assert not os.path.exists(target) and not os.path.exists(target + ".part")
    assert os.path.exists(target + ".sha1-mismatch")


def test_download_reports_a_server_that_is_down(tmp_path):
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.time()
    with pytest.raises(DownloadError, match="offline"):
        download(f"http://127.0.0.1:{port}/file.zip", str(tmp_path / "file.zip"), sha1=None, timeout=3,
                 retries=1, progress=False)
    assert time.time() - started < 10
    assert not os.path.exists(tmp_path / "file.zip")


def test_download_refuses_when_the_disk_is_too_full(tmp_path, server, payload, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: usage(10 ** 6, 10 ** 6 - 1000, 1000))
    target = str(tmp_path / "file.zip")
    with pytest.raises(DownloadError, match="not enough disk space"):
        download(server.url + "/file.zip", target, sha1=payload[1], timeout=5, progress=False)
    assert not os.path.exists(target)


def test_extract_zip_names_a_corrupt_archive(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ADEChallengeData2016/a.txt", os.urandom(50_000))
    data = bytearray(good.read_bytes())
    data[200:400] = b"\0" * 200  # damage the compressed member
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="bad.zip"):
        extract_zip(str(bad), str(tmp_path / "out"), progress=False)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DownloadError, match="truncated.zip.*not a valid zip"):
        extract_zip(str(truncated), str(tmp_path / "out"), progress=False)


def _zip_synthetic_set(tmp_path):
    """A synthetic set zipped like the official archive (ADEChallengeData2016/ at the top)."""
    source = tmp_path / "source"
    write_synthetic_ade20k(str(source), 6, 2, seed=0, size=(40, 60))
    zip_path = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for folder, _, names in os.walk(source):
            for name in names:
                full = os.path.join(folder, name)
                archive.write(full, os.path.relpath(full, source))
    return zip_path


def test_cli_downloads_extracts_and_checks_the_layout(tmp_path, monkeypatch, capsys):
    zip_path = _zip_synthetic_set(tmp_path)
    data = zip_path.read_bytes()
    file_server = _FileServer({"ADEChallengeData2016.zip": data})
    try:
        monkeypatch.setattr(prepare_ade20k, "ADE20K_SHA1", hashlib.sha1(data).hexdigest())
        root = tmp_path / "datasets"
        status = prepare_ade20k.main(["--root", str(root), "--mirror", file_server.url, "--no-progress"])
    finally:
        file_server.close()
    out = capsys.readouterr().out
    assert status == 0, out
    assert "train: 6 image/mask pairs (expected 6)" in out and "layout OK" in out
    assert (root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000002.jpg").is_file()


def test_cli_reports_checksum_mismatch_with_exit_status_2(tmp_path, server, capsys):
    status = prepare_ade20k.main(["--root", str(tmp_path / "new" / "d"), "--mirror", server.url, "--no-progress"])
    # The server has no ADEChallengeData2016.zip: an HTTP 404 is an error too.
    assert status == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folders made for it, left empty, are removed again


def test_cli_zip_and_download_dir_and_layout_failures(tmp_path, capsys):
    zip_path = _zip_synthetic_set(tmp_path)
    root = tmp_path / "from_zip"
    assert prepare_ade20k.main(["--root", str(root), "--zip", str(zip_path), "--no-progress"]) == 0

    linked_root = tmp_path / "linked"
    assert prepare_ade20k.main(["--root", str(linked_root), "--download-dir", str(root), "--no-progress"]) == 0
    assert os.path.islink(linked_root / "ADEChallengeData2016")

    missing_mask = root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000003.png"
    missing_mask.unlink()
    capsys.readouterr()
    assert prepare_ade20k.main(["--root", str(linked_root), "--download-dir", str(root), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "ADE_train_00000003.png" in out and "layout INCOMPLETE" in out


def test_layout_check_expects_the_official_counts_without_synthetic_marker(tmp_path):
    write_synthetic_ade20k(str(tmp_path), 3, 1, seed=0, size=(32, 40))
    assert check_layout(str(tmp_path)).ok
    os.remove(tmp_path / "ADEChallengeData2016" / "SYNTHETIC.json")
    report = check_layout(str(tmp_path))
    assert not report.ok
    assert report.expected == {"train": 20210, "val": 2000}
    assert "train: 3 complete image/mask pairs, expected 20210" in report.problems
    assert check_layout(str(tmp_path / "nowhere")).problems[0].endswith("does not exist")


def test_synthetic_cli_writes_the_stated_counts(tmp_path, capsys):
    assert prepare_ade20k.main(["--root", str(tmp_path), "--synthetic", "5", "--synthetic-size", "32", "48"]) == 0
    assert "train: 5 image/mask pairs (expected 5)" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "ADEChallengeData2016" / "images" / "validation")
    report = check_layout(str(tmp_path))
    assert not report.ok and any("images/validation" in problem for problem in report.problems)


def test_download_reports_a_disk_that_fills_up_while_writing(tmp_path, server, payload, monkeypatch):
    real_open = open

    class FullDisk:
        """A file whose writes fail with ENOSPC after 64 KiB, like a disk filling up."""

        def __init__(self, *args, **kwargs):
            self.handle = real_open(*args, **kwargs)
            self.written = 0

        def write(self, block):
            room = 65536 - self.written
            if len(block) > room:
                self.handle.write(block[:room])
                self.written += room
                raise OSError(28, "No space left on device")
            self.written += len(block)
            return self.handle.write(block)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(download_module, "open", FullDisk, raising=False)
    target = str(tmp_path / "file.zip")
    with pytest.raises(DownloadError, match="disk full.*file.zip.part"):
        download(server.url + "/file.zip", target, sha1=payload[1], timeout=5, progress=False)
    assert not os.path.exists(target) and os.path.getsize(target + ".part") == 65536
    monkeypatch.undo()
    # Space freed: the next run resumes the kept part and verifies the whole file.
    download(server.url + "/file.zip", target, sha1=payload[1], timeout=5, progress=False)
    assert server.range_headers[-1] == "bytes=65536-"
    assert open(target, "rb").read() == payload[0]


def test_cli_does_not_extract_real_data_over_a_synthetic_set(tmp_path, capsys):
    zip_path = _zip_synthetic_set(tmp_path)
    root = tmp_path / "root"
    write_synthetic_ade20k(str(root), 2, 1, seed=0, size=(32, 40))
    assert prepare_ade20k.main(["--root", str(root), "--zip", str(zip_path), "--no-progress"]) == 2
    assert "holds a synthetic set" in capsys.readouterr().err
