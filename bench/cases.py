"""The benchmark cases (issue 7) and their quick / full configurations.

A *variant* is the unit that runs in one fresh process: e.g. ``forward/graph/cached`` is case ``forward`` in
GRAPH_MODE with the text-embedding cache. Each variant's function receives a :class:`CaseContext` and returns a
dict with at least ``timing`` (see :func:`bench.timing.measure`); everything else it returns is reported under
``metrics``.

Imports: what does not load MindSpore is imported at the top. MindSpore and our modules that import it
(``mindspore``, ``mindcv``, ``modules``, ``encoding_custom.engine`` / ``.evaluator`` / ``.losses``) are imported in
the functions that use them, because ``python -m bench`` imports this module for the registry, and its process
lives for the whole run next to the variants' children. Measured on both stacks (2026-12-01, ``import bench.run`` in
a fresh interpreter): importing them too takes the parent from 36 to 412 MiB resident and from 0.13 to 1.44 s
(2.10), from 32 to 479 MiB and from 0.10 to 1.48 s (2.0), against 46 / 42 MiB with the top-level imports below:
memory the ViT-L training variant lacks (killed by the OOM killer at 23.1 GiB on this 23.5 GiB machine); and it sets
environment variables that every child would inherit before its own MindSpore starts (``ONEDNN_MAX_CPU_ISA``,
``MS_DEV_ENABLE_MS_ADAPTER``, ``MS_DEV_CLOSE_VERSION_CHECK``, ``HCCL_CONNECT_TIMEOUT``, ``LD_LIBRARY_PATH``), the
``MS_DEV_`` ones reported in the JSON's ``thread_env`` as if the user had set them. Keeping them local costs a child
nothing: it imports them anyway, and ``bench.case`` has loaded MindSpore (``modules.tnn``) before a variant runs.

Cases:
    matmul   reference: float32 matmul throughput of MindSpore on this machine (the practical peak for GFLOP/s).
    forward  1. LSegNet eval forward (ViT-L/16, 480x480, 150 ADE20K labels): text encoded in the call vs cached.
    train    2. one training step (forward, backward, Momentum update), batch 1, text cached vs encoded in the step.
    data     3. training-crop throughput from a synthetic ADE20K-layout set with ADE20K-like image sizes.
    eval     4. multi-scale + flip evaluation of one 512x683 image, and single scale.
    text     5. tokenising and encoding the 150 ADE20K labels.
    export   6. MindIR export of the eval network (labels baked in, or text features as an input), its file size,
                load time and the loaded graph's forward (issue 16).
"""
import csv
import dataclasses
import fnmatch
import functools
import glob
import os
import shutil
import signal
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

import clip_ms  # loads its MindSpore parts on first use of them (clip_ms/__init__.py), so importing it here is free
from bench.flops import LSegFlopConfig, TextFlopConfig, lseg_forward_flops, text_encoder_flops
from bench.timing import measure
from encoding_custom.datasets import ADE20KSegmentation
from encoding_custom.labels import ade20k_labels
from encoding_custom.synthetic import write_synthetic_ade20k
from encoding_custom.transforms import read_image


@dataclasses.dataclass
class CaseContext:
    """What a variant function gets.

    Args:
        variant: the variant's full name, e.g. ``"forward/graph/cached"``.
        quick: True for the tiny smoke configuration.
        device_target: MindSpore device target ("CPU", "GPU", "Ascend").
        mode: "pynative", "graph" or None (variant does not use a MindSpore mode).
        warmup: untimed calls before timing.
        repeats: timed calls.
        params: the variant's configuration for this run (quick or full).
        workdir: a private temporary directory, removed after the variant.
    """

    variant: str
    quick: bool
    device_target: str
    mode: Optional[str]
    warmup: int
    repeats: int
    params: Dict[str, object]
    workdir: str


@dataclasses.dataclass(frozen=True)
class Variant:
    """One benchmark variant.

    Args:
        name: "case/..." unique name used on the command line.
        case: case key (first component of the name).
        title: one-line description for the table.
        func: ``func(CaseContext) -> dict`` doing the measurement.
        mode: "pynative", "graph" or None.
        full: parameters of the full run (may hold ``warmup``/``repeats``/``timeout_s``).
        quick: parameters of the ``--quick`` run (same keys).
        in_quick: part of the default ``--quick`` set. The smoke run covers every case and every code path
            (PyNative and GRAPH_MODE, text cached and encoded per call) but not every combination, because each
            GRAPH_MODE variant pays a 10-30 s compilation even for the tiny network.
    """

    name: str
    case: str
    title: str
    func: Callable[[CaseContext], Dict[str, object]]
    mode: Optional[str]
    full: Dict[str, object]
    quick: Dict[str, object]
    in_quick: bool = True

    def params(self, quick: bool) -> Dict[str, object]:
        """Args: quick (bool). Returns: a copy of the quick or full parameter dict."""
        return dict(self.quick if quick else self.full)


# ------------------------------------------------------------------------------------------------ helpers
def _sync(value) -> None:
    """Block until a MindSpore tensor (or a tuple of them) is computed.

    PyNative returns before the kernels finish, so a timing must wait for the result; ``asnumpy()`` of one element
    (a slice, which depends on the whole output) waits without also timing a host copy of the full tensor
    (measured here: +30 ms for a 52 MB attention map, +~100 ms for the 138 MB logits of case 1).
    """
    if isinstance(value, (tuple, list)):
        for item in value:
            _sync(item)
    elif hasattr(value, "asnumpy"):
        if len(value.shape) == 0:
            value.asnumpy()
        else:
            value[tuple([0] * (len(value.shape) - 1) + [slice(0, 1)])].asnumpy()


def _images(batch: int, height: int, width: int, seed: int = 0):
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms

    rng = np.random.RandomState(seed)
    return ms.Tensor(rng.uniform(-1, 1, size=(batch, 3, height, width)).astype(np.float32))


def _labels(n_labels: int) -> List[str]:
    names = list(ade20k_labels())
    if n_labels > len(names):
        raise ValueError(f"n_labels={n_labels} but encoding_custom.labels.ade20k_labels() has {len(names)} names")
    return names[:n_labels]


