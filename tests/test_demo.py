"""python -m scripts.demo: the web page, driven in headless Chromium like a visitor would — upload a picture, type
labels, press Segment — returns test.py --image's mask; bad and crafted uploads and label lists are errors on the page
while the server keeps serving; with --auth the page serves only after login; the command's own refusals (an exposed
address without --auth/--no-auth among them) are one line.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the current
stack (Gradio and Selenium are in requirements.txt). They skip with the reason when either is missing, unless
``LSEG_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that into a failure. ``LSEG_DEMO_SCREENSHOT=path.png`` keeps
the page's screenshot (the README's picture is made so); ``LSEG_DEMO_WEIGHTS`` / ``LSEG_DEMO_PICTURE`` /
``LSEG_DEMO_LABELS`` use a real checkpoint, picture and labels instead of the random tiny network, the generated scene
and labels picked for it.

A random network predicts nearly the same label everywhere (label means differ by ~0.5, pixels by ~0.06), which would
make "the page's mask equals test.py's" true of almost any mask. So the labels are four whose mean scores on the
picture are closest: their map is mixed, and the fixture checks that it changes with the resize (a page that resized
differently would fail).
"""
import io
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.transforms import read_image
from encoding_custom.evaluation.evaluator import segment_image
from foundation.checkpoint_file import save_checkpoint
from foundation.labels import ade20k_labels
from modules.factory import build_lseg, load_lseg

try:
    import gradio  # noqa: F401  (only whether it is installed matters here)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
except ImportError:
    webdriver = None

from scripts import demo

STACK_INDEPENDENT = ("the demo runs on the current stack only (Gradio and Selenium are not in "
                     "requirements-legacy.txt): there its browser tests skip and the others check messages only")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DEFAULT_LABELS = "sky, grass, wall, water"
START_TIMEOUT_S = 240  # MindSpore import + network build on a loaded 2-core machine: ~15 s measured
ANSWER_TIMEOUT_S = 180
# Chromium on a machine without internet: without these flags it keeps opening connections that are refused.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-quic", "--window-size=1280,1300")


