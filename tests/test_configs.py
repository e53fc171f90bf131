"""configs/*.yaml and --config: the recipes as files, loaded as defaults that the command line overrides, with
one-line errors naming the file and the key."""
import json
import os

import pytest
import yaml

import options

STACK_INDEPENDENT = "option parsing and YAML reading only; no MindSpore call, no network built"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")

# The recipes as options.py held them (Python dicts and zero_shot_preset) before they moved to configs/, written out
# literally so that the move is checked against the old values rather than against itself.
_ZERO_SHOT = dict(text_config="ViT-B/32", data_path="../datasets", fold="0", batch_size=40, base_lr=0.002,
                  weight_decay=1e-4, momentum=0.9, max_epochs=200, base_size=480, crop_size=480)
FROZEN = {
    "tiny": dict(backbone="tiny_vit16", text_config="tiny", data_path="datasets/synthetic_ade20k", classes="synthetic",
                 exp_name="tiny_synthetic", device_target="CPU", mode="graph", batch_size=8, base_lr=0.004,
                 max_epochs=10, base_size=128, crop_size=96, workers=0, keep_last=2),
    "vitl16_ade20k": dict(backbone="clip_vitl16_384", text_config="ViT-B/32", dataset="ade20k",
                          data_path="../datasets", exp_name="lseg_ade20k_l16", batch_size=1, accumulate_grad_batches=2,
                          base_lr=0.004, weight_decay=1e-4, momentum=0.9, max_epochs=240, base_size=520,
                          crop_size=480),
    "tiny_zeroshot": dict(backbone="tiny_resnet", text_config="tiny", dataset="pascal",
                          data_path="datasets/synthetic_pascal5i", fold="0", exp_name="tiny_zeroshot_fold{fold}",
                          device_target="CPU", mode="graph", batch_size=8, base_lr=0.01, max_epochs=10, base_size=64,
                          crop_size=64, workers=0, keep_last=2, max_val_images=200),
    "zs_rn101_pascal": dict(_ZERO_SHOT, backbone="clip_resnet101", dataset="pascal",
                            exp_name="lseg_zs_rn101_pascal_fold{fold}", stop_after_epoch=4),
    "zs_rn101_coco": dict(_ZERO_SHOT, backbone="clip_resnet101", dataset="coco",
                          exp_name="lseg_zs_rn101_coco_fold{fold}", stop_after_epoch=4),
    "zs_rn101_fss": dict(_ZERO_SHOT, backbone="clip_resnet101", dataset="fss", exp_name="lseg_zs_rn101_fss_fold{fold}",
                         stop_after_epoch=None),
    "zs_vitl16_fss": dict(_ZERO_SHOT, backbone="clip_vitl16_384", dataset="fss",
                          exp_name="lseg_zs_vitl16_fss_fold{fold}", stop_after_epoch=None),
}


def _typed(values):
    """Values with their types, so that 4 and 4.0 or "0" and 0 differ."""
    return {key: (type(value).__name__, value) for key, value in values.items()}


def test_the_recipe_files_are_the_old_presets():
    assert options.preset_names() == sorted(FROZEN)
    for name, frozen in FROZEN.items():
        path = os.path.join(CONFIGS, name + ".yaml")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        assert _typed(yaml.safe_load(text)) == _typed(frozen), name  # the file as written
        assert _typed(options.load_config(path)) == _typed(frozen), name  # after each option's type
        assert _typed(options.PRESETS[name]) == _typed(frozen), name
        header = text.split("\n\n")[0].splitlines()[:3]
        assert header[0].startswith("# %s: " % name) and "Source:" in text.split("\n" + next(iter(frozen)))[0], name