def _build_net(params: Dict[str, object]):
    """Build an eval-mode LSegNet with random weights and the label list of ``params``."""
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    from modules import LSegNet

    labels = _labels(int(params["n_labels"]))
    start = time.perf_counter()
    net = LSegNet(backbone=params["backbone"], labels=labels, text_config=params["text_config"])
    if not getattr(net, "labels", None):
        net.set_labels(labels)
    build_s = time.perf_counter() - start
    return net, labels, build_s


def _param_count(net) -> Dict[str, int]:
    total = trainable = 0
    for param in net.get_parameters():
        size = int(np.prod(param.shape)) if param.shape else 1
        total += size
        trainable += size if param.requires_grad else 0
    return {"params_total": total, "params_trainable": trainable}


def label_context_length(labels: List[str]) -> int:
    """Token positions the port's text encoder actually runs for ``labels``.

    ``clip_ms.CLIPTextEncoder.__call__`` drops the columns after the batch's last end-of-text token (exact under
    the causal mask; see ``clip_ms.trim_token_ids``): 5 of the 77 positions for the 150 ADE20K names. The official
    code always runs all 77.

    Args:
        labels: label strings.

    Returns:
        int context length.
    """
    return int(clip_ms.trim_token_ids(np.asarray(clip_ms.tokenize(labels))).shape[1])


def flop_config_from_params(params: Dict[str, object], with_text: bool, text_context: Optional[int] = None):
    """The :class:`bench.flops.LSegFlopConfig` of a forward variant, read from ``modules.BACKBONES`` and
    ``clip_ms.TEXT_CONFIGS`` so that the count follows the code being measured.

    Args:
        params: a forward variant's parameters (backbone, text_config, image_hw, n_labels).
        with_text: count the text encoder (text encoded in the call) or not (cached).
        text_context: token positions the text encoder runs (None: the config's full context, 77).

    Returns:
        LSegFlopConfig.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    from modules import BACKBONES

    cfg = BACKBONES[params["backbone"]]
    text = None
    if with_text:
        tcfg = clip_ms.TEXT_CONFIGS[params["text_config"]]
        text = TextFlopConfig(width=tcfg.width, layers=tcfg.layers,
                              context_length=text_context or tcfg.context_length, embed_dim=tcfg.embed_dim)
    return LSegFlopConfig(image_hw=tuple(params["image_hw"]), patch_size=cfg.patch_size, vit_width=cfg.width,
                          vit_mlp_ratio=cfg.mlp_ratio, hooks=tuple(cfg.hooks),
                          reassemble_channels=tuple(cfg.level_widths), features=cfg.features,
                          embed_dim=cfg.out_dim, n_labels=int(params["n_labels"]), text=text)


# ------------------------------------------------------------------------------------------------ cases
def case_matmul(ctx: CaseContext) -> Dict[str, object]:
    """Reference throughput: float32 (n x n) @ (n x n) with MindSpore's MatMul (and numpy's BLAS for comparison).

    Returns: timing of the MindSpore product and ``gflops_per_s`` (median), ``numpy_gflops_per_s``.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindspore import ops

    n = int(ctx.params["n"])
    rng = np.random.RandomState(0)
    a_np = rng.randn(n, n).astype(np.float32)
    b_np = rng.randn(n, n).astype(np.float32)
    a, b = ms.Tensor(a_np), ms.Tensor(b_np)
    timing = measure(lambda: _sync(ops.matmul(a, b)), ctx.warmup, ctx.repeats)
    numpy_timing = measure(lambda: a_np @ b_np, 1, ctx.repeats)
    flop = 2.0 * n**3
    return {"timing": timing, "n": n, "flop": flop,
            "gflops_per_s": flop / timing["median_s"] / 1e9,
            "numpy_gflops_per_s": flop / numpy_timing["median_s"] / 1e9}


def case_forward(ctx: CaseContext) -> Dict[str, object]:
    """Case 1: eval forward of one image; ``params["text"]`` is "in_call" (tokenise + encode the labels in every
    call, as the official forward does) or "cached" (the network's text-embedding cache).

    Returns: timing, build time, parameter counts, analytic FLOP and achieved GFLOP/s, output shape.
    """
    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(False)
    height, width = params["image_hw"]
    images = _images(int(params.get("batch", 1)), height, width)
    text_in_call = params["text"] == "in_call"

    shapes = []

    def run_once():
        # The official forward tokenises and encodes the labels on every call; the cached path reuses them.
        logits = net(images, net.encode_text(labels)) if text_in_call else net(images)
        _sync(logits)
        shapes.append(list(logits.shape))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    context = label_context_length(labels)
    flops = lseg_forward_flops(flop_config_from_params(params, with_text=text_in_call, text_context=context))
    official = lseg_forward_flops(flop_config_from_params(params, with_text=text_in_call))
    result = {"timing": timing, "build_s": build_s, "flop": flops["total"], "flop_by_stage": flops,
              "text_context_length": context if text_in_call else None,
              "official_flop": official["total"],  # the official code runs the text tower on all 77 positions
              "gflops_per_s": flops["total"] / timing["median_s"] / 1e9}
    result.update(_param_count(net))
    result["output_shape"] = shapes[-1]
    return result


