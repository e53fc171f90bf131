"""Case 1, the eval forward: whole (text encoded in the call or cached), zero-shot episode, split into stages, one ViT
block split into operations; and the float32 matmul reference its GFLOP/s are compared with."""
import functools
import time
from typing import Dict

import numpy as np

import clip_ms
from bench.cases.random_network import build_random_network, image_tensor, parameter_counts
from bench.cases.text import port_text_flops, port_text_runs
from bench.cases.variant import CaseContext
from bench.flops import LSegFlopConfig, TextFlopConfig, lseg_forward_flops
from bench.timing import measure, wait_until_computed


def flop_config_from_params(params: Dict[str, object], with_text: bool):
    """The :class:`bench.flops.LSegFlopConfig` of a forward variant, read from ``modules.BACKBONES`` and
    ``clip_ms.TEXT_CONFIGS`` so that the count follows the code being measured.

    Args:
        params: a forward variant's parameters (backbone, text_config, image_hw, n_labels).
        with_text: count the text encoder as the official code runs it (all 77 positions), or not at all.

    Returns:
        LSegFlopConfig.
    """
    from modules import BACKBONES

    cfg = BACKBONES[params["backbone"]]
    text = None
    if with_text:
        tcfg = clip_ms.TEXT_CONFIGS[params["text_config"]]
        text = TextFlopConfig(width=tcfg.width, layers=tcfg.layers,
                              context_length=tcfg.context_length, embed_dim=tcfg.embed_dim)
    return LSegFlopConfig(image_hw=tuple(params["image_hw"]), patch_size=cfg.patch_size, vit_width=cfg.width,
                          vit_mlp_ratio=cfg.mlp_ratio, hooks=tuple(cfg.hooks),
                          reassemble_channels=tuple(cfg.level_widths), features=cfg.features,
                          embed_dim=cfg.out_dim, n_labels=int(params["n_labels"]), text=text)


def with_port_text_flops(flops: Dict[str, int], labels, text_config: str, encoded: bool) -> Dict[str, int]:
    """``flops`` (:func:`bench.flops.lseg_forward_flops` without text) with the port's text-tower work added.

    Args:
        flops: stage counts with ``text_encoder`` 0.
        labels: the label strings encoded.
        text_config: key of ``clip_ms.TEXT_CONFIGS``.
        encoded: whether the labels are encoded (:func:`bench.cases.text.port_text_runs`).

    Returns:
        a new dict; ``text_encoder`` and ``total`` updated.
    """
    out = dict(flops)
    if encoded:
        out["text_encoder"] = port_text_flops(labels, text_config)
        out["total"] = out["image_total"] + out["text_encoder"]
    return out


def case_matmul(ctx: CaseContext) -> Dict[str, object]:
    """Reference throughput: float32 (n x n) @ (n x n) with MindSpore's MatMul (and numpy's BLAS for comparison).

    Returns: timing of the MindSpore product and ``gflops_per_s`` (median), ``numpy_gflops_per_s``.
    """
    import mindspore as ms
    from mindspore import ops

    n = int(ctx.params["n"])
    rng = np.random.RandomState(0)
    a_np = rng.randn(n, n).astype(np.float32)
    b_np = rng.randn(n, n).astype(np.float32)
    a, b = ms.Tensor(a_np), ms.Tensor(b_np)
    timing = measure(lambda: wait_until_computed(ops.matmul(a, b)), ctx.warmup, ctx.repeats)
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
    net, labels, build_s = build_random_network(params)
    net.set_train(False)
    height, width = params["image_hw"]
    images = image_tensor(int(params.get("batch", 1)), height, width, params["backbone"])
    text_in_call = params["text"] == "in_call"
    shapes = []

    def run_once():
        logits = net(images, net.encode_text(labels)) if text_in_call else net(images)
        wait_until_computed(logits)
        shapes.append(list(logits.shape))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    flops = with_port_text_flops(lseg_forward_flops(flop_config_from_params(params, with_text=False)),
                                 labels, params["text_config"], text_in_call)
    official = lseg_forward_flops(flop_config_from_params(params, with_text=text_in_call))
    result = {"timing": timing, "build_s": build_s, "flop": flops["total"], "flop_by_stage": flops,
              "text_runs": [list(run) for run in port_text_runs(labels)] if text_in_call else None,
              "official_flop": official["total"],  # the official code runs the text tower on all 77 positions
              "gflops_per_s": flops["total"] / timing["median_s"] / 1e9}
    result.update(parameter_counts(net))
    result["output_shape"] = shapes[-1]
    return result


