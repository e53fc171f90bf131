"""options.py: official names/defaults, presets, and validation errors that name the option."""
import os
import re

import pytest

import options
from modules import tnn

STACK_INDEPENDENT = ("option parsing and validation; the AMP levels it checks are the layer's own per-stack "
                     "constants, tested in test_modules_tnn")


def test_defaults_are_the_official_ones():
    args = options.parse_options([])
    assert (args.backbone, args.dataset, args.data_path) == ("clip_vitl16_384", "ade20k", "../datasets")
    assert (args.base_lr, args.weight_decay, args.momentum, args.max_epochs) == (0.004, 1e-4, 0.9, 240)
    assert (args.base_size, args.crop_size, args.ignore_index) == (520, 480, None)
    assert (args.arch_option, args.block_depth, args.activation) == (0, 0, "lrelu")
    assert (args.mode, args.amp_level, args.device_target) == ("graph", "O0", "auto")
    args = options.parse_options([], purpose="test")
    assert args.scales == [1.0] and not args.flip and not args.eval


def test_official_train_command_line_parses():
    argv = ("--dataset ade20k --data_path ../datasets --batch_size 1 --exp_name lseg_ade20k_l16 --base_lr 0.004 "
            "--weight_decay 1e-4 --no-scaleinv --max_epochs 240 --widehead --accumulate_grad_batches 2 "
            "--backbone clip_vitl16_384").split()
    args = options.parse_options(argv)
    assert args.batch_size == 1 and args.accumulate_grad_batches == 2 and args.widehead and not args.scale_inv


def test_official_test_spelling_data_path_with_dash():
    args = options.parse_options(["--data-path", "/x/", "--eval", "--scales", "official", "--flip"], purpose="test")
    assert args.data_path == "/x/" and args.eval and args.flip
    assert args.scales == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_tiny_preset_and_explicit_override():
    args = options.parse_options(["--preset", "tiny"])
    assert args.backbone == "tiny_vit16" and args.device_target == "CPU" and args.crop_size == 96
    args = options.parse_options(["--preset", "tiny", "--crop_size", "64", "--max_epochs", "1"])
    assert args.crop_size == 64 and args.max_epochs == 1 and args.backbone == "tiny_vit16"


def test_vitl16_preset_matches_official_train_sh():
    args = options.parse_options(["--preset", "vitl16_ade20k"])
    assert (args.backbone, args.batch_size, args.accumulate_grad_batches, args.base_lr) == \
        ("clip_vitl16_384", 1, 2, 0.004)
    assert (args.max_epochs, args.crop_size, args.base_size, args.exp_name) == (240, 480, 520, "lseg_ade20k_l16")


def test_effective_lr_is_base_over_16_times_global_batch():
    assert options.effective_lr(0.004, 1) == pytest.approx(0.00025)
    assert options.effective_lr(0.004, 4, world_size=8) == pytest.approx(0.008)


