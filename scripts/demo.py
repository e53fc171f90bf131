"""A local web page for segmenting a picture with any labels: ``python -m scripts.demo --weights W.ckpt``.

    python -m scripts.demo                                  # the quick-start model (bash quickstart.sh makes it)
    python -m scripts.demo --weights demo_e200.ckpt         # official lang-seg weights, or any of our checkpoints
    python -m scripts.demo --host 0.0.0.0 --auth-file login.txt   # reachable from other machines, behind a login

Upload or drop a picture, type a comma-separated label list and press "Segment": the page shows the overlay, the
colour mask, the legend and each label's share of the pixels, with the index map (label order as pixel values) and
the legend text to download. The prediction is ``test.py --image``'s (:mod:`encoding_custom.visualisation.segmenter`).
The model is loaded once at start; a label list's text features are reused while it stays among the recent lists.

Built on Gradio rather than Streamlit (which the official ``lseg_app.py`` uses): a click calls one Python function
while the model stays loaded in the process (Streamlit re-runs the whole script on every interaction and needs a
resource cache to keep a model), uploads, pictures, downloads and error messages are ready-made components with no
front-end code, it is what most ML demos use (Hugging Face Spaces), and it runs offline on 127.0.0.1.

Visitors are untrusted: an address other machines reach needs a login (``--auth USER:PASSWORD`` or ``--auth-file``,
Gradio's login page) unless ``--no-auth`` says otherwise, and an upload reaches an image decoder only when its first
bytes are those of a format the page names (PNG, JPEG, WebP, BMP) and its header declares at most 40 megapixels.

Exit status: 0 stopped with Ctrl-C; 2 a bad option or weights file, an exposed address without --auth/--no-auth, or
a port in use (one line naming it).
"""
import argparse
import html
import ipaddress
import logging
import os
import signal
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from encoding_custom.engine import DeviceUnavailableError, StopSignals, configure_runtime
from encoding_custom.engine.runtime import DEVICE_TARGETS
from encoding_custom.visualisation.render import hex_colour
from encoding_custom.visualisation.segmenter import (
    DEFAULT_MAX_LABELS,
    DEFAULT_MAX_SIDE,
    ImageSegmenter,
    SegmenterInputError,
    typed_labels,
)
from modules.factory import load_lseg
from modules.weights import WeightsError, WeightsOptionError

try:
    import gradio as gr
except ImportError:  # the legacy stack (Python 3.9) does not install it: main() says so in one line
    gr = None

PROG = "python -m scripts.demo"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What bash quickstart.sh trains, and the labels and pictures it uses.
QUICKSTART_WEIGHTS = os.path.join(REPO, "checkpoints", "tiny_synthetic", "best.ckpt")
QUICKSTART_LABELS = "wall, sky, floor, tree, grass, person, car, water"
QUICKSTART_SAMPLES = os.path.join(REPO, "datasets", "synthetic_ade20k", "ADEChallengeData2016", "images", "validation")
SAMPLE_COUNT = 4
# The formats the page takes, known by their first bytes before any decoder sees the file: (Pillow's format name,
# what the page calls it, file extensions, test on the first 12 bytes). Each decoder is attack surface (TIFF, PSD,
# EPS... have had their advisories); these four are what browsers and phones produce.
ACCEPTED_FORMATS = (
    ("PNG", "PNG", (".png",), lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ("JPEG", "JPEG", (".jpg", ".jpeg"), lambda head: head.startswith(b"\xff\xd8\xff")),
    ("WEBP", "WebP", (".webp",), lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP"),
    ("BMP", "BMP", (".bmp",), lambda head: head.startswith(b"BM")),
)
ACCEPTED_NAMES = ", ".join(shown for _, shown, _, _ in ACCEPTED_FORMATS[:-1]) + " or " + ACCEPTED_FORMATS[-1][1]
ACCEPTED_EXTENSIONS = [ext for _, _, extensions, _ in ACCEPTED_FORMATS for ext in extensions]
# Results kept on disk for download; older ones are deleted as new ones come.
KEPT_RESULTS = 32
MAX_UPLOAD = "64mb"

log = logging.getLogger("scripts.demo")


# In graph mode, label lists are padded to a multiple of this: one compiled forward serves 1-8 labels, one 9-16, ...
GRAPH_LABEL_BUCKET = 8


class DemoError(Exception):
    """A bad option or start-up failure; main() prints it as one ``python -m scripts.demo: error:`` line."""


def default_labels_text(recorded: Optional[Sequence[str]], max_labels: int) -> str:
    """The label field's starting text: the labels a checkpoint records, when the page can hold and type them (at
    most ``max_labels``, none with a comma), else the quick-start's."""
    if recorded and len(recorded) <= max_labels and not any("," in label or "\n" in label for label in recorded):
        return ", ".join(recorded)
    return QUICKSTART_LABELS


def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m scripts.demo``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None,
                        help="our .ckpt (training or modules.weights) or an official lang-seg .ckpt "
                             "(default: the quick-start model checkpoints/tiny_synthetic/best.ckpt)")
    parser.add_argument("--labels", default=None,
                        help="the label list the page starts with (default: the labels --weights was trained with, "
                             "as the checkpoint records them; else the quick-start's)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only); any other address needs "
                             "--auth, --auth-file or --no-auth")
    login = parser.add_mutually_exclusive_group()
    login.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                       help="visitors log in with this user name and password (visible in the process list: "
                            "prefer --auth-file)")
    login.add_argument("--auth-file", "--auth_file", dest="auth_file", default=None, metavar="FILE",
                       help="a file whose first line is USER:PASSWORD (keep it readable by you only)")
    login.add_argument("--no-auth", "--no_auth", dest="no_auth", action="store_true",
                       help="serve an address other machines reach without a login")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--device_target", default="auto", choices=DEVICE_TARGETS, help="device to run on")
    parser.add_argument("--mode", default="pynative", choices=("pynative", "graph"),
                        help="pynative (default): no compile; graph: the first request of a label-count bucket (1-8, "
                             "9-16, ...) compiles its forward, later ones reuse it. ViT-L on 2 CPU cores: pynative "
                             "5.6-6.3 s a request, 2.6 GiB; graph 16.7 s for a compiling request, then 5.7 s, 8.4 GiB, "
                             "ahead after about 50 requests of a bucket (a long-running server)")
    parser.add_argument("--base_size", type=int, default=520, help="long side the picture is resized to")
    parser.add_argument("--crop_size", type=int, default=480, help="network input side (sliding windows)")
    parser.add_argument("--max_side", type=int, default=DEFAULT_MAX_SIDE,
                        help="uploads with a longer side are shrunk to it first")
    parser.add_argument("--max_labels", type=int, default=DEFAULT_MAX_LABELS, help="most labels per request")
    parser.add_argument("--samples", default=None,
                        help="folder of sample pictures shown under the upload (default: the quick-start "
                             "validation pictures, when they exist)")
    return parser


