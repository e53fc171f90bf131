"""Your own data (``--dataset folder``): the layout and its label file, the data check's messages, training with the
tiny preset on a synthetic folder set with non-ASCII names, exact resume after kill -9, evaluation on the set and on
another set (seen/unseen mIoU), and scripts/prepare_folder.py."""
import json
import os
import shlex
import shutil

import numpy as np
import pytest
from PIL import Image
from training_runs import assert_same_weights, kill_during_second_epoch

import test as test_script
import train_custom
from encoding_custom.datasets.check import check_data
from encoding_custom.datasets.folder import FolderSetError, class_statistics, folder_layout, read_class_names
from encoding_custom.datasets.folder_synthetic import write_synthetic_folder
from encoding_custom.datasets.segmentation import SegmentationSet, build_segmentation_set
from encoding_custom.evaluation.metrics import SegmentationMetric, seen_unseen_miou
from foundation.checkpoint_file import read_checkpoint
from scripts import prepare_folder

STACK_INDEPENDENT = ("the folder set's files, label file, checks and reports around the tiny preset; the network, "
                     "the train step and resume are tested per stack in test_engine_trainer and test_modules_*")

NAMES = ["sky", "草地", "café", "road", "tree"]
OTHER_NAMES = ["sky", "road", "grass", "water"]  # shares sky and road with NAMES
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _folder(tmp_path, masks, labels=("a", "b", "c"), split="train"):
    """A folder set with one grey image per given mask (uint8 arrays) in ``split`` and one in the other split."""
    root = tmp_path / "set"
    (root / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(name + "\n" for name in labels), encoding="utf-8")
    for part in ("train", "val"):
        for number, mask in enumerate(masks if part == split else masks[:1]):
            for kind in ("images", "annotations"):
                (root / kind / part).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(mask.shape + (3,), 128, np.uint8)).save(root / "images" / part / f"p{number}.png")
            Image.fromarray(mask).save(root / "annotations" / part / f"p{number}.png")
    return str(root)


# --- the label file and the layout ---------------------------------------------------------------------------------

