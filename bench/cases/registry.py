"""Every benchmark variant with its full and ``--quick`` parameters (:data:`VARIANTS`), the order a run executes
them in (:data:`RUN_ORDER`) and their selection by name, case, ``/``-prefix or glob (:func:`select_variants`)."""
import fnmatch
from typing import Dict, List, Optional

from bench.cases.data import case_data
from bench.cases.evaluation import OFFICIAL_SCALES_PARAM, case_eval, case_photo
from bench.cases.export import case_export
from bench.cases.forward import (
    case_forward,
    case_forward_stages,
    case_matmul,
    case_vit_block_ops,
    case_zero_shot_forward,
)
from bench.cases.selftest import case_selftest
from bench.cases.text import case_text_encode, case_text_tokenize
from bench.cases.training import case_train, case_train_profile
from bench.cases.variant import Variant

# The networks the cases time: ViT-L/16 + ViT-B/32 text tower (the official ADE20K model), and its tiny test twin.
_FULL_NETWORK = {"backbone": "clip_vitl16_384", "text_config": "ViT-B/32", "n_labels": 150}
_TINY_NETWORK = {"backbone": "tiny_vit16", "text_config": "tiny", "n_labels": 150}


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
                full=dict(_FULL_NETWORK, image_hw=(480, 480), text=text, warmup=1, repeats=3, timeout_s=600),
                quick=dict(_TINY_NETWORK, image_hw=(64, 64), text=text, warmup=1, repeats=2, timeout_s=90),
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
        "pynative", full=dict(_FULL_NETWORK, image_hw=(480, 480), warmup=1, repeats=2, timeout_s=600),
        quick=dict(_TINY_NETWORK, image_hw=(64, 64), warmup=1, repeats=2, timeout_s=90)))
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
                # One timed ViT-L step (20-60 s on 2 cores), two for train/graph/cached: the full run must fit in
                # about 25 minutes.
                full=dict(_FULL_NETWORK, image_hw=(480, 480), batch=1, text=text, warmup=1,
                          repeats=2 if (mode, text) == ("graph", "cached") else 1, timeout_s=900),
                quick=dict(_TINY_NETWORK, image_hw=(64, 64), batch=1, text=text, warmup=0, repeats=1, timeout_s=120,
                           n_labels=20),
                in_quick=(mode == "graph") == (text == "in_step")))
    out.append(Variant(
        "train/graph/recompute", "train", "train step batch 1, text cached, --recompute backbone", case_train,
        "graph",
        full=dict(_FULL_NETWORK, image_hw=(480, 480), batch=1, text="cached", recompute="backbone", warmup=1,
                  repeats=1, timeout_s=900),
        quick=dict(_TINY_NETWORK, image_hw=(64, 64), batch=1, text="cached", recompute="backbone", warmup=0,
                   repeats=1, timeout_s=120, n_labels=20),
        in_quick=False))
    out.append(Variant(
        "train/graph/profile", "train", "train step (graph, cached) under mindspore.Profiler, by op type (profile)",
        case_train_profile, "graph",
        full=dict(_FULL_NETWORK, image_hw=(480, 480), batch=1, warmup=1, repeats=1, timeout_s=900),
        quick=dict(_TINY_NETWORK, image_hw=(64, 64), batch=1, warmup=1, repeats=1, timeout_s=120, n_labels=20),
        in_quick=False))
    for workers in (0, 2):
        out.append(Variant(
            f"data/engine/workers{workers}", "data", f"train crops, engine BatchLoader, {workers} workers",
            case_data, None,
            full={"n_images": 48, "image_size_range": (512, 683), "base_size": 520, "crop_size": 480, "batch": 1,
                  "workers": workers, "warmup": 1, "repeats": 3, "timeout_s": 300},
            quick={"n_images": 6, "image_size_range": (96, 128), "base_size": 80, "crop_size": 64, "batch": 1,
                   "workers": workers, "warmup": 1, "repeats": 2, "timeout_s": 90}))
    for name, scales, flip, what in (("multiscale_flip", OFFICIAL_SCALES_PARAM, True, "official scales + flip"),
                                     ("single_scale", (1.0,), False, "single scale")):
        out.append(Variant(
            f"eval/pynative/{name}", "eval", f"evaluate one image, {what}", case_eval, "pynative",
            full=dict(_FULL_NETWORK, image_hw=(512, 683), base_size=520, crop_size=480, scales=scales, flip=flip,
                      warmup=1, repeats=1 if flip else 2, timeout_s=900),
            quick=dict(_TINY_NETWORK, image_hw=(48, 64), base_size=48, crop_size=64, scales=scales, flip=flip,
                       warmup=1, repeats=1, timeout_s=90)))
    out.append(Variant(
        "eval/pynative/photo_12mp", "eval", "test.py --image: read + segment a 4032x3024 JPEG (150 labels)",
        case_photo, "pynative",
        full=dict(_FULL_NETWORK, image_hw=(3024, 4032), base_size=520, crop_size=480, warmup=0, repeats=1,
                  timeout_s=900),
        quick=dict(_TINY_NETWORK, image_hw=(600, 800), base_size=80, crop_size=64, warmup=0, repeats=1,
                   timeout_s=90),
        in_quick=False))
    for labels in ("static", "dynamic"):
        out.append(Variant(
            f"export/graph/{labels}_labels", "export",
            "MindIR export + load + run, " + ("labels baked in" if labels == "static" else "text features as input"),
            case_export, "graph",
            full=dict(_FULL_NETWORK, image_hw=(480, 480), batch=1, labels=labels, warmup=1, repeats=3, timeout_s=900),
            quick=dict(_TINY_NETWORK, image_hw=(64, 64), batch=1, labels=labels, warmup=1, repeats=2, timeout_s=120),
            in_quick=labels == "dynamic"))
    out.append(Variant("text/tokenize", "text", "tokenize the 150 labels", case_text_tokenize, None,
                       full={"n_labels": 150, "warmup": 1, "repeats": 10, "timeout_s": 120},
                       quick={"n_labels": 150, "warmup": 1, "repeats": 3, "timeout_s": 60}))
    # A Python call of the text tower runs op by op in either mode (clip_ms.CLIPTextEncoder.__call__): no graph variant.
    for mode, context in (("pynative", "port"), ("pynative", "full")):
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

# Execution order: the variants with targets (bench.report.TARGETS) first, so that a run cut short by its time budget
# (``--budget_min``) still measured what matters most; the table is printed in registry (case) order regardless.
RUN_ORDER = (
    "matmul/pynative",
    "forward/pynative/cached", "forward/pynative/text_in_call", "forward/graph/cached", "forward/graph/text_in_call",
    "train/graph/cached", "train/graph/recompute", "train/pynative/cached",
    "data/engine/workers0", "data/engine/workers2",
    "text/tokenize", "text/pynative/encode", "text/pynative/encode_full_context",
    "eval/pynative/single_scale", "forward/pynative/stages", "forward/pynative/vit_block_ops",
    "eval/pynative/multiscale_flip", "eval/pynative/photo_12mp",
    "train/graph/profile", "train/graph/text_in_step", "train/pynative/text_in_step",
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
