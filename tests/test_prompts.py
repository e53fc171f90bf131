"""Prompt templates (``--prompt`` / ``--prompts``): the text each label is encoded as, CLIP's prompt ensemble,
recorded in checkpoints and used alike by training, test.py, the demo's loader and the MindIR export."""
import contextlib
import io

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

import options
import test as test_script
from clip_ms.prompts import RAW_LABEL, check_templates, read_prompt_file, templates_from_options
from foundation.checkpoint_file import RECORDED_PROMPTS_KEY, read_checkpoint
from modules.export import main as export_main
from modules.factory import build_lseg, load_lseg
from modules.weights import save_lseg_checkpoint

pytestmark = pytest.mark.both_stacks

LABELS = ["cat", "grass", "草地"]
PHOTO = "a photo of a {}."
TEMPLATES = [PHOTO, "a blurry picture of the {}", "{}"]


def tiny(**kwargs):
    ms.set_seed(5)
    return build_lseg("tiny_vit16", LABELS, text_config="tiny", **kwargs)


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_templates_are_checked_and_read_one_per_line(tmp_path):
    assert templates_from_options(None, None) == list(RAW_LABEL) == ["{}"]
    assert templates_from_options(" " + PHOTO + " ", None) == [PHOTO]
    path = tmp_path / "prompts.txt"
    path.write_text("# CLIP's style\n\na photo of a {}, seen from above\n{} in the wild\n", encoding="utf-8")
    assert read_prompt_file(str(path)) == ["a photo of a {}, seen from above", "{} in the wild"]
    for prompt, prompts, message in [
        ("a photo", None, "--prompt: template 1 'a photo' has no {} where the label goes"),
        (None, str(tmp_path / "none.txt"), "--prompts .*none.txt: file not found"),
        (None, PHOTO, "--prompts: a file of templates; one template goes to --prompt"),
    ]:
        with pytest.raises(ValueError, match=message):
            templates_from_options(prompt, prompts)
    with pytest.raises(ValueError, match="template 3 '{} x' is given twice"):
        check_templates(["{}", "{} x", "{} x"], "--prompts f")
    with pytest.raises(ValueError, match="CLIP tokens long"):
        check_templates(["{} " + "word " * 80], "--prompt")


def test_the_options_resolve_the_templates_and_name_a_bad_one(tmp_path):
    args = options.parse_options(["--prompt", PHOTO], purpose="test")
    assert args.prompt_templates == [PHOTO]
    assert options.parse_options([], purpose="test").prompt_templates == ["{}"]
    with pytest.raises(SystemExit):
        options.parse_options(["--prompt", "x {}", "--prompts", "f.txt"], purpose="test")  # mutually exclusive


def test_one_template_encodes_the_filled_text_and_several_their_normalised_mean():
    net = tiny()
    raw = net.encode_text(LABELS).asnumpy()
    filled = {template: net.encode_text([template.replace("{}", label) for label in LABELS]).asnumpy()
              for template in TEMPLATES}
    np.testing.assert_array_equal(raw, filled["{}"])  # the default is the bare label, unnormalised as before
    net.set_prompts([PHOTO])
    np.testing.assert_allclose(net.encode_text(LABELS).asnumpy(), unit(filled[PHOTO]), rtol=1e-5, atol=1e-6)
    net.set_prompts(TEMPLATES)
    ensemble = unit(sum(unit(filled[template]) for template in TEMPLATES))
    np.testing.assert_allclose(net.text_features_cache.asnumpy(), ensemble, rtol=1e-5, atol=1e-6)  # re-encoded
    assert not np.allclose(unit(raw), ensemble, atol=1e-3)  # the templates change the features


def test_checkpoints_record_the_templates_and_every_loader_uses_them(tmp_path):
    net = tiny(prompts=TEMPLATES)
    path = str(tmp_path / "w.ckpt")
    save_lseg_checkpoint(net, path, labels=LABELS)
    assert read_checkpoint(path)[2]["options"][RECORDED_PROMPTS_KEY] == TEMPLATES
    loaded = load_lseg(path).network  # what the demo and the export build
    loaded.set_train(False)  # as the export is
    assert loaded.prompts == TEMPLATES
    np.testing.assert_allclose(loaded.text_features(LABELS).asnumpy(), net.text_features(LABELS).asnumpy(),
                               rtol=1e-6)
    out = str(tmp_path / "lseg.mindir")
    with contextlib.redirect_stdout(io.StringIO()):
        assert export_main(["--weights", path, "--labels", ",".join(LABELS), "--height", "64", "--width", "64",
                            "--out", out]) == 0
    images = np.random.RandomState(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    want = loaded(ms.Tensor(images)).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        got = nn.GraphCell(ms.load(out))(ms.Tensor(images)).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_test_py_uses_the_recorded_templates_unless_told_otherwise(tmp_path, monkeypatch):
    path = str(tmp_path / "w.ckpt")
    save_lseg_checkpoint(tiny(prompts=[PHOTO]), path, labels=LABELS)
    picture = tmp_path / "p.png"
    from PIL import Image
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64, 3), np.uint8)).save(picture)
    used = []
    real = test_script.load_network

    def spy(args, *rest, **kwargs):
        result = real(args, *rest, **kwargs)
        used.append(list(result[0].prompts))
        return result

    monkeypatch.setattr(test_script, "load_network", spy)
    base = ["--weights", path, "--image", str(picture), "--labels", "cat,sky", "--no-progress"]
    assert test_script.main(base + ["--outdir", str(tmp_path / "a")]) == 0
    assert test_script.main(base + ["--outdir", str(tmp_path / "b"), "--prompt", "{} outdoors"]) == 0
    assert used == [[PHOTO], ["{} outdoors"]]


def test_training_builds_with_the_templates_and_a_start_from_weights_takes_theirs(tmp_path):
    from encoding_custom.tasks.networks import training_network

    tiny_args = ["--backbone", "tiny_vit16", "--text_config", "tiny"]
    args = options.parse_options(tiny_args + ["--prompt", PHOTO], purpose="train")
    assert training_network(args, LABELS, resuming=False).prompts == [PHOTO]
    assert options.options_record(args)[RECORDED_PROMPTS_KEY] == [PHOTO]  # what train_custom.py records
    path = str(tmp_path / "w.ckpt")
    save_lseg_checkpoint(tiny(prompts=TEMPLATES), path, labels=LABELS)
    args = options.parse_options(["--weights", path], purpose="train")
    assert training_network(args, LABELS, resuming=False).prompts == TEMPLATES
    assert args.prompt_templates == TEMPLATES
