"""Tables and target checks made from a benchmark report (the dict :mod:`bench.run` writes as JSON)."""
from typing import Dict, List, Optional

GB = 1e9  # the targets are in GB (10^9 bytes); RSS is measured in KiB by the kernel
MIB = 2**20

# (variant glob, metric, limit, description). Metrics: "median_s" (<=), "peak_rss_gb" (<=, whole process incl.
# building the network), "timed_peak_rss_gb" (<=, during the timed calls only).
TARGETS = (
    ("forward/*/text_in_call", "median_s", 10.0, "case 1, text encoded in the call: <= 10 s"),
    ("forward/*/cached", "median_s", 5.0, "case 1, text cached: <= 5 s"),
    ("forward/*/text_in_call", "peak_rss_gb", 3.0, "case 1 process peak RSS (incl. build) <= 3 GB"),
    ("forward/*/cached", "peak_rss_gb", 3.0, "case 1 process peak RSS (incl. build) <= 3 GB"),
    ("forward/*/text_in_call", "timed_peak_rss_gb", 3.0, "case 1 peak RSS while forwarding <= 3 GB"),
    ("forward/*/cached", "timed_peak_rss_gb", 3.0, "case 1 peak RSS while forwarding <= 3 GB"),
    ("train/graph/cached", "median_s", 12.0, "case 2, GRAPH_MODE step: <= 12 s"),
    ("train/graph/text_in_step", "median_s", 12.0, "case 2, GRAPH_MODE step: <= 12 s"),
    ("train/graph/cached", "peak_rss_gb", 10.0, "case 2, GRAPH_MODE peak RSS <= 10 GB"),
    ("train/graph/text_in_step", "peak_rss_gb", 10.0, "case 2, GRAPH_MODE peak RSS <= 10 GB"),
)
DATA_SPEEDUP_TARGET = 5.0  # case 3: loader >= 5x the training step's consumption rate


def _median(record: Dict[str, object]) -> Optional[float]:
    timing = (record.get("result") or {}).get("timing") or {}
    return timing.get("median_s")


