"""LSeg head: pixel-text correlation logits and the optional spatial regularization blocks."""
import numpy as np
from mindspore import ops

from modules import tnn

# The official code builds logit_scale as exp(log(1/0.07)) in float32 and never trains it.
LOGIT_SCALE = float(np.exp(np.float32(np.log(1 / 0.07)), dtype=np.float32))

ARCH_OPTIONS = (0, 1, 2)  # 0: no block, 1: bottleneck block, 2: depthwise block
ACTIVATIONS = ("relu", "lrelu", "tanh")
# Pixel-text products as primitives, so the same code compiles in GRAPH_MODE on MindSpore 2.0 and 2.10.
_BATCH_MATMUL = ops.BatchMatMul()


def l2_normalize(features, axis: int = -1):
    """Divide by the L2 norm along ``axis`` (no epsilon, as the official code).

    Args:
        features: Tensor (..., D).
        axis: axis to normalise.

    Returns:
        Tensor of the same shape with unit norm along ``axis``.
    """
    norm = ops.sqrt(ops.sum(features * features, dim=axis, keepdim=True))
    return features / norm


def pixel_text_logits(pixel_embeddings, text_features, logit_scale: float = LOGIT_SCALE):
    """Cosine-similarity logits between every pixel embedding and every label embedding.

    Works in PyNative and inside GRAPH_MODE graphs: the only branch is on ``text_features``' rank, which is known
    when the graph is compiled.

    Args:
        pixel_embeddings: (B, D, h, w) raw (un-normalised) pixel embeddings.
        text_features: (N, D) raw text embeddings shared by the batch, or (B, N, D): one label set per image
            (the zero-shot episodes' ``['others', name_b]`` pairs, :func:`modules.lseg.episode_text_features`).
        logit_scale: multiplier (official constant 1/0.07).

    Returns:
        logits (B, N, h, w) float32.
    """
    batch, dim, height, width = pixel_embeddings.shape
    pixels = ops.reshape(pixel_embeddings, (batch, dim, height * width))
    # Dividing the (B, N, hw) products by the pixel norms equals normalising the (B, D, hw) pixels first, without
    # the NHWC transposes and the pass over the D-times larger tensor: 3.5x faster at ViT-L's 240x240x512
    # (bench/PERFORMANCE.md, "Exact GELU and the pixel-text stage"). The norms are a product with ones: the CPU's
    # sum over a middle axis is slower.
    squared_norms = _BATCH_MATMUL(ops.ones((batch, 1, dim), pixels.dtype), pixels * pixels)
    # Under O2/O3 mixed precision the pixels arrive in float16 while the cached text features stay float32.
    text = (l2_normalize(text_features) * logit_scale).astype(pixels.dtype)
    if len(text_features.shape) == 2:
        text = ops.broadcast_to(text, (batch,) + tuple(text.shape))
    logits = _BATCH_MATMUL(text, pixels) / ops.sqrt(squared_norms)
    return ops.reshape(logits, (batch, -1, height, width))


def make_activation(name: str) -> tnn.Module:
    """Args: name: "relu", "lrelu" (slope 0.01) or "tanh". Returns: the activation module.

    Raises: ValueError naming the bad ``activation`` option.
    """
    if name == "relu":
        return tnn.ReLU()
    if name == "lrelu":
        return tnn.LeakyReLU()
    if name == "tanh":
        return tnn.Tanh()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class SharedLabelConv(tnn.Module):
    """A single 1->1 channel 3x3 conv (with bias) applied independently to each label map.

    Args: none beyond the fixed kernel (3x3, stride 1, padding 1), as in the official ``depthwise_conv``.
    """

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 1, kernel_size=3, stride=1, padding=1)

    def forward(self, logits):
        """Args: logits (B, N, h, w). Returns: (B, N, h, w)."""
        batch, labels, height, width = logits.shape
        out = self.conv(ops.reshape(logits, (batch * labels, 1, height, width)))
        return ops.reshape(out, (batch, labels, height, width))


class SpatialRegularizationBlock(tnn.Module):
    """Official ``bottleneck_block`` (arch_option 1) / ``depthwise_block`` (arch_option 2).

    arch 1: out = conv(x) + max_over_labels(x), then activation; arch 2: out = conv(x), then activation.
    The conv is one shared :class:`SharedLabelConv`.

    Args:
        arch_option: 1 or 2.
        activation: "relu", "lrelu" or "tanh".
    """

    def __init__(self, arch_option: int, activation: str):
        super().__init__()
        if arch_option not in (1, 2):
            raise ValueError(f"SpatialRegularizationBlock needs arch_option 1 or 2, got {arch_option!r}")
        self.add_label_max = arch_option == 1
        self.label_conv = SharedLabelConv()
        self.activation = make_activation(activation)

    def forward(self, logits, apply_activation: bool = True):
        """Args: logits (B, N, h, w); apply_activation: False for the last repetition.

        Returns: (B, N, h, w).
        """
        out = self.label_conv(logits)
        if self.add_label_max:
            out = out + ops.max(logits, axis=1, keepdims=True)[0]
        if apply_activation:
            out = self.activation(out)
        return out


def apply_spatial_regularization(block, logits, block_depth: int):
    """Run ``block`` ``block_depth`` times (at least once), the last time without activation (official order).

    Args:
        block: :class:`SpatialRegularizationBlock`.
        logits: (B, N, h, w).
        block_depth: repetitions; 0 and 1 both mean a single activation-free pass, as in the official loop.

    Returns:
        (B, N, h, w).
    """
    for _ in range(block_depth - 1):
        logits = block(logits)
    return block(logits, False)


__all__ = ["LOGIT_SCALE", "ARCH_OPTIONS", "ACTIVATIONS", "l2_normalize", "pixel_text_logits", "make_activation",
           "SharedLabelConv", "SpatialRegularizationBlock", "apply_spatial_regularization"]