def case_zero_shot_forward(ctx: CaseContext) -> Dict[str, object]:
    """Case 1z: one zero-shot episode forward (``test.py --dataset pascal``): ``params["batch"]`` images against their
    label pairs ``['others', class]`` (PASCAL-5i's names, features looked up once, as ``evaluate_episodes`` does).

    Returns: timing, build time, parameter counts, output shape (B, 2, H, W).
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms

    from encoding_custom.fewshot import benchmark_labels
    from modules import LSegNet
    from modules.lseg import episode_text_features, zero_shot_labels

    params = ctx.params
    names = benchmark_labels("pascal")
    start = time.perf_counter()
    net = LSegNet(backbone=params["backbone"], labels=zero_shot_labels(names), text_config=params["text_config"])
    build_s = time.perf_counter() - start
    net.set_train(False)
    height, width = params["image_hw"]
    batch = int(params.get("batch", 1))
    images = _images(batch, height, width)
    pairs = episode_text_features(net.text_features(zero_shot_labels(names)),
                                  ms.Tensor(np.arange(batch, dtype=np.int32) % len(names)))
    shapes = []

    def run_once():
        logits = net(images, pairs)
        _sync(logits)
        shapes.append(list(logits.shape))

    result = {"timing": measure(run_once, ctx.warmup, ctx.repeats), "build_s": build_s}
    result.update(_param_count(net))
    result["output_shape"] = shapes[-1]
    return result


def case_forward_stages(ctx: CaseContext) -> Dict[str, object]:
    """Profile of case 1: the forward split into stages, each run on its own and synchronised, so the table says
    where the time goes. Stages follow the official data flow through the network's public sub-modules:
    ``tokenize``, ``text_encoder``, ``text_cache_check`` (the cache validity check every cached call pays),
    ``vit`` (patch embedding + blocks up to the last hook), ``one_vit_block``, ``reassemble`` (4 levels),
    ``fusion`` (layerN_rn + 4 fusion blocks), ``head1``, ``pixel_text`` (normalise + similarity) and
    ``upsample`` (final x2 bilinear), plus ``whole_cached`` (``net(images)``) for reference.

    Returns: ``stages``: name -> timing summary, and ``stage_flop`` / ``stage_gflops_per_s`` where counted.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindspore import ops

    from modules.head import pixel_text_logits

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(False)
    height, width = params["image_hw"]
    images = _images(1, height, width)
    backbone = net.pretrained
    grid_h, grid_w = height // backbone.patch_size, width // backbone.patch_size
    token_ids = ms.Tensor(np.asarray(clip_ms.tokenize(labels), dtype=np.int32))
    hooked = backbone.hooked_tokens(images)
    levels = (backbone.act_postprocess1(hooked[0], grid_h, grid_w),
              backbone.act_postprocess2(hooked[1], grid_h, grid_w),
              backbone.act_postprocess3(hooked[2], grid_h, grid_w),
              backbone.act_postprocess4(hooked[3], grid_h, grid_w))
    scratch = net.scratch

    def fusion():
        path_4 = scratch.refinenet4(scratch.layer4_rn(levels[3]))
        path_3 = scratch.refinenet3(path_4, scratch.layer3_rn(levels[2]))
        path_2 = scratch.refinenet2(path_3, scratch.layer2_rn(levels[1]))
        return scratch.refinenet1(path_2, scratch.layer1_rn(levels[0]))

    path_1 = fusion()
    embeddings = scratch.head1(path_1)
    text_features = net.text_features_cache
    logits = pixel_text_logits(embeddings, text_features)
    tokens = hooked[0]
    stages = {
        "tokenize": lambda: clip_ms.tokenize(labels),
        "text_encoder": lambda: _sync(net.clip_pretrained(token_ids)),
        "text_cache_check": lambda: net.sync_text_features(),
        "vit": lambda: _sync(backbone.hooked_tokens(images)),
        "one_vit_block": lambda: _sync(backbone.model.blocks[0](tokens)),
        "reassemble": lambda: _sync([backbone.act_postprocess1(hooked[0], grid_h, grid_w),
                                     backbone.act_postprocess2(hooked[1], grid_h, grid_w),
                                     backbone.act_postprocess3(hooked[2], grid_h, grid_w),
                                     backbone.act_postprocess4(hooked[3], grid_h, grid_w)]),
        "fusion": lambda: _sync(fusion()),
        "head1": lambda: _sync(scratch.head1(path_1)),
        "pixel_text": lambda: _sync(pixel_text_logits(embeddings, text_features)),
        "upsample": lambda: _sync(ops.interpolate(logits, size=(height, width), mode="bilinear",
                                                  align_corners=True)),
        "whole_cached": lambda: _sync(net(images)),
    }
    flop = lseg_forward_flops(flop_config_from_params(params, with_text=True,
                                                      text_context=label_context_length(labels)))
    n_blocks = max(net.cfg.hooks) + 1
    stage_flop = {"text_encoder": flop["text_encoder"], "vit": flop["patch_embed"] + flop["vit_blocks"],
                  "one_vit_block": flop["vit_blocks"] // n_blocks, "reassemble": flop["readout"] + flop["reassemble"],
                  "fusion": flop["fusion"], "head1": flop["head"], "pixel_text": flop["pixel_text"],
                  "whole_cached": flop["image_total"]}
    results = {name: measure(fn, ctx.warmup, ctx.repeats) for name, fn in stages.items()}
    gflops = {name: stage_flop[name] / results[name]["median_s"] / 1e9 for name in stage_flop}
    return {"timing": results["whole_cached"], "build_s": build_s, "stages": results, "stage_flop": stage_flop,
            "stage_gflops_per_s": gflops, "vit_blocks_run": n_blocks}


