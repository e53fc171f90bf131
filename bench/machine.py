"""Facts about the machine, the software stack and the repository that a benchmark result depends on."""
import os
import platform
import re
import subprocess
import sys
from typing import Dict, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Environment variables that change how many threads the math libraries and MindSpore use, or how they log.
THREAD_ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "MS_", "GLOG_", "KMP_", "DNNL_")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_model() -> str:
    """Returns: the ``model name`` of the first CPU in /proc/cpuinfo, or ``platform.processor()`` elsewhere."""
    match = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or "unknown")


def cpu_mhz() -> Optional[float]:
    """Returns: the current clock of the first CPU in MHz from /proc/cpuinfo, or None if unknown."""
    match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    return float(match.group(1)) if match else None


def cpu_flags() -> set:
    """Returns: the set of CPU feature flags of the first CPU (empty if /proc/cpuinfo is unavailable)."""
    match = re.search(r"^flags\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def memory_total_gib() -> Optional[float]:
    """Returns: total RAM in GiB from /proc/meminfo, or None if unknown."""
    match = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return int(match.group(1)) / 2**20 if match else None


def nominal_peak_gflops(cores: int, mhz: Optional[float], flags: set) -> Optional[float]:
    """Nominal float32 peak of the CPU: cores x clock x FLOP per cycle.

    FLOP per cycle assumes two fused multiply-add units per core (true for server Xeons since Skylake-SP), i.e.
    2 units x 2 FLOP x vector lanes: 64 with AVX-512 (16 lanes), 32 with AVX2 (8 lanes). This is an upper bound for
    comparing achieved throughput, not a promise; the measured ``matmul`` case is the practical ceiling.

    Args:
        cores: CPUs available to the process.
        mhz: clock in MHz (None -> unknown).
        flags: CPU feature flags.

    Returns:
        GFLOP/s, or None when the clock is unknown.
    """
    if not mhz:
        return None
    lanes = 16 if "avx512f" in flags else (8 if "avx2" in flags else 4)
    return cores * mhz / 1000.0 * 2 * 2 * lanes


def git_state() -> Dict[str, object]:
    """Returns: ``{"commit": sha or None, "dirty": bool or None}`` of the repository holding this package."""
    def git(*args):
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> Dict[str, Optional[str]]:
    """Versions of Python and of the numerical packages, read from the installed distributions' metadata.

    The packages are deliberately not imported: the parent of the benchmark must stay small, because a forked
    child starts with (and the kernel's ru_maxrss keeps) the parent's resident size until it execs.

    Returns:
        dict name -> version string (None for a package that is not installed).
    """
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("mindspore", "msadapter", "mindcv", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    # The torch-style layer the children run (modules.tnn's rule, restated so the parent imports no MindSpore).
    legacy = (versions["mindspore"] or "").startswith("2.0.") and versions["msadapter"] is not None
    versions["layer"] = os.environ.get("LSEG_NN") or ("msadapter" if legacy else "native")
    return versions


def thread_env() -> Dict[str, str]:
    """Returns: the environment variables that set thread counts or MindSpore behaviour (see THREAD_ENV_PREFIXES)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_ENV_PREFIXES)}


def machine_facts() -> Dict[str, object]:
    """Everything about the host recorded once per run.

    Returns:
        dict with ``hostname``, ``platform``, ``cpu_model``, ``cpu_mhz``, ``nproc`` (CPUs this process may use),
        ``cpu_count`` (CPUs in the machine), ``memory_total_gib``, ``avx512``, ``amx``, ``nominal_peak_gflops``,
        ``loadavg`` (1/5/15 min at the time of the call), ``thread_env``, ``versions``, ``git``, ``python_executable``.
    """
    flags = cpu_flags()
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 1
    mhz = cpu_mhz()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_mhz": mhz,
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "memory_total_gib": memory_total_gib(),
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        "nominal_peak_gflops": nominal_peak_gflops(nproc, mhz, flags),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_env": thread_env(),
        "versions": package_versions(),
        "git": git_state(),
        "python_executable": sys.executable,
    }


def process_thread_count() -> Optional[int]:
    """Returns: the number of OS threads of the calling process (from /proc/self/status), or None if unknown."""
    match = re.search(r"^Threads:\s*(\d+)$", _read("/proc/self/status"), re.MULTILINE)
    return int(match.group(1)) if match else None


def process_peak_rss_mib() -> Optional[float]:
    """Returns: VmHWM of the calling process in MiB (peak resident size since its last exec), or None."""
    match = re.search(r"^VmHWM:\s*(\d+) kB$", _read("/proc/self/status"), re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of the calling process to its current RSS.

    Note that this also lowers the ``ru_maxrss`` the parent later gets from ``wait4``; :mod:`bench.case` therefore
    reports the peak before the reset separately and :mod:`bench.run` takes the maximum.

    Returns:
        True if the counter was reset (Linux >= 4.0), False otherwise.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
