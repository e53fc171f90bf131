"""Time the OFFICIAL PyTorch LSeg ADE20K network (isl-org/lang-seg, ViT-L/16) on this CPU, for bench/PERFORMANCE.md.

What it measures (each case in a fresh subprocess, so the peak RSS is per case):

* ``forward``: ``torch.no_grad()``, eval mode, the official ``LSegNet.forward`` as is, i.e. re-tokenising and
  re-encoding the 150 ADE20K labels (all 77 token positions) in every call; also the label encoding alone
  (``clip_pretrained.encode_text`` of the 150 tokenised labels), to split the forward time.
* ``cached``: the same forward with the text features encoded once and reused. The official forward cannot take
  text features, so ``clip_pretrained.encode_text`` is replaced by a function returning the features encoded
  once at set-up (the rest of the forward, tokenising included, runs unchanged).
* ``train``: ``model.train()``, one optimisation step of lang-seg's recipe as ``train.sh`` runs it (batch 1, no
  gradient accumulation): SGD, momentum 0.9, weight decay 1e-4, learning rate 0.004 / 16 * batch for
  ``net.pretrained`` and 10x that for ``net.scratch`` (``LSegmentationModule.configure_optimizers``);
  ``CrossEntropyLoss(ignore_index=-1)`` (``SegmentationLosses`` without se/aux loss) against a random target in
  0..149; forward + loss + backward + ``optimizer.step()``. As officially, the CLIP model is not in the optimiser
  but its parameters keep ``requires_grad=True``, so backward also computes (unused) text-tower gradients.
  ``net.logit_scale`` is detached first: it is ``nn.Parameter(...).exp()``, a non-leaf tensor whose graph a
  second backward cannot go through (lang-seg issue #38); on a GPU Lightning's sanity-check validation replaces it
  by a graph-free copy (``.to(cuda)`` under no_grad) before training, which detaching reproduces on the CPU.
* ``train_frozen_text``: ``train`` with the CLIP parameters' ``requires_grad`` off (text tower run without
  gradient, as a port that freezes it does): not the official behaviour, a reference point.

Every case: ``torch.set_num_threads(2)``, batch 1, random input ``(1, 3, S, S)`` (S = 480 by default), random
weights, ``--warmup`` untimed calls then ``--timed`` timed calls (median/min/max); the build time and the peak RSS
of the process (``ru_maxrss``: set-up, build and calls) are reported.

The network is lang-seg's ``LSegNet`` as ``LSegModule`` builds it for ADE20K (backbone ``clip_vitl16_384``,
features 256, readout ``project``, arch_option 0, block_depth 0, activation ``lrelu``, crop 480; ``--widehead``
of the ADE20K release is parsed by lang-seg but not used by ``LSegNet``, so it changes nothing), built from the
official ``lseg_net.py``, ``lseg_blocks.py`` and ``lseg_vit.py``, copied into a temporary package with one edit:
``image_features.half() @`` becomes ``image_features @`` (float32 on CPU). Substitutions that keep the official
code path: ``clip`` is a shim whose ``load`` returns open_clip's ``ViT-B-32-quickgelu`` CLIP (OpenAI layout, random
weights, float32, eval mode; ``clip.load`` would download weights and, on CUDA, keep them in float16) and whose
``tokenize`` is ``open_clip.tokenize``; ``timm.create_model`` is called with ``pretrained=False``; ``pandas``
(imported, unused) is stubbed when missing. timm >= 0.9 runs attention through ``F.scaled_dot_product_attention``
(lang-seg pins timm 0.4.12, explicit attention); ``--attn explicit`` sets ``TIMM_FUSED_ATTN=0`` for the old path.

Needs the torch venv (``bench/official/requirements-torch.txt``: torch, timm, open_clip_torch, numpy, psutil) and
the lang-seg sources: a checkout or a bare git directory (read at HEAD), e.g. the one the ``fetch`` tool gives.

Usage::

    /work/torch-venv/bin/python bench/official/measure_official.py --size 96 --timed 1 --out /tmp/check.json
    /work/torch-venv/bin/python bench/official/measure_official.py --gate --runs 2   # the full 480x480 cases

``--gate`` waits before each case until the machine is quiet (1-minute load < ``--max-load``, MemAvailable >
``--min-mem-gib``; polled every 30 s up to ``--gate-timeout`` s) and holds ``--lock`` while the case runs. A case is
killed if MemAvailable falls below ``--min-free-gib`` while it runs.
Results are appended to ``--out`` (default ``bench/official/results.json``); each case's stdout is echoed.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_LANGSEG = "/work/.mirror/isl-org+lang-seg/repo"
ADE20K_CSV = os.path.join(REPO, "foundation", "data", "ade20k_objectInfo150.csv")
OFFICIAL_FILES = ("lseg_net.py", "lseg_blocks.py", "lseg_vit.py")
CASES = ("forward", "cached", "train", "train_frozen_text")
NUM_CLASSES = 150
RESULT_PREFIX = "RESULT "


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------------------------
# Child: one case in this process.
# ----------------------------------------------------------------------------------------------------------------

def read_official(langseg: str, name: str) -> str:
    """Text of ``modules/models/<name>`` from a lang-seg checkout or bare git directory (at HEAD)."""
    path = os.path.join(langseg, "modules", "models", name)
    if os.path.isfile(path):
        with open(path) as handle:
            return handle.read()
    return subprocess.run(["git", "--git-dir", langseg, "show", f"HEAD:modules/models/{name}"],
                          check=True, capture_output=True, text=True).stdout


def langseg_commit(langseg: str) -> str:
    git_dir = langseg if not os.path.isdir(os.path.join(langseg, ".git")) else os.path.join(langseg, ".git")
    result = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def write_official_package(langseg: str, root: str) -> None:
    """Copy the three official files into ``root/lsegref`` with the float16 cast dropped."""
    package = os.path.join(root, "lsegref")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in OFFICIAL_FILES:
        text = read_official(langseg, name)
        if name == "lseg_net.py":
            text, count = re.subn(r"image_features\.half\(\) @", "image_features @", text)
            assert count == 1, f"expected one .half() cast in lseg_net.py, found {count}"
        with open(os.path.join(package, name), "w") as handle:
            handle.write(text)


def ade20k_labels(csv_path: str = ADE20K_CSV) -> list:
    """The 150 names as lang-seg's ``LSegModule.get_labels('ade20k')`` reads them (last column, first synonym)."""
    with open(csv_path) as handle:
        lines = handle.readlines()
    labels = [line.strip().split(",")[-1].split(";")[0] for line in lines][1:]
    assert len(labels) == NUM_CLASSES, len(labels)
    return labels


