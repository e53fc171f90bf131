"""train_custom.py + test.py end to end on a tiny synthetic ADE20K-layout set (CPU, PyNative, ~1 minute)."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from training_runs import assert_same_weights, kill_during_second_epoch

import options
import test as test_script
import train_custom
from encoding_custom.datasets.classes import resolve_classes
from encoding_custom.datasets.synthetic import write_synthetic_ade20k
from encoding_custom.tasks.networks import load_network
from encoding_custom.visualisation.render import LEGEND_ROW_PX, label_colours
from foundation.checkpoint_file import read_checkpoint, save_checkpoint
from modules.factory import build_lseg, load_lseg
from modules.weights import save_lseg_checkpoint

STACK_INDEPENDENT = ("the scripts' wiring in PyNative (files, logs, masks, labels); the network, the train step, "
                     "resume and AMP are tested per stack in test_engine_trainer and the test_modules_* modules")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of the tiny preset on 16 synthetic images; returns (data root, experiment folder, argv)."""
    root = str(tmp_path_factory.mktemp("data"))
    write_synthetic_ade20k(root, n_train=16, n_val=4, seed=3, size=(64, 96))
    checkpoints = str(tmp_path_factory.mktemp("ck"))
    argv = ["--preset", "tiny", "--data_path", root, "--checkpoint_dir", checkpoints, "--exp_name", "e2e",
            "--mode", "pynative", "--base_size", "64", "--crop_size", "64", "--batch_size", "4", "--max_epochs", "2",
            "--seed", "5"]
    assert train_custom.main(argv) == 0
    return root, os.path.join(checkpoints, "e2e"), argv