def case_vit_block_ops(ctx: CaseContext) -> Dict[str, object]:
    """Profile of the dominant stage of case 1: one ViT block as ``modules.backbone.build_vit`` builds it (MindCV
    ``Block``, exact GELU, LayerNorm eps 1e-6) on ``params["tokens"]`` tokens, split into its operations, each
    synchronised; plus two alternatives that show what a faster block could use (``Dense`` on a 2-D input,
    tanh-approximate GELU).

    Returns: ``ops``: name -> timing summary; ``op_gflops_per_s`` for the matrix products; ``timing`` = whole block.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindcv.models.vit import Block
    from mindspore import nn as msnn
    from mindspore import ops

    from modules import BACKBONES
    from modules.backbone import VIT_LAYER_NORM_EPS, exact_gelu

    cfg = BACKBONES[ctx.params["backbone"]]
    block = Block(dim=cfg.width, num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, act_layer=exact_gelu,
                  norm_layer=functools.partial(msnn.LayerNorm, epsilon=VIT_LAYER_NORM_EPS))
    block.set_train(False)
    n, d, h = int(ctx.params["tokens"]), cfg.width, cfg.heads
    hidden = int(cfg.width * cfg.mlp_ratio)
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(1, n, d).astype(np.float32))
    x2d = ms.Tensor(rng.randn(n, d).astype(np.float32))
    attn = block.attn
    qkv = attn.qkv(block.norm1(x))
    q, k, v = ops.unstack(ops.transpose(ops.reshape(qkv, (1, n, 3, h, d // h)), (2, 0, 3, 1, 4)), axis=0)
    scores = attn.q_matmul_k(q, k)
    probs = ops.softmax(scores, axis=-1)
    context = attn.attn_matmul_v(probs, v)
    hidden_act = block.mlp.fc1(block.norm2(x))
    tanh_gelu = msnn.GELU(approximate=True)
    steps = {
        "layernorm": lambda: _sync(block.norm1(x)),
        "qkv_dense": lambda: _sync(attn.qkv(x)),
        "qkv_split": lambda: _sync(ops.unstack(ops.transpose(ops.reshape(qkv, (1, n, 3, h, d // h)),
                                                             (2, 0, 3, 1, 4)), axis=0)),
        "q_kT": lambda: _sync(attn.mul(attn.q_matmul_k(q, k), attn.scale)),
        "softmax": lambda: _sync(ops.softmax(scores, axis=-1)),
        "attn_v": lambda: _sync(attn.attn_matmul_v(probs, v)),
        "merge_heads": lambda: _sync(ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (1, n, d))),
        "proj_dense": lambda: _sync(attn.proj(x)),
        "fc1_dense": lambda: _sync(block.mlp.fc1(x)),
        "gelu_exact": lambda: _sync(block.mlp.act(hidden_act)),
        "fc2_dense": lambda: _sync(block.mlp.fc2(hidden_act)),
        "whole_block": lambda: _sync(block(x)),
        "alt_fc1_dense_2d": lambda: _sync(block.mlp.fc1(x2d)),
        "alt_gelu_tanh": lambda: _sync(tanh_gelu(hidden_act)),
    }
    flop = {"qkv_dense": 2 * n * d * 3 * d, "q_kT": 2 * n * n * d, "attn_v": 2 * n * n * d, "proj_dense": 2 * n * d * d,
            "fc1_dense": 2 * n * d * hidden, "fc2_dense": 2 * n * hidden * d, "alt_fc1_dense_2d": 2 * n * d * hidden}
    flop["whole_block"] = sum(flop[k] for k in ("qkv_dense", "q_kT", "attn_v", "proj_dense", "fc1_dense",
                                                "fc2_dense"))
    results = {name: measure(fn, ctx.warmup, ctx.repeats) for name, fn in steps.items()}
    return {"timing": results["whole_block"], "ops": results, "op_flop": flop,
            "op_gflops_per_s": {k: v / results[k]["median_s"] / 1e9 for k, v in flop.items()},
            "gflops_per_s": flop["whole_block"] / results["whole_block"]["median_s"] / 1e9}


def _train_step_cell(net, labels: List[str], text_in_step: bool, lr: float):
    """The training step of ``encoding_custom.engine.Trainer``: refreshed parameters, ``build_optimizer`` (Momentum
    0.9, weight decay 1e-4, poly LR; backbone at 1x and head at 10x the LR as in the official code),
    ``WithLossCell(net, SegmentationLoss)`` and ``TrainOneStepCell``.

    With ``text_in_step`` the labels' token ids (trimmed after the last end-of-text token) are a step input and
    the frozen text encoder runs inside the step (what the official training step does, on all 77 positions);
    otherwise the network's cached text features are used.

    Returns: (step cell, token ids or None, number of trainable tensors).
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindspore import nn, ops

    from encoding_custom.engine import build_optimizer, refresh_parameters
    from encoding_custom.losses import SegmentationLoss

    mapping = refresh_parameters(net)
    groups = [([mapping.get(id(p), p) for p in net.backbone_params()], 1.0),
              ([mapping.get(id(p), p) for p in net.head_params()], 10.0)]
    optimizer, _ = build_optimizer(groups, lr, steps_per_epoch=100, max_epochs=1, momentum=0.9, weight_decay=1e-4)
    loss_fn = SegmentationLoss(ignore_index=-1)

    class TextInStepLoss(nn.Cell):
        """loss(net(images, encode(token_ids)), target): the text tower runs in every step, without gradient."""

        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net
            self.loss_fn = loss_fn

        def construct(self, images, target, token_ids):
            """images (B,3,H,W), target (B,H,W) int32, token_ids (N,L) int32 -> scalar loss."""
            text_features = ops.stop_gradient(self.net.clip_pretrained(token_ids))
            return self.loss_fn(self.net(images, text_features), target)

    with_loss = TextInStepLoss() if text_in_step else nn.WithLossCell(net, loss_fn)
    step = nn.TrainOneStepCell(with_loss, optimizer)
    step.set_train(True)
    token_ids = None
    if text_in_step:
        # Trimmed like CLIPTextEncoder.__call__ does (a cell call inside a compiled step bypasses __call__): the
        # full 77-position text graph costs ~14 GB in GRAPH_MODE (clip_ms commit 9468621) for the same features.
        token_ids = ms.Tensor(clip_ms.trim_token_ids(np.asarray(clip_ms.tokenize(labels), dtype=np.int32)))
    return step, token_ids, len(optimizer.parameters)


def case_train(ctx: CaseContext) -> Dict[str, object]:
    """Case 2: one training step (forward, backward, Momentum update) at batch ``params["batch"]``.

    Returns: timing (per step), build time, parameter counts, the losses seen (they must be finite).
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(True)
    height, width = params["image_hw"]
    batch = int(params.get("batch", 1))
    images = _images(batch, height, width)
    rng = np.random.RandomState(1)
    target = ms.Tensor(rng.randint(-1, len(labels), size=(batch, height, width)).astype(np.int32))
    step, token_ids, n_trainable = _train_step_cell(net, labels, params["text"] == "in_step", lr=1e-4)
    losses: List[float] = []

    def run_once():
        loss = step(images, target, token_ids) if token_ids is not None else step(images, target)
        losses.append(float(loss.asnumpy()))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"{ctx.variant}: non-finite training loss {losses}")
    result = {"timing": timing, "build_s": build_s, "losses": losses, "trainable_tensors": n_trainable,
              "images_per_s": batch / timing["median_s"]}
    result.update(_param_count(net))
    return result


def read_cpu_op_profile(profile_dir: str, top: int = 15) -> List[Dict[str, object]]:
    """The op-type summary written by ``mindspore.Profiler`` on CPU (``cpu_op_type_info_<rank>.csv``).

    Args:
        profile_dir: the profiler's ``output_path``.
        top: how many op types to keep, by total time.

    Returns:
        list of ``{"op_type", "occurrences", "total_ms", "percent"}`` (percent of the summed kernel time of all op
        types), slowest first.

    Raises:
        FileNotFoundError: naming the directory when the profiler wrote no summary.
    """
    paths = glob.glob(os.path.join(profile_dir, "**", "cpu_op_type_info_*.csv"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no cpu_op_type_info_*.csv under {profile_dir}: the MindSpore profiler wrote nothing")
    rows = []
    with open(paths[0], newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({"op_type": row["op_type"], "occurrences": int(row["type_occurrences"]),
                         "total_ms": float(row["total_compute_time"])})
    kernel_ms = sum(r["total_ms"] for r in rows) or 1.0
    for row in rows:  # share of the summed kernel time (the profiler's own "percent" column is not documented)
        row["percent"] = 100.0 * row["total_ms"] / kernel_ms
    return sorted(rows, key=lambda r: -r["total_ms"])[:top]


def case_train_profile(ctx: CaseContext) -> Dict[str, object]:
    """Profile of case 2: one GRAPH_MODE training step (text cached) under ``mindspore.Profiler``, summarised by
    operation type, so the table says which kernels the step spends its time in. The step is compiled and run
    once before profiling; the profiled step's wall time includes the profiler's overhead.

    Returns: timing (the profiled step), ``op_types`` (slowest first, see :func:`read_cpu_op_profile`).
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindspore import Profiler

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(True)
    height, width = params["image_hw"]
    images = _images(1, height, width)
    target = ms.Tensor(np.random.RandomState(1).randint(-1, len(labels), size=(1, height, width)).astype(np.int32))
    step, _, _ = _train_step_cell(net, labels, False, lr=1e-4)
    for _ in range(ctx.warmup):
        step(images, target).asnumpy()
    profile_dir = os.path.join(ctx.workdir, "profile")
    profiler = Profiler(output_path=profile_dir)
    timing = measure(lambda: step(images, target).asnumpy(), 0, ctx.repeats)
    profiler.analyse()
    op_types = read_cpu_op_profile(profile_dir)
    return {"timing": timing, "build_s": build_s, "op_types": op_types}


