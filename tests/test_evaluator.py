"""encoding_custom.evaluation.evaluator: official multi-scale / flip / sliding-window evaluation."""
import os

import numpy as np
import pytest

from encoding_custom.evaluation.evaluator import (
    MultiScaleEvaluator,
    network_forward,
    resize_bilinear,
)

pytestmark = pytest.mark.both_stacks

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "encoding_custom", "evaluator_reference.npz")


def conv3x3(images, weight, bias):
    """numpy 3x3 convolution with zero padding 1: (B, 3, H, W) → (B, C, H, W)."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = images.shape[2:]
    out = np.zeros((images.shape[0], weight.shape[0], height, width), np.float64)
    for dy in range(3):
        for dx in range(3):
            patch = padded[:, :, dy:dy + height, dx:dx + width]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, dy, dx])
    return (out + bias[None, :, None, None]).astype(np.float32)


class CountingModel:
    """A fake conv model that records the input shapes it sees."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias
        self.input_shapes = []

    def __call__(self, images):
        self.input_shapes.append(images.shape)
        return conv3x3(images, self.weight, self.bias)


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


@pytest.mark.parametrize("backend", ["mindspore", "numpy"])
@pytest.mark.parametrize("case", ["wide_multiscale_flip", "tall_two_scales"])
def test_matches_official_multi_eval_module(reference, case, backend):
    base_size, crop_size, flip, *scales = reference[case + "/config"].tolist()
    model = CountingModel(reference["weight"], reference["bias"])
    evaluator = MultiScaleEvaluator(model, nclass=5, scales=scales, flip=bool(flip), base_size=int(base_size),
                                    crop_size=int(crop_size), resize_backend=backend)
    scores = evaluator(reference[case + "/image"])
    np.testing.assert_allclose(scores, reference[case + "/scores"], rtol=1e-4, atol=1e-4)
    # Every model call saw exactly one crop-sized input.
    assert {shape[2:] for shape in model.input_shapes} == {(int(crop_size), int(crop_size))}


def test_single_scale_no_flip_equals_a_plain_forward_when_the_image_fits():
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    image = rng.uniform(-1, 1, size=(2, 3, 48, 48)).astype(np.float32)
    model = CountingModel(weight, bias)
    evaluator = MultiScaleEvaluator(model, nclass=4, base_size=48, crop_size=48, multi_scale=False)
    np.testing.assert_allclose(evaluator(image), conv3x3(image, weight, bias), rtol=1e-5, atol=1e-5)
    assert model.input_shapes == [(2, 3, 48, 48)]


