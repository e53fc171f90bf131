"""scripts.prepare_fewshot, encoding_custom.fewshot.layout and the tar/Drive parts of encoding_custom.datasets.download.

Archives are built by the tests from synthetic sets, in the official archives' layouts (VOCdevkit/VOC2012/ in the
VOC tar, SegmentationClassAug/ with macOS junk in the masks zip, train2014/ in the COCO zips, FSS-1000/<category>/
in the FSS zip), and served by a local HTTP server.
"""
import dataclasses
import hashlib
import http.server
import io
import os
import shutil
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.download import DownloadError, confirmation_url, download, extract_archive
from encoding_custom.fewshot.layout import check_fewshot_layout
from encoding_custom.fewshot.splits import PACKAGED_SPLITS_DIR
from scripts import prepare_fewshot
from tests.test_prepare_ade20k import _FileServer


def _pack(source_dir: str, archive_path: str, under: str, junk: bool = False) -> bytes:
    """Zip or tar (by suffix) every file of ``source_dir`` as ``<under>/<relative path>``; returns the bytes."""
    files = []
    for folder, _, names in os.walk(source_dir):
        for name in sorted(names):
            full = os.path.join(folder, name)
            files.append((full, "/".join(filter(None, [under, os.path.relpath(full, source_dir)]))))
    if archive_path.endswith(".tar"):
        with tarfile.open(archive_path, "w") as archive:
            for full, arcname in files:
                archive.add(full, arcname)
    else:
        with zipfile.ZipFile(archive_path, "w") as archive:
            for full, arcname in files:
                archive.write(full, arcname)
            if junk:  # what macOS archivers add: must not be extracted
                archive.writestr(f"__MACOSX/{under}/._{os.path.basename(files[0][1])}", b"resource fork")
    with open(archive_path, "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def synthetic_pascal(tmp_path_factory):
    """A synthetic PASCAL-5i set (its lists in <root>/fewshot_splits) and the two official-layout archives."""
    base = tmp_path_factory.mktemp("pascal")
    root = str(base / "set")
    assert prepare_fewshot.main(["pascal", "--root", root, "--synthetic", "--synthetic-train", "20",
                                 "--synthetic-val", "20"]) == 0
    voc_source = base / "voc_source"
    shutil.copytree(os.path.join(root, "VOC2012", "JPEGImages"), voc_source / "JPEGImages")
    (voc_source / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc_source / "ImageSets" / "Segmentation" / "val.txt").write_text("syn_val_000000\n")
    tar_bytes = _pack(str(voc_source), str(base / "VOCtrainval_11-May-2012.tar"), "VOCdevkit/VOC2012")
    zip_bytes = _pack(os.path.join(root, "VOC2012", "SegmentationClassAug"), str(base / "SegmentationClassAug.zip"),
                      "SegmentationClassAug", junk=True)
    return {"root": root, "splits": os.path.join(root, "fewshot_splits"), "tar": tar_bytes, "zip": zip_bytes,
            "dir": base}


def _with_md5(monkeypatch, key: str, md5: str):
    """Give the archive ``key`` of SOURCES another published MD5 for this test."""
    for benchmark, sources in prepare_fewshot.SOURCES.items():
        replaced = [dataclasses.replace(source, md5=md5) if source.key == key else source for source in sources]
        monkeypatch.setitem(prepare_fewshot.SOURCES, benchmark, replaced)


def test_cli_downloads_resumes_extracts_and_checks_pascal(tmp_path, synthetic_pascal, monkeypatch, capsys):
    tar_bytes, zip_bytes = synthetic_pascal["tar"], synthetic_pascal["zip"]
    _with_md5(monkeypatch, "pascal_voc", hashlib.md5(tar_bytes).hexdigest())
    server = _FileServer({"VOCtrainval_11-May-2012.tar": tar_bytes, "SegmentationClassAug.zip": zip_bytes})
    root = tmp_path / "datasets"
    argv = ["pascal", "--root", str(root), "--mirror", server.url, "--no-progress", "--timeout", "5",
            "--splits-dir", synthetic_pascal["splits"]]
    try:
        # The server drops the connection half way (no retry within the run): exit 2, the .part is kept.
        server.cut_after["VOCtrainval_11-May-2012.tar"] = len(tar_bytes) // 2
        assert prepare_fewshot.main(argv + ["--retries", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("prepare_fewshot: error: download of") and "resume" in err
        part = root / "VOCtrainval_11-May-2012.tar.part"
        kept = part.stat().st_size
        assert 0 < kept < len(tar_bytes) and not (root / "VOC2012").exists()

        assert prepare_fewshot.main(argv + ["--remove-archive"]) == 0
        out = capsys.readouterr().out
    finally:
        server.close()
    assert f"bytes={kept}-" in server.range_headers
    assert "layout OK" in out and "val: 20 image/mask pairs (expected 20)" in out
    voc = root / "VOC2012"
    assert (voc / "ImageSets" / "Segmentation" / "val.txt").is_file()
    assert sorted(os.listdir(voc / "SegmentationClassAug")) == sorted(
        os.listdir(os.path.join(synthetic_pascal["root"], "VOC2012", "SegmentationClassAug")))
    assert not (root / "__MACOSX").exists() and not any(name.startswith(".") for name in os.listdir(voc))
    assert not part.exists() and not (root / "VOCtrainval_11-May-2012.tar").exists()  # --remove-archive

    # A second run finds everything in place and needs no network (the server is closed).
    assert prepare_fewshot.main(argv) == 0
    assert "is in place" in capsys.readouterr().out


def test_cli_bad_checksum_is_one_line_and_quarantines_the_file(tmp_path, synthetic_pascal, capsys):
    server = _FileServer({"VOCtrainval_11-May-2012.tar": synthetic_pascal["tar"]})
    root = tmp_path / "datasets"
    try:  # the real VOC md5 cannot match the test's tar
        status = prepare_fewshot.main(["pascal", "--root", str(root), "--mirror", server.url, "--no-progress"])
    finally:
        server.close()
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("prepare_fewshot: error: checksum mismatch for") and "--archive pascal_voc=PATH" in err
    assert (root / "VOCtrainval_11-May-2012.tar.md5-mismatch").is_file()
    assert not (root / "VOCtrainval_11-May-2012.tar.part").exists() and not (root / "VOC2012").exists()

    # The same file passed by hand is checked too, and left where it is.
    hand = tmp_path / "VOC.tar"
    hand.write_bytes(synthetic_pascal["tar"])
    assert prepare_fewshot.main(["pascal", "--root", str(root), "--archive", f"pascal_voc={hand}"]) == 2
    assert "checksum mismatch for " + str(hand) in capsys.readouterr().err and hand.is_file()


def test_cli_link_checks_the_copy_first(tmp_path, synthetic_pascal, capsys):
    source = tmp_path / "copy"
    shutil.copytree(synthetic_pascal["root"], source)
    root = tmp_path / "linked"
    assert prepare_fewshot.main(["pascal", "--root", str(root), "--link", str(source / "VOC2012")]) == 0
    assert "layout OK" in capsys.readouterr().out
    assert os.path.islink(root / "VOC2012") and os.path.islink(root / "fewshot_splits" / "pascal")

    (source / "VOC2012" / "SegmentationClassAug" / "syn_val_000003.png").unlink()
    other = tmp_path / "other"
    assert prepare_fewshot.main(["pascal", "--root", str(other), "--link", str(source)]) == 1
    captured = capsys.readouterr()
    assert "val: 1 listed mask(s) missing, e.g. " in captured.out and "syn_val_000003.png" in captured.out
    assert "the copy is incomplete" in captured.err and not (other / "VOC2012").exists()

    assert prepare_fewshot.main(["pascal", "--root", str(other), "--link", str(tmp_path / "nothing")]) == 2
    assert "no VOC2012/ folder" in capsys.readouterr().err
    assert not other.exists()  # made for the failed attempts and left empty: removed again


def test_layout_check_counts_missing_images_per_split(synthetic_pascal, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(synthetic_pascal["root"], root)
    report = check_fewshot_layout(str(root), "pascal")
    assert report.ok and report.synthetic and report.counts["trn"].found == report.counts["trn"].expected == 20
    for index in (4, 7):
        (root / "VOC2012" / "JPEGImages" / f"syn_trn_{index:06d}.jpg").unlink()
    report = check_fewshot_layout(str(root), "pascal", max_listed=1)
    assert not report.ok and report.counts["trn"].found == 18 and report.counts["val"].found == 20
    assert report.problems == [f"trn: 2 listed image(s) missing, e.g. {root}/VOC2012/JPEGImages/syn_trn_000004.jpg"]
    # Against HSNet's packaged lists the synthetic images are not what is asked for.
    packaged = check_fewshot_layout(str(root), "pascal", splits_dir=PACKAGED_SPLITS_DIR)
    assert packaged.counts["val"].expected == 1381 and packaged.counts["val"].found == 0


def test_cli_check_only_reports_and_changes_nothing(synthetic_pascal, tmp_path, capsys):
    root = tmp_path / "set"
    shutil.copytree(synthetic_pascal["root"], root)
    before = sorted(str(path) for path in root.rglob("*"))
    assert prepare_fewshot.main(["pascal", "--root", str(root), "--check"]) == 0
    assert "layout OK" in capsys.readouterr().out
    (root / "VOC2012" / "JPEGImages" / "syn_trn_000004.jpg").unlink()
    assert prepare_fewshot.main(["pascal", "--root", str(root), "--check"]) == 1
    assert "trn: 1 listed image(s) missing" in capsys.readouterr().out
    assert sorted(str(path) for path in root.rglob("*")) == [p for p in before if not p.endswith("syn_trn_000004.jpg")]
    missing = tmp_path / "absent"
    assert prepare_fewshot.main(["pascal", "--root", str(missing), "--check"]) == 1 and not missing.exists()


def test_cli_synthetic_sets(tmp_path, capsys):
    root = tmp_path / "syn"
    assert prepare_fewshot.main(["--benchmark", "coco", "--root", str(root), "--synthetic",
                                 "--synthetic-train", "80", "--synthetic-val", "80"]) == 0
    out = capsys.readouterr().out
    assert "synthetic coco layout" in out and "trn: 80 image/mask pairs (expected 80)" in out and "layout OK" in out
    # Real data is not extracted beside a synthetic set's lists.
    assert prepare_fewshot.main(["coco", "--root", str(root), "--mirror", "http://127.0.0.1:9"]) == 2
    assert "holds a synthetic coco set" in capsys.readouterr().err
    fss_root = tmp_path / "fss"
    assert prepare_fewshot.main(["fss", "--root", str(fss_root), "--synthetic"]) == 0
    out = capsys.readouterr().out
    assert "synthetic fss layout" in out and "test: 100 image/mask pairs" in out and "layout OK" in out
    assert prepare_fewshot.main(["fss", "--root", str(fss_root), "--synthetic", "--synthetic-train", "3"]) == 2
    assert "not for fss" in capsys.readouterr().err


def test_cli_extracts_hand_fetched_coco_zips_in_their_real_layout(tmp_path, capsys):
    syn = tmp_path / "syn"
    assert prepare_fewshot.main(["coco", "--root", str(syn), "--synthetic", "--synthetic-train", "80",
                                 "--synthetic-val", "80"]) == 0
    archives = []
    for subset in ("train2014", "val2014"):
        images = tmp_path / f"{subset}.zip"
        _pack(str(syn / "COCO2014" / subset), str(images), subset)
        masks = tmp_path / "masks" / f"{subset}.zip"  # HSNet's Drive files have the images' names
        masks.parent.mkdir(exist_ok=True)
        _pack(str(syn / "COCO2014" / "annotations" / subset), str(masks), subset, junk=True)
        archives += ["--archive", f"coco_{subset}={images}", "--archive", f"coco_masks_{subset}={masks}"]
    root = tmp_path / "datasets"
    # The COCO image zips' published md5s cannot match these: the test gives them none.
    sources = [dataclasses.replace(source, md5=None) for source in prepare_fewshot.SOURCES["coco"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(prepare_fewshot.SOURCES, "coco", sources)
        status = prepare_fewshot.main(["coco", "--root", str(root), "--no-progress", "--splits-dir",
                                       str(syn / "fewshot_splits")] + archives)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "val: 80 image/mask pairs (expected 80)" in out
    assert (root / "COCO2014" / "annotations" / "val2014" / "COCO_val2014_000000000080.png").is_file()
    assert (root / "COCO2014" / "train2014" / "COCO_train2014_000000000001.jpg").is_file()
    assert sorted(os.listdir(root / "COCO2014" / "annotations")) == ["train2014", "val2014"]

    assert prepare_fewshot.main(["coco", "--root", str(root), "--archive", f"fss={images}"]) == 2
    assert "'fss' is not an archive of coco" in capsys.readouterr().err


def _write_fss(folder, categories, images=2):
    """A tiny FSS-1000 tree: <category>/<n>.jpg + <n>.png (n = 1..images)."""
    for category in categories:
        (folder / category).mkdir(parents=True)
        for n in range(1, images + 1):
            Image.fromarray(np.full((8, 8, 3), 40 * n, np.uint8)).save(folder / category / f"{n}.jpg")
            Image.fromarray(np.full((8, 8), 255, np.uint8)).save(folder / category / f"{n}.png")


def test_cli_extracts_an_fss_zip_and_checks_its_categories(tmp_path, capsys):
    splits = tmp_path / "lists"
    (splits / "fss").mkdir(parents=True)
    names = {"trn": ["abacus", "apple"], "val": ["bear"], "test": ["zucchini"]}
    for split, categories in names.items():
        (splits / "fss" / f"{split}.txt").write_text("".join(c + "\n" for c in categories))
    tree = tmp_path / "tree" / "FSS-1000"
    _write_fss(tree, sum(names.values(), []))
    archive = tmp_path / "fewshot_data.zip"
    _pack(str(tree), str(archive), "FSS-1000")
    root = tmp_path / "datasets"
    assert prepare_fewshot.main(["fss", "--root", str(root), "--archive", f"fss={archive}", "--no-progress",
                                 "--splits-dir", str(splits)]) == 0
    out = capsys.readouterr().out
    assert "trn: 4 image/mask pairs (expected 20)" in out and "layout OK" in out
    (root / "FSS-1000" / "bear" / "2.png").unlink()
    shutil.rmtree(root / "FSS-1000" / "zucchini")
    report = check_fewshot_layout(str(root), "fss", str(splits))
    assert report.problems == [f"val: 1 image(s) have no mask, e.g. {root}/FSS-1000/bear/2.png",
                               f"test: 1 of 1 listed categories missing, e.g. {root}/FSS-1000/zucchini"]


def test_extract_archive_refuses_members_outside_and_links(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="outside"):
        extract_archive(str(evil), str(tmp_path / "out"), progress=False)
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as archive:
        info = tarfile.TarInfo("data/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(DownloadError, match="link or special file"):
        extract_archive(str(linked), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "out" / "data").exists()
    truncated = tmp_path / "truncated.tar"
    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as archive:
        info = tarfile.TarInfo("a/big.bin")
        payload = os.urandom(50_000)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    truncated.write_bytes(good.read_bytes()[:20_000])
    with pytest.raises(DownloadError, match="truncated.tar"):
        extract_archive(str(truncated), str(tmp_path / "out2"), progress=False)


class _DriveLikeServer:
    """Answers /uc with an HTML confirmation form (or a plain page) and /download?...&uuid=... with the file."""

    def __init__(self, data: bytes, form: bool):
        self.paths = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.paths.append(self.path)
                if self.path.startswith("/download?") and "uuid=u-123" in self.path:
                    body, kind = data, "application/octet-stream"
                elif form:
                    body = (b'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                            b'<form id="download-form" action="/download" method="get">'
                            b'<input type="submit" value="Download anyway"/>'
                            b'<input type="hidden" name="id" value="ABC"><input type="hidden" name="export" '
                            b'value="download"><input type="hidden" name="confirm" value="t">'
                            b'<input type="hidden" name="uuid" value="u-123"></form></body></html>')
                    kind = "text/html; charset=utf-8"
                else:
                    body, kind = b"<html><head><title>Quota exceeded</title></head></html>", "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_follows_a_drive_confirmation_form_and_refuses_other_pages(tmp_path):
    data = os.urandom(10_000)
    server = _DriveLikeServer(data, form=True)
    try:
        target = tmp_path / "a.zip"
        download(server.url + "/uc?id=ABC", str(target), timeout=5, progress=False)
    finally:
        server.close()
    assert target.read_bytes() == data
    assert server.paths == ["/uc?id=ABC", "/download?id=ABC&export=download&confirm=t&uuid=u-123"]

    server = _DriveLikeServer(data, form=False)
    try:
        with pytest.raises(DownloadError, match=r"web page \('Quota exceeded'\).*pass it with --archive x=PATH"):
            download(server.url + "/uc?id=ABC", str(tmp_path / "b.zip"), timeout=5, progress=False,
                     manual_hint="pass it with --archive x=PATH")
    finally:
        server.close()
    assert not (tmp_path / "b.zip").exists() and not (tmp_path / "b.zip.part").exists()
    old_style = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy1&amp;id=ABC">Download</a>'
    assert confirmation_url(old_style, "https://drive.google.com/uc?id=ABC") == \
        "https://drive.google.com/uc?export=download&confirm=Xy1&id=ABC"


def test_cli_option_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        prepare_fewshot.main(["--root", str(tmp_path)])
    assert stop.value.code == 2 and "the benchmark is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_fewshot.main(["pascal", "--benchmark", "coco"])
    assert "contradicts" in capsys.readouterr().err
    assert prepare_fewshot.main(["pascal", "--root", str(tmp_path), "--archive", "pascal_aug"]) == 2
    assert capsys.readouterr().err == ("prepare_fewshot: error: --archive pascal_aug: expected NAME=PATH with NAME "
                                       "one of pascal_voc, pascal_aug\n")
    assert prepare_fewshot.main(["pascal", "--root", str(tmp_path), "--archive",
                                 f"pascal_aug={tmp_path / 'none.zip'}"]) == 2
    assert "no such file" in capsys.readouterr().err
