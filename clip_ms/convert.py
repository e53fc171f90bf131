"""Import the CLIP text tower from PyTorch checkpoints into MindSpore, without torch.

Command line::

    python -m clip_ms.convert SRC.pt DST.ckpt [--config ViT-B/32] [--prefix clip_pretrained.]

SRC may be OpenAI's TorchScript ``ViT-B-32.pt``, a plain ``state_dict`` ``.pt``/``.pth`` (zip or legacy format), or a
checkpoint that holds one (e.g. Lightning's ``{"state_dict": ...}``). The text tower is kept, float16 is cast to
float32, and the result is written atomically as a MindSpore ``.ckpt`` whose names are OpenAI's text-tower names.

Library use (``modules``' network converter calls this for the ``clip_pretrained.*`` part of LSeg checkpoints)::

    tower = text_tower_from_state_dict(state_dict, cfg=TEXT_CONFIGS["ViT-B/32"], prefix="clip_pretrained.")
    load_text_tower(encoder, tower)
"""
import argparse
import os
import re
import sys
from collections import OrderedDict

import mindspore as ms
import numpy as np

from foundation.atomic import atomic_output

from .text_encoder import TEXT_CONFIGS, TextConfig, text_parameter_shapes
from .torch_archive import find_state_dict, load_torch_file

__all__ = [
    "ConversionError",
    "infer_text_config",
    "text_tower_from_state_dict",
    "load_text_tower",
    "save_text_tower",
    "convert_file",
    "main",
]

# Entries of a full CLIP state_dict that are not the text tower and are dropped without complaint. OpenAI's TorchScript
# archives also carry input_resolution/context_length/vocab_size (OpenAI's own build_model deletes them too).
_NON_TEXT = re.compile(r"^(visual\..*|logit_scale|logit_bias|input_resolution|context_length|vocab_size|attn_mask"
                       r"|transformer\.resblocks\.\d+\.attn_mask)$")
_MAX_LISTED = 20


class ConversionError(ValueError):
    """The source does not hold a text tower matching the config; the message lists every problem."""


def _listing(title, names):
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    more = " (+%d more)" % (len(names) - _MAX_LISTED) if len(names) > _MAX_LISTED else ""
    return "  %s (%d): %s%s" % (title, len(names), shown, more)