def case_zero_shot_forward(ctx: CaseContext) -> Dict[str, object]:
    """Case 1z: one zero-shot episode forward (``test.py --dataset pascal``): ``params["batch"]`` images against their
    label pairs ``['others', class]`` (PASCAL-5i's names, features looked up once, as ``evaluate_episodes`` does).

    Returns: timing, build time, parameter counts, output shape (B, 2, H, W).
    """
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
    images = image_tensor(batch, height, width, params["backbone"])
    pairs = episode_text_features(net.text_features(zero_shot_labels(names)),
                                  ms.Tensor(np.arange(batch, dtype=np.int32) % len(names)))
    shapes = []

    def run_once():
        logits = net(images, pairs)
        wait_until_computed(logits)
        shapes.append(list(logits.shape))

    result = {"timing": measure(run_once, ctx.warmup, ctx.repeats), "build_s": build_s}
    result.update(parameter_counts(net))
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
    import mindspore as ms
    from mindspore import ops

    from modules.head import pixel_text_logits

    params = ctx.params
    net, labels, build_s = build_random_network(params)
    net.set_train(False)
    height, width = params["image_hw"]
    images = image_tensor(1, height, width, params["backbone"])
    backbone = net.pretrained
    grid_h, grid_w = height // backbone.patch_size, width // backbone.patch_size
    token_ids = ms.Tensor(np.asarray(clip_ms.tokenize(labels), dtype=np.int32))
    hooked = backbone.hooked_tokens(images)

    def reassemble():
        return (backbone.act_postprocess1(hooked[0], grid_h, grid_w),
                backbone.act_postprocess2(hooked[1], grid_h, grid_w),
                backbone.act_postprocess3(hooked[2], grid_h, grid_w),
                backbone.act_postprocess4(hooked[3], grid_h, grid_w))

    levels = reassemble()
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
        "text_encoder": lambda: wait_until_computed(net.clip_pretrained(token_ids)),
        "text_cache_check": lambda: net.sync_text_features(),
        "vit": lambda: wait_until_computed(backbone.hooked_tokens(images)),
        "one_vit_block": lambda: wait_until_computed(backbone.model.blocks[0](tokens)),
        "reassemble": lambda: wait_until_computed(reassemble()),
        "fusion": lambda: wait_until_computed(fusion()),
        "head1": lambda: wait_until_computed(scratch.head1(path_1)),
        "pixel_text": lambda: wait_until_computed(pixel_text_logits(embeddings, text_features)),
        "upsample": lambda: wait_until_computed(ops.interpolate(logits, size=(height, width), mode="bilinear",
                                                                align_corners=True)),
        "whole_cached": lambda: wait_until_computed(net(images)),
    }
    flop = with_port_text_flops(lseg_forward_flops(flop_config_from_params(params, with_text=False)),
                                labels, params["text_config"], True)
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

    def split_heads():
        return ops.unstack(ops.transpose(ops.reshape(qkv, (1, n, 3, h, d // h)), (2, 0, 3, 1, 4)), axis=0)

    q, k, v = split_heads()
    scores = attn.q_matmul_k(q, k)
    probs = ops.softmax(scores, axis=-1)
    context = attn.attn_matmul_v(probs, v)
    hidden_act = block.mlp.fc1(block.norm2(x))
    tanh_gelu = msnn.GELU(approximate=True)
    steps = {
        "layernorm": lambda: wait_until_computed(block.norm1(x)),
        "qkv_dense": lambda: wait_until_computed(attn.qkv(x)),
        "qkv_split": lambda: wait_until_computed(split_heads()),
        "q_kT": lambda: wait_until_computed(attn.mul(attn.q_matmul_k(q, k), attn.scale)),
        "softmax": lambda: wait_until_computed(ops.softmax(scores, axis=-1)),
        "attn_v": lambda: wait_until_computed(attn.attn_matmul_v(probs, v)),
        "merge_heads": lambda: wait_until_computed(ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (1, n, d))),
        "proj_dense": lambda: wait_until_computed(attn.proj(x)),
        "fc1_dense": lambda: wait_until_computed(block.mlp.fc1(x)),
        "gelu_exact": lambda: wait_until_computed(block.mlp.act(hidden_act)),
        "fc2_dense": lambda: wait_until_computed(block.mlp.fc2(hidden_act)),
        "whole_block": lambda: wait_until_computed(block(x)),
        "alt_fc1_dense_2d": lambda: wait_until_computed(block.mlp.fc1(x2d)),
        "alt_gelu_tanh": lambda: wait_until_computed(tanh_gelu(hidden_act)),
    }
    flop = {"qkv_dense": 2 * n * d * 3 * d, "q_kT": 2 * n * n * d, "attn_v": 2 * n * n * d, "proj_dense": 2 * n * d * d,
            "fc1_dense": 2 * n * d * hidden, "fc2_dense": 2 * n * hidden * d, "alt_fc1_dense_2d": 2 * n * d * hidden}
    flop["whole_block"] = sum(flop[k] for k in ("qkv_dense", "q_kT", "attn_v", "proj_dense", "fc1_dense",
                                                "fc2_dense"))
    results = {name: measure(fn, ctx.warmup, ctx.repeats) for name, fn in steps.items()}
    return {"timing": results["whole_block"], "ops": results, "op_flop": flop,
            "op_gflops_per_s": {k: v / results[k]["median_s"] / 1e9 for k, v in flop.items()},
            "gflops_per_s": flop["whole_block"] / results["whole_block"]["median_s"] / 1e9}