def case_data(ctx: CaseContext) -> Dict[str, object]:
    """Case 3: images/s of augmented training crops, one full pass (epoch) over the set per repetition.

    The loader is ``encoding_custom.engine.BatchLoader``, what the training loop uses (a fork pool per epoch, so
    every pass includes its start-up as in training).

    Returns: timing (per pass), ``images_per_s`` (median), the set's generation time.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    from encoding_custom.engine import BatchLoader

    params = ctx.params
    n_images = int(params["n_images"])
    root = os.path.join(ctx.workdir, "ade")
    start = time.perf_counter()
    write_synthetic_ade20k(root, n_train=n_images, n_val=0, seed=0, size=tuple(params["image_size_range"]))
    generate_s = time.perf_counter() - start
    dataset = ADE20KSegmentation(root, split="train", mode="train", base_size=int(params["base_size"]),
                                 crop_size=int(params["crop_size"]), seed=0)
    batch, workers = int(params["batch"]), int(params["workers"])
    engine_loader = BatchLoader(dataset, batch, seed=0, shuffle=True, workers=workers, drop_last=False)
    epochs = iter(range(10**6))

    def batches():
        return engine_loader.iterate(next(epochs))
    crop = int(params["crop_size"])
    seen = []

    def run_once():
        count = 0
        for images, masks in batches():
            _sync(images)
            if tuple(images.shape[1:]) != (3, crop, crop) or tuple(masks.shape[1:]) != (crop, crop):
                raise RuntimeError(f"{ctx.variant}: loader gave images {images.shape} masks {masks.shape}, "
                                   f"expected crops of {crop}")
            count += int(images.shape[0])
        seen.append(count)

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    if any(count != len(dataset) for count in seen):
        raise RuntimeError(f"{ctx.variant}: a pass yielded {seen} images, dataset has {len(dataset)}")
    return {"timing": timing, "images_per_pass": len(dataset), "generate_s": generate_s,
            "images_per_s": len(dataset) / timing["median_s"]}


def case_eval(ctx: CaseContext) -> Dict[str, object]:
    """Case 4: evaluation of one image of ``params["image_hw"]`` with ``encoding_custom.evaluator``'s official
    multi-scale + flip + sliding-window evaluator, or single scale without flip.

    Returns: timing (per image), build time, the number of network forwards per image.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    from encoding_custom.evaluator import MultiScaleEvaluator, network_forward

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(False)
    height, width = params["image_hw"]
    image = np.random.RandomState(0).uniform(-1, 1, size=(1, 3, height, width)).astype(np.float32)
    forward = network_forward(net)
    forwards = [0]

    def counting_forward(images):
        forwards[0] += 1
        return forward(images)

    evaluator = MultiScaleEvaluator(counting_forward, nclass=len(labels), scales=tuple(params["scales"]),
                                    flip=bool(params["flip"]), base_size=int(params["base_size"]),
                                    crop_size=int(params["crop_size"]))
    outputs = []

    def run_once():
        forwards[0] = 0
        outputs.append(tuple(evaluator(image).shape))

    warmup_s = []
    for _ in range(ctx.warmup):  # plain crop-sized forwards: a whole multi-scale pass would double the cost
        start = time.perf_counter()
        crop = int(params["crop_size"])
        forward(np.zeros((1, 3, crop, crop), np.float32))
        warmup_s.append(time.perf_counter() - start)
    timing = measure(run_once, 0, ctx.repeats)
    timing["warmup_s"] = warmup_s
    return {"timing": timing, "build_s": build_s, "forwards_per_image": forwards[0], "output_shape": outputs[-1],
            "s_per_forward": timing["median_s"] / max(1, forwards[0])}