def _records(exp_dir):
    with open(os.path.join(exp_dir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_training_writes_checkpoints_logs_and_curves(trained):
    _, exp_dir, _ = trained
    records = _records(exp_dir)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["mIoU"] <= 1 for r in records)
    assert records[0]["lrs"] == pytest.approx([0.004 / 16 * 4, 0.004 / 16 * 4 * 10])  # official rule, head 10x
    assert {"last.ckpt", "best.ckpt", "epoch_001.ckpt", "epoch_002.ckpt", "curves.png", "steps.jsonl"} <= \
        set(os.listdir(exp_dir))
    # The checkpoint knows its label set: test.py and the demo need no data set to rebuild it.
    record = read_checkpoint(os.path.join(exp_dir, "last.ckpt"))[2]["options"]
    labels, indices = resolve_classes("synthetic", trained[0])
    assert record["label_names"] == labels and record["class_indices"] == indices
    loaded = load_lseg(os.path.join(exp_dir, "last.ckpt"))
    assert loaded.labels == labels and loaded.network.labels == labels and loaded.class_indices == indices


def test_eval_reproduces_the_validation_figures(trained, tmp_path, capsys):
    root, exp_dir, _ = trained
    last = _records(exp_dir)[-1]
    status = test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--eval", "--eval_mode", "val",
                               "--device_target", "CPU", "--mode", "pynative", "--data_path", root,
                               "--base_size", "64", "--crop_size", "64", "--test_batch_size", "4",
                               "--outdir", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "pixAcc: %.4f, mIoU: %.4f" % (last["pixAcc"], last["mIoU"]) in out
    log = (tmp_path / "eval_log.txt").read_text()
    assert "mIoU: %.4f" % last["mIoU"] in log and "sky" in log  # per-class table names the synthetic classes


def test_testval_multiscale_eval_runs(trained, tmp_path, capsys):
    root, exp_dir, _ = trained
    status = test_script.main(["--weights", os.path.join(exp_dir, "best.ckpt"), "--eval", "--device_target", "CPU",
                               "--mode", "pynative", "--data_path", root, "--base_size", "64", "--crop_size", "64",
                               "--scales", "0.75,1.0", "--flip", "--max_images", "2", "--outdir", str(tmp_path)])
    assert status == 0
    assert "pixAcc:" in capsys.readouterr().out


def test_without_eval_writes_coloured_val_masks_and_a_legend(trained, tmp_path, capsys):
    root, exp_dir, _ = trained
    status = test_script.main(["--weights", os.path.join(exp_dir, "best.ckpt"), "--device_target", "CPU",
                               "--mode", "pynative", "--data_path", root, "--base_size", "64", "--crop_size", "64",
                               "--max_images", "2", "--outdir", str(tmp_path)])
    assert status == 0
    folder = tmp_path / "masks"
    assert "wrote %s" % folder in capsys.readouterr().out
    assert sorted(os.listdir(str(folder))) == ["ADE_val_00000001.png", "ADE_val_00000002.png", "legend.png"]
    names, _ = resolve_classes("synthetic", root)  # the tiny preset trains on the synthetic set's classes
    assert Image.open(str(folder / "legend.png")).size[1] == LEGEND_ROW_PX * len(names) + 8
    palette = {tuple(c) for c in label_colours(len(names), names).tolist()}
    for stem in ("ADE_val_00000001", "ADE_val_00000002"):
        image_path = os.path.join(root, "ADEChallengeData2016", "images", "validation", stem + ".jpg")
        mask = np.asarray(Image.open(str(folder / (stem + ".png"))).convert("RGB"))
        with Image.open(image_path) as image:
            assert mask.shape[:2] == (image.size[1], image.size[0])  # full images (testval)
        assert {tuple(c) for c in mask.reshape(-1, 3).tolist()} <= palette


def test_image_with_any_labels_writes_three_pngs(trained, tmp_path):
    root, exp_dir, _ = trained
    image_path = os.path.join(root, "ADEChallengeData2016", "images", "validation", "ADE_val_00000001.jpg")
    with Image.open(image_path) as image:
        size = image.size
    status = test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--image", image_path,
                               "--labels", "sky,grass,car,other", "--device_target", "CPU", "--mode", "pynative",
                               "--outdir", str(tmp_path)])
    assert status == 0
    pngs = {kind: np.asarray(Image.open(str(tmp_path / ("ADE_val_00000001_%s.png" % kind))).convert("RGB"))
            for kind in ("mask", "overlay", "legend")}
    assert pngs["mask"].shape[:2] == pngs["overlay"].shape[:2] == (size[1], size[0])
    palette = {tuple(c) for c in label_colours(4).tolist()}
    assert {tuple(c) for c in pngs["mask"].reshape(-1, 3).tolist()} <= palette
    assert not np.array_equal(pngs["overlay"], pngs["mask"])
    assert pngs["legend"].shape[0] >= 4 * 20 and len(np.unique(pngs["legend"].reshape(-1, 3), axis=0)) > 4


def test_image_needs_no_data_set_when_the_checkpoint_records_its_labels(tmp_path, monkeypatch, capsys):
    net = build_lseg("tiny_vit16", ["wall", "sky"], text_config="tiny")
    record = {"backbone": "tiny_vit16", "text_config": "tiny", "arch_option": 0, "block_depth": 0,
              "activation": "lrelu", "classes": "synthetic", "data_path": "datasets/synthetic_ade20k",
              "label_names": ["wall", "sky"], "class_indices": [0, 2]}
    weights = str(tmp_path / "tiny.ckpt")
    save_checkpoint(weights, net, epoch=1, options=record)
    image = str(tmp_path / "photo.png")
    Image.new("RGB", (40, 30), (10, 200, 30)).save(image)
    monkeypatch.chdir(tmp_path)  # no datasets/ folder here, and the recorded data_path does not exist
    argv = ["--weights", weights, "--image", image, "--labels", "grass,sky", "--device_target", "CPU",
            "--outdir", "out"]
    assert test_script.main(argv) == 0
    assert os.path.isfile(tmp_path / "out" / "photo_index.png")
    # A checkpoint written before label names were recorded falls back to resolving its --classes against the data.
    old = {key: value for key, value in record.items() if key not in ("label_names", "class_indices")}
    save_checkpoint(weights, net, epoch=1, options=old)
    capsys.readouterr()
    assert test_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("test.py: error: --classes: ") and "\n" not in err


