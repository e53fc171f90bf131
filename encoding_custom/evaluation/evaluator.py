"""Multi-scale, flipped, sliding-window evaluation as in lang-seg's test (PyTorch-Encoding ``MultiEvalModule``).

For each scale ``s`` the image is resized (bilinear, ``align_corners=True``) so its LONG side is
``ceil(base_size * s)`` and its short side ``int(short * long_new / long + 0.5)``. Then:

* long side <= crop: pad right/bottom to ``crop x crop`` with the normalised value of black
  (``-mean / std`` per channel), run the model (plus its horizontally flipped twin), keep the unpadded part;
* otherwise pad to at least the crop size, slide ``crop x crop`` windows with stride ``int(crop * 2/3)`` from
  the top-left (the last window may stick out and is padded like above), sum window logits and divide by the
  number of windows covering each pixel.

Each scale's logits are resized back to the original size (bilinear, ``align_corners=True``) and **summed** over
scales; a flip adds the un-flipped logits of the flipped image (also a sum, as in the official code).
The model is any callable images → logits; resizes use MindSpore (or numpy, an option) on numpy arrays.
"""
import math
from typing import Callable, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import ops

from clip_ms.labels import label_token_ids
from encoding_custom.datasets.transforms import DEFAULT_MEAN, DEFAULT_STD
from encoding_custom.evaluation.metrics import to_numpy
from foundation.labels import index_dtype
from modules import tnn

