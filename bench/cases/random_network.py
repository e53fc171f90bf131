"""What the cases time: an LSeg network with random weights (speed does not depend on their values) and inputs of
the shape and value range it sees in use."""
import time
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from encoding_custom.datasets.transforms import image_to_array
from encoding_custom.fewshot import NORMALISATIONS
from foundation.labels import ade20k_labels


def ade20k_label_subset(n_labels: int) -> List[str]:
    """Args: n_labels: how many. Returns: the first ``n_labels`` ADE20K names. Raises: ValueError beyond 150."""
    names = list(ade20k_labels())
    if n_labels > len(names):
        raise ValueError(f"n_labels={n_labels} but foundation.labels.ade20k_labels() has {len(names)} names")
    return names[:n_labels]


def normalised_images(batch: int, height: int, width: int, backbone: str = "clip_vitl16_384",
                      seed: int = 0) -> np.ndarray:
    """Random pixels normalised as ``backbone``'s training input (``modules.BACKBONES[...].normalisation``).

    Returns:
        float32 (batch, 3, height, width).
    """
    from modules import BACKBONES  # loads MindSpore: see bench.cases, "Imports"

    mean, std = NORMALISATIONS[BACKBONES[backbone].normalisation]
    pixels = np.random.RandomState(seed).randint(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
    return np.stack([image_to_array(Image.fromarray(rgb), mean, std) for rgb in pixels])


def image_tensor(batch: int, height: int, width: int, backbone: str = "clip_vitl16_384", seed: int = 0):
    """Returns: :func:`normalised_images` as a MindSpore Tensor float32 (batch, 3, height, width)."""
    import mindspore as ms

    return ms.Tensor(normalised_images(batch, height, width, backbone, seed))


def random_masks(batch: int, height: int, width: int, n_labels: int, ignore_index: int, seed: int = 1) -> np.ndarray:
    """Training targets: class indices in ``[0, n_labels)``, about one pixel in ``n_labels + 1`` ``ignore_index``.

    Returns:
        int32 (batch, height, width).
    """
    masks = np.random.RandomState(seed).randint(0, n_labels + 1, size=(batch, height, width)).astype(np.int32)
    masks[masks == n_labels] = ignore_index
    return masks


def build_random_network(params: Dict[str, object]) -> Tuple[object, List[str], float]:
    """An ``LSegNet`` of ``params["backbone"]`` / ``params["text_config"]`` with random weights, its labels the first
    ``params["n_labels"]`` ADE20K names (encoded at build).

    Returns:
        ``(network, labels, build seconds)``.
    """
    from modules import LSegNet  # loads MindSpore: see bench.cases, "Imports"

    labels = ade20k_label_subset(int(params["n_labels"]))
    start = time.perf_counter()
    net = LSegNet(backbone=params["backbone"], labels=labels, text_config=params["text_config"])
    return net, labels, time.perf_counter() - start


def parameter_counts(net) -> Dict[str, int]:
    """Returns: ``{"params_total", "params_trainable"}``, element counts over every Parameter of ``net``."""
    total = trainable = 0
    for param in net.get_parameters():
        size = int(np.prod(param.shape)) if param.shape else 1
        total += size
        trainable += size if param.requires_grad else 0
    return {"params_total": total, "params_trainable": trainable}
