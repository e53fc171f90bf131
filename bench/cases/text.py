"""Case 5: tokenising the labels and encoding them with the CLIP text tower."""
from typing import Dict, List, Tuple

import numpy as np

import clip_ms  # its MindSpore parts load on first use (clip_ms/__init__.py): free to import here
from bench.cases.random_network import ade20k_label_subset
from bench.cases.variant import CaseContext
from bench.flops import TextFlopConfig, text_encoder_flops
from bench.timing import measure, wait_until_computed


def port_text_runs(labels: List[str]) -> List[Tuple[int, int]]:
    """The text-tower runs the port makes for ``labels`` called from Python, as ``(rows, token positions)`` pairs.

    ``clip_ms.CLIPTextEncoder.__call__`` runs op by op in either mode and no column after a row's end-of-text token
    (exact under the causal mask): each end position's rows at their own length. The 150 ADE20K names: 133 rows of
    3 positions, 16 of 4, one of 5. The official code runs all 77.

    Args:
        labels: label strings.

    Returns:
        list of (rows, positions).
    """
    ends = np.asarray(clip_ms.tokenize(labels)).argmax(axis=1)
    return [(int((ends == end).sum()), int(end) + 1) for end in np.unique(ends)]


def port_text_flops(labels: List[str], text_config: str) -> int:
    """FLOP of the port's text-tower runs (:func:`port_text_runs`) for ``labels`` with ``TEXT_CONFIGS[text_config]``."""
    tcfg = clip_ms.TEXT_CONFIGS[text_config]
    return sum(text_encoder_flops(TextFlopConfig(width=tcfg.width, layers=tcfg.layers, context_length=positions,
                                                 embed_dim=tcfg.embed_dim), rows)
               for rows, positions in port_text_runs(labels))


def case_text_tokenize(ctx: CaseContext) -> Dict[str, object]:
    """Case 5a: ``clip_ms.tokenize`` of the label list. Returns: timing and the token array shape."""
    labels = ade20k_label_subset(int(ctx.params["n_labels"]))
    shapes = []
    timing = measure(lambda: shapes.append(np.asarray(clip_ms.tokenize(labels)).shape), ctx.warmup, ctx.repeats)
    return {"timing": timing, "token_shape": list(shapes[-1])}


def case_text_encode(ctx: CaseContext) -> Dict[str, object]:
    """Case 5b: ``CLIPTextEncoder`` on the tokenised label list (tokenising not timed).

    ``params["context"]``: ``"port"`` calls the encoder as the network does (``encoder(token_ids)``, whose
    ``__call__`` runs each row only up to its end-of-text token); ``"full"`` runs ``construct`` on all 77
    positions, which is the work the official code does (PyNative only: it bypasses ``__call__``).

    Returns: timing, the (rows, positions) runs, analytic FLOP and achieved GFLOP/s, output shape.
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
    shapes = []

    def run_once():
        features = encoder.construct(token_ids) if full else encoder(token_ids)
        wait_until_computed(features)
        shapes.append(tuple(features.shape))

    timing = measure(run_once, ctx.warmup, ctx.repeats)
    if full:
        runs = [(len(labels), int(token_ids.shape[1]))]
        flop = text_encoder_flops(TextFlopConfig(width=tcfg.width, layers=tcfg.layers, context_length=runs[0][1],
                                                 embed_dim=tcfg.embed_dim), len(labels))
    else:
        runs = port_text_runs(labels)
        flop = port_text_flops(labels, ctx.params["text_config"])
    return {"timing": timing, "output_shape": list(shapes[-1]), "runs": [list(run) for run in runs], "flop": flop,
            "gflops_per_s": flop / timing["median_s"] / 1e9}
