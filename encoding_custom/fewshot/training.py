"""Training samples of one fold: the official zero-shot training episodes, image by image.

What the official zero-shot module trains on (``LSegmentationModuleZS.training_step`` with ``nshot`` 1): the 1-shot
episodes of HSNet's ``trn`` split of the fold (its 15 PASCAL / 60 COCO / 520 FSS-1000 training classes), each giving
its support and its query image, resized to 480 × 480 without augmentation, with the target 1 on the episode's
class and 0 elsewhere, a two-way cross entropy against the label pair ``['others', class]``. The episodes are the
datasets' own (``sample_episode``: PASCAL and FSS-1000 walk their (image, class) list, COCO-20i draws a class
uniformly and then an image, as HSNet's samplers do), drawn with a generator seeded by ``(seed, epoch, episode)`` so
that an epoch is the same whatever the loader workers and after a resume. One epoch is ``len(trn split)`` episodes,
i.e. twice as many images: sample ``i < n`` is episode ``i``'s query, sample ``n + i`` its support (the official step
puts both into one batch; here the loader shuffles all samples).

One deliberate difference: pixels of the fold's held-out (test) classes are ignored (-1), not background, so the test
classes are never supervised at all (the official loss trains them as "others" when they appear in a training image).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from encoding_custom.fewshot.splits import FewShotDataError


def _episode_seed(seed: int, epoch: int, episode: int) -> int:
    """A well-mixed 32-bit seed for one (seed, epoch, episode) triple."""
    return int(np.random.SeedSequence([seed, epoch, episode]).generate_state(1)[0])


class FoldTrainingSet:
    """``(image float32 (3,S,S), target int32 (S,S), class index int)`` samples of a fold's training episodes.

    Args:
        dataset: the fold's ``trn`` split with ``shot=1`` (``make_fewshot_dataset(b, root, fold, "trn", shot=1)``).
        held_out_class_ids: the fold's test classes: their pixels become -1 (ignored) in every target.
        seed: run seed of the episode draws.
        max_episodes: use only this many episodes (a seeded choice over the whole split, so every class can occur;
            ``train_custom.py --max_train_images``); None = all.

    Attributes:
        class_ids: the training classes (benchmark class ids) in the order of the label list trained with:
            class index ``k`` means ``class_ids[k]``.
        episodes: the episode indices of the split that are used.
    """

    def __init__(self, dataset, held_out_class_ids: Sequence[int], seed: int = 0,
                 max_episodes: Optional[int] = None):
        if getattr(dataset, "shot", None) != 1:
            raise ValueError("FoldTrainingSet: needs the 1-shot trn episodes (shot=1), got shot=%r"
                             % getattr(dataset, "shot", None))
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0
        self.class_ids = [int(class_id) for class_id in dataset.class_ids]
        self.held_out_class_ids = sorted(int(class_id) for class_id in held_out_class_ids)
        leaked = sorted(set(self.class_ids) & set(self.held_out_class_ids))
        if leaked:
            raise FewShotDataError("training classes %s are also held out for testing" % leaked)
        total = len(dataset)
        if max_episodes is None or max_episodes >= total:
            self.episodes: List[int] = list(range(total))
        else:
            self.episodes = sorted(np.random.RandomState(self.seed).permutation(total)[:int(max_episodes)].tolist())
        self._index_of = {class_id: index for index, class_id in enumerate(self.class_ids)}

    def set_epoch(self, epoch: int) -> None:
        """Draw the episodes of ``epoch`` (``engine.BatchLoader`` calls it before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * len(self.episodes)

    def episode(self, position: int) -> Tuple[str, str, int]:
        """The ``position``-th used episode of this epoch: ``(query name, support name, benchmark class id)``."""
        episode = self.episodes[position]
        rng = np.random.RandomState(_episode_seed(self.seed, self.epoch, episode))
        query_name, support_names, class_id = self.dataset.sample_episode(episode, rng)
        if class_id not in self._index_of:
            raise FewShotDataError("episode %d of the training split has class %d, not a training class of the fold"
                                   % (episode, class_id))
        return query_name, support_names[0], class_id

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray, int]:
        """Sample ``index``: episode ``index % n``'s query (``index < n``) or support image, its target (1 class,
        0 other, -1 held-out class) and its class index."""
        query_name, support_name, class_id = self.episode(index % len(self.episodes))
        name = query_name if index < len(self.episodes) else support_name
        image, target = self.dataset.training_target(name, class_id, self.held_out_class_ids)
        return image, target, self._index_of[class_id]

    def label_names(self, benchmark_labels: Sequence[str]) -> List[str]:
        """The training classes' names in class-index order.

        Args:
            benchmark_labels: the benchmark's class names by class id (``benchmark_labels``).

        Returns:
            ``len(class_ids)`` names.
        """
        return [benchmark_labels[class_id] for class_id in self.class_ids]
