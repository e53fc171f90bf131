"""Run ONE benchmark variant in this process: ``python -m bench.case NAME --out FILE [--quick] ...``.

Called by :mod:`bench.run` in a fresh subprocess per variant, so that peak RSS, compiled graphs and allocator state
of one variant never leak into another. Writes a JSON object to ``--out``:
``{"variant", "status": "ok" | "error" | "missing", "mode", "device_target", "warmup", "repeats", "params",
"result" (the case's dict), "error" (message), "traceback", "threads" (OS threads at the end),
"runtime_num_threads" (MindSpore's CPU kernel pool), "kernel_threads_bound" (pool threads bound to a CPU each,
``encoding_custom.engine.bind_kernel_threads``), "self_peak_rss_mib" (ru_maxrss of this process),
"self_vm_hwm_mib" (VmHWM at the end), "setup_peak_rss_mib" (peak before the first warm-up call: imports,
build, data generation), "warmup_peak_rss_mib" (peak during the warm-up calls, incl. GRAPH_MODE compilation),
"timed_peak_rss_mib" (peak during the timed repetitions), "wall_s"}``.
Exit status: 0 ok, 1 error, 3 a package under test is missing (not landed yet / not importable).
"""
import argparse
import json
import os
import resource
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.cases import CaseContext, get_variant, make_workdir, remove_workdir  # noqa: E402
from bench.machine import process_peak_rss_mib, process_thread_count  # noqa: E402
from bench.timing import PEAK_RSS_PHASES  # noqa: E402
from modules import tnn  # noqa: E402  (first, before any op: its oneDNN ISA cap must precede oneDNN's first kernel)

# Our packages: an ImportError naming one of them means "not landed yet", not a benchmark failure.
PROJECT_PACKAGES = ("modules", "clip_ms", "encoding_custom")
EXIT_OK, EXIT_ERROR, EXIT_MISSING = 0, 1, 3


def _is_missing_project_code(exc: BaseException) -> bool:
    """True when ``exc`` is an import failure of one of our own packages or of a name inside them."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return exc.name.split(".")[0] in PROJECT_PACKAGES
    if isinstance(exc, ImportError):
        return any(pkg in str(exc) for pkg in PROJECT_PACKAGES)
    if isinstance(exc, AttributeError):  # e.g. "module 'clip_ms' has no attribute 'tokenize'"
        return any(str(exc).startswith(f"module '{pkg}") for pkg in PROJECT_PACKAGES)
    return False


def _jsonable(value):
    """Convert numpy scalars/arrays and tuples into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:  # NaN is not valid JSON
        return None
    return value


def parse_overrides(items) -> dict:
    """Parse ``KEY=VALUE`` strings (VALUE as JSON, else a plain string) into a dict.

    Args:
        items: iterable of strings such as ``backbone=clip_vitb32_384`` or ``image_hw=[320,480]``.

    Returns:
        dict KEY -> value.

    Raises:
        ValueError: naming the item without ``=``.
    """
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. backbone=clip_vitb32_384")
        key, text = item.split("=", 1)
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def run_variant(name: str, quick: bool, device_target: str, warmup=None, repeats=None, overrides=None,
                context=None) -> dict:
    """Run one variant here and return its record (see module docstring).

    Args:
        name: variant name (see ``bench.cases.VARIANTS``).
        quick: use the quick parameters.
        device_target: MindSpore device target.
        warmup: override of the variant's warm-up count (None: the variant's own).
        repeats: override of the variant's repetition count (None: the variant's own).
        overrides: dict of parameter overrides (``--set``), e.g. ``{"backbone": "clip_vitb32_384"}``.
        context: dict of extra ``mindspore.set_context`` options (``--context``), e.g.
            ``{"memory_optimize_level": "O1"}``; applied after the mode and device target.

    Returns:
        the record dict.
    """
    variant = get_variant(name)
    params = variant.params(quick)
    unknown = sorted(set(overrides or {}) - set(params))
    params.update({k: v for k, v in (overrides or {}).items() if k in params})
    warmup = int(params.pop("warmup", 1)) if warmup is None else int(warmup)
    repeats = int(params.pop("repeats", 3)) if repeats is None else int(repeats)
    params.pop("warmup", None)
    params.pop("repeats", None)
    params.pop("timeout_s", None)
    record = {"variant": name, "case": variant.case, "title": variant.title, "mode": variant.mode,
              "device_target": device_target, "quick": quick, "warmup": warmup, "repeats": repeats,
              "ms_context": dict(context or {}),
              "params": params, "status": "error", "result": None, "error": None, "traceback": None}
    start = time.perf_counter()
    workdir = make_workdir()
    try:
        if unknown:
            raise ValueError(f"--set {', '.join(unknown)}: not a parameter of {name} "
                             f"(it has {', '.join(sorted(params))})")
        if variant.mode is not None:
            import mindspore as ms

            ms_mode = ms.GRAPH_MODE if variant.mode == "graph" else ms.PYNATIVE_MODE
            ms.set_context(mode=ms_mode, device_target=device_target)
            if context:
                ms.set_context(**context)
            if device_target == "CPU":  # as the product's configure_runtime does
                from encoding_custom.engine import prepare_cpu_process

                record["kernel_threads_bound"] = len(prepare_cpu_process())
            ms.set_seed(0)
            record["runtime_num_threads"] = ms.get_context("runtime_num_threads")
        record["torch_style_layer"] = tnn.BACKEND
        record["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA")
        ctx = CaseContext(variant=name, quick=quick, device_target=device_target, mode=variant.mode, warmup=warmup,
                          repeats=repeats, params=params, workdir=workdir)
        record["result"] = variant.func(ctx)
        record["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is reported in the record, never swallowed
        record["status"] = "missing" if _is_missing_project_code(exc) else "error"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        remove_workdir(workdir)
    record["wall_s"] = time.perf_counter() - start
    record["threads"] = process_thread_count()
    record["self_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    record["self_vm_hwm_mib"] = process_peak_rss_mib()
    record.update(PEAK_RSS_PHASES)
    return _jsonable(record)


def main(argv=None) -> int:
    """Command line of one variant. Args: argv (list of str or None). Returns: process exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.case", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="variant name, e.g. forward/graph/cached")
    parser.add_argument("--out", required=True, help="JSON file to write the record to")
    parser.add_argument("--quick", action="store_true", help="tiny configuration")
    parser.add_argument("--device_target", default="CPU", choices=("CPU", "GPU", "Ascend"))
    parser.add_argument("--warmup", type=int, default=None, help="override the variant's warm-up count")
    parser.add_argument("--repeats", type=int, default=None, help="override the variant's repetition count")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of the variant (VALUE parsed as JSON), repeatable")
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                        help="extra mindspore.set_context option (VALUE parsed as JSON), repeatable")
    args = parser.parse_args(argv)
    record = run_variant(args.name, args.quick, args.device_target, args.warmup, args.repeats,
                         parse_overrides(args.set), parse_overrides(args.context))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    if record["status"] != "ok":
        sys.stderr.write(f"bench.case {args.name}: {record['status']}: {record['error']}\n{record['traceback']}")
    return {"ok": EXIT_OK, "missing": EXIT_MISSING}.get(record["status"], EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