def infer_text_config(state_dict, prefix=""):
    """Text-tower sizes from the shapes in a state_dict, as OpenAI's ``build_model`` infers them.

    Args:
        state_dict: name -> array.
        prefix: prefix of the CLIP model's names (e.g. ``"clip_pretrained."``).

    Returns:
        :class:`TextConfig` (heads = width // 64).

    Raises:
        ConversionError: a defining entry is missing.
    """
    needed = ["ln_final.weight", "text_projection", "token_embedding.weight", "positional_embedding"]
    missing = [prefix + n for n in needed if prefix + n not in state_dict]
    if missing:
        raise ConversionError("cannot infer the text tower size: missing %s" % ", ".join(missing))
    width = int(state_dict[prefix + "ln_final.weight"].shape[0])
    block = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    layers = len({m.group(1) for m in map(block.match, state_dict) if m})
    return TextConfig(
        vocab_size=int(state_dict[prefix + "token_embedding.weight"].shape[0]),
        context_length=int(state_dict[prefix + "positional_embedding"].shape[0]),
        width=width,
        heads=max(1, width // 64),
        layers=layers,
        embed_dim=int(state_dict[prefix + "text_projection"].shape[1]),
    )


def text_tower_from_state_dict(state_dict, cfg=None, prefix="", source="<state_dict>"):
    """Select, check and cast the text-tower weights of a CLIP state_dict.

    Args:
        state_dict: mapping name -> ``np.ndarray`` (e.g. from :func:`clip_ms.torch_archive.load_torch_file`).
        cfg: :class:`TextConfig`, a :data:`TEXT_CONFIGS` key, or None to infer it from the shapes.
        prefix: prefix of the CLIP names inside ``state_dict`` (``""`` for OpenAI files, ``"clip_pretrained."`` for
            LSeg checkpoints). Entries outside the prefix are ignored.
        source: name of the file for error messages.

    Returns:
        ``OrderedDict`` OpenAI text-tower name (without prefix) -> float32 C-contiguous array, in OpenAI's order.

    Raises:
        ConversionError: missing names, unexpected names under the prefix (neither text tower nor the known visual /
            logit-scale entries), shape mismatches or non-float tensors - all listed in one message.
    """
    if isinstance(cfg, str):
        if cfg not in TEXT_CONFIGS:
            raise ConversionError("unknown --config %r; known: %s" % (cfg, ", ".join(TEXT_CONFIGS)))
        cfg = TEXT_CONFIGS[cfg]
    if cfg is None:
        try:
            cfg = infer_text_config(state_dict, prefix)
        except ConversionError as exc:
            raise ConversionError("%s: %s" % (source, exc)) from None
    expected = text_parameter_shapes(cfg)
    ours = {name[len(prefix):]: value for name, value in state_dict.items() if name.startswith(prefix)}
    missing = [prefix + n for n in expected if n not in ours]
    unexpected = [prefix + n for n in ours if n not in expected and not _NON_TEXT.match(n)]
    mismatched, wrong_dtype = [], []
    tower = OrderedDict()
    for name, shape in expected.items():
        if name not in ours:
            continue
        value = np.asarray(ours[name])
        if tuple(value.shape) != tuple(shape):
            mismatched.append("%s%s %s (expected %s)" % (prefix, name, tuple(value.shape), tuple(shape)))
        elif value.dtype.kind != "f":
            wrong_dtype.append("%s%s dtype %s" % (prefix, name, value.dtype))
        else:
            tower[name] = np.ascontiguousarray(value, dtype=np.float32)
    problems = []
    if missing:
        problems.append(_listing("missing", missing))
    if unexpected:
        problems.append(_listing("unexpected", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatch", mismatched))
    if wrong_dtype:
        problems.append(_listing("not floating point", wrong_dtype))
    if problems:
        raise ConversionError("%s does not match the CLIP text tower %s (prefix %r):\n%s"
                              % (source, cfg, prefix, "\n".join(problems)))
    return tower


def _resolve_parameter(cell, dotted):
    """The Parameter at an attribute path such as ``transformer.resblocks.0.ln_1.weight``."""
    target = cell
    for part in dotted.split("."):
        target = target[int(part)] if part.isdigit() else getattr(target, part)
    return target


def load_text_tower(encoder, tower):
    """Copy text-tower weights into a :class:`clip_ms.CLIPTextEncoder` (also when it is a sub-cell of a network).

    Args:
        encoder: the ``CLIPTextEncoder`` cell.
        tower: output of :func:`text_tower_from_state_dict` (every name of the encoder's config, right shapes).

    Returns:
        None. Parameters stay ``requires_grad=False``.

    Raises:
        ConversionError: names or shapes differ from the encoder's.
    """
    expected = text_parameter_shapes(encoder.cfg)
    missing = [n for n in expected if n not in tower]
    unexpected = [n for n in tower if n not in expected]
    mismatched = ["%s %s (expected %s)" % (n, tuple(np.shape(tower[n])), s)
                  for n, s in expected.items() if n in tower and tuple(np.shape(tower[n])) != s]
    if missing or unexpected or mismatched:
        lines = [_listing(t, v) for t, v in (("missing", missing), ("unexpected", unexpected),
                                             ("shape mismatch", mismatched)) if v]
        raise ConversionError("text tower weights do not fit the encoder %s:\n%s" % (encoder.cfg, "\n".join(lines)))
    for name in expected:
        _resolve_parameter(encoder, name).set_data(ms.Tensor(np.asarray(tower[name], dtype=np.float32)))


def save_text_tower(tower, dst):
    """Write a text tower as a MindSpore checkpoint, atomically (temporary file in the same folder, then rename).

    Args:
        tower: name -> float32 array.
        dst: destination path ending in ``.ckpt``.

    Returns:
        None.
    """
    dst = os.fspath(dst)
    if not dst.endswith(".ckpt"):
        raise ConversionError("destination %s must end in .ckpt (MindSpore appends it otherwise)" % dst)
    with atomic_output(dst) as temporary:
        ms.save_checkpoint([{"name": n, "data": ms.Tensor(v)} for n, v in tower.items()], temporary)


def _detect_prefix(state_dict, source):
    if "text_projection" in state_dict:
        return ""
    prefixes = sorted(n[: -len("text_projection")] for n in state_dict if n.endswith(".text_projection"))
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        raise ConversionError("%s holds no CLIP text tower (no *text_projection entry among %d names, e.g. %s)"
                              % (source, len(state_dict), ", ".join(list(state_dict)[:5])))
    raise ConversionError("%s holds several CLIP models (%s); choose one with --prefix" % (source, ", ".join(prefixes)))


def convert_file(src, dst, config=None, prefix=None):
    """Convert a PyTorch CLIP (or LSeg) checkpoint's text tower into a MindSpore ``.ckpt``.

    Args:
        src: OpenAI TorchScript archive, state_dict file, or checkpoint holding a state_dict.
        dst: destination ``.ckpt`` (written atomically).
        config: :data:`TEXT_CONFIGS` key / :class:`TextConfig`, or None to infer from the shapes.
        prefix: name prefix of the CLIP model in the file; None detects it from ``*text_projection``.

    Returns:
        ``(cfg, tower)``: the :class:`TextConfig` used and the written name -> float32 array dict.
    """
    src = os.fspath(src)
    state_dict = find_state_dict(load_torch_file(src), path=src)
    if prefix is None:
        prefix = _detect_prefix(state_dict, src)
    if isinstance(config, str):
        if config not in TEXT_CONFIGS:
            raise ConversionError("unknown --config %r; known: %s" % (config, ", ".join(TEXT_CONFIGS)))
        config = TEXT_CONFIGS[config]
    cfg = config if config is not None else infer_text_config(state_dict, prefix)
    tower = text_tower_from_state_dict(state_dict, cfg, prefix=prefix, source=src)
    save_text_tower(tower, dst)
    return cfg, tower


def main(argv=None):
    """Command-line entry point.

    Args:
        argv: argument list (default ``sys.argv[1:]``).

    Returns:
        Process exit code: 0 on success, 2 (a usage or input error, as every command of the project) with the
        problem printed to stderr as one ``python -m clip_ms.convert: error: <file>: <what is wrong>`` line.
    """
    parser = argparse.ArgumentParser(prog="python -m clip_ms.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="OpenAI ViT-*.pt (TorchScript), or a .pt/.pth/.ckpt holding a CLIP state_dict")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt)")
    parser.add_argument("--config", default=None, choices=sorted(TEXT_CONFIGS),
                        help="text tower size to enforce (default: inferred from the shapes)")
    parser.add_argument("--prefix", default=None,
                        help="name prefix of the CLIP model in SRC, e.g. 'clip_pretrained.' (default: detected)")
    args = parser.parse_args(argv)
    try:
        if os.path.isdir(args.src):  # the torch reader would call it "no such file"
            raise ConversionError("%s: is a directory, not a checkpoint file" % args.src)
        cfg, tower = convert_file(args.src, args.dst, config=args.config, prefix=args.prefix)
    except (ConversionError, ValueError, OSError) as exc:
        # One line: the listing of a mismatch (one category per line in the message) is joined with "; ".
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print("%s: error: %s" % (parser.prog, " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()), file=sys.stderr)
        return 2
    count = sum(int(v.size) for v in tower.values())
    print("wrote %s: %d tensors, %d parameters, %s" % (args.dst, len(tower), count, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
