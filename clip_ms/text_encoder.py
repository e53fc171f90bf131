"""The frozen CLIP text tower (OpenAI's ``encode_text``) as a MindSpore Cell.

Computation, for token ids ``(N, L)``: token embedding + learned positional embedding -> ``layers`` pre-LN residual
blocks (``x + attn(ln_1(x))`` with a causal mask, then ``x + mlp(ln_2(x))``, the MLP being
``c_fc -> QuickGELU -> c_proj``) -> ``ln_final`` -> the feature at the end-of-text position (the argmax of the ids)
-> ``@ text_projection``. No normalisation: callers L2-normalise if they need to.

The tower is frozen: every parameter has ``requires_grad=False`` (so ``trainable_params()`` never lists it and no
optimizer gets it), there is no dropout (train and eval give the same output), and the output is wrapped in
``stop_gradient`` so no gradient flows through it into anything upstream.

Parameter names equal OpenAI's text-tower ``state_dict`` names (``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.0.attn.in_proj_weight``, ..., ``ln_final.weight``, ``text_projection``), so importing OpenAI
weights is a copy without renaming.
"""
import contextlib
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

__all__ = ["TextConfig", "TEXT_CONFIGS", "CLIPTextEncoder", "text_parameter_shapes", "trim_token_ids"]


@dataclass(frozen=True)
class TextConfig:
    """Sizes of a CLIP text tower.

    Attributes:
        vocab_size: number of BPE token ids (49408 for every OpenAI model).
        context_length: maximum sequence length (77).
        width: residual stream width.
        heads: attention heads (``width // 64`` in OpenAI's models).
        layers: residual blocks.
        embed_dim: output feature size (columns of ``text_projection``).
    """

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    heads: int = 8
    layers: int = 12
    embed_dim: int = 512

    def __post_init__(self):
        for field in ("vocab_size", "context_length", "width", "heads", "layers", "embed_dim"):
            if int(getattr(self, field)) <= 0:
                raise ValueError("TextConfig.%s must be positive, got %r" % (field, getattr(self, field)))
        if self.width % self.heads:
            raise ValueError("TextConfig.width (%d) must be divisible by TextConfig.heads (%d)"
                             % (self.width, self.heads))


TEXT_CONFIGS = {
    # Text towers of OpenAI's released CLIP models (from their state_dict shapes).
    "ViT-B/32": TextConfig(width=512, heads=8, layers=12, embed_dim=512),
    "ViT-B/16": TextConfig(width=512, heads=8, layers=12, embed_dim=512),
    "ViT-L/14": TextConfig(width=768, heads=12, layers=12, embed_dim=768),
    # Small tower for tests across the repository: real vocabulary and context, tiny width and depth.
    "tiny": TextConfig(width=32, heads=2, layers=2, embed_dim=64),
}

LAYER_NORM_EPS = 1e-5


def text_parameter_shapes(cfg):
    """OpenAI's text-tower ``state_dict`` names and shapes for a config.

    Args:
        cfg: :class:`TextConfig`.

    Returns:
        dict name -> shape tuple, in the order of OpenAI's ``CLIP.state_dict()`` (visual entries left out).
    """
    width = cfg.width
    shapes = {
        "positional_embedding": (cfg.context_length, width),
        "text_projection": (width, cfg.embed_dim),
    }
    for i in range(cfg.layers):
        block = "transformer.resblocks.%d." % i
        shapes.update({
            block + "attn.in_proj_weight": (3 * width, width),
            block + "attn.in_proj_bias": (3 * width,),
            block + "attn.out_proj.weight": (width, width),
            block + "attn.out_proj.bias": (width,),
            block + "ln_1.weight": (width,),
            block + "ln_1.bias": (width,),
            block + "mlp.c_fc.weight": (4 * width, width),
            block + "mlp.c_fc.bias": (4 * width,),
            block + "mlp.c_proj.weight": (width, 4 * width),
            block + "mlp.c_proj.bias": (width,),
            block + "ln_2.weight": (width,),
            block + "ln_2.bias": (width,),
        })
    shapes["token_embedding.weight"] = (cfg.vocab_size, width)
    shapes["ln_final.weight"] = (width,)
    shapes["ln_final.bias"] = (width,)
    return shapes


