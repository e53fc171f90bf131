"""Case 4: evaluating one image as test.py does, multi-scale + flip or single scale, and segmenting a phone photo."""
import os
import time
from typing import Dict

import numpy as np
from PIL import Image

from bench.cases.random_network import build_random_network, normalised_images
from bench.cases.variant import CaseContext
from bench.timing import measure
from encoding_custom.datasets.transforms import read_image

# Value of the ``scales`` parameter that stands for ``encoding_custom.evaluation.evaluator.OFFICIAL_SCALES``; the
# registry cannot import the evaluator itself (it loads MindSpore, see bench.cases, "Imports").
OFFICIAL_SCALES_PARAM = "official"


def case_eval(ctx: CaseContext) -> Dict[str, object]:
    """Case 4: evaluation of one image of ``params["image_hw"]`` with ``encoding_custom.evaluation.evaluator``'s
    official multi-scale + flip + sliding-window evaluator, or single scale without flip. ``params["scales"]``: a list,
    or ``"official"`` for ``OFFICIAL_SCALES``.

    Returns: timing (per image), build time, the scales used, the number of network forwards per image.
    """
    from encoding_custom.evaluation.evaluator import OFFICIAL_SCALES, MultiScaleEvaluator, network_forward

    params = ctx.params
    scales = OFFICIAL_SCALES if params["scales"] == OFFICIAL_SCALES_PARAM else tuple(params["scales"])
    net, labels, build_s = build_random_network(params)
    net.set_train(False)
    height, width = params["image_hw"]
    image = normalised_images(1, height, width, params["backbone"])
    forward = network_forward(net)
    forwards = [0]

    def counting_forward(images):
        forwards[0] += 1
        return forward(images)

    evaluator = MultiScaleEvaluator(counting_forward, nclass=len(labels), scales=scales, flip=bool(params["flip"]),
                                    base_size=int(params["base_size"]), crop_size=int(params["crop_size"]))
    outputs = []

    def run_once():
        forwards[0] = 0
        outputs.append(tuple(evaluator(image).shape))

    warmup_s = []
    crop = int(params["crop_size"])
    for _ in range(ctx.warmup):  # plain crop-sized forwards: a whole multi-scale pass would double the cost
        start = time.perf_counter()
        forward(np.zeros((1, 3, crop, crop), np.float32))
        warmup_s.append(time.perf_counter() - start)
    timing = measure(run_once, 0, ctx.repeats)
    timing["warmup_s"] = warmup_s
    return {"timing": timing, "build_s": build_s, "scales": list(scales), "forwards_per_image": forwards[0],
            "output_shape": outputs[-1], "s_per_forward": timing["median_s"] / max(1, forwards[0])}


def case_photo(ctx: CaseContext) -> Dict[str, object]:
    """Case 4b: ``test.py --image`` on a phone photo of ``params["image_hw"]``: JPEG read
    (``transforms.read_image``) plus ``evaluator.segment_image`` (long side to ``base_size``, ``crop_size`` windows,
    logits resized back band by band).

    Returns: timing (per photo, read included), build time, the number of network forwards, output shape and dtype.
    """
    from encoding_custom.evaluation.evaluator import segment_image

    params = ctx.params
    net, labels, build_s = build_random_network(params)
    net.set_train(False)
    height, width = params["image_hw"]
    blocks = np.random.RandomState(0).randint(0, 256, (height // 96 + 2, width // 96 + 2, 3)).astype(np.uint8)
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