def test_padding_uses_the_normalised_black_and_is_cropped_away():
    # A pointwise model is unaffected by the padding, so the result must equal a plain forward on 30x44.
    rng = np.random.default_rng(2)
    weight = np.zeros((3, 3, 3, 3), np.float32)
    weight[:, :, 1, 1] = rng.normal(size=(3, 3))
    image = rng.uniform(-1, 1, size=(1, 3, 30, 44)).astype(np.float32)
    seen = []

    def model(batch):
        seen.append(batch.copy())
        return conv3x3(batch, weight, np.zeros(3, np.float32))

    evaluator = MultiScaleEvaluator(model, scales=[1.0], flip=False, base_size=44, crop_size=64,
                                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    np.testing.assert_allclose(evaluator(image), conv3x3(image, weight, np.zeros(3, np.float32)), atol=1e-5)
    padded = seen[0]
    assert padded.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(padded[0, :, 40, 50], [-2.0, -1.0, -0.5])  # -mean / std per channel
    np.testing.assert_array_equal(padded[:, :, :30, :44], image)


def test_large_image_uses_sliding_windows_with_two_thirds_stride():
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=(2, 3, 3, 3)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    weight = (weight + weight[:, :, :, ::-1]) / 2  # mirror-symmetric kernel: flipping commutes with the model
    image = rng.uniform(-1, 1, size=(1, 3, 50, 100)).astype(np.float32)
    model = CountingModel(weight, bias)
    evaluator = MultiScaleEvaluator(model, nclass=2, scales=[1.0], flip=True, base_size=100, crop_size=48)
    scores = evaluator(image)
    assert scores.shape == (1, 2, 50, 100)
    # stride int(48 * 2/3) = 32: rows ceil((50-48)/32)+1 = 2, cols ceil((100-48)/32)+1 = 3; x2 for the flip.
    assert len(model.input_shapes) == 2 * 3 * 2
    # Away from window borders the result is twice the plain forward (logits of the image + of its flip):
    # inside the first window only (x 1..30), and where windows 0-48 and 32-80 overlap (x 33..46, averaged) ...
    plain = conv3x3(image, weight, bias)
    for x0, x1 in ((1, 31), (33, 47)):
        np.testing.assert_allclose(scores[:, :, 1:31, x0:x1], 2 * plain[:, :, 1:31, x0:x1], rtol=1e-4, atol=1e-4)
    # ... but not at the right border of the first window (x = 47), which that window padded.
    assert not np.allclose(scores[:, :, 5:30, 47], 2 * plain[:, :, 5:30, 47], atol=1e-3)


def test_wrong_number_of_classes_is_reported():
    evaluator = MultiScaleEvaluator(lambda x: np.zeros((1, 3) + x.shape[2:], np.float32), nclass=150,
                                    base_size=32, crop_size=32)
    with pytest.raises(ValueError, match="nclass"):
        evaluator(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.parametrize("backend", ["mindspore", "numpy"])
def test_resize_bilinear_align_corners_matches_hand_values(backend):
    array = np.array([[[[0.0, 3.0]]]], np.float32)
    np.testing.assert_allclose(resize_bilinear(array, 1, 4, backend), [[[[0.0, 1.0, 2.0, 3.0]]]], atol=1e-6)
    grid = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    np.testing.assert_allclose(resize_bilinear(grid, 2, 2, backend), [[[[0, 2], [6, 8]]]], atol=1e-6)
    np.testing.assert_allclose(resize_bilinear(grid, 5, 4, backend)[0, 0, 2], [3, 11 / 3, 13 / 3, 5], atol=1e-5)


def test_network_forward_wraps_a_torch_style_module():
    from modules import tnn

    net = tnn.Conv2d(3, 4, 1)
    net.eval()
    evaluator = MultiScaleEvaluator(network_forward(net), scales=[1.0], flip=True, base_size=24, crop_size=24)
    image = np.random.default_rng(4).uniform(-1, 1, size=(1, 3, 16, 24)).astype(np.float32)
    scores = evaluator(image)
    plain = net(tnn.tensor(image)).asnumpy()
    assert evaluator.nclass == 4
    np.testing.assert_allclose(scores, 2 * plain, rtol=1e-4, atol=1e-4)


def test_network_forward_looks_the_label_features_up_once_and_passes_them_only_when_given():
    class LabelledNetwork:
        def __init__(self):
            self.calls, self.lookups = [], []

        def text_features(self, labels):
            self.lookups.append(list(labels))
            return "features of %s" % ",".join(labels)

        def __call__(self, images, text_features=None):
            self.calls.append(text_features)
            count = 2 if text_features is None else len(self.lookups[-1])
            return np.zeros((images.shape[0], count) + tuple(images.shape[2:]), np.float32)

    network = LabelledNetwork()
    image = np.zeros((1, 3, 4, 5), np.float32)
    assert network_forward(network)(image).shape == (1, 2, 4, 5)
    forward = network_forward(network, ("cat", "dog", "sky"))
    assert forward(image).shape == (1, 3, 4, 5) and forward(image).shape == (1, 3, 4, 5)
    assert network.lookups == [["cat", "dog", "sky"]]
    assert network.calls == [None, "features of cat,dog,sky", "features of cat,dog,sky"]


@pytest.mark.parametrize("height, width, expected", [(1, 4000, (1, 520)), (4000, 1, (520, 1)), (3, 4000, (1, 520)),
                                                     (390, 520, (390, 520))])
def test_the_short_side_of_a_very_thin_image_keeps_at_least_one_pixel(height, width, expected):
    """The official rounding int(short * 520 / long + 0.5) gives 0 rows for 1 x 4000 (and 3 x 4000); 390 x 520
    keeps its official size."""
    evaluator = MultiScaleEvaluator(lambda x: x[:, :2], nclass=2, multi_scale=False, base_size=520, crop_size=480,
                                    resize_backend="numpy")
    logits = evaluator.scale_logits(np.ones((1, 3, height, width), np.float32), 1.0)
    assert logits.shape == (1, 2) + expected
    np.testing.assert_allclose(logits, 1.0)  # windows averaged over the image, padding cropped away


def test_testval_evaluation_scores_a_perfect_model_as_perfect(tmp_path):
    """test.py's testval path: the evaluator's predict over full images through engine.evaluate."""
    from encoding_custom.datasets.segmentation import SegmentationSet
    from encoding_custom.datasets.synthetic import write_synthetic_ade20k
    from encoding_custom.engine import evaluate

    write_synthetic_ade20k(str(tmp_path), 1, 3, seed=0, size=(36, 36))  # 36x36: no resize, no pad
    dataset = SegmentationSet(str(tmp_path), "val", mode="testval")
    truth = {}
    for index in range(len(dataset)):
        image, mask = dataset[index]
        truth[image.tobytes()] = mask

    def oracle(images):
        """Logits peaking at the true class of each pixel (looked up by the exact input image)."""
        mask = truth[images[0].tobytes()]
        logits = np.zeros((1, 150) + mask.shape, np.float32)
        rows, cols = np.nonzero(mask >= 0)
        logits[0, mask[rows, cols], rows, cols] = 1.0
        return logits

    evaluator = MultiScaleEvaluator(oracle, nclass=150, multi_scale=False, base_size=36, crop_size=36)
    metric = evaluate(evaluator.predict, dataset, 150, batch_size=1)
    assert metric.get()[0] == pytest.approx(1.0)
    assert metric.miou_present() == pytest.approx(1.0)


@pytest.mark.slow
def test_full_size_official_configuration():
    """150 classes, 512x683 image, scales 0.5..1.75 of 520, 480 crops, flip: window count and backends agree."""
    rng = np.random.default_rng(6)
    weight = rng.normal(size=(150, 3)).astype(np.float32)
    calls = []

    def pointwise(images):
        calls.append(images.shape)
        return np.ascontiguousarray(np.einsum("oc,bchw->bohw", weight, images, optimize=True))

    image = rng.uniform(-1, 1, size=(1, 3, 512, 683)).astype(np.float32)
    fast = MultiScaleEvaluator(pointwise, nclass=150)(image)
    # Long sides 260, 390 fit one crop; 520 -> 480x520 padded: 1x2 windows; 650 -> 487x650: 2x2;
    # 780 -> 585x780: 2x2; 910 -> 682x910: 2x3. 18 windows, each with its flip.
    assert len(calls) == 36 and set(shape[2:] for shape in calls) == {(480, 480)}
    exact = MultiScaleEvaluator(pointwise, nclass=150, resize_backend="numpy")(image)
    assert fast.shape == (1, 150, 512, 683)
    # Summed logits reach ~50; MindSpore's float32 resize drifts by a few 1e-3 on a handful of pixels.
    np.testing.assert_allclose(fast, exact, rtol=1e-3, atol=1e-2)
    assert np.mean(fast.argmax(1) == exact.argmax(1)) > 0.9999

