"""Training a zero-shot fold: batches with a class column, the episode forward inside the training step (both
modes), the episode validator, and the fold's training pairs (never a held-out class)."""
import json

import mindspore as ms
import numpy as np
import pytest

from encoding_custom.engine import BatchLoader, TrainConfig, Trainer
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.evaluation.zero_shot import EpisodeForward, episode_validator, evaluate_episodes
from encoding_custom.fewshot import (
    FewShotDataError,
    FewShotMeter,
    fold_class_ids,
    make_fewshot_dataset,
    write_synthetic_pascal5i,
)
from encoding_custom.fewshot.episodes import resize_mask_nearest
from encoding_custom.fewshot.training import FoldTrainingSet
from foundation.checkpoint_file import load_checkpoint
from modules.factory import build_lseg
from modules.lseg import zero_shot_labels

STACK_INDEPENDENT = ("the class column and episode bookkeeping are numpy code; the episode training step in "
                     "GRAPH_MODE is marked both_stacks, and the episode forward is tested per stack in "
                     "test_modules_zero_shot")

CLASS_NAMES = ["cat", "dog", "car"]
SIZE = 64


class PairData:
    """(image, binary target, class index) samples; the class of sample i is ``classes[i]``."""

    def __init__(self, classes):
        self.classes = list(classes)

    def __len__(self):
        return len(self.classes)

    def __getitem__(self, index):
        rng = np.random.RandomState(index)
        target = (rng.rand(SIZE, SIZE) > 0.6).astype(np.int32)
        target[:4] = -1  # ignored rows
        return rng.randn(3, SIZE, SIZE).astype(np.float32), target, self.classes[index]


def _net():
    ms.set_seed(0)
    net = build_lseg("tiny_vit16", zero_shot_labels(CLASS_NAMES), text_config="tiny")
    net.sync_text_features()
    return net


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _train(net, exp_dir, classes, epochs=1):
    config = TrainConfig(lr=0.02, max_epochs=epochs, batch_size=4, exp_dir=str(exp_dir), progress=False, seed=3)
    trainer = Trainer(net, SegmentationLoss(ignore_index=-1), PairData(classes), config,
                      param_groups=[(net.backbone_params(), 1.0), (net.head_params(), 10.0)],
                      train_network=EpisodeForward(net))
    trainer.fit()
    return trainer


def test_batches_stack_every_field_and_refuse_ragged_items():
    images, masks, classes = next(BatchLoader(PairData([0, 1, 2, 1]), 4, shuffle=False).iterate(0))
    assert images.shape == (4, 3, SIZE, SIZE) and images.dtype == np.float32
    assert masks.shape == (4, SIZE, SIZE) and masks.dtype == np.int32
    assert classes.tolist() == [0, 1, 2, 1] and classes.dtype == np.int32

    class Ragged(PairData):
        def __getitem__(self, index):
            sample = super().__getitem__(index)
            return sample if index == 0 else sample[:2]

    with pytest.raises(ValueError, match="dataset item 1 has 2 fields, the batch's first item 3"):
        next(BatchLoader(Ragged([0, 1]), 2, shuffle=False).iterate(0))


FIRST_STEP_CLASSES = [2, 0, 1, 2, 1, 0, 0, 2]


@pytest.fixture(scope="module")
def first_step_expected():
    """The loss of the first step, by hand on an identical network: the batch (BatchNorm in training mode sees all
    four images) with image b's text features taken from ['others', its class name] alone. Computed once, in PyNative,
    for both modes: the graph-mode step is checked against this independent eager reference."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    reference = _net()
    loader = BatchLoader(PairData(FIRST_STEP_CLASSES), 4, seed=3, shuffle=True)
    images, targets, class_ids = next(loader.iterate(0))
    pairs = np.stack([reference.text_features(["others", CLASS_NAMES[c]]).asnumpy() for c in class_ids])
    reference.set_train(True)
    logits = reference(ms.Tensor(images), ms.Tensor(pairs)).asnumpy()
    peak = logits.max(1, keepdims=True)
    log_p = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
    valid = targets >= 0
    picked = np.take_along_axis(log_p, np.where(valid, targets, 0)[:, None], 1)[:, 0]
    total, count = -picked[valid].sum(), valid.sum()
    return total / count


@pytest.fixture(scope="module")
def pynative_run(tmp_path_factory):
    """(trainer, run folder): one PyNative epoch on FIRST_STEP_CLASSES, shared by the first-step test's PyNative case
    and the class-column test (its first run)."""
    run = tmp_path_factory.mktemp("pynative") / "run"
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return _train(_net(), run, FIRST_STEP_CLASSES), run


@pytest.mark.parametrize("mode", ["pynative", pytest.param("graph", marks=pytest.mark.both_stacks)])
def test_first_step_loss_is_the_cross_entropy_of_each_images_own_label_pair(tmp_path, mode, first_step_expected,
                                                                            request):
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)  # the trained network is built and trained in it, as train_custom does
        run = tmp_path / "run"
        trainer = _train(_net(), run, FIRST_STEP_CLASSES)
    else:
        trainer, run = request.getfixturevalue("pynative_run")
    with open(str(run / "steps.jsonl")) as handle:
        first = json.loads(handle.readline())
    assert first["loss"] == pytest.approx(first_step_expected, rel=1e-4)
    # What was saved is what was trained (graph-mode updates visible outside the graph). Read back in PyNative: no
    # compiled graph sees these values, only asnumpy() and the checkpoint file.
    ms.set_context(mode=ms.PYNATIVE_MODE)
    saved = _net()
    load_checkpoint(str(run / "last.ckpt"), saved)
    saved_weights = _weights(saved)
    for name, value in _weights(trainer.network).items():
        np.testing.assert_array_equal(saved_weights[name], value, err_msg=name)


def test_the_class_column_steers_training(tmp_path, pynative_run):
    """Same images and targets, other class indices: other label features enter the loss, other weights result."""
    first = pynative_run[0].network  # FIRST_STEP_CLASSES, every class present; the second run has class 2 only
    second = _train(_net(), tmp_path / "b", [2, 2, 2, 2, 2, 2, 2, 2]).network
    second_weights = _weights(second)
    differ = [name for name, value in _weights(first).items() if not np.allclose(value, second_weights[name])]
    assert differ


class TinyEpisodes:
    """Episodes over CLASS_NAMES with a benchmark's interface (FewShotEpisode-like records)."""

    benchmark = "pascal"
    class_ids = [0, 1, 2]

    def __len__(self):
        return 6

    def __getitem__(self, index):
        rng = np.random.RandomState(100 + index)

        class Episode:
            query_img = rng.randn(3, SIZE, SIZE).astype(np.float32)
            query_mask = (rng.rand(SIZE, SIZE) > 0.5).astype(np.float32)
            query_ignore_idx = None
            class_id = index % 3
        return Episode