def install_shims(torch, timm, open_clip) -> None:
    """``clip`` -> open_clip (random ViT-B/32 QuickGELU, float32); ``pandas`` stubbed if missing."""
    def load(name, device="cpu", jit=False):
        assert name == "ViT-B/32", name
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
        return model.float().eval(), None

    sys.modules["clip"] = types.SimpleNamespace(load=load, tokenize=open_clip.tokenize)
    try:
        import pandas  # noqa: F401
    except ImportError:
        sys.modules["pandas"] = types.ModuleType("pandas")


def build_network(args, torch, timm, open_clip):
    """lang-seg's ADE20K ``LSegNet``, as ``LSegModule.__init__`` builds it, with random weights."""
    root = tempfile.mkdtemp(prefix="lsegref_")
    write_official_package(args.langseg, root)
    sys.path.insert(0, root)
    install_shims(torch, timm, open_clip)
    from lsegref import lseg_net, lseg_vit
    shutil.rmtree(root)  # the modules are loaded

    create_model = timm.create_model
    lseg_vit.timm = types.SimpleNamespace(
        create_model=lambda name, pretrained=False, **kw: create_model(name, pretrained=False, **kw))
    net = lseg_net.LSegNet(labels=ade20k_labels(), backbone="clip_vitl16_384", features=256, crop_size=480,
                           arch_option=0, block_depth=0, activation="lrelu")
    net.pretrained.model.patch_embed.img_size = (480, 480)  # as LSegModule does (unused by forward_flex)
    return net


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def machine_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat: user nice system irq softirq steal)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")


def timed_calls(fn, warmup: int, timed: int, log_prefix: str) -> dict:
    """Run ``fn`` warmup + timed times. ``foreign_cpu_s``: CPU seconds other processes used during each timed call
    (machine busy time minus this process's CPU time): ~0 on a quiet machine, up to 2x the call on 2 busy cores."""
    times, foreign = [], []
    for index in range(warmup + timed):
        busy, cpu = machine_busy_s(), time.process_time()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        other = max(0.0, (machine_busy_s() - busy) - (time.process_time() - cpu))
        kind = "warm-up" if index < warmup else "timed"
        print(f"{log_prefix} call {index} ({kind}): {elapsed:.3f} s, other processes {other:.1f} CPU s, "
              f"max RSS {max_rss_gib():.2f} GiB", flush=True)
        if index >= warmup:
            times.append(elapsed)
            foreign.append(round(other, 2))
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times,
            "foreign_cpu_s": foreign}