# The official multi-scale evaluation of ADE20K (lang-seg's test_lseg.py).
OFFICIAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _linear_taps(out_size: int, in_size: int):
    """Source indices and weights of 1-D linear interpolation with ``align_corners=True``.

    Returns:
        ``(low (out,), high (out,), frac (out,) float32)``: output ``i`` = ``(1 - frac) * x[low] + frac * x[high]``.
    """
    if in_size == 1 or out_size == 1:
        zeros = np.zeros(out_size, dtype=np.int64)
        return zeros, zeros, np.zeros(out_size, dtype=np.float32)
    positions = np.arange(out_size, dtype=np.float64) * (in_size - 1) / (out_size - 1)
    low = np.clip(np.floor(positions).astype(np.int64), 0, in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (positions - low).astype(np.float32)


def resize_bilinear(array: np.ndarray, height: int, width: int, backend: str = "numpy") -> np.ndarray:
    """Bilinear resize with ``align_corners=True`` (torch ``F.interpolate`` semantics).

    Args:
        array: float (B, C, H, W).
        height: output height.
        width: output width.
        backend: ``"numpy"`` (separable two-tap gathers, exact to ~1e-6) or ``"mindspore"``
            (``mindspore.ops.interpolate``, several times faster on 150-class maps, within ~1e-4).

    Returns:
        float32 (B, C, height, width).
    """
    array = np.asarray(array, dtype=np.float32)
    _, _, in_h, in_w = array.shape
    if (in_h, in_w) == (height, width):
        return array.copy()
    if backend == "mindspore":
        return ops.interpolate(ms.Tensor(array), size=(height, width), mode="bilinear",
                               align_corners=True).asnumpy()
    if backend != "numpy":
        raise ValueError(f"resize_bilinear: unknown backend {backend!r} (use 'numpy' or 'mindspore')")
    # Width first: the later row gathers along H copy whole contiguous rows, which is the cheap direction.
    low, high, frac = _linear_taps(width, in_w)
    columns = np.take(array, low, axis=3)
    columns *= 1.0 - frac
    columns += np.take(array, high, axis=3) * frac
    low, high, frac = _linear_taps(height, in_h)
    frac = frac[:, None]
    out = np.take(columns, low, axis=2)
    out *= 1.0 - frac
    out += np.take(columns, high, axis=2) * frac
    return out


def black_pad_values(mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD) -> np.ndarray:
    """Returns: (3,) float64, the normalised value of a black pixel ``-mean / std`` (what padding is filled with)."""
    return -np.asarray(mean, np.float64) / np.asarray(std, np.float64)


def _pad_bottom_right(image: np.ndarray, out_h: int, out_w: int, pad_values: np.ndarray) -> np.ndarray:
    """(B, C, H, W) → float32 (B, C, out_h, out_w) filled with ``pad_values`` per channel; ``image`` if no padding."""
    height, width = image.shape[2:]
    if (out_h, out_w) == (height, width):
        return image
    padded = np.empty(image.shape[:2] + (out_h, out_w), dtype=np.float32)
    padded[:] = np.asarray(pad_values, np.float32).reshape(1, -1, 1, 1)
    padded[:, :, :height, :width] = image
    return padded


def pad_to_crop(image: np.ndarray, crop_size: int, pad_values: np.ndarray) -> np.ndarray:
    """Pad right/bottom so both sides are at least ``crop_size``.

    Args:
        image: float (B, 3, H, W) normalised image.
        crop_size: minimum side.
        pad_values: (3,) per-channel fill (the normalised value of black).

    Returns:
        float32 (B, 3, max(H, crop), max(W, crop)).
    """
    height, width = image.shape[2:]
    return _pad_bottom_right(image, max(height, crop_size), max(width, crop_size), pad_values)


# Float32 bytes of one band of full-size logits in resize_argmax: 150 labels x 4032 columns x 4 B = 2.4 MB a row,
# so 13 rows a band; the band's temporaries (interpolation terms) take about three times this.
RESIZE_BAND_BYTES = 32 * 2**20


def resize_argmax(logits: np.ndarray, height: int, width: int, band_bytes: int = RESIZE_BAND_BYTES,
                  dtype=np.int64) -> np.ndarray:
    """``argmax`` over classes of ``resize_bilinear(logits, height, width, "numpy")``, one band of rows at a time.

    The full-size logits of a 12 MP photo with 150 labels would take 7 GB; a band of rows needs only
    ``band_bytes``. The arithmetic is that of :func:`resize_bilinear`'s numpy backend (width first, then height,
    same taps), applied to the few source rows a band needs, so the result is identical to the whole-array version.

    Args:
        logits: float (C, h, w).
        height, width: output size.
        band_bytes: float32 budget of one band of (C, rows, width) logits.
        dtype: integer type of the result (must hold C - 1).

    Returns:
        ``dtype`` (height, width) class indices.
    """
    logits = np.asarray(logits, dtype=np.float32)
    nclass, in_h, in_w = logits.shape
    row_low, row_high, row_frac = _linear_taps(height, in_h)
    col_low, col_high, col_frac = _linear_taps(width, in_w)
    rows_per_band = max(1, int(band_bytes) // (4 * nclass * width))
    labels = np.empty((height, width), dtype=dtype)
    for top in range(0, height, rows_per_band):
        bottom = min(height, top + rows_per_band)
        low, high, frac = row_low[top:bottom], row_high[top:bottom], row_frac[top:bottom, None]
        first, last = int(low.min()), int(high.max()) + 1  # the source rows this band interpolates between
        source = logits[:, first:last]
        columns = np.take(source, col_low, axis=2)
        columns *= 1.0 - col_frac
        columns += np.take(source, col_high, axis=2) * col_frac
        band = np.take(columns, low - first, axis=1)
        band *= 1.0 - frac
        band += np.take(columns, high - first, axis=1) * frac
        labels[top:bottom] = band.argmax(axis=0)
    return labels


def segment_image(network, image: np.ndarray, labels: Sequence[str], base_size: int = 520, crop_size: int = 480,
                  mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                  band_bytes: int = RESIZE_BAND_BYTES, label_bucket: int = 1) -> np.ndarray:
    """Label map of one image of any size for any label list, in memory that does not grow with the image.

    The official single-scale evaluation (:class:`MultiScaleEvaluator` at scale 1.0, no flip): the image is
    resized so its long side is ``base_size``, segmented in ``crop_size`` windows (sliding with 2/3 stride when
    the long side exceeds the crop), and the small logits are resized back to the image's size and reduced to
    labels band by band (:func:`resize_argmax`). All resizes use the numpy backend: MindSpore's resize of a 12 MP
    photo would copy it into a tensor (and 150 full-size logit maps would not fit at all).

    Args:
        network: LSegNet-like: ``network.text_features(labels)`` and ``network(images (1, 3, h, w) tensor,
            features) -> logits (1, len(labels), h, w)``, in eval mode (see :func:`network_forward`).
        image: float32 (3, H, W) normalised with ``mean``/``std``, any H, W >= 1.
        labels: the label list of this call (checked against CLIP's 77-token context before any forward).
        base_size: long side the image is resized to (``--base_size``, 520 in lang-seg).
        crop_size: network input side (``--crop_size``, 480).
        mean, std: normalisation of ``image`` (for the padding value).
        band_bytes: memory budget of one band of full-size logits.
        label_bucket: see :func:`network_forward`.

    Returns:
        (H, W) indices into ``labels``, of the smallest unsigned type that holds them
        (:func:`foundation.labels.index_dtype`: uint8 up to 256 labels).

    Raises:
        ValueError: ``image`` is not (3, H, W), no labels, a label longer than CLIP's context, or a size <= 0.
    """
    labels = list(labels)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise ValueError(f"segment_image: expected a normalised image (3, H, W), got shape {image.shape}")
    if not labels:
        raise ValueError("segment_image: no labels given")
    if base_size < 1 or crop_size < 1:
        raise ValueError(f"segment_image: base_size ({base_size}) and crop_size ({crop_size}) must be >= 1")
    label_token_ids(labels, source="segment_image")
    evaluator = MultiScaleEvaluator(network_forward(network, labels, label_bucket), nclass=len(labels),
                                    multi_scale=False, base_size=base_size, crop_size=crop_size, mean=mean, std=std,
                                    resize_backend="numpy")
    small = evaluator.scale_logits(image[None], 1.0)[0]
    return resize_argmax(small, image.shape[1], image.shape[2], band_bytes, index_dtype(len(labels)))


class MultiScaleEvaluator:
    """Official multi-scale + flip + sliding-window inference over any ``images → logits`` callable.

    Args:
        forward_fn: callable taking a float32 numpy array (B, 3, h, w) of normalised images and returning logits
            (B, C, h, w) as numpy or a MindSpore tensor (see :func:`network_forward` to wrap a network).
        nclass: number of output channels C (the label list's length); None = take it from the first output.
        scales: scales of ``base_size`` for the long side.
        flip: also run the horizontally flipped image.
        base_size: long side at scale 1.0 (520 in lang-seg).
        crop_size: model input side (480 in lang-seg).
        mean: normalisation mean used for the images (for the padding value).
        std: normalisation std used for the images.
        multi_scale: False = single scale 1.0 without flip (overrides ``scales`` and ``flip``).
        stride_rate: window stride as a fraction of the crop (2/3 officially).
        resize_backend: ``"mindspore"`` (default, fast) or ``"numpy"`` for the bilinear resizes (see
            :func:`resize_bilinear`).
    """

    def __init__(self, forward_fn: Callable, nclass: Optional[int] = None, scales: Sequence[float] = OFFICIAL_SCALES,
                 flip: bool = True, base_size: int = 520, crop_size: int = 480,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD, multi_scale: bool = True,
                 stride_rate: float = 2.0 / 3.0, resize_backend: str = "mindspore"):
        self.forward_fn = forward_fn
        self.nclass = nclass
        self.scales = tuple(scales) if multi_scale else (1.0,)
        self.flip = flip if multi_scale else False
        self.base_size = base_size
        self.crop_size = crop_size
        self.pad_values = black_pad_values(mean, std)
        self.stride = int(crop_size * stride_rate)
        self.resize_backend = resize_backend
        if self.stride <= 0:
            raise ValueError(f"MultiScaleEvaluator: stride_rate {stride_rate} gives a stride of {self.stride} for "
                             f"crop_size {crop_size}")

    def _infer(self, image: np.ndarray) -> np.ndarray:
        """Logits of one padded input, plus those of its flip (flipped back) when enabled."""
        logits = self._forward(image)
        if self.flip:
            # Not in place: the arrays may share memory with the model's output tensors.
            logits = logits + self._forward(image[:, :, :, ::-1].copy())[:, :, :, ::-1]
        return logits

    def _forward(self, image: np.ndarray) -> np.ndarray:
        logits = np.asarray(to_numpy(self.forward_fn(np.ascontiguousarray(image, dtype=np.float32))),
                            dtype=np.float32)  # no copy when the model already returns float32
        if self.nclass is None:
            self.nclass = logits.shape[1]
        expected = (image.shape[0], self.nclass, image.shape[2], image.shape[3])
        if logits.shape != expected:
            raise ValueError(f"MultiScaleEvaluator: forward_fn returned logits of shape {logits.shape} for an "
                             f"input of shape {image.shape}; expected {expected} (nclass = number of labels)")
        return logits

    def _sliding(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        """Window-averaged logits of a resized image larger than the crop; (B, C, height, width)."""
        crop = self.crop_size
        padded = pad_to_crop(image, crop, self.pad_values)
        _, _, padded_h, padded_w = padded.shape
        rows = int(math.ceil(1.0 * (padded_h - crop) / self.stride)) + 1
        cols = int(math.ceil(1.0 * (padded_w - crop) / self.stride)) + 1
        total = None
        count = np.zeros((1, 1, padded_h, padded_w), dtype=np.float32)
        for row in range(rows):
            for col in range(cols):
                h0, w0 = row * self.stride, col * self.stride
                h1, w1 = min(h0 + crop, padded_h), min(w0 + crop, padded_w)
                window = pad_to_crop(padded[:, :, h0:h1, w0:w1], crop, self.pad_values)
                logits = self._infer(window)
                if total is None:
                    total = np.zeros((image.shape[0], logits.shape[1], padded_h, padded_w), dtype=np.float32)
                total[:, :, h0:h1, w0:w1] += logits[:, :, :h1 - h0, :w1 - w0]
                count[:, :, h0:h1, w0:w1] += 1
        total /= count  # in place: at scale 1.75 these maps hold 150 x 910 x 683 floats
        return total[:, :, :height, :width]

    def scale_logits(self, images: np.ndarray, scale: float) -> np.ndarray:
        """Logits of one scale at the resized size (before they are resized back to the image's size).

        Args:
            images: float32 (B, 3, H, W) normalised images.
            scale: fraction of ``base_size`` for the long side.

        Returns:
            float32 (B, C, out_h, out_w): long side ``ceil(base_size * scale)``, short side scaled and rounded
            (at least 1); the flip is included when enabled.
        """
        _, _, height, width = images.shape
        long_size = int(math.ceil(self.base_size * scale))
        # The official rounding, but at least 1 pixel: a 1 x 4000 image at long side 520 rounds to 0 rows.
        if height > width:
            out_h, out_w = long_size, max(1, int(1.0 * width * long_size / height + 0.5))
        else:
            out_w, out_h = long_size, max(1, int(1.0 * height * long_size / width + 0.5))
        resized = resize_bilinear(images, out_h, out_w, self.resize_backend)
        if long_size <= self.crop_size:
            return self._infer(pad_to_crop(resized, self.crop_size, self.pad_values))[:, :, :out_h, :out_w]
        return self._sliding(resized, out_h, out_w)

    def __call__(self, images) -> np.ndarray:
        """Evaluate a batch of same-sized images.

        Args:
            images: float (B, 3, H, W) normalised images (numpy or tensor), any H, W.

        Returns:
            float32 numpy (B, C, H, W) logits summed over scales and flips; ``argmax(axis=1)`` gives labels.
        """
        images = np.asarray(to_numpy(images), dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"MultiScaleEvaluator: expected images (B, 3, H, W), got shape {images.shape}")
        _, _, height, width = images.shape
        scores = None
        for scale in self.scales:
            logits = resize_bilinear(self.scale_logits(images, scale), height, width, self.resize_backend)
            if scores is None:
                scores = np.array(logits, dtype=np.float32, copy=True)
            else:
                scores += logits
        return scores

    def predict(self, images) -> np.ndarray:
        """Class labels: argmax of :meth:`__call__` over classes.

        Args:
            images: float (B, 3, H, W) normalised images.

        Returns:
            int64 numpy (B, H, W).
        """
        return self(images).argmax(axis=1)


def network_forward(network, labels: Optional[Sequence[str]] = None,
                    label_bucket: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a network (``modules.tnn`` Module or MindSpore Cell) as a ``forward_fn`` (numpy in, numpy out).

    Args:
        network: callable on a tensor (B, 3, h, w) returning logits (B, C, h, w); put it in eval mode first.
        labels: None = call ``network(images)`` (its current label list); else
            ``network(images, network.text_features(labels))`` (an LSegNet with a label list of this call only,
            C = ``len(labels)``; the features are looked up once, here).
        label_bucket: with ``labels``, give the network a multiple of this many labels, the first label's features
            repeated, and return the logits of ``labels`` only: a GRAPH_MODE network compiles one graph per label
            count, so label lists of 1-8 labels share one graph at 8. Exact: each label's logits depend on its own
            features, and the spatial regularization block's maximum over labels does not change with a copy.

    Returns:
        function numpy float32 (B, 3, h, w) → numpy float32 (B, C, h, w).
    """
    features = None if labels is None else network.text_features(list(labels))
    count = 0 if labels is None else len(labels)
    if count % label_bucket:
        copies = label_bucket - count % label_bucket
        features = ops.concat((features, ops.broadcast_to(features[:1], (copies, features.shape[1]))), axis=0)

    def forward(images: np.ndarray) -> np.ndarray:
        inputs = tnn.tensor(images)
        output = network(inputs) if features is None else network(inputs, features)
        output = to_numpy(output.detach() if hasattr(output, "detach") else output)
        return output[:, :count] if count and output.shape[1] != count else output

    return forward
