"""train_custom.sh / test.sh / quickstart.sh: official settings, DEVICE default, "$@" passthrough, --nproc launch.

A fake ``python`` on PATH (with LSEG_SKIP_SETUP=1) records the command line instead of running anything.
"""
import os
import shlex
import stat
import subprocess

import options

STACK_INDEPENDENT = ("the shell wrappers' argument handling, run with a fake python that only records its command "
                     "line (parsed by options.py, no network built)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, script, args=(), env_extra=None, msrun=False):
    bin_dir = tmp_path / ("bin_msrun" if msrun else "bin")
    bin_dir.mkdir(exist_ok=True)
    for name in ("python", "msrun") if msrun else ("python",):
        fake = bin_dir / name
        # Also keeps the LSEG_COMMAND it was started with (the resume hint train_custom.sh hands down).
        fake.write_text(f"#!/bin/sh\necho {name}; echo \"PATH=$PATH\"\n"
                        "printf '%s' \"$LSEG_COMMAND\" > \"$0.lseg_command\"\n"
                        "for a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # Only the fakes and the system tools: no msrun of a real venv may be found by accident.
    env = dict(os.environ, LSEG_SKIP_SETUP="1", PATH="%s:/usr/bin:/bin" % bin_dir)
    env.pop("DEVICE", None)
    env.pop("DEVICE_NUM", None)
    env.update(env_extra or {})
    res = subprocess.run(["bash", os.path.join(REPO, script)] + list(args), env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _command(lines):
    """The one recorded command line: ``[program, PATH=..., arg, ...]`` with the program's name first."""
    assert lines[0] in ("python", "msrun") and lines[1].startswith("PATH="), lines[:2]
    return lines


def _value(argv, option):
    return argv[len(argv) - 1 - argv[::-1].index(option) + 1]  # the last occurrence wins, as in argparse


def test_train_sh_has_official_settings_default_auto_device_and_passthrough(tmp_path):
    argv = _command(_run(tmp_path, "train_custom.sh", ["--max_epochs", "3", "--data_path", "/data"]))[2:]
    assert argv[0] == "train_custom.py"
    assert _value(argv, "--device_target") == "auto"
    # The recipe's one source is configs/vitl16_ade20k.yaml: the script names it and repeats none of its values.
    assert _value(argv, "--preset") == "vitl16_ade20k" and "--batch_size" not in argv and "--base_lr" not in argv
    assert _value(argv, "--max_epochs") == "3" and _value(argv, "--data_path") == "/data"
    assert "--widehead" in argv and "--no-scaleinv" in argv
    # What train_custom.py makes of that command line: the official train.sh values, the caller's overrides.
    args = options.parse_options(argv[1:])
    assert (args.dataset, args.backbone, args.text_config, args.exp_name) == \
        ("ade20k", "clip_vitl16_384", "ViT-B/32", "lseg_ade20k_l16")
    assert (args.batch_size, args.accumulate_grad_batches, args.base_lr, args.weight_decay, args.momentum) == \
        (1, 2, 0.004, 1e-4, 0.9)
    assert (args.base_size, args.crop_size, args.max_epochs, args.data_path) == (520, 480, 3, "/data")
    assert args.widehead and not args.scale_inv and args.device_target == "auto"


def test_train_sh_callers_recipe_replaces_the_official_one(tmp_path):
    argv = _command(_run(tmp_path, "train_custom.sh", ["--preset", "tiny"]))[3:]
    assert argv.count("--preset") == 1 and _value(argv, "--preset") == "tiny"
    assert options.parse_options(argv).backbone == "tiny_vit16"
    argv = _command(_run(tmp_path, "train_custom.sh", ["--config=my.yaml"]))[3:]
    assert "--preset" not in argv and "--config=my.yaml" in argv


def test_train_sh_nproc_runs_scripts_launch_even_where_msrun_exists(tmp_path):
    # scripts.launch stops a failed start within seconds; msrun's scheduler would wait 10 minutes.
    argv = _command(_run(tmp_path, "train_custom.sh", ["--nproc", "2", "--resume"],
                         {"DEVICE": "CPU", "MASTER_PORT": "8129"}, msrun=True))
    assert argv[0] == "python"
    argv = argv[2:]
    assert argv[:4] == ["-m", "scripts.launch", "--nproc", "2"] and _value(argv, "--port") == "8129"
    assert _value(argv, "--log_dir") == "logs/lseg_ade20k_l16"
    assert "--" in argv and argv[argv.index("--") + 1] == "train_custom.py"
    assert _value(argv, "--device_target") == "CPU" and argv[-1] == "--resume" and argv.count("--nproc") == 1
    argv = _command(_run(tmp_path, "train_custom.sh", [], {"DEVICE_NUM": "4", "DEVICE": "GPU"}))[2:]
    assert argv[:4] == ["-m", "scripts.launch", "--nproc", "4"] and _value(argv, "--device_target") == "GPU"
    assert _value(argv, "--port") == "0"  # no MASTER_PORT: the launcher picks a free one


def test_train_sh_refuses_a_process_count_that_is_not_a_positive_number(tmp_path):
    for value in ("0", "two", ""):
        done = subprocess.run(["bash", os.path.join(REPO, "train_custom.sh"), "--nproc", value],
                              env=dict(os.environ, LSEG_SKIP_SETUP="1"), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == ("train_custom.sh: error: --nproc / DEVICE_NUM: a number of processes >= 1 "
                               f"(got '{value}')\n")


def test_test_sh_official_multiscale_eval_and_passthrough(tmp_path):
    argv = _command(_run(tmp_path, "test.sh", ["--weights", "w.ckpt"], {"DEVICE": "CPU"}))[2:]
    assert argv[0] == "test.py" and "--eval" in argv and "--flip" in argv
    assert _value(argv, "--scales") == "official" and _value(argv, "--weights") == "w.ckpt"
    assert _value(argv, "--device_target") == "CPU"


def test_quickstart_runs_data_train_eval_and_image_steps(tmp_path):
    lines = _run(tmp_path, "quickstart.sh", ["--max_epochs", "1"])
    text = "\n".join(lines)
    assert "train_custom.py" in lines and "--preset" in lines and "--max_epochs" in lines
    assert text.count("test.py") == 2 and "--image" in lines and "--labels" in lines
    assert "Quick start finished" in text and "eval_log.txt" in text


def test_zero_shot_quickstart_prepares_trains_and_tests_fold_0(tmp_path):
    lines = _run(tmp_path, "quickstart.sh", ["--zero-shot", "--max_epochs", "2"])
    text = "\n".join(lines)
    assert "scripts.prepare_fewshot" in lines and "--synthetic" in lines
    assert "train_custom.py" in lines and "tiny_zeroshot" in lines and "--max_epochs" in lines
    assert "--zero-shot" not in lines  # consumed by quickstart.sh, not passed to train_custom.py
    assert "test.py" in lines and "checkpoints/tiny_zeroshot_fold0/last.ckpt" in lines
    assert "Zero-shot quick start finished" in text and "ADE" not in text


def test_zero_shot_quickstart_refuses_another_fold(tmp_path):
    res = subprocess.run(["bash", os.path.join(REPO, "quickstart.sh"), "--zero-shot", "--fold", "1"],
                         env=dict(os.environ, LSEG_SKIP_SETUP="1", PATH="/usr/bin:/bin"), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "quickstart.sh --zero-shot: --fold: the quick start is fold 0" in res.stderr


def test_test_sh_runs_the_zero_shot_protocol_with_the_users_backbone(tmp_path):
    argv = _command(_run(tmp_path, "test.sh", ["--dataset", "pascal", "--fold", "all", "--backbone",
                                                "clip_resnet101", "--weights", "pascal_fold{fold}.ckpt"]))[2:]
    assert argv[0] == "test.py"
    # The user's options come last, so they win over test.sh's ADE20K defaults (argparse keeps the last value).
    for option, value in (("--dataset", "pascal"), ("--fold", "all"), ("--backbone", "clip_resnet101"),
                          ("--weights", "pascal_fold{fold}.ckpt")):
        assert _value(argv, option) == value


def test_train_sh_hands_down_a_resume_command_that_reruns_it(tmp_path):
    _run(tmp_path, "train_custom.sh")
    assert (tmp_path / "bin" / "python.lseg_command").read_text() == "DEVICE=auto DEVICE_NUM=1 bash train_custom.sh"
    _run(tmp_path, "train_custom.sh", ["--exp_name", "my run", "--max_epochs", "3"], {"DEVICE": "CPU"})
    command = (tmp_path / "bin" / "python.lseg_command").read_text()
    assert shlex.split(command) == ["DEVICE=CPU", "DEVICE_NUM=1", "bash", "train_custom.sh", "--exp_name", "my run",
                                    "--max_epochs", "3"]