def test_image_errors_name_the_problem(trained, tmp_path, capsys):
    _, exp_dir, _ = trained
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    status = test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--image", str(broken),
                               "--labels", "cat,other", "--device_target", "CPU", "--outdir", str(tmp_path)])
    assert status == 2 and "broken.png" in capsys.readouterr().err
    status = test_script.main(["--image", str(broken), "--labels", "cat,,dog", "--device_target", "CPU"])
    assert status == 2 and "--labels" in capsys.readouterr().err


def test_resume_continues_after_the_last_epoch(trained, capsys):
    _, exp_dir, argv = trained
    argv = [a if a != "2" else "3" for a in argv]  # --max_epochs 3
    assert train_custom.main(argv + ["--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert [r["epoch"] for r in _records(exp_dir)] == [1, 2, 3]


def test_sigkill_mid_epoch_then_resume_reproduces_the_uninterrupted_run(trained, tmp_path):
    """A real train_custom.py process is SIGKILLed during epoch 2; --resume finishes it. The lr of every optimizer
    step and the epoch-2 weights equal those of the uninterrupted run (the module fixture, same seed)."""
    root, full_dir, argv = trained
    argv = list(argv)
    argv[argv.index("--exp_name") + 1] = "killed"
    exp_dir = os.path.join(os.path.dirname(full_dir), "killed")
    kill_during_second_epoch(argv, exp_dir)
    assert train_custom.main(argv + ["--resume"]) == 0

    def steps(folder):
        with open(os.path.join(folder, "steps.jsonl")) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        return [(r["global_step"], r["lrs"]) for r in records if r["epoch"] < 2]

    assert steps(exp_dir) == steps(full_dir)
    assert_same_weights(os.path.join(full_dir, "epoch_002.ckpt"), os.path.join(exp_dir, "epoch_002.ckpt"))


def test_output_stems_are_unique():
    assert test_script.output_stems(["a/cat.jpg", "b/dog.png"]) == ["cat", "dog"]
    # As many parent folders as each clash needs, and no more.
    assert test_script.output_stems(["x/a/cat.jpg", "x/b/cat.jpg", "y/b/cat.png"]) == ["a_cat", "x_b_cat", "y_b_cat"]
    assert test_script.output_stems(["cat.jpg", "cat.jpg"]) == ["cat", "cat_2"]
    assert test_script.output_stems(["/cat.jpg", "/cat.png", "a/cat.jpg"]) == ["cat", "cat_2", "a_cat"]
    assert test_script.output_stems(["cat.jpg", "cat.png", "cat_2.jpg"]) == ["cat", "cat_3", "cat_2"]


def test_two_images_with_one_name_do_not_overwrite_each_other(trained, tmp_path, capsys):
    root, exp_dir, _ = trained
    source = os.path.join(root, "ADEChallengeData2016", "images", "validation")
    inputs = []
    for folder, name, size in (("a", "ADE_val_00000001.jpg", (96, 64)), ("b", "ADE_val_00000002.jpg", (80, 72))):
        (tmp_path / folder).mkdir()
        Image.open(os.path.join(source, name)).convert("RGB").resize(size).save(str(tmp_path / folder / "photo.jpg"))
        inputs.append(str(tmp_path / folder / "photo.jpg"))
    out = tmp_path / "out"
    assert test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--image", *inputs,
                             "--labels", "sky,grass,other", "--device_target", "CPU", "--mode", "pynative",
                             "--outdir", str(out)]) == 0
    written = capsys.readouterr().out
    for stem, path in (("a_photo", inputs[0]), ("b_photo", inputs[1])):
        mask = out / ("%s_mask.png" % stem)
        assert "wrote %s" % mask in written
        with Image.open(path) as image:
            assert Image.open(str(mask)).size == image.size  # each mask is its own image's (sizes differ)