def case_photo(ctx: CaseContext) -> Dict[str, object]:
    """Case 4b: ``test.py --image`` on a phone photo of ``params["image_hw"]``: JPEG read
    (``transforms.read_image``) plus ``evaluator.segment_image`` (long side to ``base_size``, ``crop_size`` windows,
    logits resized back band by band).

    Returns: timing (per photo, read included), build time, the number of network forwards, output shape and dtype.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    from encoding_custom.evaluator import segment_image

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(False)
    height, width = params["image_hw"]
    rng = np.random.RandomState(0)
    blocks = rng.randint(0, 256, (height // 96 + 2, width // 96 + 2, 3)).astype(np.uint8)
    photo = os.path.join(ctx.workdir, "photo.jpg")
    Image.fromarray(blocks).resize((width, height), Image.BILINEAR).save(photo, quality=90)
    forwards = [0]

    def counting_network(images, text_features):
        forwards[0] += 1
        return net(images, text_features)

    counting_network.text_features = net.text_features  # segment_image looks the label features up once

    outputs = []

    def run_once():
        forwards[0] = 0
        prediction = segment_image(counting_network, read_image(photo), labels, base_size=int(params["base_size"]),
                                   crop_size=int(params["crop_size"]))
        outputs.append((list(prediction.shape), str(prediction.dtype)))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    return {"timing": timing, "build_s": build_s, "forwards_per_image": forwards[0], "output_shape": outputs[-1][0],
            "output_dtype": outputs[-1][1]}


def _max_relative_difference(values: np.ndarray, reference: np.ndarray) -> float:
    """``max |values - reference| / max |reference|``, the measure ``tests/test_modules_export.py`` bounds.

    Args:
        values: array to check.
        reference: array of the same shape it should equal.

    Returns:
        float (0.0 for identical arrays).
    """
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(values.astype(np.float64) - reference).max() / scale)


def case_export(ctx: CaseContext) -> Dict[str, object]:
    """Case 6: ``modules.export.export_mindir`` of the eval network, then the MindIR as a server runs it
    (``mindspore.load`` + ``nn.GraphCell``, GRAPH_MODE: MindSpore 2.0 refuses a MindIR in PyNative).
    ``params["labels"]``: ``"static"`` bakes the label set's text features into the graph (``images -> logits``);
    ``"dynamic"`` takes them as a second input (``(images, net.encode_text(labels)) -> logits``).

    Everything runs in this one process, after the network was built (as ``python -m modules.export`` does);
    the network's own forward on the same input, compiled once, is the reference of the logits.

    Returns: timing (per forward of the loaded graph; ``warmup_s[0]`` = its first call, which compiles it),
    ``export_s``, ``mindir_mib`` (size of all its files), ``mindir_files`` (their names, see
    ``modules.export.mindir_files``), ``load_s`` (``mindspore.load`` + ``GraphCell``), ``first_call_s``,
    ``logits_max_rel_diff`` (graph vs network, see :func:`_max_relative_difference`), build time, output shape,
    label count.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms
    from mindspore import nn

    from modules.export import export_mindir

    params = ctx.params
    net, labels, build_s = _build_net(params)
    net.set_train(False)
    height, width = params["image_hw"]
    batch = int(params["batch"])
    dynamic = params["labels"] == "dynamic"
    images = _images(batch, height, width)
    start = time.perf_counter()
    files = export_mindir(net, os.path.join(ctx.workdir, "lseg.mindir"), height, width, batch=batch,
                          dynamic_labels=dynamic)
    export_s = time.perf_counter() - start
    mindir_mib = sum(os.path.getsize(name) for name in files) / 2**20
    inputs = (images, net.encode_text(labels)) if dynamic else (images,)
    reference = net(*inputs).asnumpy()
    start = time.perf_counter()
    graph = nn.GraphCell(ms.load(files[0]))
    load_s = time.perf_counter() - start
    outputs = []

    def run_once():
        logits = graph(*inputs)
        _sync(logits)
        outputs[:] = [logits]  # only the last call's logits are compared: (1, 150, 480, 480) float32 is 138 MB

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    logits = outputs[-1].asnumpy()
    if logits.shape != reference.shape:
        raise RuntimeError(f"{ctx.variant}: MindIR logits {logits.shape}, network logits {reference.shape}")
    return {"timing": timing, "build_s": build_s, "export_s": export_s, "mindir_mib": mindir_mib, "load_s": load_s,
            "first_call_s": timing["warmup_s"][0] if timing["warmup_s"] else None,
            "logits_max_rel_diff": _max_relative_difference(logits, reference), "output_shape": list(logits.shape),
            "n_labels": len(labels), "mindir_files": [os.path.relpath(name, ctx.workdir) for name in files]}


def case_text_tokenize(ctx: CaseContext) -> Dict[str, object]:
    """Case 5a: ``clip_ms.tokenize`` of the label list. Returns: timing and the token array shape."""
    labels = _labels(int(ctx.params["n_labels"]))
    shapes = []
    timing = measure(lambda: shapes.append(np.asarray(clip_ms.tokenize(labels)).shape), ctx.warmup, ctx.repeats)
    return {"timing": timing, "token_shape": list(shapes[-1])}


def case_text_encode(ctx: CaseContext) -> Dict[str, object]:
    """Case 5b: ``CLIPTextEncoder`` on the tokenised label list (tokenising not timed).

    ``params["context"]``: ``"port"`` calls the encoder as the network does (``encoder(token_ids)``, whose
    ``__call__`` drops the columns after the last end-of-text token); ``"full"`` runs ``construct`` on all 77
    positions, which is the work the official code does (PyNative only: it bypasses ``__call__``).

    Returns: timing, the context length run, analytic FLOP and achieved GFLOP/s, output shape.
    """
    # Loads MindSpore: imported here, not at the top (module docstring, "Imports").
    import mindspore as ms

    labels = _labels(int(ctx.params["n_labels"]))
    tcfg = clip_ms.TEXT_CONFIGS[ctx.params["text_config"]]
    encoder = clip_ms.CLIPTextEncoder(tcfg)
    encoder.set_train(False)
    token_ids = ms.Tensor(np.asarray(clip_ms.tokenize(labels), dtype=np.int32))
    full = ctx.params["context"] == "full"
    if full and ctx.mode != "pynative":
        raise ValueError(f"{ctx.variant}: context 'full' calls construct directly, which only PyNative executes")
    context = int(token_ids.shape[1]) if full else label_context_length(labels)
    shapes = []

    def run_once():
        features = encoder.construct(token_ids) if full else encoder(token_ids)
        _sync(features)
        shapes.append(tuple(features.shape))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    flop = text_encoder_flops(TextFlopConfig(width=tcfg.width, layers=tcfg.layers, context_length=context,
                                             embed_dim=tcfg.embed_dim), len(labels))
    return {"timing": timing, "output_shape": list(shapes[-1]), "context_length": context, "flop": flop,
            "gflops_per_s": flop / timing["median_s"] / 1e9}


