"""Image side of LSeg up to the four reassembled feature maps: MindCV ViT walked by hand + DPT reassembly.

Layer classes first (exact GELU, the ViT attention, position-embedding resizing, one reassembly level, the whole
backbone), then the factory :func:`build_vit`.
"""
import functools

import mindspore as ms
from mindcv.models.vit import Attention, VisionTransformer
from mindspore import nn as msnn
from mindspore import ops
from mindspore.ops import constexpr

from foundation.platform import PYNATIVE_BPROP_GETS_FIRST_OUTPUT
from modules import tnn
from modules.kernels import softmax_grad_op

from .config import BackboneConfig

# timm's ViT uses LayerNorm eps 1e-6 and exact (erf) GELU; MindSpore's defaults (1e-7, tanh GELU) differ
# enough to break parity with the official network, so both are pinned here.
VIT_LAYER_NORM_EPS = 1e-6
TIMM_NUM_CLASSES = 1000  # the official checkpoints keep timm's ImageNet head, so we build it for strict loading
_INV_SQRT2 = 0.7071067811865476


class ErfGELU(msnn.Cell):
    """GELU with erf, PyTorch ``nn.GELU()``'s semantics: ``x / 2 * (1 + erf(x / sqrt(2)))``.

    Written out rather than ``nn.GELU(approximate=False)``: on the CPU its kernel takes 34-49 ms on a ViT-L MLP's
    901x4096 activations and 121 ms with its gradient, the erf composition 18 ms and 65 ms on MindSpore 2.10 (38 and
    20 ms on 2.0), equal within 4e-7 (bench/PERFORMANCE.md, "Exact GELU and the pixel-text stage").
    """

    def construct(self, x):
        return x * 0.5 * (1.0 + ops.erf(x * _INV_SQRT2))


def exact_gelu() -> msnn.Cell:
    """Returns: a GELU cell using erf (PyTorch ``nn.GELU()`` semantics), not MindSpore's default tanh approximation."""
    return ErfGELU()


@constexpr
def _runs_op_by_op() -> bool:
    """True in PyNative; evaluated once when a graph compiles, so a compiled graph takes the other branch."""
    return ms.get_context("mode") == ms.PYNATIVE_MODE


class SoftmaxFusedGrad(msnn.Cell):
    """Softmax over the last axis whose gradient is one fused CPU kernel (:func:`modules.kernels.softmax_grad_op`).

    MindSpore runs the softmax's gradient as a reduction, a subtraction and a product over the (B, heads, N, N)
    probabilities: 72 ms a ViT-L layer on the CPU, and the compiled training graph of MindSpore 2.10 keeps their
    transients (0.19 GiB a layer). The kernel takes 7.6 ms and keeps nothing: the compiled ViT-L step takes 15.1 GiB
    instead of 18.8 (bench/PERFORMANCE.md, "The softmax's gradient as a CPU kernel of our own"). Compiled graphs
    only: MindSpore 2.0's PyNative would hand ``bprop`` a stale ``out``
    (:data:`foundation.platform.PYNATIVE_BPROP_GETS_FIRST_OUTPUT`); PyNative runs :class:`AttentionCoreOpByOp`.
    """

    def __init__(self, grad_op):
        super().__init__()
        self.softmax = ops.Softmax(axis=-1)
        self.grad_op = grad_op

    def construct(self, scores):
        return self.softmax(scores)

    def bprop(self, scores, out, dout):
        return (self.grad_op(out, dout),)


class AttentionCore(msnn.Cell):
    """``softmax(q kᵀ) v`` over the heads, differentiated by MindSpore; the softmax's gradient is the fused CPU
    kernel where there is one (:class:`SoftmaxFusedGrad`).

    Args (construct):
        q: (B, heads, N, d), already scaled; k, v: (B, heads, N, d).

    Returns:
        O (B, heads, N, d).
    """

    def __init__(self):
        super().__init__()
        # Primitives held as attributes, so that mixed precision O1 finds and casts every product, the backward's of
        # the subclass too (modules.mixed_precision).
        self.scores = ops.BatchMatMul(transpose_b=True)
        self.weighted = ops.BatchMatMul()
        self.softmax = ops.Softmax(axis=-1)  # the primitive: a bprop's graph cannot parse ops.softmax
        self.softmax_grad = softmax_grad_op()  # None off a CPU, before MindSpore 2.10 or without a compiler
        self.fused_softmax = None if self.softmax_grad is None else SoftmaxFusedGrad(self.softmax_grad)

    def construct(self, q, k, v):
        # The softmax in float32; under O2 (v in float16) its output is cast to v's type for the product, which
        # GRAPH_MODE requires.
        scores = self.scores(q, k).astype(ms.float32)
        probabilities = self.softmax(scores) if self.fused_softmax is None else self.fused_softmax(scores)
        return self.weighted(probabilities.astype(v.dtype), v)


