"""Several data sets in one run (``--dataset folder,folder``): the union of labels, samples tagged with their set,
each image's loss over its own set's labels only, validation per set with their mean, the record of every set's
labels, and exact resume."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from training_runs import assert_same_weights

import test as test_script
import train_custom
from encoding_custom.datasets.folder_synthetic import write_synthetic_folder
from encoding_custom.datasets.multi_set import UnionSet, own_label_mask, union_labels
from encoding_custom.engine.losses import SegmentationLoss
from encoding_custom.tasks.multi_set import OUTSIDE_LOGIT, OwnLabelsForward
from foundation.checkpoint_file import read_checkpoint
from modules.factory import build_lseg

pytestmark = pytest.mark.both_stacks

FIRST = ["sky", "草地", "road", "tree"]
SECOND = ["water", "sky", "sand", "road"]  # shares sky and road


def test_the_union_keeps_each_name_once_and_samples_carry_their_set():
    labels, positions = union_labels([FIRST, SECOND])
    assert labels == ["sky", "草地", "road", "tree", "water", "sand"]
    assert positions == [[0, 1, 2, 3], [4, 0, 5, 2]]
    np.testing.assert_array_equal(own_label_mask(positions, len(labels)),
                                  [[1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 1]])

    class Fixed:
        def __init__(self, masks):
            self.masks, self.keys = masks, []

        def __len__(self):
            return len(self.masks)

        def __getitem__(self, key):
            self.keys.append(key)
            index = key[1] if isinstance(key, tuple) else key
            return np.zeros((3, 1, 2), np.float32), self.masks[index]

    first, second = Fixed([np.array([[0, 3]])]), Fixed([np.array([[1, -1]]), np.array([[2, 3]])])
    union = UnionSet([first, second], positions)
    assert len(union) == 3
    _, mask, part = union[(7, 2)]
    np.testing.assert_array_equal(mask, [[5, 2]])  # second set's 'sand', 'road'
    assert part == 1 and second.keys == [(7, 1)]
    np.testing.assert_array_equal(union[1][1], [[0, -1]])  # its 'sky' is the union's 0; ignored stays -1
    np.testing.assert_array_equal(union[0][1], [[0, 3]])
    with pytest.raises(IndexError):
        union[3]


def test_each_images_loss_is_its_own_sets_loss_whatever_the_other_labels_are():
    """The proof that no image's loss uses another set's labels: in a mixed batch, each image's loss through
    OwnLabelsForward equals the loss of the same network given only its own set's labels, and it does not move
    when the features of the labels outside its set are replaced."""
    labels, positions = union_labels([FIRST, SECOND])
    ms.set_seed(2)
    net = build_lseg("tiny_vit16", labels, text_config="tiny")
    net.set_train(False)
    forward = OwnLabelsForward(net, own_label_mask(positions, len(labels)))
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    targets = [rng.randint(0, 4, (32, 32)).astype(np.int32) for _ in range(2)]
    loss = SegmentationLoss(ignore_index=-1)
    sets = ms.Tensor(np.array([0, 1], np.int32))
    logits = forward((images, sets)).asnumpy()
    for b, own in enumerate(positions):
        outside = [k for k in range(len(labels)) if k not in own]
        assert (logits[b, outside] < OUTSIDE_LOGIT / 2).all()
        union_target = np.asarray(own, np.int32)[targets[b]]
        mixed = loss(ms.Tensor(logits[b:b + 1]), ms.Tensor(union_target[None])).asnumpy()
        alone = net(images[b:b + 1], net.text_features([labels[k] for k in own]))
        single = loss(alone, ms.Tensor(targets[b][None])).asnumpy()
        np.testing.assert_allclose(mixed, single, rtol=1e-5)
    features = net.text_features_cache.asnumpy()
    changed = features.copy()
    changed[[4, 5]] = rng.normal(size=(2, features.shape[1]))  # 'water' and 'sand': the second set's alone
    net.text_features_cache.set_data(ms.Tensor(changed))
    again = forward((images, sets)).asnumpy()
    first_target = ms.Tensor(np.asarray(positions[0], np.int32)[targets[0]][None])
    np.testing.assert_array_equal(loss(ms.Tensor(again[:1]), first_target).asnumpy(),
                                  loss(ms.Tensor(logits[:1]), first_target).asnumpy())


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Two synthetic folder sets of other looks whose names partly overlap."""
    folder = tmp_path_factory.mktemp("sets")
    write_synthetic_folder(str(folder / "first"), FIRST, n_train=8, n_val=2, seed=0, size=(48, 64))
    write_synthetic_folder(str(folder / "second"), SECOND, n_train=8, n_val=2, seed=1, look=3, size=(48, 64))
    return str(folder / "first"), str(folder / "second")


def _argv(two_sets, checkpoints, name):
    return ["--preset", "tiny", "--dataset", "folder,folder", "--data_path", ",".join(two_sets), "--checkpoint_dir",
            checkpoints, "--exp_name", name, "--max_epochs", "2", "--base_size", "64", "--crop_size", "64",
            "--keep_last", "5", "--mode", "pynative", "--no-progress"]


def test_two_sets_train_together_validate_apart_and_resume_exactly(two_sets, tmp_path, capsys):
    """Three short runs of the tiny preset in PyNative (12 s in all on the current stack, 20-24 s on the legacy one,
    whose PyNative is slower): the whole run, then one stopped after epoch 1 and resumed, whose epoch-2 weights must
    equal the whole run's."""
    checkpoints = str(tmp_path / "ck")
    assert train_custom.main(_argv(two_sets, checkpoints, "whole")) == 0
    assert "6 labels from 2 sets: first 4, second 4" in capsys.readouterr().out
    whole = os.path.join(checkpoints, "whole")
    with open(os.path.join(whole, "metrics.jsonl"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    for record in records:
        assert record["mIoU"] == pytest.approx((record["mIoU/first"] + record["mIoU/second"]) / 2)
        assert record["pixAcc"] == pytest.approx((record["pixAcc/first"] + record["pixAcc/second"]) / 2)
    options = read_checkpoint(os.path.join(whole, "last.ckpt"))[2]["options"]
    assert options["label_names"] == ["sky", "草地", "road", "tree", "water", "sand"]
    assert options["set_labels"] == [["first", FIRST], ["second", SECOND]]

    argv = _argv(two_sets, checkpoints, "parted")
    assert train_custom.main(argv + ["--stop_after_epoch", "1"]) == 0
    assert train_custom.main(argv + ["--resume"]) == 0
    assert_same_weights(os.path.join(whole, "epoch_002.ckpt"), os.path.join(checkpoints, "parted", "epoch_002.ckpt"))

    capsys.readouterr()
    assert test_script.main(["--eval", "--dataset", "folder,folder", "--data_path", ",".join(two_sets),
                             "--weights", os.path.join(whole, "last.ckpt"), "--outdir", str(tmp_path / "out"),
                             "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("== first (") < out.index("== second (") and out.count("pixAcc: ") == 2


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "folder,pascal", "--data_path", "a,b"], "--dataset: several data sets train together when each is "
                                                           "one of ade20k, folder; pascal trains alone"),
    (["--dataset", "folder,folder", "--data_path", "a"], "--data_path: one folder per data set, paired in order: 2 "
                                                         "sets need 2 comma-separated folders (got 'a')"),
    (["--dataset", "folder,mine"], "--dataset: unknown data set kind 'mine'"),
])
def test_bad_multi_set_options_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_custom.main(["--preset", "tiny", "--checkpoint_dir", str(tmp_path)] + argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) <= 2 and "Traceback" not in err
