"""LSegNet: the language-driven semantic segmentation network (ViT + DPT fusion + CLIP text tower).

Parameter layout follows the official checkpoint's top level: ``pretrained`` (ViT + reassembly),
``scratch`` (fusion, ``head1``, optional ``head_block``) and ``clip_pretrained`` (frozen CLIP text tower),
so one MindSpore checkpoint holds everything.

Labels → text features (open_clip's zero-shot classifier, kept beside the model): :class:`LabelFeatureCache` encodes a
label list with the frozen text tower once and keeps the last few lists. The current label list's features also live in
the non-trainable Parameter ``text_features_cache``, which compiled graphs (GRAPH_MODE training, exported MindIR) read
like any weight: a plain Tensor attribute would be frozen into a graph at its first compilation and a new label list
silently ignored (``python -m bench.workarounds text_cache`` shows it). The one rule: features belong to the text
weights they were encoded with, so whatever changes those weights calls :meth:`LSegNet.text_weights_changed` (every
loader in :mod:`modules.weights`, :mod:`modules.convert`, :mod:`modules.pretrained` and :mod:`modules.factory` does);
that is the only invalidation, and the current list is encoded again at once. A new network encodes its labels at once
unless ``encode_labels=False`` (the builders that load text weights next: nothing is encoded with random weights only to
be thrown away).

Per-pixel embeddings without logits: ``net.pixel_embeddings(images)`` -> (B, 512, H/2, W/2), unit L2 norm.

Zero-shot segmentation (lang-seg ``lseg_net_zs.py``): one class per image as the label pair
``['others', name]``. The network's labels are :func:`zero_shot_labels` of the class names and
``net(images, episode_text_features(net.text_features(), class_ids))`` gives (B, 2, H, W); the same network class
serves ``LSegNetZS`` (a ViT, arch_option 0) and ``LSegRNNetZS`` (the ``clip_resnet101`` backbone of
:mod:`modules.resnet`).
"""
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, ops

import clip_ms
from clip_ms.prompts import RAW_LABEL, check_templates, fill
from foundation.labels import ade20k_labels
from modules import tnn

from .backbone import ViTBackbone
from .config import AnyBackboneConfig, ArgumentError, ResNetConfig, get_backbone_config
from .fusion import FeatureFusionBlock
from .head import (
    ACTIVATIONS,
    ARCH_OPTIONS,
    LOGIT_SCALE,
    SpatialRegularizationBlock,
    apply_spatial_regularization,
    l2_normalize,
    pixel_text_logits,
)
from .resnet import Bottleneck, ResNetBackbone

TEXT_CACHE_NAME = "text_features_cache"
LABEL_LISTS_KEPT = 8  # label lists whose features LabelFeatureCache keeps (per-call labels, the demo's requests)
# What a training step recomputes in its backward pass instead of keeping (LSegNet.set_recompute).
# "backbone" is the one level: recomputing the reassembly and fusion blocks too raised the ViT-L step's peak memory
# on both stacks (bench/PERFORMANCE.md, "Activation recomputation").
RECOMPUTE_LEVELS = ("none", "backbone")


# The official zero-shot networks (lang-seg modules/models/lseg_net_zs.py) segment each class as the label pair
# ['others', name]: channel 0 is the background, channel 1 the episode's class.
ZERO_SHOT_BACKGROUND = "others"


def zero_shot_labels(class_names: Sequence[str]) -> List[str]:
    """The label list whose text features :func:`episode_text_features` picks pairs from.

    Args:
        class_names: C class names (a fold's classes, in class-id order).

    Returns:
        ``["others", *class_names]`` (1 + C labels).
    """
    return [ZERO_SHOT_BACKGROUND, *[str(name) for name in class_names]]


def episode_text_features(label_features, class_ids):
    """Per-image label pairs ``['others', names[class_ids[b]]]`` as text features, for ``net(images, features)``.

    Pure MindSpore ops (one gather), so it runs in PyNative and inside a GRAPH_MODE construct (a training cell
    passes ``net.text_features_cache`` of a network whose labels are :func:`zero_shot_labels`).

    Args:
        label_features: Tensor (1 + C, D), the raw text features of ``zero_shot_labels(names)`` (row 0 = 'others').
        class_ids: int32 Tensor (B,), 0-based ids into ``names`` (the official ``class_info``).

    Returns:
        Tensor (B, 2, D): row b = [label_features[0], label_features[1 + class_ids[b]]].
    """
    rows = ops.stack((ops.zeros_like(class_ids), class_ids + 1), axis=1)
    return ops.gather(label_features, rows, 0)


