"""Zero-shot episodes on MindSpore (HSNet's protocol, ``test_lseg_zs.py``): the training forward and the one
evaluation loop (training validation and ``test.py --dataset pascal|coco|fss`` both use :func:`evaluate_episodes`).

Each episode is a query image and one class; the network scores every pixel against the label pair
``['others', class name]`` (``modules.lseg.episode_text_features``) and the argmax is the binary prediction, scored by
``encoding_custom.fewshot.FewShotMeter`` (per-class foreground IoU averaged over the fold's classes, FB-IoU).
"""
from typing import Callable, Dict, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from encoding_custom.evaluation.metrics import to_numpy
from encoding_custom.fewshot import FewShotMeter
from encoding_custom.progress import progress_bar
from modules.lseg import episode_text_features, zero_shot_labels


class EpisodeForward(nn.Cell):
    """The training forward of a zero-shot network: ``(images, class indices) → logits (B, 2, H, W)``.

    The network's current labels must be ``zero_shot_labels(training class names)``; sample ``b`` is scored
    against ``['others', labels[1 + class_index[b]]]``, read from the ``text_features_cache`` Parameter, so the step
    compiles once (GRAPH_MODE) and needs no text encoding inside it.

    Args:
        net: an ``LSegNet`` (its Parameters are this cell's: no prefix is added).

    Inputs:
        inputs: tuple ``(images float32 (B, 3, H, W), class indices int32 (B,))``.
    """

    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, inputs):
        images, class_indices = inputs
        return self.net(images, episode_text_features(self.net.text_features_cache, class_indices))


def evaluate_episodes(net, dataset, class_names: Sequence[str], batch_size: int = 1,
                      max_episodes: Optional[int] = None, progress: bool = False, desc: str = "episodes",
                      stop: Optional[Callable[[], bool]] = None, seed: int = 0) -> Optional[FewShotMeter]:
    """Run a fold's test episodes in order and accumulate HSNet's metric.

    Args:
        net: an ``LSegNet`` in eval mode (any label list: the pair features are looked up per call).
        dataset: few-shot episodes (``make_fewshot_dataset(..., "test")``: ``benchmark``, ``class_ids``, ``len``,
            ``[idx] → FewShotEpisode``), images already resized to one square size.
        class_names: the benchmark's class names by class id (``benchmark_labels``).
        batch_size: episodes per forward (all episodes have the same image size).
        max_episodes: only the first N episodes (quick validation).
        progress: a tqdm bar with the running mIoU / FB-IoU.
        desc: the bar's title.
        stop: optional ``() → bool`` asked after every batch; True abandons the run (returns None).
        seed: ``np.random`` is seeded with it first, as the official test (``utils.fix_randseed(0)``), so that
            episodes that draw support images draw the official ones.

    Returns:
        the filled ``FewShotMeter`` (``meter.classes_seen``: the class ids that had an episode; with
        ``max_episodes`` some of the fold's classes may have none, and HSNet's mean counts them as 0), or None when
        ``stop`` abandoned the run.
    """
    np.random.seed(seed)
    label_features = net.text_features(zero_shot_labels(list(class_names)))
    meter = FewShotMeter(dataset.benchmark, dataset.class_ids)
    count = len(dataset) if max_episodes is None else min(len(dataset), int(max_episodes))
    meter.classes_seen = set()
    bar = progress_bar(total=count, desc=desc, disable=not progress)
    for start in range(0, count, batch_size):
        episodes = [dataset[index] for index in range(start, min(count, start + batch_size))]
        images = np.stack([episode.query_img for episode in episodes])
        class_ids = np.array([episode.class_id for episode in episodes], np.int32)
        meter.classes_seen.update(int(class_id) for class_id in class_ids)
        logits = net(ms.Tensor(images), episode_text_features(label_features, ms.Tensor(class_ids)))
        prediction = np.argmax(to_numpy(logits), axis=1)
        ignore = ([episode.query_ignore_idx for episode in episodes]
                  if episodes[0].query_ignore_idx is not None else None)
        meter.update(prediction, np.stack([episode.query_mask for episode in episodes]), class_ids,
                     None if ignore is None else np.stack(ignore))
        miou, fb_iou = meter.compute()
        bar.set_postfix(mIoU="%.2f" % miou, FB_IoU="%.2f" % fb_iou)
        bar.update(len(episodes))
        if stop is not None and stop():
            bar.close()
            return None
    bar.close()
    return meter


def episode_validator(dataset, class_names: Sequence[str], batch_size: int = 1,
                      max_episodes: Optional[int] = None) -> Callable:
    """A ``Trainer(validator=...)`` that scores the network on a fold's unseen-class episodes.

    With several devices every rank runs all the episodes (the figures are the same on every rank, the time is not
    divided): COCO-20i draws its episodes one after the other from one generator, so a rank cannot draw its share
    alone.

    Returns:
        ``f(network, stop) → {"mIoU": fraction, "FB-IoU": fraction}`` (HSNet's percentages / 100, so that
        metrics.jsonl and the best-checkpoint choice read as for ADE20K), or None when stopped.
    """
    def validate(network, stop=None) -> Optional[Dict[str, float]]:
        meter = evaluate_episodes(network, dataset, class_names, batch_size=batch_size, max_episodes=max_episodes,
                                  stop=stop)
        if meter is None:
            return None
        miou, fb_iou = meter.compute()
        return {"mIoU": miou / 100.0, "FB-IoU": fb_iou / 100.0}
    return validate