def run_case(args) -> dict:
    if args.attn == "explicit":
        os.environ["TIMM_FUSED_ATTN"] = "0"
    import numpy
    import open_clip
    import psutil
    import timm
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    process = psutil.Process()
    info = {"case": args.child, "size": args.size, "threads": torch.get_num_threads(), "attn": args.attn,
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
                         "open_clip_torch": open_clip.__version__, "numpy": numpy.__version__,
                         "psutil": psutil.__version__},
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(), "langseg_commit": langseg_commit(args.langseg),
            "rss_start_gib": process.memory_info().rss / 2 ** 30}

    start = time.perf_counter()
    net = build_network(args, torch, timm, open_clip)
    info["build_s"] = time.perf_counter() - start
    info["rss_after_build_gib"] = process.memory_info().rss / 2 ** 30
    info["params_total"] = sum(p.numel() for p in net.parameters())
    info["params_clip"] = sum(p.numel() for p in net.clip_pretrained.parameters())
    info["fused_attn"] = bool(getattr(net.pretrained.model.blocks[0].attn, "fused_attn", False))
    print(f"build {info['build_s']:.1f} s, {info['params_total'] / 1e6:.1f} M parameters "
          f"({info['params_clip'] / 1e6:.1f} M CLIP), RSS {info['rss_after_build_gib']:.2f} GiB, "
          f"fused attention {info['fused_attn']}", flush=True)

    gen = torch.Generator().manual_seed(1)
    image = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    prefix = f"[{args.child}]"

    if args.child in ("forward", "cached"):
        net.eval()
        if args.child == "cached":
            with torch.no_grad():
                cached = net.clip_pretrained.encode_text(net.text)
            net.clip_pretrained.encode_text = lambda text: cached
        shapes = []
        with torch.no_grad():
            info.update(timed_calls(lambda: shapes.append(list(net(image).shape)), args.warmup, args.timed, prefix))
            if args.child == "forward":  # the label encoding alone: the part "cached" skips
                encode = timed_calls(lambda: net.clip_pretrained.encode_text(net.text), 0, args.timed,
                                     prefix + " encode_text")
                info["encode_text_median_s"] = encode["median_s"]
        info["output_shape"] = shapes[-1]
    else:
        net.train()
        net.logit_scale = net.logit_scale.detach()  # see the module docstring (lang-seg issue #38)
        if args.child == "train_frozen_text":
            net.clip_pretrained.requires_grad_(False)
        base_lr = args.base_lr / 16 * args.batch
        optimizer = torch.optim.SGD([{"params": net.pretrained.parameters(), "lr": base_lr},
                                     {"params": net.scratch.parameters(), "lr": base_lr * 10}],
                                    lr=base_lr, momentum=0.9, weight_decay=1e-4)
        criterion = torch.nn.CrossEntropyLoss(ignore_index=-1)
        target = torch.randint(0, NUM_CLASSES, (args.batch, args.size, args.size), generator=gen)
        losses = []

        def step():
            optimizer.zero_grad()
            loss = criterion(net(image), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())

        info.update(timed_calls(step, args.warmup, args.timed, prefix))
        info["losses"] = losses
        info["clip_requires_grad"] = any(p.requires_grad for p in net.clip_pretrained.parameters())
        info["clip_grad_computed"] = any(p.grad is not None for p in net.clip_pretrained.parameters())
        info["lr"] = {"pretrained": base_lr, "scratch": base_lr * 10}
    info["peak_rss_gib"] = max_rss_gib()
    return info


# ----------------------------------------------------------------------------------------------------------------
# Parent: gate, lock, one subprocess per case and run, results file.
# ----------------------------------------------------------------------------------------------------------------

def machine_state() -> dict:
    with open("/proc/loadavg") as handle:
        load1 = float(handle.read().split()[0])
    mem_available = None
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                mem_available = int(line.split()[1]) / 2 ** 20  # kB -> GiB
    return {"load1": load1, "mem_available_gib": mem_available}