def test_labels_file_reads_names_in_order_and_names_what_is_wrong(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeffsky\n 草地 \ncafé\n\n\n".encode("utf-8"))  # BOM, spaces, blank lines at the end
    assert read_class_names(str(path)) == ["sky", "草地", "café"]
    for text, message in [("", "no class names"), ("sky\n\nroad\n", "line 2 is blank"),
                          ("sky\nroad\nsky\n", "line 3 repeats 'sky' of line 1")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(FolderSetError, match=f"^{path}: {message}"):
            read_class_names(str(path))
    path.write_bytes(b"sky\n\xff\xfe road\n")
    with pytest.raises(FolderSetError, match=f"^{path}: not UTF-8 text"):
        read_class_names(str(path))
    with pytest.raises(FolderSetError, match=f"^{tmp_path}/none.txt: label file not found"):
        read_class_names(str(tmp_path / "none.txt"))


def test_the_ignored_value_must_not_be_a_class(tmp_path):
    root = _folder(tmp_path, [np.zeros((4, 4), np.uint8)])
    assert folder_layout(root).ignore_value == 255
    with pytest.raises(FolderSetError, match=r"^--ignore_index: 1 is the mask value of class 'b' \(line 2 of .*"
                                             r"labels.txt\); choose a value above 2"):
        folder_layout(root, ignore_value=1)
    with pytest.raises(FolderSetError, match="^--ignore_index: 0 is value 0 means unlabelled"):
        folder_layout(root, ignore_value=0, reduce_zero_label=True)
    with pytest.raises(FolderSetError, match=r"^--ignore_index: a folder set's ignored value is a mask value 3\.\."):
        folder_layout(root, ignore_value=-1)


def test_masks_become_class_indices_with_every_ignored_pixel_minus_one(tmp_path):
    mask = np.array([[0, 1, 2, 255], [2, 2, 1, 0]], np.uint8)
    root = _folder(tmp_path, [mask])
    plain = SegmentationSet(folder_layout(root), "train", mode="testval")
    np.testing.assert_array_equal(plain[0][1], [[0, 1, 2, -1], [2, 2, 1, 0]])
    reduced = SegmentationSet(folder_layout(root, reduce_zero_label=True), "train", mode="testval")
    np.testing.assert_array_equal(reduced[0][1], [[-1, 0, 1, -1], [1, 1, 0, -1]])
    subset = build_segmentation_set(folder_layout(root), "train", "testval", class_indices=[2, 0])
    np.testing.assert_array_equal(subset[0][1], [[1, -1, 0, -1], [0, 0, -1, 1]])
    # Augmentation pads with the ignored value, whatever 0 means in the files.
    train = SegmentationSet(folder_layout(root), "train", mode="train", base_size=4, crop_size=8)
    assert (train[0][1] == -1).sum() >= 8 * 8 - 4 * 2 * 2


def test_the_data_check_names_every_bad_file_of_a_folder_set(tmp_path):
    good = np.array([[0, 1], [2, 255]], np.uint8)
    root = _folder(tmp_path, [good, np.array([[0, 3], [7, 255]], np.uint8), good])
    os.remove(os.path.join(root, "images", "train", "p2.png"))
    with open(os.path.join(root, "images", "train", "._p0.png"), "wb") as handle:  # macOS metadata: not a sample
        handle.write(b"\x00\x05\x16\x07")
    report = check_data(folder_layout(root), progress=False)
    assert not report.ok
    message = report.message()
    assert ("train: 1 masks with values outside 0..2 and 255:\n    annotations/train/p1.png: mask values must be "
            "0..2 (value k = line k + 1 of labels.txt) or 255 (ignored), found 3, 7") in message
    assert ("train: 1 masks without an image:\n    annotations/train/p2.png: no image images/train/p2.jpg|jpeg|png"
            in message)
    assert "._p0" not in message and report.splits["train"].n_pairs == 2


def test_class_statistics_count_pixels_and_images_per_class(tmp_path):
    root = _folder(tmp_path, [np.array([[0, 0], [1, 255]], np.uint8), np.array([[0, 0], [0, 0]], np.uint8)])
    stats = class_statistics(folder_layout(root), ["a", "b", "c"], progress=False)
    np.testing.assert_array_equal(stats.pixels["train"], [6, 1, 0])
    np.testing.assert_array_equal(stats.images["train"], [2, 1, 0])
    assert stats.ignored["train"] == 1 and stats.n_images == {"train": 2, "val": 1}
    assert "train: no pixel of 1 class(es): c" in stats.table()


def test_seen_unseen_miou_splits_the_classes_by_the_trained_labels():
    metric = SegmentationMetric(3)
    metric.update(np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 2]]))  # IoU: 1, 0.5, 0.5
    split = seen_unseen_miou(metric, ["sky", "grass", "road"], ["road", "sky", "tree"])
    assert (split.seen, split.unseen) == (["sky", "road"], ["grass"])
    assert split.seen_miou == pytest.approx(0.75) and split.unseen_miou == pytest.approx(0.5)
    assert split.harmonic == pytest.approx(2 * 0.75 * 0.5 / 1.25)


# --- training and evaluation end to end ----------------------------------------------------------------------------

def readme_commands():
    """The command lines of README.md's "Your own data" block, as argument lists without the interpreter."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        section = handle.read().split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line.split("  #", 1)[0])[1:] for line in block.splitlines() if line.strip()]


def _relocated(argv, root, checkpoints):
    """A README command with its set folder and checkpoint folder moved into the test's folders."""
    moved = [root if part == README_ROOT else part.replace("checkpoints/", checkpoints + "/") for part in argv]
    return moved + ["--no-progress"] if moved[0] in ("train_custom.py", "test.py") else moved