def default_labels() -> List[str]:
    """Returns: the 150 ADE20K class names (official ``get_labels`` rule, via ``foundation.labels``)."""
    return ade20k_labels()


def _text_config_key(text_config) -> Optional[str]:
    """Args: text_config: a TEXT_CONFIGS key or TextConfig. Returns: its TEXT_CONFIGS key, or None if custom."""
    if isinstance(text_config, str):
        return text_config
    for key, cfg in clip_ms.TEXT_CONFIGS.items():
        if cfg == text_config:
            return key
    return None


class LabelFeatureCache:
    """Label list → raw text features (N, D), encoded once per list; the last ``capacity`` lists are kept.

    Args:
        encode: ``list[str] -> Tensor (N, D)`` (the frozen text tower).
        capacity: label lists kept (least recently used dropped first).
    """

    def __init__(self, encode: Callable[[List[str]], Tensor], capacity: int = LABEL_LISTS_KEPT):
        self._encode = encode
        self._capacity = capacity
        self._features: "OrderedDict[Tuple[str, ...], Tensor]" = OrderedDict()

    def get(self, labels: Sequence[str]) -> Tensor:
        """Args: labels: N label strings. Returns: their features, Tensor (N, D) float32."""
        key = tuple(str(label) for label in labels)
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        features = self._encode(list(key))
        self._features[key] = features
        while len(self._features) > self._capacity:
            self._features.popitem(last=False)
        return features

    def clear(self) -> None:
        """Forget every list (the text weights changed)."""
        self._features.clear()


