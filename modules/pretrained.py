"""ImageNet weights of the image backbone before LSeg training: a ViT from timm (``.pth``, ``.npz`` with timm names
or the original JAX/big_vision layout) or MindCV (``.ckpt``), its position embedding resized when needed; the
ResNet-101 of the zero-shot networks from torchvision's ``.pth``. Torch-free; strict like every weights path.
"""
import os
import re
import zipfile
import zlib
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
from mindspore import Tensor

from clip_ms.torch_archive import TorchArchiveError, find_state_dict, load_torch_file
from foundation.checkpoint_file import cannot_read_message

from .backbone import resize_pos_embed
from .config import ResNetConfig
from .weights import (
    WeightsError,
    assign_arrays,
    expected_parameters,
    load_mindspore_checkpoint,
    match_strictly,
    mindspore_entry_names,
)


def _jax_vit_to_timm(npz: Dict[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Map the original JAX/big_vision ViT ``.npz`` layout (what timm's ``_load_weights`` reads) to timm names."""
    out = OrderedDict()
    kernel = npz["embedding/kernel"]  # (kh, kw, in, out) -> (out, in, kh, kw)
    out["patch_embed.proj.weight"] = kernel.transpose(3, 2, 0, 1)
    out["patch_embed.proj.bias"] = npz["embedding/bias"]
    out["cls_token"] = npz["cls"]
    out["pos_embed"] = npz["Transformer/posembed_input/pos_embedding"]
    out["norm.weight"] = npz["Transformer/encoder_norm/scale"]
    out["norm.bias"] = npz["Transformer/encoder_norm/bias"]
    if "head/kernel" in npz:
        out["head.weight"] = npz["head/kernel"].T
        out["head.bias"] = npz["head/bias"]
    index = 0
    while f"Transformer/encoderblock_{index}/LayerNorm_0/scale" in npz:
        src = f"Transformer/encoderblock_{index}/"
        dst = f"blocks.{index}."
        attn = src + "MultiHeadDotProductAttention_1/"
        out[dst + "norm1.weight"] = npz[src + "LayerNorm_0/scale"]
        out[dst + "norm1.bias"] = npz[src + "LayerNorm_0/bias"]
        out[dst + "norm2.weight"] = npz[src + "LayerNorm_2/scale"]
        out[dst + "norm2.bias"] = npz[src + "LayerNorm_2/bias"]
        qkv_w = [npz[attn + f"{part}/kernel"].reshape(npz[attn + f"{part}/kernel"].shape[0], -1).T
                 for part in ("query", "key", "value")]
        out[dst + "attn.qkv.weight"] = np.concatenate(qkv_w, axis=0)
        out[dst + "attn.qkv.bias"] = np.concatenate([npz[attn + f"{part}/bias"].reshape(-1)
                                                     for part in ("query", "key", "value")])
        out_kernel = npz[attn + "out/kernel"]  # (heads, head_dim, C)
        out[dst + "attn.proj.weight"] = out_kernel.reshape(-1, out_kernel.shape[-1]).T
        out[dst + "attn.proj.bias"] = npz[attn + "out/bias"]
        for fc, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            out[dst + f"mlp.{fc}.weight"] = npz[src + f"MlpBlock_3/{dense}/kernel"].T
            out[dst + f"mlp.{fc}.bias"] = npz[src + f"MlpBlock_3/{dense}/bias"]
        index += 1
    return out


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array of a numpy ``.npz`` archive (no pickled objects).

    Args:
        path: an existing file.

    Returns:
        name -> array.

    Raises:
        WeightsError: ``"<path>: cannot read (<reason>)"`` or ``"<path>: not a readable .npz (<numpy's error>)"``
            for pickled data, an empty, truncated or damaged archive, a single ``.npy`` array.
    """
    try:
        empty = os.path.getsize(path) == 0  # numpy 1.23 calls an empty file pickled data, 1.26 raises EOFError
        loaded = None if empty else np.load(path)  # allow_pickle=False: weights never need code to load
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
    except OSError as error:
        raise WeightsError(cannot_read_message(path, error)) from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # numpy's and zipfile's wording
        first_line = (str(error).splitlines() or [""])[0]
        raise WeightsError(f"{path}: not a readable .npz ({type(error).__name__}: {first_line})") from None
    what = "empty file, 0 bytes" if empty else f"a single .npy array of shape {np.shape(loaded)}, not an archive"
    raise WeightsError(f"{path}: not a readable .npz ({what})")


def _torch_state_dict(path: str) -> "OrderedDict[str, np.ndarray]":
    """The state_dict a ``torch.save`` file holds (bare or wrapped), read without torch; ``WeightsError`` if not."""
    try:
        return find_state_dict(load_torch_file(path), path=path)
    except TorchArchiveError as error:
        raise WeightsError(str(error)) from None


def _read_vit_source(path: str) -> "OrderedDict[str, np.ndarray]":
    """Read a ViT checkpoint into MindCV-style names without the ``pretrained.model.`` prefix."""
    if not os.path.isfile(path):
        mindspore_entry_names(path)  # "no such file" / "is a directory"
    if path.endswith(".ckpt"):
        raw = load_mindspore_checkpoint(path)
        state = OrderedDict((name, value.asnumpy()) for name, value in raw.items() if isinstance(value, Tensor))
        for prefix in ("pretrained.model.", "network.", "model."):
            if state and all(name.startswith(prefix) for name in state):
                state = OrderedDict((name[len(prefix):], value) for name, value in state.items())
        # MindCV names the classifier "head.classifier" in some releases; ours is "head".
        return OrderedDict((name.replace("head.classifier.", "head."), value) for name, value in state.items())
    if path.endswith(".npz"):
        arrays = _read_npz(path)
        try:
            state = _jax_vit_to_timm(arrays) if "embedding/kernel" in arrays else OrderedDict(arrays)
        except KeyError as error:
            raise WeightsError(f"{path}: an original JAX ViT .npz (embedding/kernel) without its "
                               f"{error.args[0]} array") from None
    else:
        state = _torch_state_dict(path)
    renamed = OrderedDict()
    for name, value in state.items():
        mindcv_name = re.sub(r"((?:^|\.)norm\d?)\.bias$", r"\1.beta", name)
        renamed[re.sub(r"((?:^|\.)norm\d?)\.weight$", r"\1.gamma", mindcv_name)] = value
    return renamed


# torchvision's ImageNet weights of the zero-shot ResNet-101 (ResNet101_Weights.IMAGENET1K_V1, what the official
# models.resnet101(pretrained=True) downloads; torchvision 0.28 models/resnet.py).
TORCHVISION_RESNET101_URL = "https://download.pytorch.org/models/resnet101-63fe2227.pth"


# torchvision ResNet state_dict names -> ours under pretrained. (lang-seg _make_resnet_backbone's Sequential).
_TORCHVISION_RESNET_RENAMES = ((re.compile(r"^conv1\."), "layer1.0."), (re.compile(r"^bn1\."), "layer1.1."),
                               (re.compile(r"^layer1\."), "layer1.4."))


# Entries of a torchvision ResNet file LSeg has no counterpart for: the classifier and BN's step counters.
_TORCHVISION_RESNET_IGNORED = (r"^fc\.", r"\.num_batches_tracked$")


def init_resnet_from_torchvision(net, path: str) -> List[str]:
    """Initialise ``net.pretrained`` (a :class:`modules.resnet.ResNetBackbone`) from a torchvision ResNet ``.pth``.

    The file is torchvision's ``state_dict`` (e.g. ``resnet101-63fe2227.pth`` from :data:`TORCHVISION_RESNET101_URL`),
    read without torch. ``conv1``/``bn1``/``layer1`` map to ``pretrained.layer1.0/1/4``, ``layer2..4`` keep their
    names; ``fc.*`` and ``num_batches_tracked`` are ignored. Fusion and head stay as built.

    Args:
        net: LSegNet with a ResNet backbone.
        path: the ``.pth`` (a Lightning-style ``{"state_dict": ...}`` wrapper is accepted too).

    Returns:
        the list of our parameter names that were loaded.

    Raises:
        WeightsError: ``"<path>: ..."``: unreadable/not a torch file, or every missing, unexpected and mis-shaped
            entry named; nothing is assigned then.
    """
    if not os.path.isfile(path):
        mindspore_entry_names(path)  # "no such file" / "is a directory"
    state = _torch_state_dict(path)
    renamed = OrderedDict()
    for name, value in state.items():
        ours = torchvision_resnet_name(name)
        if ours is not None:
            renamed[ours] = value
    expected = OrderedDict((name, shape) for name, shape in expected_parameters(net).items()
                           if name.startswith("pretrained."))
    # Reported in torchvision's names (what the file holds).
    arrays = match_strictly(OrderedDict((_torchvision_display_name(name), value) for name, value in renamed.items()),
                            OrderedDict((_torchvision_display_name(name), shape) for name, shape in expected.items()),
                            path)
    assign_arrays(net, OrderedDict((ours, value) for ours, value in zip(expected, arrays.values())))
    return list(expected)


def torchvision_resnet_name(name: str) -> Optional[str]:
    """Our parameter name of one torchvision ResNet ``state_dict`` entry.

    Args:
        name: e.g. ``conv1.weight``, ``bn1.running_var``, ``layer1.0.downsample.1.weight``, ``layer3.5.conv2.weight``
            (a DataParallel ``module.`` prefix is dropped).

    Returns:
        ``pretrained.layer1.0.weight``, ``pretrained.layer1.1.running_var``, ``pretrained.layer1.4.0.downsample.1
        .weight``, ``pretrained.layer3.5.conv2.weight``; None for what LSeg has no counterpart for (``fc.*``,
        ``*.num_batches_tracked``).
    """
    name = name[len("module."):] if name.startswith("module.") else name
    if any(re.search(pattern, name) for pattern in _TORCHVISION_RESNET_IGNORED):
        return None
    for pattern, replacement in _TORCHVISION_RESNET_RENAMES:
        if pattern.match(name):  # the first rule only: conv1. -> layer1.0. must not then become layer1.4.0.
            return "pretrained." + pattern.sub(replacement, name)
    return "pretrained." + name


def _torchvision_display_name(ours: str) -> str:
    """Inverse of :func:`torchvision_resnet_name` for messages: ``pretrained.layer1.4.0.x`` -> ``layer1.0.x``."""
    name = ours[len("pretrained."):] if ours.startswith("pretrained.") else ours
    for prefix, torchvision_prefix in (("layer1.0.", "conv1."), ("layer1.1.", "bn1."), ("layer1.4.", "layer1.")):
        if name.startswith(prefix):
            return torchvision_prefix + name[len(prefix):]
    return name


def init_backbone_from_pretrained(net, path: str, skip_head: bool = True) -> List[str]:
    """Initialise the image backbone from ImageNet weights; reassembly/fusion stay as built.

    ViT (``net.pretrained.model``): timm ``.pth`` (e.g. ``vit_large_patch16_384``), ``.npz`` (timm-named arrays or
    the original JAX layout) and MindCV ``.ckpt``; the position embedding is resized bilinearly when its grid
    differs. ResNet backbones: a torchvision ``.pth`` (:func:`init_resnet_from_torchvision`).

    Args:
        net: LSegNet.
        path: checkpoint file.
        skip_head: do not require/load the ImageNet classifier (``head.*`` / ``fc.*``), which LSeg never uses.

    Returns:
        the list of our parameter names that were loaded.

    Raises:
        WeightsError: ``"<path>: ..."``: an unreadable, empty, truncated or damaged file (a ``.npz`` with pickled
            data too), or missing/unexpected/mismatched ViT entries (other than the head when skipped).
    """
    if isinstance(net.cfg, ResNetConfig):
        return init_resnet_from_torchvision(net, path)
    state = _read_vit_source(path)
    prefix = "pretrained.model."
    expected = OrderedDict((name[len(prefix):], shape) for name, shape in expected_parameters(net).items()
                           if name.startswith(prefix))
    if skip_head:
        expected = OrderedDict((n, s) for n, s in expected.items() if not n.startswith("head."))
        state = OrderedDict((n, v) for n, v in state.items() if not n.startswith("head."))
    if "pos_embed" in state and "pos_embed" in expected and tuple(state["pos_embed"].shape) != expected["pos_embed"]:
        grid = net.cfg.grid_size
        source = Tensor(np.asarray(state["pos_embed"], np.float32))
        state["pos_embed"] = resize_pos_embed(source, grid, grid).asnumpy()
    ignore = (r"^fc_norm\.", r"^pre_logits\.")
    arrays = match_strictly(state, expected, path, ignore_unexpected=ignore)
    assign_arrays(net, OrderedDict((prefix + name, value) for name, value in arrays.items()))
    return [prefix + name for name in arrays]
