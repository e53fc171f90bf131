"""Frozen MindSpore CLIP text tower, OpenAI's CLIP BPE tokenizer, and torch-free reading of PyTorch checkpoints.

Public names (see docs/ARCHITECTURE.md): :func:`tokenize`, :func:`decode`, :class:`TextConfig`, :data:`TEXT_CONFIGS`,
:class:`CLIPTextEncoder`, :func:`trim_token_ids`, and the modules :mod:`clip_ms.torch_archive` and
:mod:`clip_ms.convert` (``python -m clip_ms.convert SRC DST``).

Names are imported on first use, so ``clip_ms.torch_archive`` and ``clip_ms.tokenizer`` (numpy only) work in a
Python without MindSpore, e.g. in fixture scripts run with torch.
"""
import importlib

_EXPORTS = {
    "TEXT_CONFIGS": "text_encoder",
    "TextConfig": "text_encoder",
    "CLIPTextEncoder": "text_encoder",
    "text_parameter_shapes": "text_encoder",
    "trim_token_ids": "text_encoder",
    "tokenize": "tokenizer",
    "decode": "tokenizer",
    "SimpleTokenizer": "tokenizer",
    "ContextLengthError": "tokenizer",
}
__all__ = sorted(_EXPORTS) + ["convert", "text_encoder", "tokenizer", "torch_archive"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    if name in ("convert", "text_encoder", "torch_archive", "tokenizer"):
        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'clip_ms' has no attribute %r" % name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