class AttentionCoreOpByOp(AttentionCore):
    """:class:`AttentionCore` with its backward written out, for PyNative.

    The probabilities are recomputed rather than kept. The softmax's gradient ``P ∘ (dP − rowsum(dP ∘ P))`` is the
    fused CPU kernel where there is one; else its row sums are taken as ``rowsum(dO ∘ O)`` over (B, heads, N, d)
    (FlashAttention's identity, since ``dP = dO vᵀ``), avoiding MindSpore's slow last-axis sum over (B, heads, N, N).
    The ViT-L training step in PyNative: median 27.5 → 20.4-21.4 s, peak 11.05 → 10.1 GiB (one step) with the
    identity (bench/PERFORMANCE.md, "The attention's backward").
    """

    def __init__(self):
        super().__init__()
        self.transposed_weighted = ops.BatchMatMul(transpose_a=True)
        # The primitive: in PyNative on MindSpore 2.10, the Tensor's ``-`` with broadcasting (``SubExt``) takes 65 ms
        # on (1, 16, 901, 901) − (1, 16, 901, 1), ``Sub`` 14 ms.
        self.subtract = ops.Sub()

    def bprop(self, q, k, v, out, dout):
        # In float32, as the forward's softmax (under O2 the inputs and outputs arrive in float16).
        q32, k32, v32 = q.astype(ms.float32), k.astype(ms.float32), v.astype(ms.float32)
        probabilities = self.softmax(self.scores(q32, k32))
        grad_out = dout.astype(ms.float32)
        grad_v = self.transposed_weighted(probabilities, grad_out)
        grad_probabilities = self.scores(grad_out, v32)
        if self.softmax_grad is not None:
            grad_scores = self.softmax_grad(probabilities, grad_probabilities)
        else:
            output = self.weighted(probabilities, v32) if PYNATIVE_BPROP_GETS_FIRST_OUTPUT else out.astype(ms.float32)
            row_sums = ops.sum(grad_out * output, dim=-1, keepdim=True)
            grad_scores = probabilities * self.subtract(grad_probabilities, row_sums)
        grad_q = self.weighted(grad_scores, k32)
        grad_k = self.transposed_weighted(grad_scores, q32)
        return grad_q.astype(q.dtype), grad_k.astype(k.dtype), grad_v.astype(v.dtype)


class ViTAttention(Attention):
    """MindCV's ViT attention (same parameters and names, timm's layout) computing the same function faster: q is
    scaled before the product, not the (B, heads, N, N) scores, and :class:`AttentionCore` (compiled) or
    :class:`AttentionCoreOpByOp` (PyNative) does the rest. With a power-of-two scale (head width 64, as in ViT-B and
    ViT-L) the forward is bit-identical to MindCV's.

    :func:`build_vit` gives each block's ``attn`` this class (:func:`as_vit_attention`) after MindCV built it
    (MindCV's ``Block`` builds its attention itself). No attention dropout: LSeg's ViTs have none.
    """

    def construct(self, x):
        batch, tokens, width = x.shape
        qkv = self.transpose(self.reshape(self.qkv(x), (batch, tokens, 3, self.num_heads, self.head_dim)),
                             (2, 0, 3, 1, 4))
        q, k, v = self.unstack(qkv)
        q = self.q_norm(q) * self.scale
        k = self.k_norm(k)
        if _runs_op_by_op():
            out = self.core_op_by_op(q, k, v)
        else:
            out = self.core(q, k, v)
        out = self.reshape(self.transpose(out, (0, 2, 1, 3)), (batch, tokens, width))
        return self.proj_drop(self.proj(out))