def trim_token_ids(token_ids):
    """Drop the trailing columns after the last end-of-text position of the batch.

    With a causal mask, position ``p`` only sees positions ``<= p``, and only the end-of-text position (the argmax of
    each row) is pooled, so the columns after the batch's last end-of-text position cannot change the features. The
    150 ADE20K labels use at most 5 of the 77 positions, so this cuts the encoding time several-fold.

    Args:
        token_ids: int array (N, L) from :func:`clip_ms.tokenize`.

    Returns:
        int32 array (N, L') with ``L' = max(argmax(row)) + 1 <= L`` (a view of the input when already int32).
    """
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2 or token_ids.shape[0] == 0:
        raise ValueError("token_ids must be a non-empty (N, L) array, got shape %s" % (token_ids.shape,))
    keep = int(token_ids.argmax(axis=1).max()) + 1
    return token_ids[:, :keep].astype(np.int32, copy=False)


@contextlib.contextmanager
def _op_by_op():
    """Run the body in PyNative mode, then restore the session's mode (compiled graphs stay cached)."""
    mode = ms.get_context("mode")
    if mode == ms.PYNATIVE_MODE:
        yield
        return
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        yield
    finally:
        ms.set_context(mode=mode)


def _frozen(name, array):
    """A non-trainable float32 Parameter."""
    return Parameter(Tensor(np.asarray(array, dtype=np.float32)), name=name, requires_grad=False)


class _LayerNorm(nn.Cell):
    """LayerNorm over the last axis in float32, eps 1e-5; parameters ``weight``/``bias`` as in torch."""

    def __init__(self, width):
        super().__init__()
        self.weight = _frozen("weight", np.ones(width))
        self.bias = _frozen("bias", np.zeros(width))
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=LAYER_NORM_EPS)

    def construct(self, x):
        """x (..., width) float32 -> same shape."""
        return self.norm(x, self.weight, self.bias)[0]


class _Linear(nn.Cell):
    """``y = x W^T + b`` on the last axis with torch's ``weight`` (out, in) layout."""

    def __init__(self, in_features, out_features, std):
        super().__init__()
        self.weight = _frozen("weight", np.random.normal(0.0, std, (out_features, in_features)))
        self.bias = _frozen("bias", np.zeros(out_features))
        self.matmul = ops.MatMul(transpose_b=True)
        # BiasAdd, not a broadcast "+": 1 ms against 8-9 ms on 750x1536 with MindSpore 2.10's CPU kernels.
        self.bias_add = ops.BiasAdd()

    def construct(self, x):
        """x (..., in) -> (..., out)."""
        lead = x.shape[:-1]
        y = self.bias_add(self.matmul(x.reshape(-1, x.shape[-1]), self.weight), self.bias)
        return y.reshape(lead + (self.weight.shape[0],))


class _Embedding(nn.Cell):
    """Token embedding table ``weight`` (vocab, width)."""

    def __init__(self, vocab_size, width):
        super().__init__()
        self.weight = _frozen("weight", np.random.normal(0.0, 0.02, (vocab_size, width)))

    def construct(self, ids):
        """ids int32 (N, L) -> (N, L, width)."""
        return ops.gather(self.weight, ids, 0)


class _MultiheadAttention(nn.Cell):
    """Self-attention with torch's packed ``in_proj_weight`` (3W, W)/``in_proj_bias`` and ``out_proj``."""

    def __init__(self, width, heads, std_in, std_out):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = float(self.head_dim) ** -0.5
        self.in_proj_weight = _frozen("in_proj_weight", np.random.normal(0.0, std_in, (3 * width, width)))
        self.in_proj_bias = _frozen("in_proj_bias", np.zeros(3 * width))
        self.out_proj = _Linear(width, width, std_out)
        self.matmul_t = ops.MatMul(transpose_b=True)
        self.bias_add = ops.BiasAdd()
        self.scores_matmul = ops.BatchMatMul(transpose_b=True)
        self.values_matmul = ops.BatchMatMul()
        self.softmax = ops.Softmax(axis=-1)

    def construct(self, x, mask):
        """x (N, L, W), additive mask (L, L) -> (N, L, W)."""
        n, length, width = x.shape
        qkv = self.bias_add(self.matmul_t(x.reshape(-1, width), self.in_proj_weight), self.in_proj_bias)
        # Three 4-D transposes of the split take 4.5 ms where one 5-D transpose of the packed qkv takes 12 ms (150
        # labels, 5 positions, MindSpore 2.10 CPU); the scale goes on the (N, heads, L, L) scores, the smaller side.
        query, key, value = (part.reshape(n, length, self.heads, self.head_dim).transpose(0, 2, 1, 3)
                             for part in ops.split(qkv, width, 1))
        weights = self.softmax(self.scores_matmul(query, key) * self.scale + mask)
        out = self.values_matmul(weights, value).transpose(0, 2, 1, 3).reshape(n, length, width)
        return self.out_proj(out)


