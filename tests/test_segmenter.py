"""encoding_custom.visualisation.segmenter (the web demo's core): test.py --image's prediction for an upload and typed
labels, bounded picture size, and one-line refusals of what a page visitor may send."""
import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.transforms import read_image
from encoding_custom.evaluation.evaluator import segment_image
from encoding_custom.visualisation.render import render_segmentation
from encoding_custom.visualisation.segmenter import ImageSegmenter, SegmenterInputError, read_bounded_rgb, typed_labels
from modules.factory import build_lseg
from tests.fixtures.encoding_custom.channel_labeller import ChannelLabeller

STACK_INDEPENDENT = ("input checks and rendering around segment_image; the prediction itself is tested per stack in "
                     "test_evaluator")


def picture(path, height, width, seed=0):
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 256, (height, width, 3)).astype(np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("text, message", [
    (None, "labels: no labels given"),
    ("  \n ", "labels: no labels given"),
    ("cat,,dog", "labels: line 1, field 2: empty label"),
    (",".join("l%d" % i for i in range(5)), "labels: 5 labels; this demo takes at most 4"),
    ("cat, " + "a " * 80, "labels: label 2 'a a a"),
])
def test_typed_labels_refuses_with_one_line_naming_the_problem(text, message):
    with pytest.raises(SegmenterInputError) as caught:
        typed_labels(text, max_labels=4)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_typed_labels_never_reads_a_file(tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_text("leaked,label\n")
    monkeypatch.chdir(tmp_path)
    assert typed_labels("secret.txt") == (["secret.txt"], [])
    labels, warnings = typed_labels("cat, Cat ,dog")
    assert labels == ["cat", "Cat", "dog"]
    assert warnings == ["labels: label 2 'Cat' is the same text as label 1 'cat' for CLIP; label 2 can never be "
                        "predicted (ties go to the first)"]


def test_read_bounded_rgb_shrinks_the_long_side_and_names_the_upload(tmp_path):
    path = picture(tmp_path / "wide.png", 30, 120)
    rgb, size = read_bounded_rgb(path, max_side=60)
    assert rgb.shape == (15, 60, 3) and rgb.dtype == np.uint8 and size == (120, 30)
    same, _ = read_bounded_rgb(path, max_side=120)
    np.testing.assert_array_equal(same, np.asarray(Image.open(path)))
    broken = tmp_path / "0123abcd" / "holiday.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(SegmenterInputError, match=r"^wide.png: 120x30 is 0 megapixels; this demo takes at most 0$"):
        read_bounded_rgb(path, name="wide.png", max_pixels=3599)  # refused from the header, before decoding
    with pytest.raises(SegmenterInputError) as caught:
        read_bounded_rgb(str(broken), name="holiday.png")
    assert str(caught.value).startswith("cannot read holiday.png as an image") and "0123abcd" not in str(caught.value)


def test_segment_equals_test_py_image_path_and_renders_the_pictures(tmp_path):
    path = picture(tmp_path / "photo.png", 40, 56)
    net = ChannelLabeller()
    segmenter = ImageSegmenter(net, base_size=64, crop_size=64)
    result = segmenter.segment(path, "red, green, blue")
    expected = segment_image(ChannelLabeller(), read_image(path), ["red", "green", "blue"], base_size=64,
                             crop_size=64)
    np.testing.assert_array_equal(result.prediction, expected)
    assert result.labels == ["red", "green", "blue"] and net.calls == [["red", "green", "blue"]]
    assert result.original_size == (56, 40) and result.warnings == []
    np.testing.assert_allclose(result.shares, np.bincount(expected.ravel(), minlength=3) / expected.size)
    reference = render_segmentation(np.asarray(Image.open(path)), result.labels, expected)
    np.testing.assert_array_equal(np.asarray(result.pictures.overlay), np.asarray(reference.overlay))
    np.testing.assert_array_equal(np.asarray(result.pictures.index), expected)
    assert result.pictures.table == reference.table


def test_segment_shrinks_a_large_upload_and_says_so(tmp_path):
    path = picture(tmp_path / "big.png", 90, 200)
    result = ImageSegmenter(ChannelLabeller(), base_size=64, crop_size=64, max_side=100).segment(path, "a,b")
    assert result.prediction.shape == (45, 100) and result.pictures.mask.size == (100, 45)
    assert result.warnings == ["big.png: 200x90 shrunk to 100x45 (long side at most 100)"]


def test_segment_refuses_before_any_forward(tmp_path):
    net = ChannelLabeller()
    segmenter = ImageSegmenter(net, base_size=64, crop_size=64, max_labels=3)
    with pytest.raises(SegmenterInputError, match="no image: upload or drop a picture first"):
        segmenter.segment(None, "a,b")
    with pytest.raises(SegmenterInputError, match="labels: 4 labels; this demo takes at most 3"):
        segmenter.segment(picture(tmp_path / "ok.png", 8, 8), "a,b,c,d")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(SegmenterInputError, match="cannot read notes.png as an image"):
        segmenter.segment(str(text), "a,b")
    assert net.calls == [] and net.shapes == []


def test_segment_with_a_real_network_reuses_the_label_features(tmp_path, monkeypatch):
    net = build_lseg("tiny_vit16", ["x"], text_config="tiny")
    net.set_train(False)
    encoded = []
    original = net.encode_text
    monkeypatch.setattr(net, "encode_text", lambda labels: encoded.append(list(labels)) or original(labels))
    segmenter = ImageSegmenter(net, base_size=64, crop_size=64)
    path = picture(tmp_path / "p.png", 48, 64)
    first = segmenter.segment(path, "cat, grass")
    second = segmenter.segment(path, "cat, grass")
    np.testing.assert_array_equal(first.prediction, second.prediction)
    assert encoded == [["cat", "grass"]]


@pytest.mark.both_stacks  # the compiled forward is MindSpore's, per stack
def test_graph_mode_with_labels_padded_to_a_bucket_gives_the_pynative_mask(tmp_path):
    """The demo's graph mode: label lists padded to 8 (the first label's features repeated) share one compiled
    forward; the spatial regularization block (a maximum over labels) sees the padding too."""
    import mindspore as ms

    from encoding_custom.evaluation.evaluator import network_forward
    net = build_lseg("tiny_vit16", ["sky"], text_config="tiny", arch_option=1, block_depth=2)
    net.set_train(False)
    images = np.random.RandomState(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    labels = ["sky", "grass", "tree", "road", "car"]
    exact = network_forward(net, labels)(images)
    padded = network_forward(net, labels, label_bucket=8)(images)
    assert padded.shape == exact.shape == (1, 5, 64, 64)
    np.testing.assert_allclose(padded, exact, rtol=1e-5, atol=1e-5)
    path = picture(tmp_path / "photo.png", 80, 112)
    texts = ["sky, grass, tree, road, car", "water, person, building"]
    eager = [ImageSegmenter(net, base_size=64, crop_size=64).segment(path, text).prediction for text in texts]
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        compiled_logits = network_forward(net, labels, label_bucket=8)(images)
        segmenter = ImageSegmenter(net, base_size=64, crop_size=64, label_bucket=8)
        compiled = [segmenter.segment(path, text).prediction for text in texts]
    finally:
        ms.set_context(mode=previous)
    np.testing.assert_allclose(compiled_logits, exact, rtol=1e-5, atol=1e-5)
    assert np.ptp(exact, axis=(2, 3)).min() > 1e-3  # logits that vary over the image
    for eager_mask, compiled_mask in zip(eager, compiled):
        assert np.array_equal(eager_mask, compiled_mask)