def as_vit_attention(attention: Attention) -> ViTAttention:
    """Turn MindCV's ``attention`` into :class:`ViTAttention` in place (its parameters stay where they are)."""
    attention.__class__ = ViTAttention
    attention.core = AttentionCore()
    attention.core_op_by_op = AttentionCoreOpByOp()
    return attention


def check_image_size(images):
    """The fusion blocks double the stride-32 level three times onto the stride-4 one, so sides must divide by 32.

    Args:
        images: (B, 3, H, W).

    Returns:
        (H, W).

    Raises:
        ValueError: H or W is not a multiple of 32.
    """
    height, width = images.shape[2], images.shape[3]
    if height % 32 or width % 32:
        raise ValueError(f"image height and width must be multiples of 32, got {height}x{width}")
    return height, width


def resize_pos_embed(pos_embed, grid_h: int, grid_w: int, num_prefix_tokens: int = 1):
    """Resize a ViT position embedding to a new token grid the way the official LSeg code does.

    The prefix (cls) entries are kept; the square grid part is interpolated bilinearly with
    align_corners=False (PyTorch's default for ``F.interpolate(mode="bilinear")``).

    Args:
        pos_embed: Tensor (1, num_prefix_tokens + G*G, C) with a square trained grid G x G.
        grid_h, grid_w: target grid (H/p, W/p).
        num_prefix_tokens: leading non-grid tokens (1 = cls token).

    Returns:
        Tensor (1, num_prefix_tokens + grid_h*grid_w, C).
    """
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:]
    old = int(round((grid.shape[1]) ** 0.5))
    channels = grid.shape[2]
    if old == grid_h and old == grid_w:
        return pos_embed
    grid = ops.transpose(ops.reshape(grid, (1, old, old, channels)), (0, 3, 1, 2))
    grid = tnn.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
    grid = ops.reshape(ops.transpose(grid, (0, 2, 3, 1)), (1, grid_h * grid_w, channels))
    return ops.concat((prefix, grid), axis=1)


class ReassembleLevel(tnn.Module):
    """One DPT reassembly level with the "project" readout (official ``act_postprocess{i}``).

    tokens (B, 1+N, C) -> concat(patch tokens, cls broadcast) -> Linear(2C->C) -> exact GELU ->
    map (B, C, H/p, W/p) -> 1x1 conv to ``level_width`` -> resampling (transposed conv, strided 3x3
    conv or nothing).

    Args:
        vit_width: ViT token width C.
        level_width: output channels of this level.
        resample: :class:`modules.config.LevelResample`.
    """

    def __init__(self, vit_width: int, level_width: int, resample):
        super().__init__()
        self.readout_project = tnn.Linear(2 * vit_width, vit_width)
        self.readout_act = exact_gelu()
        self.to_level_width = tnn.Conv2d(vit_width, level_width, kernel_size=1, stride=1, padding=0)
        if resample.kind == "up":
            self.resample = tnn.ConvTranspose2d(level_width, level_width, kernel_size=resample.factor,
                                                stride=resample.factor, padding=0, bias=True)
        elif resample.kind == "down":
            self.resample = tnn.Conv2d(level_width, level_width, kernel_size=3, stride=resample.factor, padding=1)
        else:
            self.resample = None

    def forward(self, tokens, grid_h: int, grid_w: int):
        """Args: tokens (B, 1 + grid_h*grid_w, C); grid_h, grid_w: token grid.

        Returns: (B, level_width, grid_h * s, grid_w * s) with s the level's resampling factor (or 1/s).
        """
        patch_tokens = tokens[:, 1:]
        readout = ops.broadcast_to(tokens[:, 0:1], patch_tokens.shape)
        features = self.readout_act(self.readout_project(ops.concat((patch_tokens, readout), axis=-1)))
        batch, _, width = features.shape
        feature_map = ops.reshape(ops.transpose(features, (0, 2, 1)), (batch, width, grid_h, grid_w))
        feature_map = self.to_level_width(feature_map)
        if self.resample is not None:
            feature_map = self.resample(feature_map)
        return feature_map