def case_selftest(ctx: CaseContext) -> Dict[str, object]:
    """Harness self-test (not part of a normal run): touches ``params["setup_mib"]`` MiB during set-up and frees
    them, then ``params["timed_mib"]`` MiB inside every timed call, sleeping ``params["sleep_s"]``; or fails on
    purpose with ``params["fail"]``; or dies of SIGSEGV with ``params["crash_marker"]`` (a path) while that file
    does not exist yet (creating it first), so a second run of the variant goes through.

    Returns: timing.
    """
    if ctx.params.get("fail"):
        raise RuntimeError("selftest failure requested")
    marker = ctx.params.get("crash_marker")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGSEGV)
    setup_block = np.ones(int(ctx.params.get("setup_mib", 0)) * 2**18, dtype=np.float32)  # touched pages count
    del setup_block

    def run_once():
        block = np.ones(int(ctx.params.get("timed_mib", 0)) * 2**18, dtype=np.float32)
        time.sleep(float(ctx.params.get("sleep_s", 0.01)))
        del block

    return {"timing": measure(run_once, ctx.warmup, ctx.repeats)}


# ------------------------------------------------------------------------------------------------ registry
_VITL = {"backbone": "clip_vitl16_384", "text_config": "ViT-B/32", "n_labels": 150}
_TINY = {"backbone": "tiny_vit16", "text_config": "tiny", "n_labels": 150}


def _variants() -> List[Variant]:
    out: List[Variant] = [
        Variant("matmul/pynative", "matmul", "float32 matmul n x n (practical peak)", case_matmul, "pynative",
                full={"n": 2048, "warmup": 2, "repeats": 5, "timeout_s": 120},
                quick={"n": 512, "warmup": 1, "repeats": 3, "timeout_s": 60}),
    ]
    for mode in ("pynative", "graph"):
        for text in ("in_call", "cached"):
            out.append(Variant(
                f"forward/{mode}/{'text_in_call' if text == 'in_call' else 'cached'}", "forward",
                f"eval forward, text {'encoded in the call' if text == 'in_call' else 'cached'}", case_forward, mode,
                full=dict(_VITL, image_hw=(480, 480), text=text, warmup=1, repeats=3, timeout_s=600),
                quick=dict(_TINY, image_hw=(64, 64), text=text, warmup=1, repeats=2, timeout_s=90),
                in_quick=not (mode == "graph" and text == "in_call")))
    for mode in ("pynative", "graph"):
        out.append(Variant(
            f"zero_shot/{mode}/rn101", "zero_shot", "zero-shot episode forward (ResNet-101, label pair)",
            case_zero_shot_forward, mode,
            full={"backbone": "clip_resnet101", "text_config": "ViT-B/32", "image_hw": (480, 480), "warmup": 1,
                  "repeats": 3, "timeout_s": 600},
            quick={"backbone": "tiny_resnet", "text_config": "tiny", "image_hw": (64, 64), "warmup": 1, "repeats": 2,
                   "timeout_s": 90}))
    out.append(Variant(
        "forward/pynative/stages", "forward", "eval forward split into timed stages (profile)", case_forward_stages,
        "pynative", full=dict(_VITL, image_hw=(480, 480), warmup=1, repeats=2, timeout_s=600),
        quick=dict(_TINY, image_hw=(64, 64), warmup=1, repeats=2, timeout_s=90)))
    out.append(Variant(
        "forward/pynative/vit_block_ops", "forward", "one ViT block split into its operations (profile)",
        case_vit_block_ops, "pynative", full={"backbone": "clip_vitl16_384", "tokens": 901, "warmup": 2, "repeats": 5,
                                              "timeout_s": 300},
        quick={"backbone": "tiny_vit16", "tokens": 17, "warmup": 1, "repeats": 2, "timeout_s": 60}, in_quick=False))
    for mode in ("graph", "pynative"):
        for text in ("cached", "in_step"):
            out.append(Variant(
                f"train/{mode}/{'cached' if text == 'cached' else 'text_in_step'}", "train",
                f"train step batch 1, text {'cached' if text == 'cached' else 'encoded in the step'}", case_train, mode,
                # One timed step except for the target variant: a ViT-L step costs 20-60 s on 2 cores and the
                # full run must fit its ~25 minute slot.
                full=dict(_VITL, image_hw=(480, 480), batch=1, text=text, warmup=1,
                          repeats=2 if (mode, text) == ("graph", "cached") else 1, timeout_s=900),
                quick=dict(_TINY, image_hw=(64, 64), batch=1, text=text, warmup=0, repeats=1, timeout_s=120,
                           n_labels=20),
                in_quick=(mode == "graph") == (text == "in_step")))
    out.append(Variant(
        "train/graph/profile", "train", "train step (graph, cached) under mindspore.Profiler, by op type (profile)",
        case_train_profile, "graph",
        full=dict(_VITL, image_hw=(480, 480), batch=1, warmup=1, repeats=1, timeout_s=900),
        quick=dict(_TINY, image_hw=(64, 64), batch=1, warmup=1, repeats=1, timeout_s=120, n_labels=20),
        in_quick=False))
    for workers in (0, 2):
        out.append(Variant(
            f"data/engine/workers{workers}", "data", f"train crops, engine BatchLoader, {workers} workers",
            case_data, None,
            full={"n_images": 48, "image_size_range": (512, 683), "base_size": 520, "crop_size": 480, "batch": 1,
                  "workers": workers, "warmup": 1, "repeats": 3, "timeout_s": 300},
            quick={"n_images": 6, "image_size_range": (96, 128), "base_size": 80, "crop_size": 64, "batch": 1,
                   "workers": workers, "warmup": 1, "repeats": 2, "timeout_s": 90}))
    for name, scales, flip in (("multiscale_flip", (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), True),
                               ("single_scale", (1.0,), False)):
        out.append(Variant(
            f"eval/pynative/{name}", "eval", f"evaluate one image, {'6 scales + flip' if flip else 'single scale'}",
            case_eval, "pynative",
            full=dict(_VITL, image_hw=(512, 683), base_size=520, crop_size=480, scales=scales, flip=flip,
                      warmup=1, repeats=1 if flip else 2, timeout_s=900),
            quick=dict(_TINY, image_hw=(48, 64), base_size=48, crop_size=64, scales=scales, flip=flip,
                       warmup=1, repeats=1, timeout_s=90)))
    out.append(Variant(
        "eval/pynative/photo_12mp", "eval", "test.py --image: read + segment a 4032x3024 JPEG (150 labels)",
        case_photo, "pynative",
        full=dict(_VITL, image_hw=(3024, 4032), base_size=520, crop_size=480, warmup=0, repeats=1, timeout_s=900),
        quick=dict(_TINY, image_hw=(600, 800), base_size=80, crop_size=64, warmup=0, repeats=1, timeout_s=90),
        in_quick=False))
    for labels in ("static", "dynamic"):
        out.append(Variant(
            f"export/graph/{labels}_labels", "export",
            "MindIR export + load + run, " + ("labels baked in" if labels == "static" else "text features as input"),
            case_export, "graph",
            full=dict(_VITL, image_hw=(480, 480), batch=1, labels=labels, warmup=1, repeats=3, timeout_s=900),
            quick=dict(_TINY, image_hw=(64, 64), batch=1, labels=labels, warmup=1, repeats=2, timeout_s=120),
            in_quick=labels == "dynamic"))
    out.append(Variant("text/tokenize", "text", "tokenize the 150 labels", case_text_tokenize, None,
                       full={"n_labels": 150, "warmup": 1, "repeats": 10, "timeout_s": 120},
                       quick={"n_labels": 150, "warmup": 1, "repeats": 3, "timeout_s": 60}))
    for mode, context in (("pynative", "port"), ("pynative", "full"), ("graph", "port")):
        out.append(Variant(f"text/{mode}/encode{'_full_context' if context == 'full' else ''}", "text",
                           "encode the 150 tokenised labels" + (", all 77 positions (official work)"
                                                                if context == "full" else ""),
                           case_text_encode, mode,
                           full={"n_labels": 150, "text_config": "ViT-B/32", "context": context, "warmup": 1,
                                 "repeats": 2 if context == "full" else 3, "timeout_s": 300},
                           quick={"n_labels": 150, "text_config": "tiny", "context": context, "warmup": 1,
                                  "repeats": 2, "timeout_s": 60},
                           in_quick=context == "port"))
    return out


