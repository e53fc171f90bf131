"""Case 3: training-crop throughput of the training loader on a synthetic ADE20K-layout set."""
import os
import time
from typing import Dict

from bench.cases.variant import CaseContext
from bench.timing import measure
from encoding_custom.datasets.segmentation import SegmentationSet
from encoding_custom.datasets.synthetic import write_synthetic_ade20k


def case_data(ctx: CaseContext) -> Dict[str, object]:
    """Case 3: images/s of augmented training crops, one full pass (epoch) over the set per repetition.

    The loader is ``encoding_custom.engine.BatchLoader``, what the training loop uses (a fork pool per epoch, so
    every pass includes its start-up as in training).

    Returns: timing (per pass), ``images_per_s`` (median), the set's generation time.
    """
    from encoding_custom.engine import BatchLoader

    params = ctx.params
    root = os.path.join(ctx.workdir, "ade")
    start = time.perf_counter()
    write_synthetic_ade20k(root, n_train=int(params["n_images"]), n_val=0, seed=0,
                           size=tuple(params["image_size_range"]))
    generate_s = time.perf_counter() - start
    crop = int(params["crop_size"])
    dataset = SegmentationSet(root, split="train", mode="train", base_size=int(params["base_size"]),
                                 crop_size=crop, seed=0)
    loader = BatchLoader(dataset, int(params["batch"]), seed=0, shuffle=True, workers=int(params["workers"]),
                         drop_last=False)
    epochs = iter(range(10**6))
    seen = []

    def run_once():
        count = 0
        for images, masks in loader.iterate(next(epochs)):
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