def is_loopback(host: str) -> bool:
    """Args: host: a ``--host`` value. Returns: whether only this machine can reach it (localhost, 127.x, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def parse_login(text: str, source: str) -> Tuple[str, str]:
    """Args: text: ``USER:PASSWORD``; source: the option or file named in messages.

    Returns: ``(user, password)``. Raises: DemoError: no colon, an empty user or password.
    """
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise DemoError(f"{source}: expected USER:PASSWORD (both non-empty, the user without a colon)")
    return user, password


def login_of(args) -> Optional[Tuple[str, str]]:
    """The login the page asks for, checked before anything is loaded.

    Returns: ``(user, password)`` from ``--auth`` / ``--auth-file``, or None (no login).

    Raises:
        DemoError: an address other machines reach with neither a login nor ``--no-auth``; a bad ``--auth`` value or
            file.
    """
    if args.auth is not None:
        return parse_login(args.auth, "--auth")
    if args.auth_file is not None:
        try:
            with open(args.auth_file, encoding="utf-8") as handle:
                first = handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)  # UnicodeDecodeError has no strerror
            raise DemoError(f"--auth-file: cannot read {args.auth_file} ({reason})") from None
        return parse_login(first, f"--auth-file {args.auth_file}: line 1")
    if not args.no_auth and not is_loopback(args.host):
        raise DemoError(f"--host {args.host} lets other machines reach the demo: give it a login with --auth "
                        "USER:PASSWORD (or --auth-file FILE), or pass --no-auth to serve it to anyone")
    return None


def exposure_warning(host: str, port: int, login: bool = False) -> Optional[str]:
    """Args: host, port: where the page listens; login: whether visitors log in.

    Returns: the warning for an address other machines reach, or None.
    """
    if is_loopback(host):
        return None
    if login:
        return (f"listening on {host}:{port} over plain HTTP: the password and pictures cross the network "
                "unencrypted (put a TLS proxy in front on an untrusted network)")
    return (f"listening on {host} with --no-auth: anyone who can reach this machine on port {port} can use the demo "
            "and its model")


def picture_format(path: str, name: str) -> str:
    """The format of an upload from its first bytes, before any decoder reads it.

    Args: path: the uploaded file; name: its name in messages.

    Returns: Pillow's format name (one of :data:`ACCEPTED_FORMATS`).

    Raises:
        SegmenterInputError: ``"<name>: not a PNG, JPEG, WebP or BMP file ..."`` for any other content, whatever
            the file's extension says.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as err:
        raise SegmenterInputError(f"{name}: cannot read the upload ({err.strerror})") from None
    for pillow_name, _, _, matches in ACCEPTED_FORMATS:
        if matches(head):
            return pillow_name
    raise SegmenterInputError(f"{name}: not a {ACCEPTED_NAMES} file (this page takes only those; checked from the "
                              "file's first bytes, not its name)")