def test_the_comments_that_explain_values_are_kept():
    def text(name):
        with open(os.path.join(CONFIGS, name + ".yaml"), encoding="utf-8") as handle:
            return handle.read()
    assert "0.004 gives 25, 0.01 gives 39" in text("tiny_zeroshot")
    assert "lang-seg train.sh" in text("vitl16_ade20k")
    for name in ("zs_rn101_pascal", "zs_rn101_coco", "zs_rn101_fss", "zs_vitl16_fss"):
        assert "LSegmentationModuleZS" in text(name) and "0.004 / 16 x 20 = 0.005" in text(name), name
    assert not hasattr(options, "zero_shot_preset")


@pytest.mark.parametrize("purpose", options.PURPOSES)
@pytest.mark.parametrize("name", sorted(FROZEN))
def test_preset_is_config_of_its_file(name, purpose):
    by_name = options.parse_options(["--preset", name, "--max_images" if purpose == "test" else "--max_epochs", "2"],
                                    purpose=purpose)
    by_file = options.parse_options(["--config", os.path.join(CONFIGS, name + ".yaml"),
                                     "--max_images" if purpose == "test" else "--max_epochs", "2"], purpose=purpose)
    assert by_name.config == by_file.config == os.path.join(CONFIGS, name + ".yaml")
    assert by_name.preset == name and by_file.preset is None
    assert {k: v for k, v in vars(by_name).items() if k not in ("preset", "explicit")} == \
        {k: v for k, v in vars(by_file).items() if k not in ("preset", "explicit")}


