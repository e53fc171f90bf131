"""``python -m bench``: run the benchmark variants, each in a fresh subprocess, write one JSON file, print a table.

Examples::

    python -m bench --quick                      # tiny configs, every case, < 2 minutes (CI smoke run)
    python -m bench                              # full set (ViT-L/16 at 480x480; ~30 minutes on 2 cores)
    python -m bench --cases forward/graph text   # pick variants by name, case or /-prefix (see --list)
    python -m bench --markdown bench/PERFORMANCE.md   # also write the table as Markdown

Per variant the parent records the child's peak RSS (``ru_maxrss`` from ``os.wait4`` of that child, which also
covers its DataLoader workers once reaped), its exit status and wall time, the load average before it started,
and the child's own record (timings, mode, thread counts; see :mod:`bench.case`).
"""
import argparse
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.cases import RUN_ORDER, VARIANTS, Variant, select_variants  # noqa: E402
from bench.machine import machine_facts  # noqa: E402
from bench.report import evaluate_targets, format_table  # noqa: E402

SCHEMA = "lseg-bench/1"
DEFAULT_RESULTS_DIR = os.path.join(REPO, "bench", "results")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def run_variant_subprocess(variant: Variant, quick: bool, device_target: str, log_path: str,
                           warmup: Optional[int] = None, repeats: Optional[int] = None,
                           timeout_s: Optional[float] = None, overrides: Optional[List[str]] = None,
                           context: Optional[List[str]] = None, retry_crash: bool = True) -> Dict[str, object]:
    """Run ``python -m bench.case`` for one variant in a new process (own session) and collect its record.

    A child killed by a signal of its own (SIGSEGV, SIGABRT, SIGBUS: a crash inside the framework, seen rarely
    with MindSpore 2.0 PyNative) is run once more; the crashed attempt is kept in ``crashed_attempt``. Timeouts
    and SIGKILL (the OOM killer) are not retried. Children run with ``-X faulthandler``, so a crash leaves the
    Python stack in the log.

    Args:
        variant: the variant.
        quick: quick parameters.
        device_target: MindSpore device target.
        log_path: file receiving the child's stdout and stderr.
        warmup: warm-up override or None.
        repeats: repetition override or None.
        timeout_s: wall-clock limit (None: the variant's ``timeout_s``); the child's whole process group is
            killed when it is exceeded.
        overrides: ``KEY=VALUE`` parameter overrides passed on as ``--set``.
        context: ``KEY=VALUE`` MindSpore context options passed on as ``--context``.
        retry_crash: run a crashed child once more.

    Returns:
        the child's record (see :mod:`bench.case`) plus ``returncode``, ``peak_rss_mib`` (of the child process
        tree as reported by ``wait4``), ``process_wall_s``, ``loadavg_before``, ``log`` and, unless ok,
        ``log_tail``. Status is ``"timeout"`` if killed, ``"crashed"`` if the child wrote no record.
    """
    limit = float(timeout_s if timeout_s is not None else variant.params(quick).get("timeout_s", 600))
    out_json = log_path + ".json"
    if os.path.exists(out_json):
        os.remove(out_json)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "bench.case", variant.name, "--out", out_json,
           "--device_target", device_target]
    if quick:
        cmd.append("--quick")
    if warmup is not None:
        cmd += ["--warmup", str(warmup)]
    if repeats is not None:
        cmd += ["--repeats", str(repeats)]
    for item in overrides or ():
        cmd += ["--set", item]
    for item in context or ():
        cmd += ["--context", item]
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    loadavg_before = list(os.getloadavg())
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        # cwd = the log folder: files MindSpore drops into the working directory (e.g. rank_0/somas_meta with
        # --context memory_optimize_level=O1) stay with the run's logs instead of landing in the repository.
        proc = subprocess.Popen(cmd, cwd=os.path.dirname(os.path.abspath(log_path)), env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - start > limit:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session: this is only its tree
                except ProcessLookupError:
                    pass
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start

    record: Dict[str, object]
    try:
        with open(out_json, encoding="utf-8") as handle:
            record = json.load(handle)
        os.remove(out_json)
    except (OSError, ValueError):
        record = {"variant": variant.name, "case": variant.case, "title": variant.title, "mode": variant.mode,
                  "device_target": device_target, "quick": quick, "params": variant.params(quick),
                  "status": "crashed", "result": None,
                  "error": f"child exited with status {proc.returncode} without writing {out_json}"}
        if proc.returncode == -signal.SIGKILL and not timed_out:
            record["error"] += (f"; killed by SIGKILL from outside the benchmark, most likely the kernel's OOM killer "
                                f"(peak RSS {usage.ru_maxrss / 2**20:.1f} GiB; see `dmesg`)")
    if timed_out:
        record["status"] = "timeout"
        record["error"] = f"killed after {limit:.0f} s (timeout_s of {variant.name})"
    # The child resets its VmHWM after set-up (to measure the timed phase alone), which also lowers ru_maxrss:
    # the process peak is the larger of wait4's figure and the set-up peak the child recorded before the reset.
    peak = max(usage.ru_maxrss / 1024.0, record.get("setup_peak_rss_mib") or 0.0,
               record.get("warmup_peak_rss_mib") or 0.0)
    record.update({"returncode": proc.returncode, "peak_rss_mib": peak,
                   "process_wall_s": wall, "loadavg_before": loadavg_before, "log": log_path})
    if record["status"] != "ok":
        record["log_tail"] = _tail(log_path)
    crashed_by_signal = proc.returncode < 0 and proc.returncode != -signal.SIGKILL
    if retry_crash and record["status"] == "crashed" and crashed_by_signal:
        first = {key: record[key] for key in ("returncode", "error", "log_tail", "process_wall_s")}
        os.replace(log_path, log_path + ".crashed")
        first["log"] = log_path + ".crashed"
        record = run_variant_subprocess(variant, quick, device_target, log_path, warmup, repeats, timeout_s,
                                        overrides, context, retry_crash=False)
        record["crashed_attempt"] = first
    return record


def build_parser() -> argparse.ArgumentParser:
    """Returns: the argument parser of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="LSeg MindSpore benchmark.")
    parser.add_argument("--quick", action="store_true", help="tiny configurations, seconds per case (CI)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="PATTERN",
                        help="variants to run: names, case keys, /-prefixes or globs (default: all); see --list")
    parser.add_argument("--device_target", default="CPU", choices=("CPU", "GPU", "Ascend"))
    parser.add_argument("--out", default=None,
                        help="JSON output file (default: bench/results/<UTC timestamp>[-quick].json)")
    parser.add_argument("--warmup", type=int, default=None, help="override every variant's warm-up count")
    parser.add_argument("--repeats", type=int, default=None, help="override every variant's repetition count")
    parser.add_argument("--timeout_scale", type=float, default=1.0,
                        help="multiply every variant's time limit (slow machines)")
    parser.add_argument("--budget_min", type=float, default=None,
                        help="wall-clock budget of the whole run in minutes: no variant starts after it is used up "
                             "(reported as skipped) and each variant's limit is cut to what remains")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of every selected variant (VALUE parsed as JSON), e.g. "
                             "--set backbone=clip_vitb32_384 --set 'image_hw=[320,480]'; repeatable")
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                        help="extra mindspore.set_context option for every variant, e.g. "
                             "--context memory_optimize_level=O1 --context runtime_num_threads=2; repeatable")
    parser.add_argument("--markdown", default=None, help="also write the result table as Markdown to this file")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark. Args: argv (list of str or None). Returns: 0 if every variant ran ok, else 1."""
    args = build_parser().parse_args(argv)
    if args.list:
        for variant in VARIANTS.values():
            print(f"{variant.name:34s} {'quick+full' if variant.in_quick else 'full only '}  {variant.title}")
        return 0
    try:
        variants = select_variants(args.cases, quick=args.quick)
    except ValueError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    out_path = os.path.abspath(args.out or os.path.join(DEFAULT_RESULTS_DIR, stamp + ".json"))
    log_dir = os.path.splitext(out_path)[0] + "-logs"
    os.makedirs(log_dir, exist_ok=True)

    report: Dict[str, object] = {
        "schema": SCHEMA, "started_utc": _utc_now(), "command": [os.path.basename(sys.executable), "-m", "bench"]
        + list(argv if argv is not None else sys.argv[1:]), "quick": args.quick,
        "device_target": args.device_target, "machine": machine_facts(), "variants": [],
    }
    print(f"bench: {len(variants)} variant(s), {'quick' if args.quick else 'full'}, device {args.device_target}; "
          f"JSON -> {out_path}", flush=True)
    registry_order = [v.name for v in variants]
    run_order = sorted(variants, key=lambda v: RUN_ORDER.index(v.name) if v.name in RUN_ORDER else len(RUN_ORDER))
    run_start = time.perf_counter()
    for variant in run_order:
        limit = float(variant.params(args.quick).get("timeout_s", 600)) * args.timeout_scale
        print(f"  {variant.name:34s} ...", end=" ", flush=True)
        if args.budget_min is not None:
            remaining = args.budget_min * 60.0 - (time.perf_counter() - run_start)
            if remaining < 30.0:
                record = {"variant": variant.name, "case": variant.case, "title": variant.title,
                          "mode": variant.mode, "status": "skipped", "result": None, "process_wall_s": 0.0,
                          "error": f"--budget_min {args.budget_min:g} used up before it could start"}
                report["variants"].append(record)
                print("skipped (budget used up)", flush=True)
                continue
            limit = min(limit, remaining)
        log_path = os.path.join(log_dir, variant.name.replace("/", "_") + ".log")
        record = run_variant_subprocess(variant, args.quick, args.device_target, log_path, args.warmup,
                                        args.repeats, limit, args.set, args.context)
        report["variants"].append(record)
        timing = (record.get("result") or {}).get("timing") or {}
        summary = f"median {timing['median_s']:.3f} s" if timing else record.get("error")
        if "crashed_attempt" in record:
            summary += f"; first attempt crashed ({record['crashed_attempt']['error']}), ran again"
        print(f"{record['status']} ({record['process_wall_s']:.0f} s; {summary})", flush=True)
        _write_json(out_path, report)  # after each variant, so an interrupted run keeps what it measured

    report["variants"].sort(key=lambda r: registry_order.index(r["variant"]))
    report["finished_utc"] = _utc_now()
    report["loadavg_end"] = list(os.getloadavg())
    report["targets"] = evaluate_targets(report["variants"]) if not args.quick else []
    _write_json(out_path, report)
    table = format_table(report)
    print(table)
    if args.markdown:
        from bench.report import format_markdown

        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(format_markdown(report, out_path))
        print(f"bench: Markdown -> {args.markdown}")
    print(f"bench: JSON -> {out_path}")
    return 0 if all(r["status"] == "ok" for r in report["variants"]) else 1


def _write_json(path: str, report: Dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
