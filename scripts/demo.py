"""A local web page for segmenting a picture with any labels: ``python -m scripts.demo --weights W.ckpt``.

    python -m scripts.demo                                  # the quick-start model (bash quickstart.sh makes it)
    python -m scripts.demo --weights demo_e200.ckpt         # official lang-seg weights, or any of our checkpoints
    python -m scripts.demo --host 0.0.0.0 --port 8080       # reachable from other machines (no authentication!)

Upload or drop a picture, type a comma-separated label list and press "Segment": the page shows the overlay, the
colour mask, the legend and each label's share of the pixels, with the index map (label order as pixel values) and
the legend text to download. The prediction is ``test.py --image``'s (:mod:`encoding_custom.segmenter`). The model is
loaded once at start; a label list's text features are reused while it stays among the recent lists.

Built on Gradio rather than Streamlit (which the official ``lseg_app.py`` uses): a click calls one Python function
while the model stays loaded in the process (Streamlit re-runs the whole script on every interaction and needs a
resource cache to keep a model), uploads, pictures, downloads and error messages are ready-made components with no
front-end code, it is what most ML demos use (Hugging Face Spaces), and it runs offline on 127.0.0.1.

Exit status: 0 stopped with Ctrl-C; 2 a bad option or weights file, or a port in use (one line naming it).
"""
import argparse
import html
import logging
import os
import signal
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from encoding_custom.engine import DeviceUnavailableError, StopSignals, configure_runtime
from encoding_custom.engine.runtime import DEVICE_TARGETS
from encoding_custom.segmenter import (
    DEFAULT_MAX_LABELS,
    DEFAULT_MAX_SIDE,
    ImageSegmenter,
    SegmenterInputError,
    typed_labels,
)
from encoding_custom.visualize import hex_colour
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
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Results kept on disk for download; older ones are deleted as new ones come.
KEPT_RESULTS = 32
MAX_UPLOAD = "64mb"

log = logging.getLogger("scripts.demo")


class DemoError(Exception):
    """A bad option or start-up failure; main() prints it as one ``python -m scripts.demo: error:`` line."""


def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m scripts.demo``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None,
                        help="our .ckpt (training or modules.weights) or an official lang-seg .ckpt "
                             "(default: the quick-start model checkpoints/tiny_synthetic/best.ckpt)")
    parser.add_argument("--labels", default=QUICKSTART_LABELS, help="the label list the page starts with")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--device_target", default="auto", choices=DEVICE_TARGETS, help="device to run on")
    parser.add_argument("--base_size", type=int, default=520, help="long side the picture is resized to")
    parser.add_argument("--crop_size", type=int, default=480, help="network input side (sliding windows)")
    parser.add_argument("--max_side", type=int, default=DEFAULT_MAX_SIDE,
                        help="uploads with a longer side are shrunk to it first")
    parser.add_argument("--max_labels", type=int, default=DEFAULT_MAX_LABELS, help="most labels per request")
    parser.add_argument("--samples", default=None,
                        help="folder of sample pictures shown under the upload (default: the quick-start "
                             "validation pictures, when they exist)")
    return parser


def exposure_warning(host: str, port: int) -> Optional[str]:
    """Args: host, port: where the page listens. Returns: the warning for an address other machines reach, or None."""
    if host in LOCAL_HOSTS:
        return None
    return (f"listening on {host}: anyone who can reach this machine on port {port} can use the demo and its "
            "model (there is no authentication)")


def sample_pictures(folder: Optional[str], count: int = SAMPLE_COUNT) -> List[str]:
    """The first ``count`` pictures of ``folder`` by name (jpg/jpeg/png/bmp/webp); none when it does not exist."""
    if not folder or not os.path.isdir(folder):
        return []
    names = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".webp")))
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
        """Args: segmentation: a :class:`encoding_custom.segmenter.Segmentation`; stem: the picture's name.

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
                upload = gr.File(label="Picture (upload or drop)", file_types=["image"], type="filepath",
                                 elem_id="upload")
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
        labels, _ = typed_labels(args.labels, args.max_labels, source="--labels")
        args.device_target = configure_runtime(args.device_target, "pynative")
        network = load_lseg(weights, labels).network
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
                          max_labels=args.max_labels)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Args: argv: the arguments (default ``sys.argv[1:]``). Returns: the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        if gr is None:
            raise DemoError("gradio is not installed in this environment: the demo runs on the current stack "
                            "(requirements.txt, `bash run_tests.sh` sets it up in .venv)")
        segmenter = load_segmenter(args)
        warning = exposure_warning(args.host, args.port)
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
                    prevent_thread_lock=True, max_file_size=MAX_UPLOAD, footer_links=[],
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