def test_episode_validator_scores_each_episode_against_its_pair():
    net = _net()
    net.set_train(False)
    meter = evaluate_episodes(net, TinyEpisodes(), CLASS_NAMES, batch_size=4)
    expected = FewShotMeter("pascal", [0, 1, 2])
    for index in range(6):
        episode = TinyEpisodes()[index]
        logits = net(ms.Tensor(episode.query_img[None]), net.text_features(["others", CLASS_NAMES[episode.class_id]]))
        expected.update(np.argmax(logits.asnumpy(), 1), episode.query_mask[None], [episode.class_id])
    assert meter.episodes == 6
    np.testing.assert_array_equal(meter.intersection, expected.intersection)
    np.testing.assert_array_equal(meter.union, expected.union)
    metrics = episode_validator(TinyEpisodes(), CLASS_NAMES, max_episodes=6)(net)
    assert metrics == pytest.approx({"mIoU": expected.compute()[0] / 100, "FB-IoU": expected.compute()[1] / 100})
    assert evaluate_episodes(net, TinyEpisodes(), CLASS_NAMES, stop=lambda: True) is None


def test_fold_training_samples_are_the_official_episodes_with_held_out_pixels_ignored(tmp_path):
    root = str(tmp_path)
    write_synthetic_pascal5i(root, n_train=40, n_val=20, seed=1)
    held_out = fold_class_ids("pascal", 1, "test")  # classes 5..9
    trn = make_fewshot_dataset("pascal", root, 1, "trn", shot=1, img_size=SIZE)
    samples = FoldTrainingSet(trn, held_out, seed=4)
    assert samples.class_ids == [c for c in range(20) if c not in held_out]
    assert len(samples) == 2 * len(trn)  # every episode's query and its support
    names = ["c%d" % c for c in range(20)]
    assert samples.label_names(names) == ["c%d" % c for c in samples.class_ids]
    seen_ignored = False
    n = len(trn)
    for index in range(len(samples)):
        image, target, class_index = samples[index]
        query, support, class_id = samples.episode(index % n)
        if index < n:  # PASCAL's episodes walk its (image, class) list, as HSNet's DatasetPASCAL
            assert (query, class_id) == trn.pairs[index] and support != query
        assert samples.class_ids[class_index] == class_id and class_id not in held_out
        assert image.shape == (3, SIZE, SIZE) and set(np.unique(target)) <= {-1, 0, 1} and (target == 1).any()
        _, raw = trn.load(query if index < n else support)  # VOC values: held-out pixels are exactly the -1 ones
        resized = resize_mask_nearest(raw, SIZE, SIZE)
        np.testing.assert_array_equal(target == -1, np.isin(resized, [c + 1 for c in held_out]))
        seen_ignored |= bool((target == -1).any())
    assert seen_ignored  # the synthetic set does put test-class objects into training images
    # Draws are a function of (seed, epoch, episode): the same epoch again gives the same supports, another does not.
    supports = [samples.episode(i)[1] for i in range(n)]
    assert supports == [samples.episode(i)[1] for i in range(n)]
    samples.set_epoch(1)
    assert supports != [samples.episode(i)[1] for i in range(n)]
    limited = FoldTrainingSet(trn, held_out, seed=4, max_episodes=5)
    assert len(limited) == 10 and len(set(limited.episodes)) == 5 and limited.episodes != list(range(5))
    with pytest.raises(FewShotDataError, match=r"training classes \[0\] are also held out"):
        FoldTrainingSet(trn, [5, 0])
    with pytest.raises(ValueError, match="needs the 1-shot trn episodes"):
        FoldTrainingSet(make_fewshot_dataset("pascal", root, 1, "trn", shot=0, img_size=SIZE), held_out)