def sample_pictures(folder: Optional[str], count: int = SAMPLE_COUNT) -> List[str]:
    """The first ``count`` pictures of ``folder`` by name (the accepted extensions); none when it does not exist."""
    if not folder or not os.path.isdir(folder):
        return []
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(tuple(ACCEPTED_EXTENSIONS)))
    return [os.path.join(folder, name) for name in names[:count]]


class DemoResults:
    """Where the downloadable files of each answer go: one temporary folder, the last ``kept`` answers kept.

    Args:
        folder: the folder (created by the caller, removed with it).
        kept: answers kept on disk.
    """

    def __init__(self, folder: str, kept: int = KEPT_RESULTS):
        self.folder, self.kept = folder, kept
        self.count = 0
        self.written: List[List[str]] = []

    def write(self, segmentation, stem: str) -> List[str]:
        """Args: segmentation: a :class:`encoding_custom.visualisation.segmenter.Segmentation`; stem: the picture's
        name.

        Returns: the index PNG and the legend text written.
        """
        self.count += 1
        prefix = os.path.join(self.folder, "%04d_%s" % (self.count, stem))
        paths = [prefix + "_index.png", prefix + "_legend.txt"]
        segmentation.pictures.index.save(paths[0])
        with open(paths[1], "w", encoding="utf-8") as handle:
            handle.write(segmentation.pictures.table)
        self.written.append(paths)
        while len(self.written) > self.kept:
            for path in self.written.pop(0):
                if os.path.exists(path):
                    os.remove(path)
        return paths


def share_rows(segmentation) -> List[List[str]]:
    """The table of the page: one row per label, the largest share first.

    Returns: rows ``[index, label, colour "#rrggbb", share "12.34 %"]``.
    """
    order = sorted(range(len(segmentation.labels)), key=lambda i: (-segmentation.shares[i], i))
    return [[str(i), segmentation.labels[i], hex_colour(segmentation.pictures.colours[i]),
             "%.2f %%" % (100.0 * segmentation.shares[i])] for i in order]