class Scratch(tnn.Module):
    """The official ``scratch`` part: per-level 3x3 convs to ``features``, four fusion blocks and the heads.

    Args:
        level_widths: channels of the four reassembled levels.
        features: fusion width.
        out_dim: pixel-embedding width (``head1`` output).
        arch_option: 0 (no spatial regularization), 1 (bottleneck block) or 2 (depthwise block).
        activation: activation of the spatial regularization block.
    """

    def __init__(self, level_widths: Sequence[int], features: int, out_dim: int, arch_option: int,
                 activation: str):
        super().__init__()
        self.layer1_rn = tnn.Conv2d(level_widths[0], features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer2_rn = tnn.Conv2d(level_widths[1], features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer3_rn = tnn.Conv2d(level_widths[2], features, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer4_rn = tnn.Conv2d(level_widths[3], features, kernel_size=3, stride=1, padding=1, bias=False)
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features)
        self.head1 = tnn.Conv2d(features, out_dim, kernel_size=1)
        self.head_block = SpatialRegularizationBlock(arch_option, activation) if arch_option in (1, 2) else None

    def forward(self, level_1, level_2, level_3, level_4):
        """Args: the four reassembled maps at strides 4, 8, 16, 32.

        Returns: raw pixel embeddings (B, out_dim, H/2, W/2).
        """
        path_4 = self.refinenet4(self.layer4_rn(level_4))
        path_3 = self.refinenet3(path_4, self.layer3_rn(level_3))
        path_2 = self.refinenet2(path_3, self.layer2_rn(level_2))
        path_1 = self.refinenet1(path_2, self.layer1_rn(level_1))
        return self.head1(path_1)


class LSegNet(tnn.Module):
    """LSeg network: ``net(images) -> logits (B, N_labels, H, W)`` for the current label list.

    Args:
        backbone: key of :data:`modules.BACKBONES`, a :class:`BackboneConfig` (ViT, ``pretrained`` =
            :class:`modules.backbone.ViTBackbone`) or a :class:`modules.config.ResNetConfig` (the zero-shot
            ``LSegRNNetZS``, ``pretrained`` = :class:`modules.resnet.ResNetBackbone`); the ``scratch`` fusion and
            head are the same for both.
        labels: label names; default the 150 ADE20K names.
        arch_option: 0 none, 1 bottleneck, 2 depthwise spatial regularization block (ViT backbones only: the
            official LSegRN builds no block and ignores the option, so a ResNet backbone refuses anything but 0).
        block_depth: repetitions of that block (the last without activation); 0 for a ResNet backbone.
        activation: "lrelu", "tanh" or "relu".
        text_config: key of ``clip_ms.TEXT_CONFIGS`` or a ``clip_ms.TextConfig``; its ``embed_dim`` must equal
            the backbone's ``out_dim``.
        text_encoder: optional prebuilt text-encoder Cell (``token_ids (N, L) int32 -> (N, D)``); built from
            ``text_config`` when None.
        tokenizer: optional ``list[str] -> np.ndarray int32 (N, L)``; default ``clip_ms.tokenize``.
        encode_labels: encode the labels now; False leaves it to the first ``net(images)`` or
            :meth:`sync_text_features` (for builders that load the text weights next).
        initialise: draw the ViT's initial values as MindCV does; False for loaders that assign every parameter
            from a file next (see :func:`modules.backbone.build_vit`).
        prompts: the prompt templates each label is encoded through (``clip_ms.prompts``); default the bare label,
            as officially.
    """

    def __init__(self, backbone="clip_vitl16_384", labels: Optional[Sequence[str]] = None, arch_option: int = 0,
                 block_depth: int = 0, activation: str = "lrelu", text_config="ViT-B/32", text_encoder=None,
                 tokenizer=None, encode_labels: bool = True, initialise: bool = True,
                 prompts: Sequence[str] = RAW_LABEL):
        super().__init__()
        cfg: AnyBackboneConfig = get_backbone_config(backbone)
        if isinstance(cfg, ResNetConfig) and (arch_option != 0 or block_depth != 0):
            raise ArgumentError("arch_option" if arch_option != 0 else "block_depth",
                                f"backbone {cfg.name!r} has no spatial regularisation block (the official LSegRN "
                                f"ignores arch_option/block_depth), use 0 (got arch_option {arch_option}, "
                                f"block_depth {block_depth})")
        if arch_option not in ARCH_OPTIONS:
            raise ValueError(f"arch_option must be one of {ARCH_OPTIONS}, got {arch_option!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if block_depth < 0:
            raise ValueError(f"block_depth must be >= 0, got {block_depth}")
        self.cfg = cfg
        self.arch_option = arch_option
        self.block_depth = block_depth
        self.activation_name = activation
        self.logit_scale = LOGIT_SCALE
        injected_encoder = text_encoder
        if text_encoder is None:
            if isinstance(text_config, str):
                if text_config not in clip_ms.TEXT_CONFIGS:
                    raise KeyError(f"unknown text_config {text_config!r}; known: {sorted(clip_ms.TEXT_CONFIGS)}")
                text_config = clip_ms.TEXT_CONFIGS[text_config]
            if text_config.embed_dim != cfg.out_dim:
                raise ValueError(f"text_config embed_dim {text_config.embed_dim} != backbone {cfg.name!r} out_dim "
                                 f"{cfg.out_dim}")
            text_encoder = clip_ms.CLIPTextEncoder(text_config)
        if tokenizer is None:
            tokenizer = clip_ms.tokenize
        self.text_config_name = _text_config_key(text_config) if injected_encoder is None else None
        self._tokenizer = tokenizer

        self.pretrained = ResNetBackbone(cfg) if isinstance(cfg, ResNetConfig) else ViTBackbone(cfg, initialise)
        self.scratch = Scratch(cfg.level_widths, cfg.features, cfg.out_dim, arch_option, activation)
        self.clip_pretrained = text_encoder
        for param in self.text_encoder_params():
            param.requires_grad = False

        self.labels: List[str] = [str(label) for label in (default_labels() if labels is None else labels)]
        if not self.labels:
            raise ValueError("label list is empty")
        self.prompts: List[str] = check_templates(list(prompts), "prompts")
        # Looked up at each encode, so a patched encode_text (tests, instrumentation) is the one used.
        self.label_features = LabelFeatureCache(lambda labels: self.encode_text(labels))
        self._cache_holds: Optional[Tuple[str, ...]] = None  # the labels text_features_cache holds (None: stale)
        self.text_features_cache = Parameter(Tensor(np.zeros((len(self.labels), cfg.out_dim), np.float32)),
                                             name=TEXT_CACHE_NAME, requires_grad=False)
        if encode_labels:
            self.sync_text_features()

    # ------------------------------------------------------------------ text side
    def encode_text(self, labels: Sequence[str]) -> Tensor:
        """Encode labels with the frozen text tower (no gradient, no cache: see :meth:`text_features`).

        Args:
            labels: N label strings.

        Returns:
            Tensor (N, out_dim) float32: raw (not normalised) text features of the bare labels; with prompt
            templates, the normalised mean of each template's normalised features.
        """
        if len(labels) == 0:
            raise ValueError("label list is empty")
        if tuple(self.prompts) == RAW_LABEL:
            return self._encode_texts(labels)
        # CLIP's prompt ensemble: each template's features normalised, averaged, normalised again.
        total = None
        for template in self.prompts:
            features = l2_normalize(self._encode_texts([fill(template, label) for label in labels]), axis=1)
            total = features if total is None else total + features
        return l2_normalize(total, axis=1)

    def _encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Args: texts: N strings. Returns: their raw text features, Tensor (N, out_dim) float32, no gradient."""
        token_ids = Tensor(np.asarray(self._tokenizer(list(texts)), dtype=np.int32))
        return ops.stop_gradient(self.clip_pretrained(token_ids)).astype(ms.float32)

    def text_features(self, labels: Optional[Sequence[str]] = None) -> Tensor:
        """Raw text features of a label list, for ``net(images, features)``.

        Args:
            labels: N label strings; None = the current label list (then the ``text_features_cache`` Parameter).

        Returns:
            Tensor (N, out_dim) float32.
        """
        if labels is None:
            return self.sync_text_features()
        return self.label_features.get(labels)

    def set_prompts(self, templates: Sequence[str]) -> None:
        """Encode every label through these prompt templates from now on (``clip_ms.prompts``; ``["{}"]`` = the
        bare label) and encode the current labels again.

        Args:
            templates: non-empty list of texts holding ``{}``.
        """
        self.prompts = check_templates(list(templates), "prompts")
        self.text_weights_changed()

    def set_labels(self, labels: Sequence[str]) -> None:
        """Make ``labels`` the current label list (what ``net(images)`` segments with) and encode it.

        Args:
            labels: non-empty list of label strings.
        """
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("label list is empty")
        self.labels = labels
        self.sync_text_features()

    def sync_text_features(self) -> Parameter:
        """Bring ``text_features_cache`` up to date with the current labels and text weights.

        ``net(images)`` calls it; call it yourself before the network runs inside a compiled graph that you build
        (a GRAPH_MODE training step, an export) on a network made with ``encode_labels=False``.

        Returns:
            the Parameter (N, out_dim).
        """
        key = tuple(self.labels)
        if self._cache_holds != key:
            features = self.label_features.get(key)
            self.text_features_cache.set_data(Tensor(features.asnumpy()), slice_shape=True)
            self._cache_holds = key
        return self.text_features_cache

    def text_weights_changed(self) -> None:
        """The text tower's weights were changed (loaded, edited): forget every encoded label list and encode the
        current one with the new weights. The only invalidation of the text features."""
        self.label_features.clear()
        self._cache_holds = None
        self.sync_text_features()

    # ------------------------------------------------------------------ image side
    def __call__(self, images, text_features=None):
        """``net(images)``: logits for the current label list; ``net(images, net.text_features(labels))``: for any.

        Brings the current list's features up to date in Python before ``forward`` runs (PyNative or a compiled
        graph).

        Args:
            images: (B, 3, H, W) float32, H and W multiples of 32.
            text_features: None, or Tensor (N, out_dim) raw text features (:meth:`text_features`) shared by the
                batch, or (B, N, out_dim): one label set per image (:func:`episode_text_features`).

        Returns:
            logits (B, N_labels, H, W) float32.
        """
        if text_features is None:
            self.sync_text_features()
            return super().__call__(images)
        if isinstance(text_features, (list, tuple)):
            raise TypeError("net(images, labels) is gone: pass net.text_features(labels)")
        return super().__call__(images, text_features)

    def raw_pixel_embeddings(self, images):
        """Args: images (B, 3, H, W). Returns: un-normalised ``head1`` output (B, out_dim, H/2, W/2)."""
        return self.scratch(*self.pretrained(images))

    def pixel_embeddings(self, images):
        """Per-pixel embeddings without logits (lang-seg issue #33).

        Args:
            images: (B, 3, H, W) float32, H and W multiples of 32.

        Returns:
            (B, out_dim, H/2, W/2) float32, L2-normalised along the channel axis (512 for the CLIP backbones);
            dot them with L2-normalised text features to get cosine similarities.
        """
        return l2_normalize(self.raw_pixel_embeddings(images), axis=1)

    def forward(self, images, text_features=None):
        """Compute logits.

        Args:
            images: (B, 3, H, W).
            text_features: None (use ``text_features_cache``), (N, out_dim) raw text features or (B, N, out_dim)
                per-image ones.

        Returns:
            logits (B, N, H, W).
        """
        if text_features is None:
            text_features = self.text_features_cache
        logits = pixel_text_logits(self.raw_pixel_embeddings(images), text_features, self.logit_scale)
        if self.scratch.head_block is not None:
            logits = apply_spatial_regularization(self.scratch.head_block, logits, self.block_depth)
        return tnn.interpolate(logits, size=(logits.shape[2] * 2, logits.shape[3] * 2), mode="bilinear",
                               align_corners=True)

    # ------------------------------------------------------------------ optimisation groups
    # msadapter (LSEG_NN=msadapter) renames parameters relative to whichever sub-module parameters_and_names() is
    # called on, so groups are always collected from the top level and filtered by prefix.
    def _params_under(self, prefix: str) -> List[Parameter]:
        return [param for name, param in self.parameters_and_names() if name.startswith(prefix)]

    def backbone_params(self) -> List[Parameter]:
        """Returns: trainable parameters of ``pretrained`` (ViT + reassembly, or the ResNet): official base-LR group."""
        return [p for p in self._params_under("pretrained.") if p.requires_grad]

    def head_params(self) -> List[Parameter]:
        """Returns: trainable parameters of ``scratch`` (fusion + heads): official 10x-LR group."""
        return [p for p in self._params_under("scratch.") if p.requires_grad]

    def text_encoder_params(self) -> List[Parameter]:
        """Returns: the frozen CLIP text-tower parameters (``clip_pretrained.*``; in no optimiser group)."""
        return self._params_under("clip_pretrained.")

    # ------------------------------------------------------------------ training memory
    def recompute_cells(self, level: str) -> List[tnn.Module]:
        """The cells :meth:`set_recompute` marks at ``level``.

        Args:
            level: "none"; "backbone": every backbone block (each ViT transformer block up to the last hook, or
                each ResNet bottleneck).

        Returns:
            the cells, in forward order; none of them contains another.

        Raises:
            ValueError: an unknown level.
        """
        if level not in RECOMPUTE_LEVELS:
            raise ValueError(f"recompute level must be one of {RECOMPUTE_LEVELS}, got {level!r}")
        if level == "none":
            return []
        if isinstance(self.pretrained, ResNetBackbone):
            return [cell for _, cell in self.pretrained.cells_and_names() if isinstance(cell, Bottleneck)]
        return list(self.pretrained.model.blocks)[:self.pretrained.hooks[-1] + 1]

    def set_recompute(self, level: str) -> int:
        """Recompute activations in the backward pass instead of keeping them from the forward pass, for the
        memory of a training step (MindSpore's ``Cell.recompute``: a marked cell keeps only its inputs; its output
        stays stored). The gradients are the same; the step does part of its forward twice (bench/PERFORMANCE.md).

        Args:
            level: see :meth:`recompute_cells`.

        Returns:
            the number of cells marked.

        Raises:
            ValueError: an unknown level, or PyNative mode; RuntimeError (MindSpore's): a cell of this network was
                already marked.
        """
        cells = self.recompute_cells(level)
        if cells and ms.get_context("mode") != ms.GRAPH_MODE:
            # PyNative recomputes a cell by running it again whole (2.10; 2.0 refuses): its batch norms would move
            # their running statistics twice per step (measured).
            raise ValueError("recompute works in GRAPH_MODE only (got level %r in PyNative mode)" % level)
        for cell in cells:
            cell.recompute()
            for _, inner in cell.cells_and_names():
                if isinstance(inner, tnn.BatchNorm2d):
                    # A recomputed training batch norm would move its running statistics twice per step; a
                    # primitive's own mark overrides its cell's (measured: exact statistics on both stacks).
                    for primitive in inner._primitives.values():
                        if primitive is not None:
                            primitive.recompute(False)
        return len(cells)

    def build_options(self) -> Dict:
        """Returns: the options that determine the parameter layout (stored in our checkpoints)."""
        return {"backbone": self.cfg.name, "arch_option": self.arch_option, "block_depth": self.block_depth,
                "activation": self.activation_name, "text_config": self.text_config_name}