def test_config_gives_defaults_and_the_command_line_wins(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("# a comment\nbackbone: tiny_vit16\nbase_lr: 0.01\nmax_epochs: 3\nwidehead: true\n"
                    "scale_inv: false\nfold: 0\nstop_after_epoch: null\nweights: null\n")
    args = options.parse_options(["--config", str(path), "--max_epochs", "5"])
    assert (args.backbone, args.base_lr, args.max_epochs, args.widehead, args.scale_inv) == \
        ("tiny_vit16", 0.01, 5, True, False)
    assert args.fold == "0" and args.stop_after_epoch is None and args.crop_size == 480  # untouched default
    assert args.explicit == {"config", "max_epochs"} and args.config == str(path)


def test_one_recipe_serves_both_scripts(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("base_lr: 0.01\nscales: official\nflip: true\ncrop_size: 64\nbase_size: 64\n")
    train = options.parse_options(["--config", str(path)])
    test = options.parse_options(["--config", str(path)], purpose="test")
    assert train.base_lr == 0.01 and not hasattr(train, "scales") and train.crop_size == 64
    assert test.scales == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and test.flip and not hasattr(test, "base_lr")


def test_recipes_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert options.parse_options(["--preset", "tiny"]).backbone == "tiny_vit16"


def test_relative_config_path_is_the_callers(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text("max_epochs: 7\n")
    monkeypatch.chdir(tmp_path)
    args = options.parse_options(["--config", "r.yaml"])
    assert args.max_epochs == 7 and args.config == str(tmp_path / "r.yaml")


def test_an_empty_config_changes_nothing(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    args = options.parse_options(["--config", str(tmp_path / "empty.yaml")])
    plain = options.parse_options([])
    assert {k: v for k, v in vars(args).items() if k not in ("config", "explicit")} == \
        {k: v for k, v in vars(plain).items() if k not in ("config", "explicit")}


@pytest.mark.parametrize("text, key, reason", [
    ("bacth_size: 2\n", "bacth_size", "unknown option (did you mean batch_size?)"),
    ("--base_lr: 0.1\n", "--base_lr", "unknown option (did you mean base_lr?)"),
    ("frobnicate: 1\n", "frobnicate", "unknown option (keys are option names without --)"),
    ("batch_size: 2.5\n", "batch_size", "invalid int value: 2.5"),
    ("batch_size: eight\n", "batch_size", "invalid int value: 'eight'"),
    ("batch_size: true\n", "batch_size", "expected a value, got true"),
    ("batch_size: null\n", "batch_size", "expected a value, got null"),
    ("batch_size: [1, 2]\n", "batch_size", "expected a single value, got [1, 2]"),
    ("exp_name: no\n", "exp_name", "expected a value, got false"),
    ("base_lr: .nan\n", "base_lr", "must be a finite number"),
    ("backbone: vit_huge\n", "backbone", "invalid choice: 'vit_huge' (choose from"),
    ("mode: eager\n", "mode", "invalid choice: 'eager'"),
    ("widehead: 1\n", "widehead", "expected true or false, got 1"),
    ("scales: big\n", "scales", "expected comma-separated finite numbers"),
    ("preset: tiny\n", "preset", "a config file cannot name another config or preset"),
    ("config: other.yaml\n", "config", "a config file cannot name another config or preset"),
    ("base_lr: 0.1\nmax_epochs: 2\nbase_lr: 0.2\n", "base_lr", "given twice (again on line 3)"),
    # Values of the right type that the option's own check refuses still name the file and the key.
    ("batch_size: 0\n", "batch_size", "must be >= 1 (got 0)"),
    ("crop_size: 100\n", "crop_size", "must be a positive multiple of 32 (got 100)"),
])
def test_a_bad_key_or_value_is_one_line_naming_file_and_key(tmp_path, capsys, text, key, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as info:
        options.parse_options(["--config", str(path)])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == "(train_custom.py --help lists every option)"
    assert lines[0].startswith("train_custom.py: error: %s: %s: %s" % (path, key, reason)), lines[0]


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read it: No such file or directory"),
    ("folder", "cannot read it: Is a directory"),
    (b"base_lr: \xff\xfe\n", "cannot read it: not UTF-8 text"),
    ("batch_size: [2\n", "not valid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    ("a: b: c\n", "not valid YAML: mapping values are not allowed here (line 1, column 5)"),
    ("- batch_size: 2\n", "expected 'option: value' lines, got a YAML list"),
    ("just words\n", "expected 'option: value' lines, got a YAML str"),
    ("!!python/object:os.system ls\n", "not valid YAML: "),  # safe_load: no Python objects from a file
])
def test_an_unusable_file_is_one_line_naming_it(tmp_path, capsys, content, reason):
    path = tmp_path / "c.yaml"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as info:
        options.parse_options(["--config", str(path)], purpose="test")
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("test.py: error: %s: %s" % (path, reason)), lines


def test_config_and_preset_together_is_an_error(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("max_epochs: 2\n")
    with pytest.raises(SystemExit) as info:
        options.parse_options(["--preset", "tiny", "--config", str(tmp_path / "x.yaml")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train_custom.py: error: argument --config: not allowed with argument --preset")
    assert len(err.strip().splitlines()) == 2


def test_unknown_preset_lists_the_recipe_files(capsys):
    with pytest.raises(SystemExit):
        options.parse_options(["--preset", "huge"])
    err = capsys.readouterr().err
    assert "--preset: invalid choice: 'huge'" in err and all(name in err for name in FROZEN)


def test_the_record_names_the_config_and_holds_the_resolved_values(tmp_path):
    args = options.parse_options(["--preset", "tiny", "--crop_size", "64"])
    record = json.loads(json.dumps(options.options_record(args)))  # as a checkpoint stores it (options_json)
    assert record["preset"] == "tiny" and record["config"] == os.path.join(CONFIGS, "tiny.yaml")
    assert (record["backbone"], record["base_lr"], record["crop_size"], record["max_epochs"]) == \
        ("tiny_vit16", 0.004, 64, 10)
    path = tmp_path / "mine.yaml"
    path.write_text("max_epochs: 3\n")
    record = options.options_record(options.parse_options(["--config", str(path)]))
    assert record["config"] == str(path) and record["preset"] is None and record["max_epochs"] == 3
    record = options.options_record(options.parse_options([]))
    assert record["config"] is None and record["preset"] is None