def test_an_option_the_checkpoint_contradicts_is_an_error(trained, tmp_path, capsys):
    _, exp_dir, _ = trained
    weights = os.path.join(exp_dir, "last.ckpt")
    status = test_script.main(["--weights", weights, "--backbone", "clip_vitb32_384", "--image",
                               os.path.join(trained[0], "ADEChallengeData2016", "images", "validation",
                                            "ADE_val_00000001.jpg"),
                               "--labels", "sky,other", "--device_target", "CPU", "--outdir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.strip() == ("test.py: error: --backbone: 'clip_vitb32_384' given, but %s was trained with "
                           "'tiny_vit16'; drop the option to use the checkpoint's" % weights)


def test_non_ascii_labels_work_end_to_end(trained, tmp_path):
    """The legend once raised UnicodeEncodeError after the mask was written: every output must be there."""
    _, exp_dir, _ = trained
    image = os.path.join(trained[0], "ADEChallengeData2016", "images", "validation", "ADE_val_00000001.jpg")
    labels = ["猫", "🐱", "café", "sky"]
    assert test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--image", image, "--labels",
                             ",".join(labels), "--device_target", "CPU", "--mode", "pynative",
                             "--outdir", str(tmp_path)]) == 0
    for kind in ("mask.png", "index.png", "overlay.png", "legend.png", "legend.txt"):
        assert (tmp_path / ("ADE_val_00000001_" + kind)).is_file(), kind
    legend_text = (tmp_path / "ADE_val_00000001_legend.txt").read_text(encoding="utf-8")
    assert all(label in legend_text for label in labels)
    index = np.asarray(Image.open(str(tmp_path / "ADE_val_00000001_index.png")))
    assert index.max() < len(labels)


def test_an_option_a_weights_file_contradicts_is_an_error(tmp_path, capsys):
    weights = str(tmp_path / "tiny_weights.ckpt")
    save_lseg_checkpoint(build_lseg("tiny_vit16", ["a", "b"], block_depth=2, arch_option=1, text_config="tiny"),
                         weights)
    image = str(tmp_path / "photo.png")
    Image.new("RGB", (40, 30), (10, 200, 30)).save(image)
    status = test_script.main(["--weights", weights, "--block_depth", "3", "--image", image, "--labels", "a,b",
                               "--device_target", "CPU", "--outdir", str(tmp_path)])
    assert status == 2
    assert capsys.readouterr().err.strip() == ("test.py: error: --block_depth: 3 given, but %s was trained with 2; "
                                               "drop the option to use the checkpoint's" % weights)


def test_an_outdir_that_cannot_be_made_is_one_line(trained, tmp_path, capsys):
    _, exp_dir, _ = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    image = os.path.join(trained[0], "ADEChallengeData2016", "images", "validation", "ADE_val_00000001.jpg")
    assert test_script.main(["--weights", os.path.join(exp_dir, "last.ckpt"), "--image", image, "--labels", "a,b",
                             "--device_target", "CPU", "--outdir", str(blocker / "out")]) == 2
    # (after the note that the checkpoint's training sizes are used)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("test.py: error: --outdir: cannot create %s"
                                                                       % (blocker / "out"))