VARIANTS: Dict[str, Variant] = {v.name: v for v in _variants()}

# Execution order: the targets first, so that a run cut short by its time budget (``--budget_min``) still
# measured what matters most; the table is printed in registry (case) order regardless.
RUN_ORDER = (
    "matmul/pynative",
    "forward/pynative/cached", "forward/pynative/text_in_call", "forward/graph/cached", "forward/graph/text_in_call",
    "train/graph/cached",
    "data/engine/workers0", "data/engine/workers2",
    "text/tokenize", "text/pynative/encode", "text/pynative/encode_full_context", "text/graph/encode",
    "eval/pynative/single_scale", "forward/pynative/stages", "forward/pynative/vit_block_ops",
    "eval/pynative/multiscale_flip", "eval/pynative/photo_12mp",
    "train/graph/profile", "train/pynative/cached", "train/graph/text_in_step", "train/pynative/text_in_step",
    "export/graph/static_labels", "export/graph/dynamic_labels",
    "zero_shot/pynative/rn101", "zero_shot/graph/rn101",
)

# Used by the harness tests only; never selected by default.
SELFTEST_VARIANTS: Dict[str, Variant] = {
    v.name: v for v in (
        Variant("selftest/ok", "selftest", "harness self-test", case_selftest, None,
                full={"setup_mib": 128, "timed_mib": 48, "sleep_s": 0.01, "warmup": 1, "repeats": 3, "timeout_s": 60},
                quick={"setup_mib": 128, "timed_mib": 48, "sleep_s": 0.01, "warmup": 1, "repeats": 3,
                       "timeout_s": 60}),
        Variant("selftest/fail", "selftest", "harness self-test (fails)", case_selftest, None,
                full={"fail": True, "timeout_s": 60}, quick={"fail": True, "timeout_s": 60}),
        Variant("selftest/crash", "selftest", "harness self-test (segfaults while its marker is absent)",
                case_selftest, None, full={"crash_marker": "", "warmup": 0, "repeats": 1, "timeout_s": 60},
                quick={"crash_marker": "", "warmup": 0, "repeats": 1, "timeout_s": 60}),
        Variant("selftest/hang", "selftest", "harness self-test (times out)", case_selftest, None,
                full={"sleep_s": 600, "warmup": 0, "repeats": 1, "timeout_s": 2},
                quick={"sleep_s": 600, "warmup": 0, "repeats": 1, "timeout_s": 2}),
    )
}


def get_variant(name: str) -> Variant:
    """Args: name (str). Returns: the Variant. Raises: KeyError naming the known variants."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name in SELFTEST_VARIANTS:
        return SELFTEST_VARIANTS[name]
    raise KeyError(f"unknown bench variant {name!r}; known: {', '.join(VARIANTS)}")


def select_variants(patterns: Optional[List[str]], quick: bool = False) -> List[Variant]:
    """Variants matching any of ``patterns``, in registry order.

    A pattern selects a variant when it equals its name or case, is a ``/``-prefix of the name (``forward/graph``),
    or matches it as a shell glob (``*/cached``). Self-test variants are only selected by exact name.

    Args:
        patterns: list of patterns, or None/empty for every (non-self-test) variant.
        quick: with no patterns, only the variants of the ``--quick`` set (``Variant.in_quick``); named variants
            always run.

    Returns:
        list of Variant.

    Raises:
        ValueError: if a pattern selects nothing (the message lists the known names).
    """
    if not patterns:
        return [v for v in VARIANTS.values() if v.in_quick or not quick]
    chosen: List[Variant] = []
    for pattern in patterns:
        hits = [v for v in VARIANTS.values()
                if pattern in (v.name, v.case) or v.name.startswith(pattern.rstrip("/") + "/")
                or fnmatch.fnmatchcase(v.name, pattern)]
        if pattern in SELFTEST_VARIANTS:
            hits.append(SELFTEST_VARIANTS[pattern])
        if not hits:
            raise ValueError(f"--cases {pattern!r} matches no variant; known: {', '.join(VARIANTS)}")
        chosen.extend(v for v in hits if v not in chosen)
    order = list(VARIANTS.values()) + list(SELFTEST_VARIANTS.values())
    return sorted(chosen, key=order.index)


def make_workdir() -> str:
    """Returns: a fresh private temporary directory for one variant."""
    return tempfile.mkdtemp(prefix="lseg-bench-")


def remove_workdir(path: str) -> None:
    """Args: path: a directory from :func:`make_workdir`, removed with everything in it."""
    shutil.rmtree(path, ignore_errors=True)