class _MLP(nn.Cell):
    """``c_proj(QuickGELU(c_fc(x)))`` with QuickGELU(z) = z * sigmoid(1.702 z)."""

    def __init__(self, width, std_fc, std_proj):
        super().__init__()
        self.c_fc = _Linear(width, 4 * width, std_fc)
        self.c_proj = _Linear(4 * width, width, std_proj)
        self.sigmoid = ops.Sigmoid()

    def construct(self, x):
        """x (..., W) -> (..., W)."""
        hidden = self.c_fc(x)
        return self.c_proj(hidden * self.sigmoid(1.702 * hidden))


class _ResidualAttentionBlock(nn.Cell):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width, heads, layers):
        super().__init__()
        # OpenAI's initialisation scales; only relevant for random-weight runs (real use loads weights).
        std_attn = width ** -0.5
        std_proj = std_attn * (2 * layers) ** -0.5
        self.attn = _MultiheadAttention(width, heads, std_attn, std_proj)
        self.ln_1 = _LayerNorm(width)
        self.mlp = _MLP(width, (2 * width) ** -0.5, std_proj)
        self.ln_2 = _LayerNorm(width)

    def construct(self, x, mask):
        """x (N, L, W), mask (L, L) -> (N, L, W)."""
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Cell):
    """``resblocks``: the stack of residual blocks."""

    def __init__(self, width, heads, layers):
        super().__init__()
        self.resblocks = nn.CellList([_ResidualAttentionBlock(width, heads, layers) for _ in range(layers)])

    def construct(self, x, mask):
        """x (N, L, W), mask (L, L) -> (N, L, W)."""
        for block in self.resblocks:
            x = block(x, mask)
        return x