def require_browser():
    """Skip when this stack has no Gradio/Selenium (the legacy one); skip, or fail under LSEG_REQUIRE_BROWSER=1,
    when Chromium or its driver is missing."""
    if webdriver is None:
        pytest.skip("gradio/selenium are not installed (the demo is on the current stack: requirements.txt)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            reason = f"{path} not found: apt-get install {package}"
            if os.environ.get("LSEG_REQUIRE_BROWSER") == "1":
                pytest.fail("LSEG_REQUIRE_BROWSER=1 but " + reason)
            pytest.skip(reason)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scene(path, height=96, width=128, seed=0):
    """A picture with regions (sky band, grass band, a wall block) and noise; returns the path."""
    rng = np.random.RandomState(seed)
    rgb = np.zeros((height, width, 3), np.float32)
    rgb[: height // 3] = (90, 150, 230)
    rgb[height // 3:] = (60, 170, 50)
    rgb[height // 4: 3 * height // 4, width // 2: 7 * width // 8] = (170, 160, 150)
    rgb += rng.normal(0, 12, rgb.shape)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return str(path)


def truncated_webp(path):
    """A real WebP picture cut in half: its header is intact, its bitstream ends early. Returns the path."""
    encoded = io.BytesIO()
    Image.fromarray(np.random.RandomState(3).randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(encoded, "WEBP")
    data = encoded.getvalue()
    path.write_bytes(data[:len(data) // 2])
    return str(path)


def tiff_header(path, width, height):
    """A little-endian TIFF whose first IFD declares an 8-bit grey ``width`` x ``height`` strip (and holds no
    pixels). Returns the path."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0))
    return str(path)


def png_header(path, width, height):
    """A valid PNG header declaring ``width`` x ``height`` RGB pixels, with one small compressed block of data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return str(path)


def text_file(path, text):
    path.write_text(text)
    return str(path)


def mixed_labels(weights, picture, count=4):
    """``count`` ADE20K names whose mean scores on ``picture`` are closest, so that their label map is mixed.

    Returns: the labels as a comma-separated string. Fails the test if the map is not mixed or does not change
    when the picture is resized differently (then comparing masks would prove nothing).
    """
    names = ade20k_labels()
    net = load_lseg(weights, names).network
    net.set_train(False)
    image = read_image(picture)
    window = np.ascontiguousarray(image[None, :, :64, :64])
    means = net(ms.Tensor(window)).asnumpy()[0].mean(axis=(1, 2))
    order = np.argsort(means)
    spans = means[order[count - 1:]] - means[order[:len(order) - count + 1]]
    start = int(np.argmin(spans))
    labels = [names[i] for i in order[start:start + count]]
    prediction = segment_image(net, image, labels, base_size=64, crop_size=64)
    shares = np.bincount(prediction.ravel(), minlength=count) / prediction.size
    assert (shares > 0.05).sum() >= 2, "labels %s give a one-label map %s" % (labels, shares)
    other = segment_image(net, image, labels, base_size=96, crop_size=64)
    assert (other != prediction).mean() > 0.01, "the map of %s does not depend on the resize" % labels
    return ", ".join(labels)


def tiny_checkpoint(path):
    """A train_custom.py-format checkpoint of a random tiny network (150 ADE20K labels, as ``--classes ade20k``),
    the same whatever ran before (module fixtures run before the per-test seeding)."""
    ms.set_seed(11)
    np.random.seed(11)
    net = build_lseg("tiny_vit16", ade20k_labels(), text_config="tiny")
    save_checkpoint(str(path), net, epoch=1, options={"backbone": "tiny_vit16", "arch_option": 0, "block_depth": 0,
                                                      "activation": "lrelu", "text_config": "tiny"})
    return str(path)


class DemoServer:
    """``python -m scripts.demo`` in a child process; its output is collected by a thread.

    Args:
        args: the command's arguments.
    """

    def __init__(self, args):
        self.lines = queue.Queue()
        self.output = []
        self.process = subprocess.Popen([sys.executable, "-m", "scripts.demo"] + list(args), cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False"))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def text(self):
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.output.append(line)
        return "".join(self.output)

    def wait_for(self, fragment, timeout):
        """Returns: True once ``fragment`` was printed; False when the process ended or ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.output.append(line)
            if fragment in line:
                return True
        return False

    def stop(self, sig=signal.SIGINT, timeout=60):
        """Send ``sig``; Returns: the exit status (the process is killed if it does not end in ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.wait_for("\0", 5)  # drain what is left
        return self.process.returncode


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    samples = folder / "samples"
    samples.mkdir()
    weights = os.environ.get("LSEG_DEMO_WEIGHTS") or tiny_checkpoint(folder / "tiny.ckpt")
    picture = os.environ.get("LSEG_DEMO_PICTURE") or scene(folder / "garden.png")
    return {
        "weights": weights,
        "picture": picture,
        "labels": os.environ.get("LSEG_DEMO_LABELS") or mixed_labels(weights, picture),
        "sample": scene(samples / "sample_scene.png", 80, 112, seed=5),
        "samples": str(samples),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def server(files):
    require_browser()
    port = free_port()
    process = DemoServer(["--weights", files["weights"], "--port", str(port), "--device_target", "CPU",
                          "--base_size", "64", "--crop_size", "64", "--max_labels", "12", "--labels", DEFAULT_LABELS,
                          "--samples", files["samples"]])
    if not process.wait_for("LSeg demo on http://127.0.0.1:%d/" % port, START_TIMEOUT_S):
        process.stop(signal.SIGKILL)
        pytest.fail("the demo did not start within %d s:\n%s" % (START_TIMEOUT_S, process.text()))
    process.url = "http://127.0.0.1:%d/" % port
    yield process
    status = process.stop()
    output = process.text()
    assert status == 0, output
    assert "SIGINT received, stopped" in output
    assert "Traceback" not in output, output  # visitors' mistakes never reach the server log as tracebacks
    assert "warning" not in output  # 127.0.0.1 is not exposed


LOGIN = ("visitor", "s3cret:with-colon")


@pytest.fixture(scope="module")
def auth_server(files):
    """The demo behind a login given in a file (``--auth-file``; the password holds a colon)."""
    require_browser()
    login_file = files["folder"] / "login.txt"
    login_file.write_text("%s:%s\n" % LOGIN)
    port = free_port()
    process = DemoServer(["--weights", files["weights"], "--port", str(port), "--device_target", "CPU",
                          "--base_size", "64", "--crop_size", "64", "--auth-file", str(login_file)])
    if not process.wait_for("LSeg demo on http://127.0.0.1:%d/" % port, START_TIMEOUT_S):
        process.stop(signal.SIGKILL)
        pytest.fail("the demo did not start within %d s:\n%s" % (START_TIMEOUT_S, process.text()))
    process.url = "http://127.0.0.1:%d/" % port
    yield process
    assert process.stop() == 0, process.text()
    assert "Traceback" not in process.text()


@pytest.fixture(scope="module")
def browser(server, files):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + ("--user-data-dir=%s" % (files["folder"] / "chromium-profile"),):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, url):
    driver.get(url)
    wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the page")


def wait_until(driver, condition, timeout, what):
    """Poll ``condition`` every 0.25 s; Returns its first truthy value. Fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except WebDriverException:
            value = None
        if value:
            return value
        time.sleep(0.25)
    try:
        page = driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException as error:
        page = "(unreadable: %s)" % error
    pytest.fail("waited %d s for %s; the page says:\n%s" % (timeout, what, page))


def upload_shows(driver, name):
    """Whether the upload field shows the file ``name`` (Gradio puts its stem and suffix on two lines)."""
    return name in "".join(driver.find_element(By.ID, "upload").text.split())


def ask(driver, picture, labels):
    """Upload ``picture`` (None: keep the current one), type ``labels``, press Segment."""
    if picture is not None:
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(picture)
        name = os.path.basename(picture)
        wait_until(driver, lambda: upload_shows(driver, name), 30, "the upload of " + name)
    field = driver.find_element(By.CSS_SELECTOR, "#labels textarea")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(labels)
    driver.find_element(By.ID, "segment").click()


def index_link(driver, stem):
    links = driver.find_elements(By.CSS_SELECTOR, "#downloads a")
    for link in links:
        href = link.get_attribute("href") or ""
        if href.endswith("_%s_index.png" % stem):
            return href
    return None


def error_toast(driver):
    toasts = [toast.text for toast in driver.find_elements(By.CSS_SELECTOR, ".toast-body.error")]
    return "\n".join(toasts)


def fetch_png(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def test_page_returns_the_mask_of_test_py_image(server, browser, files, tmp_path):
    outdir = tmp_path / "test_py"
    run = subprocess.run([sys.executable, "test.py", "--weights", files["weights"], "--image", files["picture"],
                          "--labels", files["labels"], "--outdir", str(outdir), "--base_size", "64",
                          "--crop_size", "64", "--device_target", "CPU"], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    stem = os.path.splitext(os.path.basename(files["picture"]))[0]
    expected = np.asarray(Image.open(outdir / (stem + "_index.png")))

    open_page(browser, server.url)
    ask(browser, files["picture"], files["labels"])
    href = wait_until(browser, lambda: index_link(browser, stem), ANSWER_TIMEOUT_S, "the result")
    np.testing.assert_array_equal(fetch_png(href), expected)

    table = browser.find_element(By.ID, "shares").text
    shares = [float(cell.rstrip(" %")) for cell in table.split("\n") if cell.endswith("%")]
    assert len(shares) == len(files["labels"].split(",")) and abs(sum(shares) - 100.0) < 0.1
    assert all(label.strip() in table for label in files["labels"].split(","))
    assert len(np.unique(expected)) >= 2  # (mixed_labels): equal masks say something
    for element in ("overlay", "mask", "legend"):
        source = browser.find_element(By.CSS_SELECTOR, "#%s img" % element).get_attribute("src")
        picture = fetch_png(source)
        if element != "legend":
            assert picture.shape[:2] == expected.shape  # the picture's own size (it is below --max_side)
    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= 1000
    if os.environ.get("LSEG_DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["LSEG_DEMO_SCREENSHOT"])


def test_a_sample_picture_is_one_click_away(server, browser, files):
    open_page(browser, server.url)
    sample = wait_until(browser, lambda: [cell for cell in browser.find_elements(By.CSS_SELECTOR, "td, button")
                                          if cell.text.strip() == "sample_scene.png"], 30, "the sample list")
    sample[0].click()
    wait_until(browser, lambda: upload_shows(browser, "sample_scene.png"), 30, "the sample in the upload field")
    browser.find_element(By.ID, "segment").click()
    href = wait_until(browser, lambda: index_link(browser, "sample_scene"), ANSWER_TIMEOUT_S, "the sample's result")
    assert fetch_png(href).shape == (80, 112)


@pytest.mark.parametrize("what, picture, labels, message", [
    ("a file that is not a picture", "broken.png", DEFAULT_LABELS,
     "cannot read broken.png as an image"),
    ("no labels", "garden", "  ", "labels: no labels given"),
    ("an empty label", "garden", "sky,,grass", "labels: line 1, field 2: empty label (two commas in a row?)"),
    ("too many labels", "garden", ",".join("label %d" % i for i in range(13)),
     "labels: 13 labels; this demo takes at most 12"),
])
def test_bad_input_is_an_error_on_the_page(server, browser, files, what, picture, labels, message):
    if picture == "broken.png":
        path = files["folder"] / "broken.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n but the rest is not")
        picture = str(path)
    else:
        picture = files["picture"]
    open_page(browser, server.url)
    ask(browser, picture, labels)
    shown = wait_until(browser, lambda: error_toast(browser), ANSWER_TIMEOUT_S, "an error about " + what)
    assert message in shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#downloads a")


CRAFTED = {  # name: (maker, the error's start on the page)
    "cut.webp": (truncated_webp, "cannot read cut.webp as an image ("),
    "scan.png": (lambda path: tiff_header(path, 100000, 100000),
                 "scan.png: not a PNG, JPEG, WebP or BMP file (this page takes only those; checked from the file's "
                 "first bytes, not its name)"),
    "huge.png": (lambda path: png_header(path, 8000, 6000),
                 "huge.png: 8000x6000 is 48 megapixels; this demo takes at most 40"),
    "notes.jpg": (lambda path: text_file(path, "a shopping list, not a picture\n"),
                  "notes.jpg: not a PNG, JPEG, WebP or BMP file"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_upload_is_one_line_and_the_server_keeps_serving(server, browser, files, name):
    maker, message = CRAFTED[name]
    path = maker(files["folder"] / name)
    open_page(browser, server.url)
    ask(browser, path, DEFAULT_LABELS)
    shown = wait_until(browser, lambda: error_toast(browser), ANSWER_TIMEOUT_S, "the error about " + name)
    assert shown.startswith(message) or ("\n" + message) in shown, shown
    assert not browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    assert server.process.poll() is None
    open_page(browser, server.url)  # the next visitor is served
    ask(browser, files["sample"], DEFAULT_LABELS)
    assert wait_until(browser, lambda: index_link(browser, "sample_scene"), ANSWER_TIMEOUT_S, "the next answer")


def test_a_picture_format_the_page_does_not_name_is_refused_at_upload(server, browser, files):
    path = tiff_header(files["folder"] / "scan.tif", 100000, 100000)
    open_page(browser, server.url)
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(path)
    browser.find_element(By.ID, "segment").click()
    shown = wait_until(browser, lambda: error_toast(browser), ANSWER_TIMEOUT_S, "the refusal of scan.tif")
    # the page's file field refuses it before it is sent (Gradio checks the name again on the server)
    assert "Invalid file type: scan.tif. Only .png, .jpg, .jpeg, .webp, .bmp allowed." in shown
    assert server.process.poll() is None


def test_with_a_login_the_page_serves_only_after_it(auth_server, browser):
    with pytest.raises(urllib.error.HTTPError) as refused:  # the app's configuration, unauthenticated
        urllib.request.urlopen(auth_server.url + "config", timeout=30)
    assert refused.value.code == 401
    browser.get(auth_server.url)
    fields = wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=password]"), 60,
                        "the login form")
    assert not browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]")

    def log_in(user, password):
        name = browser.find_element(By.CSS_SELECTOR, "input[type=text], input:not([type])")
        name.clear()
        name.send_keys(user)
        secret = browser.find_element(By.CSS_SELECTOR, "input[type=password]")
        secret.clear()
        secret.send_keys(password)
        [button for button in browser.find_elements(By.TAG_NAME, "button") if button.text.strip() == "Login"][0].click()

    log_in(LOGIN[0], "wrong")
    wait_until(browser, lambda: "Incorrect" in browser.find_element(By.TAG_NAME, "body").text, 30,
               "the wrong password's refusal")
    assert not browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]")
    assert fields
    log_in(*LOGIN)
    wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60,
               "the page after login")


def test_without_weights_or_quick_start_model_it_says_what_to_do(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(demo, "QUICKSTART_WEIGHTS", str(tmp_path / "checkpoints" / "tiny_synthetic" / "best.ckpt"))
    assert demo.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    if demo.gr is None:
        assert err.startswith("python -m scripts.demo: error: gradio is not installed in this environment")
    else:
        assert err.startswith("python -m scripts.demo: error: no --weights given and the quick-start model ")
        assert "does not exist: run `bash quickstart.sh` first, or pass --weights W.ckpt" in err


@pytest.mark.skipif(demo.gr is None, reason="gradio is not installed on this stack")
@pytest.mark.parametrize("args, message", [
    (["--weights", "missing.ckpt"], "--weights: missing.ckpt does not exist"),
    (["--weights", "{ckpt}", "--labels", "a,,b"], "--labels: line 1, field 2: empty label"),
    (["--weights", "{ckpt}", "--max_side", "0"], "--max_side: must be >= 1, got 0"),
    (["--weights", "{text}"], "{text}"),
])
def test_bad_options_are_one_line(args, message, capsys, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    values = {"ckpt": str(text), "text": str(text)}
    assert demo.main([arg.format(**values) for arg in args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m scripts.demo: error: ")
    assert message.format(**values) in err


def test_only_loopback_addresses_are_quiet():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert demo.is_loopback(host) and demo.exposure_warning(host, 7860) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.5", "demo.example.org"):
        assert not demo.is_loopback(host), host
    assert demo.exposure_warning("0.0.0.0", 8080) == (
        "listening on 0.0.0.0 with --no-auth: anyone who can reach this machine on port 8080 can use the demo and its "
        "model")
    assert demo.exposure_warning("0.0.0.0", 8080, login=True) == (
        "listening on 0.0.0.0:8080 over plain HTTP: the password and pictures cross the network unencrypted (put a "
        "TLS proxy in front on an untrusted network)")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_an_exposed_address_needs_auth_or_no_auth_before_anything_loads(host, monkeypatch, capsys):
    def must_not_load(args):
        raise AssertionError("the model was loaded before the exposure was refused")

    monkeypatch.setattr(demo, "load_segmenter", must_not_load)
    assert demo.main(["--host", host, "--weights", "missing.ckpt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m scripts.demo: error: --host %s " % host)
    assert "--auth USER:PASSWORD" in err and "--auth-file FILE" in err and "--no-auth" in err


def test_the_refusal_is_the_command_s_exit_status_2():
    run = subprocess.run([sys.executable, "-m", "scripts.demo", "--host", "0.0.0.0"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "--auth" in run.stderr and "--no-auth" in run.stderr
    assert run.stdout == ""


def login_args(tmp_path, *args):
    return demo.build_parser().parse_args([arg.format(tmp=tmp_path) for arg in args])


@pytest.mark.parametrize("args, login", [
    (["--host", "0.0.0.0", "--no-auth"], None),
    (["--host", "127.0.0.1"], None),
    (["--host", "0.0.0.0", "--auth", "ann:pa:ss"], ("ann", "pa:ss")),
    (["--auth", "ann:pass"], ("ann", "pass")),  # a login on loopback is kept too
    (["--host", "0.0.0.0", "--auth-file", "{tmp}/login.txt"], ("bob", "from a file")),
])
def test_the_login_comes_from_auth_or_auth_file(args, login, tmp_path):
    (tmp_path / "login.txt").write_text("bob:from a file\nignored second line\n")
    assert demo.login_of(login_args(tmp_path, *args)) == login


@pytest.mark.parametrize("args, message", [
    (["--auth", "ann"], "--auth: expected USER:PASSWORD (both non-empty, the user without a colon)"),
    (["--auth", ":pass"], "--auth: expected USER:PASSWORD"),
    (["--auth", "ann:"], "--auth: expected USER:PASSWORD"),
    (["--auth-file", "{tmp}/missing.txt"], "--auth-file: cannot read {tmp}/missing.txt (No such file or directory)"),
    (["--auth-file", "{tmp}/empty.txt"], "--auth-file {tmp}/empty.txt: line 1: expected USER:PASSWORD"),
    (["--auth-file", "{tmp}/binary.txt"], "--auth-file: cannot read {tmp}/binary.txt ('utf-8' codec can't decode"),
])
def test_a_bad_login_is_one_line(args, message, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00user:pass")
    assert demo.main([arg.format(tmp=tmp_path) for arg in ["--host", "0.0.0.0"] + args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m scripts.demo: error: " + message.format(tmp=tmp_path))


def test_auth_and_no_auth_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as stop:
        demo.main(["--host", "0.0.0.0", "--auth", "a:b", "--no-auth"])
    assert stop.value.code == 2
    assert "not allowed with argument --auth" in capsys.readouterr().err


@pytest.mark.parametrize("content, expected", [
    (b"\x89PNG\r\n\x1a\n....", "PNG"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "WEBP"), (b"BM6\x00\x00\x00", "BMP"), (b"II*\x00\x08\x00\x00\x00", None),
    (b"GIF89a", None), (b"%PDF-1.7", None), (b"RIFF\x10\x00\x00\x00WAVEfmt ", None), (b"", None),
])
def test_picture_format_reads_the_first_bytes_only(content, expected, tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    if expected:
        assert demo.picture_format(str(path), "upload.png") == expected
    else:
        with pytest.raises(demo.SegmenterInputError, match=r"^upload\.png: not a PNG, JPEG, WebP or BMP file "):
            demo.picture_format(str(path), "upload.png")


@pytest.mark.skipif(demo.gr is None, reason="gradio is not installed on this stack")
def test_a_port_in_use_is_one_line(files):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = DemoServer(["--weights", files["weights"], "--port", str(port), "--device_target", "CPU"])
        try:
            process.process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass  # the assertion below reports it; stop() kills it
    status = process.stop(signal.SIGKILL)
    output = process.text()
    assert status == 2, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("python -m scripts.demo: error: --port %d: cannot listen on 127.0.0.1:%d" % (port, port))
    assert "Traceback" not in output
