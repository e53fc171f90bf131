"""bench/: statistics, analytic FLOP count (hand-counted tiny config), variant selection, the per-variant subprocess
(peak RSS, failure and timeout handling) and target evaluation. Fast: no network is built here."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from bench import flops, report, run, timing
from bench.cases import RUN_ORDER, SELFTEST_VARIANTS, VARIANTS, select_variants

STACK_INDEPENDENT = ("the bench harness (child processes, JSON, tables) is plain Python; the network code its "
                     "variants time is tested per stack by the both_stacks modules")


def test_summarize_quartiles_and_spread():
    stats = timing.summarize([4.0, 1.0, 3.0, 2.0])
    assert stats["n"] == 4
    assert stats["median_s"] == pytest.approx(2.5)
    assert (stats["min_s"], stats["max_s"]) == (1.0, 4.0)
    assert (stats["q1_s"], stats["q3_s"]) == (pytest.approx(1.75), pytest.approx(3.25))
    assert timing.summarize([2.0])["stdev_s"] == 0.0
    with pytest.raises(ValueError, match="at least one"):
        timing.summarize([])


def test_measure_runs_warmup_then_repeats():
    calls = []
    result = timing.measure(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5
    assert len(result["samples_s"]) == 3 and len(result["warmup_s"]) == 2
    with pytest.raises(ValueError, match="repeats"):
        timing.measure(lambda: None, warmup=0, repeats=0)


TINY = flops.LSegFlopConfig(
    image_hw=(64, 64), patch_size=16, vit_width=16, vit_mlp_ratio=4.0, hooks=(0, 1, 2, 3),
    reassemble_channels=(4, 8, 16, 16), features=8, embed_dim=16, n_labels=3, readout="project",
    text=flops.TextFlopConfig(width=8, layers=1, context_length=4, embed_dim=8, mlp_ratio=4.0))


def test_flops_tiny_config_matches_hand_count():
    # Hand count in multiply-adds (MAC); FLOP = 2 MAC. 64x64 image, 16 px patches: 4x4 = 16 patches, 17 tokens.
    got = flops.lseg_forward_flops(TINY)
    assert got["patch_embed"] == 2 * (16 * 768 * 16)  # 16 patches x (3*16*16 inputs) x 16 outputs
    per_block = 17 * (3 * 256 + 256 + 1024 + 1024) + 2 * 17 * 17 * 16  # qkv, proj, fc1, fc2; QK^T and AV
    assert got["vit_blocks"] == 2 * 4 * per_block  # hooks up to block 3 -> 4 blocks
    assert got["readout"] == 2 * 4 * 16 * 32 * 16  # Linear(32 -> 16) on 16 tokens, 4 levels
    reassemble = (16 * 16 * 4 + 16 * 16 * 4 * 4  # level 1: 1x1 to 4 ch, ConvT k4 s4
                  + 16 * 16 * 8 + 16 * 4 * 8 * 8  # level 2: 1x1 to 8 ch, ConvT k2 s2
                  + 16 * 16 * 16  # level 3: 1x1 only
                  + 16 * 16 * 16 + 4 * 16 * 16 * 9)  # level 4: 1x1, 3x3 s2 to 2x2
    assert got["reassemble"] == 2 * reassemble
    layer_rn = 256 * 4 * 8 * 9 + 64 * 8 * 8 * 9 + 16 * 16 * 8 * 9 + 4 * 16 * 8 * 9
    residual_units = 576 * (256 * 4 + 64 * 4 + 16 * 4 + 4 * 2)  # 3x3 8->8 = 576 MAC per pixel
    out_convs = 64 * (16 + 64 + 256 + 1024)  # 1x1 8->8 after each x2 upsampling
    assert got["fusion"] == 2 * (layer_rn + residual_units + out_convs)
    assert got["head"] == 2 * 32 * 32 * 8 * 16
    assert got["pixel_text"] == 2 * 32 * 32 * 16 * 3
    text_per_label = 4 * (4 * 64 + 2 * 4 * 64) + 2 * 4 * 4 * 8 + 8 * 8
    assert got["text_encoder"] == 2 * 3 * text_per_label
    assert got["image_total"] == 3_367_168
    assert got["total"] == 3_367_168 + 20_352


def test_flops_cached_text_and_reference_vit():
    cached = flops.lseg_forward_flops(dataclasses.replace(TINY, text=None))
    assert cached["text_encoder"] == 0 and cached["total"] == cached["image_total"]
    # timm reports 191.2 GMAC for vit_large_patch16_384 (all 24 blocks + classifier) at 384 px.
    vitl_384 = flops.lseg_forward_flops(dataclasses.replace(flops.VITL16_480, image_hw=(384, 384)))
    assert (vitl_384["patch_embed"] + vitl_384["vit_blocks"]) / 2e9 == pytest.approx(191.2, rel=5e-3)
    with pytest.raises(ValueError, match="multiples of 32"):
        flops.lseg_forward_flops(dataclasses.replace(TINY, image_hw=(64, 70)))


def test_select_variants_by_case_prefix_glob_and_unknown():
    assert [v.name for v in select_variants(["forward/graph"])] == ["forward/graph/text_in_call",
                                                                      "forward/graph/cached"]
    assert {v.case for v in select_variants(None)} == {"matmul", "forward", "train", "data", "eval", "text",
                                                        "export", "zero_shot"}
    assert [v.name for v in select_variants(["zero_shot"])] == ["zero_shot/pynative/rn101", "zero_shot/graph/rn101"]
    assert all(v.name.endswith("/cached") for v in select_variants(["*/cached"]))
    assert [v.name for v in select_variants(["text"])] == ["text/tokenize", "text/pynative/encode",
                                                         "text/pynative/encode_full_context"]
    with pytest.raises(ValueError, match="nope"):
        select_variants(["nope"])
    assert not set(SELFTEST_VARIANTS) & {v.name for v in select_variants(None)}


def test_the_registry_does_not_load_mindspore():
    # python -m bench imports bench.cases for the registry; MindSpore there would stay resident in the parent for
    # the whole run and leak its environment variables into every child (bench/cases/__init__.py docstring, "Imports").
    done = subprocess.run([sys.executable, "-c", "import sys, bench.run; print('mindspore' in sys.modules)"],
                          cwd=run.REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def test_every_variant_has_quick_and_full_limits():
    assert sorted(RUN_ORDER) == sorted(VARIANTS) and len(set(RUN_ORDER)) == len(RUN_ORDER)
    for variant in VARIANTS.values():
        for quick in (True, False):
            params = variant.params(quick)
            assert params["timeout_s"] > 0, variant.name
            assert params.get("repeats", 1) >= 1, variant.name


def test_subprocess_reports_peak_rss_of_the_child(tmp_path):
    record = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/ok"], quick=True, device_target="CPU",
                                        log_path=str(tmp_path / "ok.log"))
    assert record["status"] == "ok" and record["returncode"] == 0
    # Set-up touches 128 MiB and frees it; every timed call touches 48 MiB (plus a ~30 MiB interpreter).
    assert record["peak_rss_mib"] >= 128 + 10
    assert record["setup_peak_rss_mib"] >= 128 + 10
    assert 48 + 10 <= record["timed_peak_rss_mib"] <= record["setup_peak_rss_mib"] - 40
    assert record["result"]["timing"]["n"] == 3
    assert record["result"]["timing"]["median_s"] >= 0.01


def test_subprocess_failure_and_timeout_are_reported(tmp_path):
    failed = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/fail"], True, "CPU", str(tmp_path / "f.log"))
    assert failed["status"] == "error" and failed["returncode"] == 1
    assert "selftest failure requested" in failed["error"]
    assert "selftest failure requested" in failed["log_tail"]
    hung = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/hang"], True, "CPU", str(tmp_path / "h.log"),
                                      timeout_s=1.5)
    assert hung["status"] == "timeout"
    assert hung["process_wall_s"] < 30


def test_a_crashed_child_leaves_its_stack_and_is_run_once_more(tmp_path):
    variant = SELFTEST_VARIANTS["selftest/crash"]
    marker = str(tmp_path / "crashed-once")
    setting = ["crash_marker=" + json.dumps(marker)]
    alone = run.run_variant_subprocess(variant, True, "CPU", str(tmp_path / "a.log"), overrides=setting,
                                       retry_crash=False)
    assert alone["status"] == "crashed" and alone["returncode"] == -11 and "crashed_attempt" not in alone
    assert "Segmentation fault" in alone["log_tail"]  # -X faulthandler: the Python stack is in the log
    os.remove(marker)
    retried = run.run_variant_subprocess(variant, True, "CPU", str(tmp_path / "b.log"), overrides=setting)
    assert retried["status"] == "ok" and retried["returncode"] == 0
    first = retried["crashed_attempt"]
    assert first["returncode"] == -11 and "without writing" in first["error"]
    with open(first["log"], encoding="utf-8") as handle:
        assert "Segmentation fault" in handle.read()
    failed = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/fail"], True, "CPU", str(tmp_path / "f.log"))
    assert "crashed_attempt" not in failed  # an ordinary error is not retried


def test_main_writes_valid_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "r.json"
    md = tmp_path / "perf.md"
    code = run.main(["--quick", "--cases", "selftest/ok", "--out", str(out), "--markdown", str(md)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["schema"] == run.SCHEMA and data["quick"] is True
    assert [v["variant"] for v in data["variants"]] == ["selftest/ok"]
    assert data["machine"]["nproc"] >= 1 and data["machine"]["versions"]["mindspore"]
    assert os.path.isdir(str(out)[:-5] + "-logs")
    text = md.read_text()
    assert "| selftest/ok |" in text and "Machine:" in text
    assert "selftest/ok" in capsys.readouterr().out
    assert run.main(["--cases", "no-such-case"]) == 2


def _record(name, median, rss_mib=1000.0, status="ok", **result):
    case, mode = name.split("/")[0], (name.split("/")[1] if name.count("/") == 2 else None)
    return {"variant": name, "case": case, "mode": mode, "status": status, "peak_rss_mib": rss_mib,
            "timed_peak_rss_mib": rss_mib / 2,
            "result": dict(result, timing={"median_s": median}) if status == "ok" else None}


def test_targets_are_evaluated_against_the_issue_limits():
    records = [
        _record("forward/graph/text_in_call", 12.0),
        _record("forward/graph/cached", 4.0, rss_mib=3200.0),
        _record("forward/pynative/stages", 30.0),
        _record("train/graph/cached", 10.0, images_per_s=0.1),
        _record("train/pynative/cached", 8.0, images_per_s=0.125),
        _record("data/workers2", 1.0, images_per_s=0.6),
        _record("data/workers0", 1.0, images_per_s=0.4),
        _record("train/graph/text_in_step", None, status="error"),
    ]
    targets = report.evaluate_targets(records)
    assert not [t for t in targets if t["variant"] == "forward/pynative/stages"]  # a profile, not a target
    got = {(t["variant"], t["unit"], t["target"][:6]): t for t in targets if "while" not in t["target"]}
    timed = {t["variant"]: t for t in targets if "while" in t["target"]}
    assert timed["forward/graph/cached"]["met"]  # 1600 MiB = 1.68 GB while forwarding
    assert not got[("forward/graph/text_in_call", "s", "case 1")]["met"]
    assert got[("forward/graph/cached", "s", "case 1")]["met"]
    assert not got[("forward/graph/cached", "GB", "case 1")]["met"]  # 3200 MiB = 3.36 GB > 3 GB
    assert got[("train/graph/cached", "s", "case 2")]["met"]
    missing = got[("train/graph/text_in_step", "s", "case 2")]
    assert missing["measured"] is None and not missing["met"]
    # Reference is the GRAPH_MODE step (0.1 img/s) even though PyNative was faster: need 0.5 img/s.
    assert got[("data/workers2", "img/s", "case 3")]["met"]
    assert not got[("data/workers0", "img/s", "case 3")]["met"]
    assert got[("data/workers0", "img/s", "case 3")]["limit"] == pytest.approx(0.5)


def test_budget_skips_variants_and_table_keeps_registry_order(tmp_path):
    out = tmp_path / "b.json"
    code = run.main(["--cases", "selftest/ok", "selftest/fail", "--out", str(out), "--budget_min", "0.1"])
    assert code == 1  # nothing may start with 6 s of budget (< 30 s left): both reported as skipped
    data = json.loads(out.read_text())
    assert [(v["variant"], v["status"]) for v in data["variants"]] == [("selftest/ok", "skipped"),
                                                                         ("selftest/fail", "skipped")]
    assert "budget" in data["variants"][0]["error"]


def test_set_overrides_reach_the_variant_and_unknown_keys_fail(tmp_path):
    ok = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/ok"], True, "CPU", str(tmp_path / "o.log"),
                                    overrides=["sleep_s=0.05", "timed_mib=8"])
    assert ok["status"] == "ok" and ok["params"]["sleep_s"] == 0.05
    assert ok["result"]["timing"]["min_s"] >= 0.05
    bad = run.run_variant_subprocess(SELFTEST_VARIANTS["selftest/ok"], True, "CPU", str(tmp_path / "b.log"),
                                     overrides=["no_such_param=1"])
    assert bad["status"] == "error" and "no_such_param" in bad["error"] and "selftest/ok" in bad["error"]