class CLIPTextEncoder(nn.Cell):
    """Frozen CLIP text tower: token ids -> text features, exactly OpenAI's ``encode_text``.

    Parameters are created with OpenAI's random initialisation (seeded by numpy's global RNG); load real weights with
    :func:`clip_ms.convert.load_text_tower` or ``mindspore.load_param_into_net``.

    Args:
        cfg: :class:`TextConfig` or a key of :data:`TEXT_CONFIGS` (e.g. ``"ViT-B/32"``).

    Inputs:
        token_ids: int32 (or int64) tensor (N, L), L <= ``cfg.context_length``, as made by :func:`clip_ms.tokenize`
            (start token, BPE ids, end token 49407 - the largest id, whose position is pooled - then zeros). A call
            from Python runs no column after a row's end token (see :meth:`__call__`); inside a compiled parent graph
            the given length runs as is.

    Outputs:
        float32 tensor (N, embed_dim): not normalised, gradient-free.
    """

    def __init__(self, cfg="ViT-B/32"):
        super().__init__()
        if isinstance(cfg, str):
            if cfg not in TEXT_CONFIGS:
                raise ValueError("unknown text config %r; known: %s" % (cfg, ", ".join(TEXT_CONFIGS)))
            cfg = TEXT_CONFIGS[cfg]
        if not isinstance(cfg, TextConfig):
            raise TypeError("cfg must be a TextConfig or a TEXT_CONFIGS key, got %r" % (cfg,))
        self.cfg = cfg
        width = cfg.width
        self.token_embedding = _Embedding(cfg.vocab_size, width)
        self.positional_embedding = _frozen("positional_embedding",
                                            np.random.normal(0.0, 0.01, (cfg.context_length, width)))
        self.transformer = _Transformer(width, cfg.heads, cfg.layers)
        self.ln_final = _LayerNorm(width)
        self.text_projection = _frozen("text_projection", np.random.normal(0.0, width ** -0.5, (width, cfg.embed_dim)))
        # Additive causal mask: position i attends to positions <= i. A constant, not a parameter (OpenAI's
        # state_dict has no mask either).
        causal = np.triu(np.full((cfg.context_length, cfg.context_length), -np.inf, dtype=np.float32), 1)
        self.causal_mask = Tensor(causal)
        self.argmax = ops.Argmax(axis=-1, output_type=ms.int32)
        self.matmul = ops.MatMul()

    def __call__(self, *args, **kwargs):
        # A call from Python has concrete ids: it runs op by op (PyNative, even in a GRAPH_MODE session) with the rows
        # of each end-token position at their own length, since the columns after a row's end token cannot change
        # its pooled output under the causal mask. The 150 ADE20K names become 133 rows of 3 columns, 16 of 4 and
        # one of 5 instead of 77 each; compiling instead would cost 2.6 s and 0.3 GiB more for each new label set
        # (bench/PERFORMANCE.md, "Label encoding"). Inside a compiled parent graph this method is not used and
        # the given length runs as is.
        if len(args) == 1 and not kwargs:
            host = self._concrete_ids(args[0])
            if host is not None:
                with _op_by_op():
                    return self._encode_by_end_position(host)
        return super().__call__(*args, **kwargs)

    @staticmethod
    def _concrete_ids(token_ids):
        """numpy copy of ``token_ids`` when it is a concrete non-empty 2-D Tensor, else None (left to construct)."""
        if not isinstance(token_ids, Tensor) or token_ids.ndim != 2 or token_ids.shape[0] == 0:
            return None
        try:
            return token_ids.asnumpy()
        except (RuntimeError, TypeError, ValueError):  # not concrete (e.g. traced)
            return None

    def _encode_by_end_position(self, host):
        """Encode the rows of each end-token position ``p`` on columns ``0..p`` only, then restore the row order.

        Args:
            host: int numpy array (N, L) of token ids.

        Returns:
            float32 Tensor (N, embed_dim), row ``i`` the features of ``host[i]``.
        """
        ends = host.argmax(axis=1)
        parts, order = [], []
        for end in np.unique(ends):
            rows = np.flatnonzero(ends == end)
            parts.append(super().__call__(Tensor(host[rows, :end + 1])))
            order.append(rows)
        if len(parts) == 1:
            return parts[0]
        inverse = np.argsort(np.concatenate(order)).astype(np.int32)
        return ops.gather(ops.concat(parts, 0), Tensor(inverse), 0)

    def encode_text(self, token_ids):
        """Encode a batch of token ids given as numpy (or a Tensor); same as calling the cell.

        Calling the cell from Python runs it op by op, and no column after a row's end-of-text token
        (:meth:`__call__`; exact, since later positions are masked out for every pooled position). The 150 ADE20K
        labels need 3 to 5 of the 77 columns.

        Args:
            token_ids: int array or Tensor (N, L).

        Returns:
            float32 Tensor (N, embed_dim).
        """
        if isinstance(token_ids, Tensor):
            token_ids = token_ids.asnumpy()
        token_ids = np.asarray(token_ids)
        if token_ids.ndim != 2 or token_ids.shape[1] > self.cfg.context_length:
            raise ValueError("token_ids must be (N, L) with L <= context_length %d, got shape %s"
                             % (self.cfg.context_length, token_ids.shape))
        return self(Tensor(token_ids.astype(np.int32, copy=False)))

    def construct(self, token_ids):
        """token_ids int (N, L) -> float32 (N, embed_dim)."""
        token_ids = ops.cast(token_ids, ms.int32)
        n, length = token_ids.shape
        x = self.token_embedding(token_ids) + self.positional_embedding[:length]
        x = self.transformer(x, self.causal_mask[:length, :length])
        x = self.ln_final(x)
        # The end-of-text token has the largest id, so its position is the argmax (the first one on ties, like
        # torch). Ids < 2**24 are exact in float32.
        eot = self.argmax(ops.cast(token_ids, ms.float32))
        rows = ops.arange(0, n, dtype=ms.int32) * length + eot
        pooled = ops.gather(x.reshape(n * length, -1), rows, 0)
        return ops.stop_gradient(self.matmul(pooled, self.text_projection))
