"""encoding_custom.evaluation.evaluator.segment_image: any photo size, bounded memory, the official single-scale
result."""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.transforms import read_image
from encoding_custom.evaluation.evaluator import MultiScaleEvaluator, resize_argmax, resize_bilinear, segment_image
from modules import LSegNet, tnn
from tests.fixtures.encoding_custom.channel_labeller import ChannelLabeller

STACK_INDEPENDENT = ("the sliding windows, bands and label mapping around the network; the resize kernels and the "
                     "evaluator against the official reference are tested per stack in test_evaluator")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "encoding_custom",
                         "segment_photo_rss.py")


def _photo(path, height, width, seed=0):
    """A smooth random JPEG (blurred blocks, like a photo's large regions); returns the path."""
    rng = np.random.RandomState(seed)
    blocks = rng.randint(0, 256, (height // 96 + 2, width // 96 + 2, 3)).astype(np.uint8)
    Image.fromarray(blocks).resize((width, height), Image.BILINEAR).save(path, quality=90)
    return path


@pytest.mark.parametrize("band_bytes", [1, 4 * 5 * 37 * 7, 1 << 30])
def test_resize_argmax_equals_argmax_of_the_whole_resize(band_bytes):
    rng = np.random.RandomState(1)
    logits = rng.normal(size=(5, 13, 17)).astype(np.float32)
    expected = resize_bilinear(logits[None], 101, 37, "numpy")[0].argmax(axis=0)
    result = resize_argmax(logits, 101, 37, band_bytes=band_bytes, dtype=np.uint8)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)  # same taps, same order of operations: bit-identical


def test_segment_image_runs_crop_sized_forwards_and_returns_the_smallest_index_type():
    net = ChannelLabeller()
    image = np.random.RandomState(0).uniform(-1, 1, (3, 37, 50)).astype(np.float32)
    prediction = segment_image(net, image, ["a", "b", "c"], base_size=64, crop_size=64)
    assert prediction.shape == (37, 50) and prediction.dtype == np.uint8
    assert net.shapes == [(1, 3, 64, 64)]  # long side 50 -> 64 = the crop: one padded forward
    many = segment_image(ChannelLabeller(), image, ["l%d" % i for i in range(300)], base_size=64, crop_size=64)
    assert many.dtype == np.uint16 and many.max() == 299  # k / 10 makes the last label win everywhere
    wide = np.random.RandomState(1).uniform(-1, 1, (3, 40, 300)).astype(np.float32)
    net = ChannelLabeller()
    assert segment_image(net, wide, ["a", "b"], base_size=160, crop_size=64).shape == (40, 300)
    assert set(net.shapes) == {(1, 3, 64, 64)} and len(net.shapes) == 4  # 160 x 21 -> windows at 0, 42, 84, 126


@pytest.mark.parametrize("shape", [(3, 1, 4000), (3, 4000, 1)])
def test_segment_image_labels_a_one_pixel_thin_image(shape):
    """long / short > 2 * base_size: the short side would round to 0 pixels at base_size (IndexError before)."""
    net = ChannelLabeller()
    image = np.zeros(shape, np.float32)
    image[1] = 1.0  # channel 1 wins: label "b"
    prediction = segment_image(net, image, ["a", "b", "c"])
    assert prediction.shape == shape[1:]
    assert np.all(prediction == 1)
    assert set(net.shapes) == {(1, 3, 480, 480)}  # 520 x 1 (or 1 x 520) in two crop-sized windows


@pytest.mark.parametrize("image, labels, message", [
    (np.zeros((37, 50), np.float32), ["a"], r"expected a normalised image \(3, H, W\)"),
    (np.zeros((3, 0, 5), np.float32), ["a"], r"expected a normalised image"),
    (np.zeros((3, 8, 8), np.float32), [], "no labels"),
    (np.zeros((3, 8, 8), np.float32), ["a", "word " * 80], "label 2 'word word.*' is 82 CLIP tokens long"),
])
def test_segment_image_refuses_bad_input_before_any_forward(image, labels, message):
    net = ChannelLabeller()
    with pytest.raises(ValueError, match="^segment_image: " + message):
        segment_image(net, image, labels)
    assert net.shapes == []


def test_a_12_megapixel_photo_equals_downscale_predict_upscale(tmp_path):
    """4032 x 3024 through the tiny model. Reference: the official single-scale evaluator (numpy resizes) on the
    whole image, whose full-size logits fit here because there are only 4 labels. Tolerance: none (the band-wise
    resize does the same float32 operations as the whole-array one)."""
    labels = ["sky", "grass", "road", "other"]
    net = LSegNet("tiny_vit16", labels=labels, text_config="tiny")
    net.set_train(False)
    image = read_image(_photo(str(tmp_path / "phone.jpg"), 3024, 4032))
    shapes = []

    def forward(images):
        shapes.append(images.shape)
        return net(tnn.tensor(images), net.text_features(labels))

    prediction = segment_image(net, image, labels)
    assert prediction.shape == (3024, 4032) and prediction.dtype == np.uint8
    reference = MultiScaleEvaluator(forward, nclass=4, multi_scale=False, base_size=520, crop_size=480,
                                    resize_backend="numpy").predict(image[None])[0]
    assert shapes == [(1, 3, 480, 480)] * 2  # 520 x 390 padded to 520 x 480: two windows, never the photo size
    np.testing.assert_array_equal(prediction, reference)
    # The randomly initialised tiny model may predict one label everywhere: a colour-driven fake network checks
    # the same equality on a map with many regions.
    fake = ChannelLabeller()
    prediction = segment_image(fake, image, labels)
    reference = MultiScaleEvaluator(lambda images: fake(tnn.tensor(images), labels), nclass=4, multi_scale=False,
                                    resize_backend="numpy").predict(image[None])[0]
    assert np.unique(reference).tolist() == [1, 2, 3]  # label 0 (channel 0) always loses to label 3 (+0.3)
    np.testing.assert_array_equal(prediction, reference)


def test_peak_memory_grows_by_at_most_a_few_image_copies(tmp_path):
    """Peak RSS of a child segmenting a 640 x 480 and a 4032 x 3024 photo with 32 labels. Full-size logits would
    add 32 x 12.2 M x 4 B = 1.56 GB; the bound is 3 float32 copies of the photo (3 x 146 MB)."""
    peaks = {}
    for height, width in ((480, 640), (3024, 4032)):
        photo = _photo(str(tmp_path / f"photo_{width}.jpg"), height, width)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run([sys.executable, RSS_CHILD, photo, "32"], capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        out_h, out_w, peak_mib = result.stdout.split()[-3:]
        assert (int(out_h), int(out_w)) == (height, width)
        peaks[width] = float(peak_mib)
    float_image_mib = 3 * 3024 * 4032 * 4 / 2**20
    assert peaks[4032] - peaks[640] <= 3 * float_image_mib, peaks


def test_an_interrupted_test_py_says_what_it_wrote_and_exits_with_the_signal(tmp_path):
    """A test.py process of its own (~4 s), stopped by SIGINT once its first outputs are written."""
    from modules.factory import build_lseg
    from modules.weights import save_lseg_checkpoint
    weights = str(tmp_path / "tiny.ckpt")
    save_lseg_checkpoint(build_lseg("tiny_vit16", ["sky", "grass"], text_config="tiny"), weights)
    photos = []
    for index in range(40):
        photos.append(str(tmp_path / ("photo_%02d.png" % index)))
        Image.new("RGB", (64, 48), (index * 5, 200, 30)).save(photos[-1])
    outdir = tmp_path / "out"
    command = [sys.executable, "test.py", "--weights", weights, "--labels", "sky,grass", "--device_target", "CPU",
               "--mode", "pynative", "--base_size", "64", "--crop_size", "64", "--outdir", str(outdir), "--image"]
    child = subprocess.Popen(command + photos, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=REPO))
    try:
        for line in child.stdout:  # wait for the first complete output, then Ctrl-C
            if line.startswith("wrote "):
                child.send_signal(signal.SIGINT)
                break
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    written = len(os.listdir(outdir))
    assert 0 < written < 40 * 5
    assert re.fullmatch(r"test.py: interrupted by SIG(INT|TERM): %d complete file\(s\) written to %s; the rest was "
                        r"not done" % (written, re.escape(str(outdir))), last), stderr[-2000:]


def test_a_full_disk_in_test_py_is_one_line_and_keeps_the_complete_outputs(tmp_path, monkeypatch, capsys):
    import test as test_script
    from modules.factory import build_lseg
    from modules.weights import save_lseg_checkpoint
    weights = str(tmp_path / "tiny.ckpt")
    save_lseg_checkpoint(build_lseg("tiny_vit16", ["sky", "grass"], text_config="tiny"), weights)
    photos = [str(tmp_path / ("photo_%02d.png" % index)) for index in range(3)]
    for index, photo in enumerate(photos):
        Image.new("RGB", (64, 48), (index * 40, 200, 30)).save(photo)
    outdir = tmp_path / "out"
    save, saved = Image.Image.save, []

    def disk_fills_at_the_seventh_picture(picture, path, *args, **kwargs):
        saved.append(path)
        if len(saved) == 7:  # the second photo's legend picture: half a file, then the disk is full
            with open(path, "wb") as partial:
                partial.write(b"\x89PNG half")
            raise OSError(28, "No space left on device")
        return save(picture, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_fills_at_the_seventh_picture)
    status = test_script.main(["--weights", weights, "--labels", "sky,grass", "--device_target", "CPU",
                               "--base_size", "64", "--crop_size", "64", "--outdir", str(outdir), "--image", *photos])
    assert status == 1
    err = capsys.readouterr().err.strip()
    folder = re.escape(str(outdir))
    assert re.fullmatch(r"test.py: error: no space left in %s while writing photo_01_legend.png \(\d+\.\d MB free\); "
                        r"7 complete file\(s\) written to %s are kept" % (folder, folder), err), err
    assert sorted(os.listdir(outdir)) == sorted(["photo_00_%s" % kind for kind in (
        "mask.png", "overlay.png", "legend.png", "index.png", "legend.txt")] + ["photo_01_mask.png",
                                                                              "photo_01_overlay.png"])
    assert Image.open(outdir / "photo_01_mask.png").size == (64, 48)  # complete, not the partial one