def wait_until_quiet(args) -> dict:
    """Poll every 30 s until load and free memory allow a measurement; returns the state and the wait."""
    start = time.time()
    while True:
        state = machine_state()
        quiet = state["load1"] < args.max_load and state["mem_available_gib"] > args.min_mem_gib
        waited = time.time() - start
        if quiet or waited >= args.gate_timeout:
            state.update(waited_s=round(waited), quiet=quiet)
            return state
        print(f"waiting for a quiet machine: load {state['load1']:.2f}, MemAvailable "
              f"{state['mem_available_gib']:.1f} GiB ({waited:.0f} s)", flush=True)
        time.sleep(30)


def run_child(args, case: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", case, "--size", str(args.size),
               "--batch", str(args.batch), "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--timed", str(args.timed), "--langseg", args.langseg, "--attn", args.attn,
               "--base-lr", str(args.base_lr)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.attn == "fused":
        env.pop("TIMM_FUSED_ATTN", None)
    record = {"case": case, "command": " ".join(command), "start_utc": utc_now()}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    low_memory = threading.Event()

    max_load = [machine_state()["load1"]]

    def watchdog():  # protect the other processes on the machine: stop the case before the kernel OOM-kills
        while process.poll() is None:
            state = machine_state()
            max_load[0] = max(max_load[0], state["load1"])
            if state["mem_available_gib"] < args.min_free_gib:
                low_memory.set()
                process.kill()
                return
            time.sleep(1)

    threading.Thread(target=watchdog, daemon=True).start()
    result = None
    for line in process.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            print(line, end="", flush=True)
    record["returncode"] = process.wait()
    if low_memory.is_set():
        record["killed"] = f"MemAvailable fell below {args.min_free_gib} GiB"
        print(f"case {case} killed: {record['killed']}", flush=True)
    record["end_utc"] = utc_now()
    record["max_load1_during"] = max_load[0]
    record["result"] = result
    return record


def append_results(path: str, records: list) -> None:
    data = {"runs": []}
    if os.path.exists(path):
        with open(path) as handle:
            data = json.load(handle)
    data["runs"].extend(records)
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="forward,cached,train", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--runs", type=int, default=1, help="fresh processes per case")
    parser.add_argument("--size", type=int, default=480, help="input height = width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timed", type=int, default=3)
    parser.add_argument("--base-lr", type=float, default=0.004, help="lang-seg --base_lr (scaled by batch / 16)")
    parser.add_argument("--attn", choices=("fused", "explicit"), default="fused",
                        help="timm attention: fused (timm default, SDPA) or explicit (TIMM_FUSED_ATTN=0)")
    parser.add_argument("--langseg", default=DEFAULT_LANGSEG, help="lang-seg checkout or bare git directory")
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--gate", action="store_true", help="wait for a quiet machine and hold --lock per case")
    parser.add_argument("--max-load", type=float, default=0.6)
    parser.add_argument("--min-mem-gib", type=float, default=20.0)
    parser.add_argument("--gate-timeout", type=float, default=45 * 60)
    parser.add_argument("--lock", default="/tmp/official_measuring.lock")
    parser.add_argument("--min-free-gib", type=float, default=1.0,
                        help="kill a case when MemAvailable falls below this (checked every second)")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    return args


def main():
    args = parse_args()
    if args.child:
        info = run_case(args)
        print(RESULT_PREFIX + json.dumps(info), flush=True)
        return
    records = []
    for run in range(args.runs):
        for case in args.cases.split(","):
            gate = wait_until_quiet(args) if args.gate else None
            if gate is not None:
                print(f"gate: {gate}", flush=True)
                with open(args.lock, "w") as handle:
                    handle.write(f"{os.getpid()} {case} {utc_now()}\n")
            try:
                record = run_child(args, case)
            finally:
                if gate is not None and os.path.exists(args.lock):
                    os.remove(args.lock)
            record.update(run=run, gate=gate)
            result = record["result"] or {}
            nan = float("nan")
            print(f"== {case} run {run}: rc {record['returncode']}, median {result.get('median_s', nan):.2f} s, "
                  f"build {result.get('build_s', nan):.1f} s, peak RSS {result.get('peak_rss_gib', nan):.2f} GiB "
                  f"({record['start_utc']} - {record['end_utc']})", flush=True)
            records.append(record)
            append_results(args.out, [record])
    if any(r["returncode"] != 0 for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
