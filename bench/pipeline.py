"""Measure data-pipeline throughput (train mode, images/s) on a synthetic set of ADE20K-like image sizes.

    python -m bench.pipeline --root /tmp/ade_bench --images 64 --workers 0 2

Writes the synthetic set once (``--size`` 512 683 gives ADE20K-like sides), then times full passes of
:class:`encoding_custom.engine.BatchLoader`, the training loader (decode, flip, rescale, pad, crop, normalise,
stack).
"""
import argparse
import json
import os
import time

from encoding_custom.datasets.layout import check_layout
from encoding_custom.datasets.segmentation import SegmentationSet
from encoding_custom.datasets.synthetic import write_synthetic_ade20k
from encoding_custom.engine import BatchLoader


def measure(root: str, workers: int, batch_size: int = 8, base_size: int = 520, crop_size: int = 480,
            passes: int = 2, seed: int = 0):
    """Images per second of the train pipeline, after one warm-up batch.

    Args:
        root: data root with a (synthetic) ADE20K layout.
        workers: loader worker processes.
        batch_size: batch size.
        base_size: train rescale base size.
        crop_size: train crop.
        passes: full passes over the training split to time.
        seed: augmentation seed.

    Returns:
        ``(images per second, CPU seconds per image spent in this process)``; with workers the second figure
        only counts the main process (batch hand-off), with 0 workers it is the whole pipeline's cost. With workers
        every pass includes the start of its worker pool, as in training.
    """
    dataset = SegmentationSet(root, "train", base_size=base_size, crop_size=crop_size, seed=seed)
    loader = BatchLoader(dataset, batch_size, seed=seed, shuffle=True, workers=workers, drop_last=True)
    count, started, cpu_started = 0, None, None
    for epoch in range(passes):
        for images, _ in loader.iterate(epoch):
            if started is None:  # the first batch includes worker start-up
                started, cpu_started = time.perf_counter(), time.process_time()
                continue
            count += images.shape[0]
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    del loader
    return count / elapsed, cpu / max(count, 1)


def main(argv=None):
    """CLI: print one JSON line per worker count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="/tmp/ade_bench")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 683))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=480)
    parser.add_argument("--base-size", type=int, default=520)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args(argv)
    if not check_layout(args.root, expected={"train": args.images, "val": 1}).ok:
        write_synthetic_ade20k(args.root, args.images, 1, seed=0, size=tuple(args.size))
    for workers in args.workers:
        rate, cpu_per_image = measure(args.root, workers, args.batch_size, args.base_size, args.crop_size,
                                      args.passes)
        print(json.dumps({"workers": workers, "images_per_s": round(rate, 2),
                          "main_process_cpu_ms_per_image": round(1000 * cpu_per_image, 1),
                          "load_average_1min": round(os.getloadavg()[0], 2), "batch_size": args.batch_size,
                          "crop_size": args.crop_size, "image_sides": list(args.size),
                          "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