def evaluate_targets(records: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """Compare the measured variants with :data:`TARGETS`.

    Args:
        records: the ``variants`` list of a report (full run).

    Returns:
        list of ``{"target", "variant", "measured", "limit", "unit", "met"}``; a target whose variant failed or did
        not run is listed with ``measured`` None and ``met`` False. The data target compares each loader variant's
        images/s with ``DATA_SPEEDUP_TARGET`` x the images/s of the fastest successful GRAPH_MODE training variant
        (else the fastest training variant).
    """
    import fnmatch

    out: List[Dict[str, object]] = []
    for pattern, metric, limit, text in TARGETS:
        for record in records:
            if not fnmatch.fnmatchcase(record["variant"], pattern):
                continue
            if metric == "median_s":
                measured, unit = (_median(record) if record.get("status") == "ok" else None), "s"
            else:
                rss = record.get("peak_rss_mib" if metric == "peak_rss_gb" else "timed_peak_rss_mib")
                measured, unit = (rss * MIB / GB if rss is not None and record.get("status") == "ok" else None), "GB"
            out.append({"target": text, "variant": record["variant"], "measured": measured, "limit": limit,
                        "unit": unit, "met": measured is not None and measured <= limit})

    train_ok = [r for r in records if r["case"] == "train" and r.get("status") == "ok"
                and "images_per_s" in (r.get("result") or {})]
    graph_ok = [r for r in train_ok if r.get("mode") == "graph"]
    reference = min(graph_ok or train_ok, key=_median, default=None)
    for record in records:
        if record["case"] != "data":
            continue
        rate = (record.get("result") or {}).get("images_per_s") if record.get("status") == "ok" else None
        need = DATA_SPEEDUP_TARGET * reference["result"]["images_per_s"] if reference else None
        out.append({"target": f"case 3 >= {DATA_SPEEDUP_TARGET:g}x training consumption"
                              + (f" ({reference['variant']})" if reference else " (no training variant ran)"),
                    "variant": record["variant"], "measured": rate, "limit": need, "unit": "img/s",
                    "met": rate is not None and need is not None and rate >= need})
    return out


def _throughput(record: Dict[str, object]) -> str:
    result = record.get("result") or {}
    if "gflops_per_s" in result:
        return f"{result['gflops_per_s']:.0f} GFLOP/s"
    if "images_per_s" in result:
        return f"{result['images_per_s']:.2f} img/s"
    if "forwards_per_image" in result:
        return f"{result['forwards_per_image']} forwards"
    return ""


def table_rows(report: Dict[str, object]) -> List[List[str]]:
    """Rows of the result table (strings), header first.

    Args:
        report: a benchmark report.

    Returns:
        list of rows: variant, mode, median s, min-max s, IQR s, n, first call s (warm-up; includes GRAPH_MODE
        compilation), peak RSS MiB of the whole process (incl. build), during the warm-up calls, during the timed
        calls, throughput, status.
    """
    rows = [["variant", "mode", "median s", "min-max s", "IQR s", "n", "1st call s", "peak RSS MiB",
             "warm-up RSS MiB", "timed RSS MiB", "throughput", "status"]]
    for record in report["variants"]:
        timing = (record.get("result") or {}).get("timing") or {}
        warm = timing.get("warmup_s") or []
        if timing:
            cells = [f"{timing['median_s']:.3f}", f"{timing['min_s']:.3f}-{timing['max_s']:.3f}",
                     f"{timing['q3_s'] - timing['q1_s']:.3f}", str(timing["n"]),
                     f"{warm[0]:.2f}" if warm else "-"]
        else:
            cells = ["-", "-", "-", "0", "-"]
        rss_cells = [f"{record[key]:.0f}" if record.get(key) is not None else "-"
                     for key in ("peak_rss_mib", "warmup_peak_rss_mib", "timed_peak_rss_mib")]
        rows.append([record["variant"], record.get("mode") or "-", *cells, *rss_cells, _throughput(record),
                     record.get("status", "?")])
    return rows


def format_table(report: Dict[str, object]) -> str:
    """Args: report. Returns: the result table as aligned plain text, then failures and targets."""
    rows = table_rows(report)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for record in report["variants"]:
        if record.get("status") != "ok":
            lines.append(f"! {record['variant']}: {record.get('status')}: {record.get('error')}")
    for target in report.get("targets") or []:
        lines.append(_target_line(target))
    return "\n".join(lines)


def _target_line(target: Dict[str, object]) -> str:
    measured = "not measured" if target["measured"] is None else f"{target['measured']:.3g} {target['unit']}"
    limit = "?" if target["limit"] is None else f"{target['limit']:.3g} {target['unit']}"
    return (f"{'MET   ' if target['met'] else 'MISSED'} {target['target']}: {target['variant']} = {measured} "
            f"(limit {limit})")


def format_profiles(report: Dict[str, object]) -> List[str]:
    """Markdown tables of the profile variants present in ``report`` (forward stages, ViT block operations).

    Args:
        report: a benchmark report.

    Returns:
        list of Markdown lines (empty when no profile variant ran successfully).
    """
    lines: List[str] = []
    for record in report["variants"]:
        result = record.get("result") or {}
        if record.get("status") != "ok":
            continue
        if "stages" in result:
            stages, flop, rate = result["stages"], result["stage_flop"], result["stage_gflops_per_s"]
            title = f"Forward stages (`{record['variant']}`, each stage run alone and synchronised)"
        elif "op_types" in result:
            lines += ["", f"Training step by MindSpore op type (`{record['variant']}`, mindspore.Profiler; the "
                      f"profiled step took {result['timing']['median_s']:.2f} s):", "",
                      "| op type | calls | total ms | share of kernel time |", "|---|---|---|---|"]
            lines += [f"| {r['op_type']} | {r['occurrences']} | {r['total_ms']:.0f} | {r['percent']:.1f}% |"
                      for r in result["op_types"]]
            continue
        elif "ops" in result:
            stages, flop, rate = result["ops"], result["op_flop"], result["op_gflops_per_s"]
            title = f"One ViT block by operation (`{record['variant']}`)"
        else:
            continue
        whole = result["timing"]["median_s"]
        lines += ["", title + ":", "", "| stage | median s | vs whole | GFLOP | GFLOP/s |", "|---|---|---|---|---|"]
        for name, timing in stages.items():
            lines.append(f"| {name} | {timing['median_s']:.4f} | {100.0 * timing['median_s'] / whole:.1f}% | "
                         + (f"{flop[name] / 1e9:.2f} | {rate[name]:.0f} |" if name in flop else "- | - |"))
    return lines


def _loads(values) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def format_markdown(report: Dict[str, object], json_path: str) -> str:
    """The Markdown page of one run: machine, date, command, table, targets.

    Args:
        report: a finished benchmark report.
        json_path: where its JSON was written (quoted in the page).

    Returns:
        Markdown text.
    """
    machine = report["machine"]
    versions = machine.get("versions") or {}
    git = machine.get("git") or {}
    rows = table_rows(report)
    lines = [
        "## Latest full benchmark run",
        "",
        f"- Date (UTC): {report['started_utc']} to {report.get('finished_utc', '?')}",
        f"- Command: `{' '.join(report['command'])}`; JSON: `{json_path}` (not in git)",
        f"- Commit: `{git.get('commit')}`{' (with uncommitted changes)' if git.get('dirty') else ''}",
        f"- Machine: {machine.get('cpu_model')}, {machine.get('nproc')} CPUs at {machine.get('cpu_mhz')} MHz, "
        f"{(machine.get('memory_total_gib') or 0):.1f} GiB RAM, AVX-512 {machine.get('avx512')}, "
        f"nominal fp32 peak {machine.get('nominal_peak_gflops') or 0:.0f} GFLOP/s; "
        f"load average (1/5/15 min) at start {_loads(machine.get('loadavg'))}, at end "
        f"{_loads(report.get('loadavg_end'))}",
        f"- Software: Python {versions.get('python')}, mindspore {versions.get('mindspore')}, "
        f"msadapter {versions.get('msadapter')}, mindcv {versions.get('mindcv')}, numpy {versions.get('numpy')}, "
        f"torch-style layer {versions.get('layer')}; "
        f"device {report['device_target']}; thread env {machine.get('thread_env') or '{}'}",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" for _ in rows[0]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    failures = [r for r in report["variants"] if r.get("status") != "ok"]
    if failures:
        lines += ["", "Variants that did not run to completion:", ""]
        lines += [f"- `{r['variant']}`: {r.get('status')}: {r.get('error')}" for r in failures]
    lines += format_profiles(report)
    if report.get("targets"):
        lines += ["", "Targets:", ""]
        lines += [f"- {_target_line(t)}" for t in report["targets"]]
    return "\n".join(lines) + "\n"