@pytest.mark.parametrize("argv, option", [
    (["--crop_size", "100"], "--crop_size"),
    (["--crop_size", "480", "--base_size", "320"], "--base_size"),
    (["--batch_size", "0"], "--batch_size"),
    (["--base_lr", "-1"], "--base_lr"),
    (["--momentum", "1.0"], "--momentum"),
    (["--max_epochs", "0"], "--max_epochs"),
    (["--accumulate_grad_batches", "0"], "--accumulate_grad_batches"),
    (["--arch_option", "5"], "--arch_option"),
    (["--weights", "/no/such.ckpt"], "--weights"),
    (["--exp_name", "a/b"], "--exp_name"),
    (["--device_target", "TPU"], "--device_target"),
    (["--mode", "eager"], "--mode"),
    (["--base_lr", "inf"], "--base_lr"),
    (["--base_lr", "nan"], "--base_lr"),
    (["--weight_decay", "-inf"], "--weight_decay"),
    (["--momentum", "nan"], "--momentum"),
    (["--backbone", "vit_huge"], "--backbone"),
    (["--text_config", "RN50"], "--text_config"),
    (["--weights", "."], "--weights"),
])
def test_invalid_value_error_names_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        options.parse_options(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err
    # One line saying what is wrong plus a pointer to --help, not the 25-line usage block.
    assert len(err.strip().splitlines()) == 2 and err.startswith("train_custom.py: error: ")


@pytest.mark.parametrize("argv, option", [
    (["--scales", "1.0,-2"], "--scales"),
    (["--scales", "big"], "--scales"),
    (["--scales", "1.0,inf"], "--scales"),
    (["--image", "/no/such.png", "--labels", "a,b"], "--image"),
    (["--max_images", "0"], "--max_images"),
    (["--labels", "cat,dog"], "--labels"),  # labels without images to segment
    (["--log_file", "/no/such/folder/eval.txt"], "--log_file"),
])
def test_invalid_test_value_error_names_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        options.parse_options(argv, purpose="test")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and err.startswith("test.py: error: ")


def test_every_float_option_refuses_non_finite_values(capsys):
    for purpose in options.PURPOSES:
        for action in options.build_parser(purpose)._actions:
            if action.type is not options.finite_float:
                continue
            for text in ("inf", "-inf", "nan"):
                with pytest.raises(SystemExit):
                    options.parse_options(["%s=%s" % (action.option_strings[0], text)], purpose=purpose)
                assert "must be a finite number" in capsys.readouterr().err
    assert options.parse_options(["--base_lr", "1e-3"]).base_lr == 1e-3


def test_each_script_lists_only_its_options():
    train = {a.dest for a in options.build_parser("train")._actions}
    test = {a.dest for a in options.build_parser("test")._actions}
    assert {"base_lr", "resume", "overwrite", "amp_level"} <= train and not {"image", "eval", "scales"} & train
    assert {"image", "labels", "eval", "scales", "eval_mode"} <= test and not {"base_lr", "resume"} & test
    assert {"backbone", "data_path", "device_target", "weights"} <= train & test


def test_help_is_consistent():
    text = options.build_parser("train").format_help()
    flat = " ".join(text.split())
    # On/off flags show no "(default: ...)": "--no-scaleinv ... (default: True)" contradicted itself.
    assert "(default: True)" not in flat and "(default: False)" not in flat
    for name in list(options.BACKBONES) + list(options.TEXT_CONFIGS):
        assert name in flat, name  # the choices are listed
    assert "(default: 0.004)" in flat


def test_explicit_options_are_recorded():
    args = options.parse_options(["--preset", "tiny", "--backbone=clip_vitb32_384", "--crop_size", "64"])
    assert {"preset", "backbone", "crop_size"} <= args.explicit and "base_lr" not in args.explicit
    assert args.backbone == "clip_vitb32_384" and args.max_epochs == 10  # explicit wins, the preset fills the rest


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_graph_mode_amp_levels_follow_the_layer(level, capsys):
    argv = ["--device_target", "Ascend", "--mode", "graph", "--amp_level", level]
    if level in tnn.GRAPH_AMP_LEVELS:
        assert options.parse_options(argv).amp_level == level
        return
    with pytest.raises(SystemExit):
        options.parse_options(argv)
    assert f"--amp_level: {level} does not compile in graph mode with the msadapter layer" in capsys.readouterr().err


def test_image_and_eval_are_either_or(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"not checked here")
    with pytest.raises(SystemExit):
        options.parse_options(["--image", str(image), "--labels", "a,b", "--eval"], purpose="test")
    assert "test.py: error: --eval: evaluates the val split; --image segments files" in capsys.readouterr().err


def test_image_runs_pynative_unless_the_command_line_or_config_says_otherwise(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"not checked here")
    segment = ["--image", str(image), "--labels", "a,b"]
    assert options.parse_options(segment, purpose="test").mode == "pynative"
    assert options.parse_options(segment + ["--mode", "graph"], purpose="test").mode == "graph"
    config = tmp_path / "recipe.yaml"
    config.write_text("mode: graph\n")
    assert options.parse_options(segment + ["--config", str(config)], purpose="test").mode == "graph"
    assert options.parse_options(["--eval"], purpose="test").mode == "graph"
    assert options.parse_options([], purpose="test").mode == "graph"


def test_image_needs_labels(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"not checked here")
    with pytest.raises(SystemExit):
        options.parse_options(["--image", str(image), "--labels", "  "], purpose="test")
    assert "--labels" in capsys.readouterr().err


def test_training_requires_existing_data_path(tmp_path, capsys):
    with pytest.raises(SystemExit):
        options.parse_options(["--data_path", str(tmp_path / "missing")], for_training=True)
    assert "--data_path" in capsys.readouterr().err
    assert options.parse_options(["--data_path", str(tmp_path)], for_training=True).data_path == str(tmp_path)


def test_resume_without_value_points_at_last_ckpt(tmp_path):
    args = options.parse_options(["--resume", "--checkpoint_dir", str(tmp_path), "--exp_name", "run"])
    with pytest.raises(options.OptionError, match="--resume"):
        options.resolve_resume_path(args)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"x")
    assert options.resolve_resume_path(args) == str(tmp_path / "run" / "last.ckpt")


def test_readme_options_table_lists_every_option():
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"),
              encoding="utf-8") as handle:
        readme = handle.read()
    table = readme[readme.index("### Options"):readme.index("### What a run leaves behind")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    listed = set(re.findall(r"`(--[a-z_-]+)", "\n".join(row.split("|")[1] for row in rows)))
    for purpose in options.PURPOSES:
        for action in options.build_parser(purpose)._actions:
            if action.option_strings and action.dest != "help":
                assert action.option_strings[0] in listed, (purpose, action.option_strings[0])


def test_recompute_is_a_graph_mode_option(capsys):
    assert options.parse_options(["--recompute", "backbone"]).recompute == "backbone"
    with pytest.raises(SystemExit):
        options.parse_options(["--recompute", "backbone", "--mode", "pynative"])
    assert "--recompute: works in graph mode only: add --mode graph (got 'backbone')" in capsys.readouterr().err


def test_amp_dtype_needs_a_mixed_precision_level(capsys):
    assert options.parse_options(["--amp_dtype", "bfloat16", "--amp_level", "O2"]).amp_dtype == "bfloat16"
    with pytest.raises(SystemExit):
        options.parse_options(["--amp_dtype", "bfloat16"])
    assert ("--amp_dtype: is the type of --amp_level O1/O2/O3: give one of those too (got 'bfloat16')"
            in capsys.readouterr().err)