def build_page(segmenter: ImageSegmenter, results: DemoResults, title: str, default_labels: str,
               samples: Sequence[str]):
    """The Gradio page.

    Args:
        segmenter: does the work of each request.
        results: where the downloads go.
        title: model line shown under the heading.
        default_labels: the label field's starting text.
        samples: sample pictures (may be empty).

    Returns:
        the ``gradio.Blocks``.
    """

    def segment(path, labels_text, progress=gr.Progress()):  # noqa: B008 - Gradio finds its tracker by this default
        progress(0.0, desc="segmenting")
        name = os.path.basename(path) if path else None
        try:
            if path:  # the segmenter says "no image" itself
                picture_format(path, name)
            segmentation = segmenter.segment(path, labels_text, name=name)
        except SegmenterInputError as err:  # the visitor's input: the message says what to change
            raise gr.Error(html.escape(str(err)), duration=None, print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - a failure of ours: one line on the page, the details in the log
            log.exception("segmenting %s failed", name)
            first_line = (str(err).splitlines() or [""])[0]  # MindSpore's errors carry a C++ stack below
            raise gr.Error(html.escape("segmentation failed (%s: %s); the server log has the details"
                                       % (type(err).__name__, first_line)), duration=None,
                           print_exception=False) from None
        progress(1.0, desc="drawing")
        stem = os.path.splitext(name)[0] or "picture"
        notes = "\n".join("- " + html.escape(warning) for warning in segmentation.warnings)
        return (segmentation.pictures.overlay, segmentation.pictures.mask, segmentation.pictures.legend,
                share_rows(segmentation), notes, results.write(segmentation, stem))

    with gr.Blocks(title="LSeg demo", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("# LSeg: segment a picture with any labels\n" + html.escape(title))
        with gr.Row():
            with gr.Column():
                upload = gr.File(label=f"Picture: {ACCEPTED_NAMES} (upload or drop)", file_types=ACCEPTED_EXTENSIONS,
                                 type="filepath", elem_id="upload")
                labels = gr.Textbox(label="Labels, comma-separated", value=default_labels, lines=2,
                                    elem_id="labels")
                run = gr.Button("Segment", variant="primary", elem_id="segment")
                if samples:
                    gr.Examples([[path, default_labels] for path in samples], inputs=[upload, labels],
                                label="Samples")
            with gr.Column():
                with gr.Row():
                    overlay = gr.Image(label="Overlay", format="png", interactive=False, height=320,
                                       buttons=["download", "fullscreen"], elem_id="overlay")
                    mask = gr.Image(label="Mask", format="png", interactive=False, height=320,
                                    buttons=["download", "fullscreen"], elem_id="mask")
                legend = gr.Image(label="Legend", format="png", interactive=False, buttons=["download"],
                                  elem_id="legend")
                shares = gr.Dataframe(headers=["index", "label", "colour", "pixels"], interactive=False,
                                      label="Pixel share per label", elem_id="shares")
                notes = gr.Markdown(elem_id="notes")
                downloads = gr.File(label="Index map (label order as values) and legend", file_count="multiple",
                                    interactive=False, elem_id="downloads")
        run.click(segment, [upload, labels], [overlay, mask, legend, shares, notes, downloads],
                  concurrency_limit=1)
    return page


def load_segmenter(args) -> ImageSegmenter:
    """The network of ``--weights`` on ``--device_target``, wrapped for requests.

    Raises:
        DemoError: no weights, a bad weights file or option (one line naming it).
    """
    weights = args.weights
    if weights is None:
        weights = os.path.relpath(QUICKSTART_WEIGHTS)
        if not os.path.isfile(weights):
            raise DemoError(f"no --weights given and the quick-start model {weights} does not exist: run "
                            "`bash quickstart.sh` first, or pass --weights W.ckpt (ours or an official lang-seg "
                            "checkpoint)")
    if not os.path.isfile(weights):
        raise DemoError(f"--weights: {weights} does not exist")
    for option in ("base_size", "crop_size", "max_side", "max_labels"):
        if getattr(args, option) < 1:
            raise DemoError(f"--{option}: must be >= 1, got {getattr(args, option)}")
    try:
        labels = None if args.labels is None else typed_labels(args.labels, args.max_labels, source="--labels")[0]
        args.device_target = configure_runtime(args.device_target, args.mode)
        loaded = load_lseg(weights, labels)
        if labels is None:
            args.labels = default_labels_text(loaded.labels if args.weights is not None else None, args.max_labels)
            labels = typed_labels(args.labels, args.max_labels, source="--labels")[0]
            loaded.network.set_labels(labels)
        network = loaded.network
    except DeviceUnavailableError as err:
        raise DemoError("--" + str(err)) from None
    except WeightsOptionError as err:
        raise DemoError(err.describe("--" + err.option) + " (convert it first with python -m modules.convert, "
                        "which takes that option)") from None
    except (SegmenterInputError, WeightsError) as err:
        raise DemoError(str(err)) from None
    network.set_train(False)
    args.weights = weights
    return ImageSegmenter(network, base_size=args.base_size, crop_size=args.crop_size, max_side=args.max_side,
                          max_labels=args.max_labels, label_bucket=GRAPH_LABEL_BUCKET if args.mode == "graph" else 1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Args: argv: the arguments (default ``sys.argv[1:]``). Returns: the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        login = login_of(args)  # before the model: a refused exposure costs nothing
        if gr is None:
            raise DemoError("gradio is not installed in this environment: the demo runs on the current stack "
                            "(requirements.txt, `bash run_tests.sh` sets it up in .venv)")
        segmenter = load_segmenter(args)
        warning = exposure_warning(args.host, args.port, login=login is not None)
        if warning:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        samples = sample_pictures(args.samples or QUICKSTART_SAMPLES)
        net_options = segmenter.network.build_options()
        title = (f"Model: {args.weights} ({net_options['backbone']}, {args.device_target}); pictures are shrunk to "
                 f"a long side of {args.max_side} px, at most {args.max_labels} labels.")
        with tempfile.TemporaryDirectory(prefix="lseg-demo-") as folder:
            page = build_page(segmenter, DemoResults(folder), title, args.labels, samples)
            try:
                page.queue(default_concurrency_limit=1).launch(
                    server_name=args.host, server_port=args.port, quiet=True, show_error=True, ssr_mode=False,
                    prevent_thread_lock=True, max_file_size=MAX_UPLOAD, footer_links=[], auth=login,
                    auth_message="LSeg demo: log in with the user name and password of --auth" if login else None,
                    allowed_paths=list(samples))  # the sample files only, not their folder
            except OSError as err:
                raise DemoError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({err})") from None
            print(f"LSeg demo on http://{'[%s]' % args.host if ':' in args.host else args.host}:{args.port}/ "
                  f"(model {args.weights}); Ctrl-C stops it", flush=True)
            try:
                with StopSignals(announce=False) as stop:
                    while page.is_running and stop.signum is None:
                        time.sleep(0.2)
                        stop.rearm()  # a request's MindSpore call may have put its own SIGINT handler back
            finally:
                page.close()
            if stop.signum is not None:
                print(f"{PROG}: {signal.Signals(stop.signum).name} received, stopped", file=sys.stderr)
    except DemoError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