class ViTBackbone(tnn.Module):
    """The official ``pretrained`` part: a ViT (``model``) and four reassembly levels.

    Attributes:
        model: MindCV ``VisionTransformer`` (timm parameter layout; LayerNorm ``gamma``/``beta``).
        act_postprocess1..4: :class:`ReassembleLevel` (names kept from the official checkpoint).

    Args:
        cfg: :class:`modules.config.BackboneConfig`.
        initialise: see :func:`build_vit`.
    """

    def __init__(self, cfg: BackboneConfig, initialise: bool = True):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.hooks = tuple(cfg.hooks)
        self.model = build_vit(cfg, initialise=initialise)
        self.act_postprocess1 = ReassembleLevel(cfg.width, cfg.level_widths[0], cfg.level_resample[0])
        self.act_postprocess2 = ReassembleLevel(cfg.width, cfg.level_widths[1], cfg.level_resample[1])
        self.act_postprocess3 = ReassembleLevel(cfg.width, cfg.level_widths[2], cfg.level_resample[2])
        self.act_postprocess4 = ReassembleLevel(cfg.width, cfg.level_widths[3], cfg.level_resample[3])

    def hooked_tokens(self, images):
        """Run the ViT token path and return the outputs of the four hooked blocks.

        Args:
            images: (B, 3, H, W) float32, H and W multiples of the patch size.

        Returns:
            tuple of 4 tensors (B, 1 + (H/p)*(W/p), C).
        """
        vit = self.model
        batch, _, height, width = images.shape
        grid_h = height // self.patch_size
        grid_w = width // self.patch_size
        tokens = vit.patch_embed.proj(images)
        tokens = ops.transpose(ops.reshape(tokens, (batch, tokens.shape[1], -1)), (0, 2, 1))
        cls_tokens = ops.broadcast_to(vit.cls_token, (batch, 1, tokens.shape[2])).astype(tokens.dtype)
        tokens = ops.concat((cls_tokens, tokens), axis=1)
        tokens = tokens + resize_pos_embed(vit.pos_embed, grid_h, grid_w)
        tokens = vit.pos_drop(tokens)
        hooked = []
        # Blocks after the last hook (and the final norm) cannot affect LSeg's output, so they are skipped.
        for index in range(self.hooks[-1] + 1):
            tokens = vit.blocks[index](tokens)
            if index in self.hooks:
                hooked.append(tokens)
        return tuple(hooked)

    def forward(self, images):
        """Args: images (B, 3, H, W), H and W multiples of 32.

        Returns: 4 feature maps (B, level_width_i, H/4, W/4), (.., H/8, W/8), (.., H/16, W/16), (.., H/32, W/32).
        """
        height, width = check_image_size(images)
        grid_h = height // self.patch_size
        grid_w = width // self.patch_size
        tokens_1, tokens_2, tokens_3, tokens_4 = self.hooked_tokens(images)
        return (self.act_postprocess1(tokens_1, grid_h, grid_w),
                self.act_postprocess2(tokens_2, grid_h, grid_w),
                self.act_postprocess3(tokens_3, grid_h, grid_w),
                self.act_postprocess4(tokens_4, grid_h, grid_w))


def build_vit(cfg: BackboneConfig, initialise: bool = True) -> VisionTransformer:
    """Build the MindCV ViT matching timm's ``VisionTransformer`` for ``cfg`` (exact GELU, LayerNorm eps 1e-6).

    Args:
        cfg: :class:`modules.config.BackboneConfig`.
        initialise: run MindCV's truncated-normal re-initialisation of every Dense and LayerNorm; False when every
            parameter is assigned from a file next (it is most of a ViT-L build's time).

    Returns:
        mindcv ``VisionTransformer`` with ``depth`` blocks, cls token, pos_embed (1, 1+G*G, C) and a
        1000-class head (unused by LSeg; kept so timm/official checkpoints load strictly).
    """
    vit = VisionTransformer(
        image_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=3, embed_dim=cfg.width,
        depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True,
        act_layer=exact_gelu,
        norm_layer=functools.partial(msnn.LayerNorm, epsilon=VIT_LAYER_NORM_EPS),
        num_classes=TIMM_NUM_CLASSES, weight_init=initialise,
    )
    for block in vit.blocks:
        as_vit_attention(block.attn)
    return vit


__all__ = ["AttentionCore", "AttentionCoreOpByOp", "SoftmaxFusedGrad", "ViTAttention", "as_vit_attention", "ErfGELU",
           "check_image_size", "ViTBackbone", "ReassembleLevel", "resize_pos_embed", "build_vit", "exact_gelu"]