README_ROOT = "/tmp/mine"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """README.md's "Your own data" commands as written (only the folders moved): a synthetic folder set of 24
    images, its check, 20 epochs of the tiny preset (about 25 s on 2 cores: the fewest that learn the set clearly).
    Returns (data root, experiment folder, training argv, the evaluation argv)."""
    root = str(tmp_path_factory.mktemp("data") / "mine")
    checkpoints = str(tmp_path_factory.mktemp("ck"))
    make, check, train, evaluate = [_relocated(argv, root, checkpoints) for argv in readme_commands()]
    assert make[:2] == ["-m", "scripts.prepare_folder"] and check[:2] == ["-m", "scripts.prepare_folder"]
    assert prepare_folder.main(make[2:]) == 0 and prepare_folder.main(check[2:]) == 0
    train = train[1:] + ["--checkpoint_dir", checkpoints, "--keep_last", "30"]
    assert train_custom.main(train) == 0
    return root, os.path.join(checkpoints, "mine"), train, evaluate[1:]


def _records(exp_dir):
    with open(os.path.join(exp_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_a_folder_set_trains_clearly_above_the_best_constant_guess(trained):
    root, exp_dir, _, _ = trained
    val = SegmentationSet(folder_layout(root), "val", mode="val", crop_size=96)
    counts = np.bincount(np.concatenate([val[i][1].ravel() for i in range(len(val))]) + 1, minlength=6)[1:]
    constant_miou = counts.max() / counts.sum() / len(NAMES)  # every pixel the commonest class
    final = _records(exp_dir)[-1]
    assert final["epoch"] == 20 and final["mIoU"] > max(0.3, 3 * constant_miou), (final, constant_miou)
    options = read_checkpoint(os.path.join(exp_dir, "last.ckpt"))[2]["options"]
    assert options["label_names"] == NAMES and options["dataset"] == "folder"


def test_kill_9_then_resume_gives_the_uninterrupted_weights(trained, tmp_path):
    """A real train_custom.py is SIGKILLed during epoch 2 and resumed; its epoch-2 weights equal the fixture's.
    About 22 s: a real process is started, killed mid-epoch and resumed (two network builds and compiles)."""
    root, full_dir, argv, _ = trained
    argv = argv + ["--exp_name", "killed", "--stop_after_epoch", "2"]
    exp_dir = os.path.join(os.path.dirname(full_dir), "killed")
    kill_during_second_epoch(argv, exp_dir)
    assert train_custom.main(argv + ["--resume"]) == 0
    assert_same_weights(os.path.join(full_dir, "epoch_002.ckpt"), os.path.join(exp_dir, "epoch_002.ckpt"))


def test_eval_on_the_set_reproduces_the_validation_figures(trained, tmp_path, capsys):
    """The README's evaluation command (full images) runs; in the training validation's mode it gives its figures."""
    _, exp_dir, _, evaluate = trained
    best = max(_records(exp_dir), key=lambda record: record["mIoU"])
    assert test_script.main(evaluate + ["--outdir", str(tmp_path / "full")]) == 0
    out = capsys.readouterr().out
    assert "草地" in out and "pixAcc: " in out and "seen" not in out  # its own labels: no seen/unseen split
    assert test_script.main(evaluate + ["--eval_mode", "val", "--outdir", str(tmp_path / "val")]) == 0
    assert "pixAcc: %.4f, mIoU: %.4f" % (best["pixAcc"], best["mIoU"]) in capsys.readouterr().out


def test_eval_on_another_set_reports_seen_and_unseen_miou(trained, tmp_path, capsys):
    _, exp_dir, _, _ = trained
    other = str(tmp_path / "other")
    write_synthetic_folder(other, OTHER_NAMES, n_train=2, n_val=4, seed=1, look=1)
    argv = ["--dataset", "folder", "--data_path", other, "--weights", os.path.join(exp_dir, "best.ckpt"), "--eval",
            "--outdir", str(tmp_path / "out"), "--no-progress"]
    assert test_script.main(argv) == 0
    out = capsys.readouterr().out
    assert "seen (2): sky, road\nunseen (2): grass, water" in out
    headline = [line for line in out.splitlines() if line.startswith("pixAcc: ")][0]
    assert ", mIoU seen " in headline and ", unseen " in headline and ", harmonic " in headline


@pytest.mark.parametrize("damage, named", [
    ("value", "annotations/train/img_00003.png: mask values must be 0..4"),
    ("orphan", "annotations/val/extra.png: no image"),
    ("empty", "labels.txt: no class names in it"),
    ("blank", "labels.txt: line 2 is blank"),
])
def test_a_bad_folder_set_stops_before_training_naming_the_file(tmp_path, capsys, damage, named):
    root = str(tmp_path / "bad")
    write_synthetic_folder(root, NAMES, n_train=4, n_val=2, seed=0, size=(32, 48))
    if damage == "value":
        path = os.path.join(root, "annotations", "train", "img_00003.png")
        mask = np.array(Image.open(path))
        mask[0, 0] = len(NAMES)
        Image.fromarray(mask).save(path)
    elif damage == "orphan":
        shutil.copy(os.path.join(root, "annotations", "val", "img_00001.png"),
                    os.path.join(root, "annotations", "val", "extra.png"))
    else:
        with open(os.path.join(root, "labels.txt"), "w", encoding="utf-8") as handle:
            handle.write("" if damage == "empty" else "sky\n\nroad\n")
    argv = ["--preset", "tiny", "--dataset", "folder", "--data_path", root, "--checkpoint_dir", str(tmp_path / "ck"),
            "--exp_name", "bad", "--no-progress"]
    assert train_custom.main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("train_custom.py: error: ")]
    assert len(errors) == 1 and named in errors[0] and err.rstrip().endswith(errors[0]), err
    assert not os.path.exists(os.path.join(tmp_path, "ck", "bad", "epoch_001.ckpt"))


def test_prepare_folder_check_prints_the_statistics_and_fails_on_a_bad_set(tmp_path, capsys):
    root = str(tmp_path / "mine")
    assert prepare_folder.main(["synthetic", root, "--names", ",".join(NAMES), "--train", "6", "--val", "2"]) == 0
    assert prepare_folder.main(["check", root, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train 6 pairs (0 bad), val 2 pairs (0 bad)" in out and "草地" in out
    assert f"ready for --dataset folder --data_path {root}" in out
    os.remove(os.path.join(root, "images", "val", "img_00001.jpg"))
    assert prepare_folder.main(["check", root, "--no-progress"]) == 1
    assert "val: 1 masks without an image" in capsys.readouterr().err
    assert prepare_folder.main(["check", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "labels.txt: label file not found" in capsys.readouterr().err


def test_the_demo_starts_with_the_labels_the_checkpoint_records(trained):
    from scripts import demo

    _, exp_dir, _, _ = trained
    args = demo.build_parser().parse_args(["--weights", os.path.join(exp_dir, "best.ckpt"), "--device_target", "CPU"])
    segmenter = demo.load_segmenter(args)
    assert args.labels == ", ".join(NAMES) and segmenter.network.labels == NAMES
    assert demo.default_labels_text(["a, b", "c"], 10) == demo.QUICKSTART_LABELS  # a name the field cannot type
    assert demo.default_labels_text(NAMES, 3) == demo.QUICKSTART_LABELS  # more than the page takes


def test_prepare_folder_convert_turns_palette_masks_into_a_folder_set(tmp_path, capsys):
    images, masks = tmp_path / "JPEGImages", tmp_path / "SegmentationClass"
    images.mkdir()
    masks.mkdir()
    for number in range(2):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(images / f"2007_{number}.jpg")
        palette_mask = Image.fromarray(np.array([[0, 1] * 4, [2, 255] * 4] * 4, np.uint8), mode="P")
        palette_mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
        palette_mask.save(masks / f"2007_{number}.png")
    (tmp_path / "names.txt").write_text("background\naeroplane\nbicycle\n", encoding="utf-8")
    out = str(tmp_path / "voc")
    for split in ("train", "val"):
        assert prepare_folder.main(["convert", "--images", str(images), "--masks", str(masks), "--split", split,
                                    "--names", str(tmp_path / "names.txt"), "--out", out]) == 0
    assert "wrote 2 image/mask pairs" in capsys.readouterr().out
    assert read_class_names(os.path.join(out, "labels.txt")) == ["background", "aeroplane", "bicycle"]
    dataset = SegmentationSet(folder_layout(out), "val", mode="testval")
    np.testing.assert_array_equal(dataset[0][1][:2, :2], [[0, 1], [2, -1]])  # palette indices kept, 255 ignored
    assert prepare_folder.main(["check", out, "--no-progress"]) == 0
