"""`python -m bench --quick`, the smoke run of the benchmark: the variants run, each in its own process, and the JSON is
valid. Timings are not asserted: figures come from the benchmark, never from tests.

The default suite runs a covering subset (every case function of the quick set, every mode, the text encoded in the
call and cached, the loader's worker path, the export); the whole quick set, which adds the other cases' GRAPH_MODE
compilations (10-30 s each) and the multi-scale evaluation, is the ``slow`` test below."""
import json
import os
import subprocess
import sys

import pytest

from bench.cases import VARIANTS

STACK_INDEPENDENT = ("a smoke run of the bench's own code paths; the network code the variants time is tested per "
                     "stack by the both_stacks modules")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COVERING = ("matmul/pynative", "forward/pynative/text_in_call", "forward/graph/cached", "forward/pynative/stages",
            "zero_shot/pynative/rn101", "train/pynative/cached", "data/engine/workers2", "eval/pynative/single_scale",
            "export/graph/dynamic_labels", "text/tokenize", "text/pynative/encode")


def _run_bench(tmp_path, patterns):
    """Runs ``python -m bench --quick [--cases ...]``, checks the report and returns its variants by name."""
    out = tmp_path / "quick.json"
    cases = ["--cases", *patterns] if patterns else []
    # The timeout only bounds a hung run; how long it takes is the benchmark's business, not an assertion.
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", *cases, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    by_name = {record["variant"]: record for record in report["variants"]}
    failed = {name: (r["status"], r.get("error"), r.get("log_tail", "")[-1500:])
              for name, r in by_name.items() if r["status"] != "ok"}
    assert not failed, failed
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, record in by_name.items():
        timing = record["result"]["timing"]
        assert timing["n"] >= 1 and timing["median_s"] > 0, name
        assert timing["min_s"] <= timing["median_s"] <= timing["max_s"], name
        assert record["peak_rss_mib"] > 0 and record["process_wall_s"] > 0, name
    assert report["quick"] is True and report["machine"]["nproc"] >= 1
    assert "variant" in proc.stdout and "median s" in proc.stdout  # the printed table
    return by_name


def test_a_covering_subset_runs_every_case_and_mode_with_valid_json(tmp_path):
    """Over 20 s (~70 s on 2 idle cores): eleven benchmark processes, each importing MindSpore."""
    by_name = _run_bench(tmp_path, COVERING)
    assert set(by_name) == set(COVERING)
    quick = [v for v in VARIANTS.values() if v.in_quick]
    assert {VARIANTS[name].func for name in by_name} == {v.func for v in quick}  # every case function
    assert {r["mode"] for r in by_name.values()} == {None, "pynative", "graph"}
    assert by_name["forward/graph/cached"]["mode"] == "graph"
    assert by_name["forward/graph/cached"]["runtime_num_threads"] >= 1
    assert by_name["forward/pynative/text_in_call"]["result"]["flop"] > 0
    exported = by_name["export/graph/dynamic_labels"]["result"]
    assert exported["mindir_mib"] > 0 and exported["load_s"] > 0
    assert exported["logits_max_rel_diff"] <= 1e-5  # the loaded MindIR computes the network's logits


@pytest.mark.slow
def test_the_whole_quick_set_runs(tmp_path):
    by_name = _run_bench(tmp_path, None)
    assert set(by_name) == {name for name, v in VARIANTS.items() if v.in_quick}
    assert by_name["forward/pynative/cached"]["result"]["flop"] > 0
