"""Case 5: tokenising the labels and encoding them with the CLIP text tower."""
from typing import Dict, List

import numpy as np

import clip_ms  # its MindSpore parts load on first use (clip_ms/__init__.py): free to import here
from bench.cases.random_network import ade20k_label_subset
from bench.cases.variant import CaseContext
from bench.flops import TextFlopConfig, text_encoder_flops
from bench.timing import measure, wait_until_computed


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


def case_text_tokenize(ctx: CaseContext) -> Dict[str, object]:
    """Case 5a: ``clip_ms.tokenize`` of the label list. Returns: timing and the token array shape."""
    labels = ade20k_label_subset(int(ctx.params["n_labels"]))
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
    import mindspore as ms

    labels = ade20k_label_subset(int(ctx.params["n_labels"]))
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
        wait_until_computed(features)
        shapes.append(tuple(features.shape))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    flop = text_encoder_flops(TextFlopConfig(width=tcfg.width, layers=tcfg.layers, context_length=context,
                                             embed_dim=tcfg.embed_dim), len(labels))
    return {"timing": timing, "output_shape": list(shapes[-1]), "context_length": context, "flop": flop,
            "gflops_per_s": flop / timing["median_s"] / 1e9}