def test_training_from_weights_takes_their_architecture_and_values(trained, tmp_path, capsys):
    root = trained[0]
    source = build_lseg("tiny_vit16", ["a", "b"], arch_option=1, block_depth=1, text_config="tiny")
    weights = str(tmp_path / "start.ckpt")
    save_lseg_checkpoint(source, weights)
    argv = ["--preset", "tiny", "--data_path", root, "--checkpoint_dir", str(tmp_path / "ck"), "--exp_name", "ft",
            "--mode", "pynative", "--base_size", "64", "--crop_size", "64", "--batch_size", "4", "--max_epochs", "1",
            "--max_train_images", "4", "--max_val_images", "2", "--weights", weights]
    assert train_custom.main(argv + ["--block_depth", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("train_custom.py: error: --block_depth: 2 given, but %s was trained "
                                               "with 1; drop the option to use the checkpoint's" % weights)
    assert train_custom.main(argv) == 0
    last = str(tmp_path / "ck" / "ft" / "last.ckpt")
    record = read_checkpoint(last)[2]["options"]
    assert (record["arch_option"], record["block_depth"], record["text_config"]) == (1, 1, "tiny")
    frozen = "clip_pretrained.ln_final.weight"  # the text tower is not trained: it must be the file's
    np.testing.assert_array_equal(load_lseg(last).network.parameters_dict()[frozen].asnumpy(),
                                  source.parameters_dict()[frozen].asnumpy())


def test_image_takes_every_picture_of_a_folder_and_names_a_folder_without_any(tmp_path, capsys):
    weights = str(tmp_path / "tiny.ckpt")
    save_lseg_checkpoint(build_lseg("tiny_vit16", ["sky", "grass"], text_config="tiny"), weights)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(str(folder / "b.png"))
    Image.new("RGB", (30, 40), (200, 10, 30)).save(str(folder / "a.jpg"))
    (folder / "notes.txt").write_text("not a picture")
    base = ["--weights", weights, "--labels", "sky,grass", "--device_target", "CPU", "--mode", "pynative",
            "--outdir", str(tmp_path / "out"), "--image"]
    assert test_script.main(base + [str(folder)]) == 0
    captured = capsys.readouterr()
    assert "test.py: note: --image %s: skipped 1 file(s) that are not pictures: notes.txt" % folder in captured.err
    assert [line.split("/")[-1] for line in captured.out.splitlines() if line.endswith("_mask.png")] == \
        ["a_mask.png", "b_mask.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a picture")
    assert test_script.main(base + [str(empty)]) == 2
    assert capsys.readouterr().err.strip() == ("test.py: error: --image %s: a folder with no pictures in it (.jpg "
                                               ".jpeg .png .bmp .gif .tif .tiff .webp)" % empty)


def test_a_failed_evaluation_leaves_no_empty_output_folder(tmp_path, capsys):
    weights = str(tmp_path / "tiny.ckpt")
    save_lseg_checkpoint(build_lseg("tiny_vit16", ["sky", "grass"], text_config="tiny"), weights)
    (tmp_path / "no_data").mkdir()
    outdir = tmp_path / "outputs" / "run"
    status = test_script.main(["--weights", weights, "--eval", "--data_path", str(tmp_path / "no_data"),
                               "--device_target", "CPU", "--mode", "pynative", "--outdir", str(outdir)])
    assert status == 2 and capsys.readouterr().err.startswith("test.py: error: ")
    assert not (tmp_path / "outputs").exists()


def test_a_checkpoints_training_sizes_are_the_defaults_except_for_a_benchmark(tmp_path, capsys):
    net = build_lseg("tiny_vit16", ["sky", "grass"], text_config="tiny")
    weights = str(tmp_path / "trained_at_64.ckpt")
    save_checkpoint(weights, net, options=dict(net.build_options(), base_size=96, crop_size=64,
                                               label_names=["sky", "grass"]))
    image = str(tmp_path / "photo.png")
    Image.new("RGB", (300, 200), (10, 200, 30)).save(image)
    argv = ["--weights", weights, "--image", image, "--labels", "sky,grass", "--device_target", "CPU", "--mode",
            "pynative", "--outdir", str(tmp_path / "out")]
    assert test_script.main(argv) == 0
    assert ("test.py: note: %s was trained at --base_size 96 --crop_size 64: evaluating at those sizes (give the "
            "options to choose others)" % weights) in capsys.readouterr().err
    assert test_script.main(argv + ["--crop_size", "32"]) == 0  # a size given wins, the other is the checkpoint's
    assert "was trained at --base_size 96: evaluating" in capsys.readouterr().err
    args = options.parse_options(["--dataset", "pascal", "--fold", "0", "--nshot", "0", "--weights", weights,
                                  "--device_target", "CPU"], purpose="test")
    load_network(args, sizes_from_checkpoint=False)
    assert (args.base_size, args.crop_size) == (520, 480)
    assert capsys.readouterr().err.strip() == (
        "test.py: note: %s was trained at --base_size 96 --crop_size 64; the benchmark protocol evaluates at "
        "--crop_size 480: add --base_size 96 --crop_size 64 to evaluate at the training size" % weights)
