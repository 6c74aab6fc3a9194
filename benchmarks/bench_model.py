"""One training step of dann.DANNTransformer against its PyTorch twin (dann.torch), on CPU.

    python benchmarks/bench_model.py [--quick] [--dtype float32|float64] [--rounds N]
                                     [--torch-adamw fused|foreach|default] [--memory-runs N]
                                     [--threads N] [--json PATH]

A step is forward, cross-entropy loss, backward and an AdamW update, on the same weights and
the same batch in both frameworks. Before timing, each configuration checks that the two
losses and every parameter's gradient agree (float32: within 1e-4 of the gradient's scale;
float64: 1e-10). Timing runs interleaved rounds: in each round both frameworks take a turn of
steps, the first to go alternating, with a pause between turns so the other framework's
spinning worker threads go quiet. The table shows each framework's median step and the ratio
tensorgrad / torch (below 1 means tensorgrad is faster), against the targets of issue 6.
PyTorch gets its fastest CPU optimizer, AdamW(fused=True), unless --torch-adamw says otherwise;
thread counts are each library's defaults unless --threads N sets every pool to N (on a busy
machine, N=1 gives far steadier numbers); they are printed at the top.

Memory is measured the same way for both: each framework's steps run in a fresh subprocess,
which imports its libraries, warms them up on a tiny problem (so one-time library set-up is
not charged to the model), then resets the kernel's peak-RSS mark (/proc/self/clear_refs)
and reports peak RSS minus the RSS before the model was built: parameters, gradients,
optimizer state, activations, the tape, and whatever the allocator keeps; the table shows the
median over a few such processes. tracemalloc cannot do this for both, since PyTorch's CPU
allocator does not report to it; tensorgrad's tracemalloc peak (NumPy does report) is shown
beside it as a cross-check. RSS counts whole pages and allocator slack, so differences of a
few hundred kB are noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import tensorgrad as tg
from dann import tasks
from dann.train import TrainConfig, build_model
from tensorgrad import nn, optim

CONFIGS = {  # name -> (TrainConfig overrides, target ratio tensorgrad / torch or None)
    "example (B64, d64)": ({}, 1.0),
    "d_model 64 (B32)": (dict(batch_size=32), 1.0),
    "d_model 128 (B32)": (dict(batch_size=32, d_model=128, n_somas=128), None),
    "d_model 256 (B32)": (dict(batch_size=32, d_model=256, n_somas=256), 1.5),
}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}  # of each gradient's largest entry
MEMORY_STEPS = 3


# ---------------------------------------------------------------- the two training steps


def make_config(name: str, dtype: str) -> TrainConfig:
    return TrainConfig(**CONFIGS[name][0], dtype=dtype)


def make_batch(config: TrainConfig):
    return tasks.batch_at(config.spec(), config.batch_size, config.seed, 0)


def tensorgrad_step(model, config):
    """A closure running one tensorgrad training step, and the loss it computed last."""
    inputs, targets = make_batch(config)
    optimizer = optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def step():
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def torch_step(twin, config, adamw):
    """A closure running one PyTorch training step of the twin."""
    import torch

    import dann.torch as dt

    inputs, targets = (torch.from_numpy(a) for a in make_batch(config))
    options = {"fused": dict(fused=True), "foreach": dict(foreach=True), "default": {}}[adamw]
    optimizer = torch.optim.AdamW(twin.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay, **options)

    def step():
        loss = dt.cross_entropy(twin(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def check_agreement(model, twin, config) -> dict:
    """Loss and gradients of both frameworks from the same weights, and their worst difference."""
    import dann.torch as dt

    inputs, targets = make_batch(config)
    loss = nn.functional.cross_entropy(model(inputs), targets)
    model.zero_grad()
    loss.backward()
    t_loss = dt.cross_entropy(twin(inputs), targets)
    twin.zero_grad()
    t_loss.backward()

    ours = dict(model.named_parameters())
    worst = (0.0, 0.0, None)  # relative difference, absolute difference, parameter
    for name, p in twin.named_parameters():
        theirs = p.grad.numpy()
        diff = float(np.abs(ours[name].grad - theirs).max())
        relative = diff / max(float(np.abs(theirs).max()), 1e-30)
        worst = max(worst, (relative, diff, name))
    loss_diff = abs(loss.item() - t_loss.item())
    tolerance = TOLERANCE[config.dtype]
    ok = worst[0] <= tolerance and loss_diff <= tolerance * max(1.0, abs(t_loss.item()))
    model.zero_grad()
    twin.zero_grad()
    return {"loss": loss.item(), "torch_loss": t_loss.item(), "loss_diff": loss_diff,
            "grad_rel_diff": worst[0], "grad_abs_diff": worst[1], "worst_param": worst[2],
            "tolerance": tolerance, "ok": ok}


# ---------------------------------------------------------------- timing


def time_steps(runs: dict, rounds: int, turn: float, settle: float, warmup: int) -> dict:
    """Median milliseconds per step of each run, and its spread, over interleaved rounds.

    Each round gives every framework a turn of about ``turn`` seconds (at least one step),
    timing each step; the first to go alternates between rounds, and ``settle`` seconds of
    sleep before each turn let the previous framework's worker threads stop spinning. The
    spread is the interquartile range over the median: a large one says the machine was busy.
    """
    for step in runs.values():
        for _ in range(warmup):
            step()
    samples = {name: [] for name in runs}
    names = list(runs)
    gc.collect()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(settle)
            samples[name] += _turn(runs[name], turn)
    return {name: (statistics.median(s) * 1e3, _spread(s)) for name, s in samples.items()}


def _spread(samples):
    if len(samples) < 4:
        return float("nan")
    low, _, high = statistics.quantiles(samples, n=4)
    return (high - low) / statistics.median(samples)


def _turn(step, duration):
    times = []
    end = time.perf_counter() + duration
    while not times or time.perf_counter() < end:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------- memory


def measure_memory(name: str, framework: str, dtype: str, adamw: str) -> dict:
    """Run ``_memory_child`` in a fresh interpreter and return what it reports."""
    spec = json.dumps({"name": name, "framework": framework, "dtype": dtype, "adamw": adamw})
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", spec],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"memory run {framework} {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_child(spec: dict):
    """Peak RSS growth of building a model and taking MEMORY_STEPS steps; prints JSON."""
    config = make_config(spec["name"], spec["dtype"])
    framework = spec["framework"]
    build = _build_torch if framework == "torch" else _build_tensorgrad
    build(make_config("d_model 64 (B32)", spec["dtype"]), spec["adamw"], tiny=True)()

    gc.collect()
    baseline, reset = _rss_kb(), _reset_peak()
    step = build(config, spec["adamw"])
    for _ in range(MEMORY_STEPS):
        step()
    report = {"rss_growth_kb": _peak_kb(reset) - baseline, "peak_method":
              "VmHWM after clear_refs" if reset else "ru_maxrss (import peak not reset)"}
    del step
    gc.collect()

    if framework == "tensorgrad":
        tracemalloc.start()
        step = build(config, spec["adamw"])
        for _ in range(MEMORY_STEPS):
            step()
        report["tracemalloc_peak_kb"] = tracemalloc.get_traced_memory()[1] / 1024
        tracemalloc.stop()
    print(json.dumps(report))


def _build_tensorgrad(config, adamw, tiny=False):
    if tiny:
        config = dataclasses.replace(config, d_model=8, n_somas=4, n_heads=2, batch_size=2)
    return tensorgrad_step(build_model(config), config)


def _build_torch(config, adamw, tiny=False):
    import dann.torch as dt

    if tiny:
        config = dataclasses.replace(config, d_model=8, n_somas=4, n_heads=2, batch_size=2)
    twin = dt.DANNTransformer(
        vocab_size=config.vocab, d_model=config.d_model, n_heads=config.n_heads,
        n_blocks=config.n_blocks, max_len=config.length, ffn=config.ffn, n_somas=config.n_somas,
        dendrites_per_soma=config.dendrites_per_soma,
        synapses_per_dendrite=config.synapses_per_dendrite, sampling=config.sampling,
        rng=config.seed, dtype=dt._torch_dtype(config.dtype))
    return torch_step(twin, config, adamw)


def _rss_kb() -> float:
    return _proc_status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux 4.0+); whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status("VmHWM") is not None
    except OSError:
        return False


def _peak_kb(reset: bool) -> float:
    if reset:
        return _proc_status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def _proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- environment and report


def environment(dtype, adamw) -> dict:
    """Versions, thread counts and BLAS, printed at the top and stored in the JSON."""
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "numpy_blas": _numpy_blas(), "dtype": dtype,
            "torch_adamw": f"torch.optim.AdamW({'' if adamw == 'default' else adamw + '=True'})"}
    for var in THREAD_VARS:
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def _numpy_blas() -> str:
    """NumPy's BLAS and its threads: threadpoolctl if installed, else np.show_config."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p['internal_api']} {p.get('version')} "
                             f"{p['num_threads']} threads" for p in pools)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (threads: install threadpoolctl)"
    except Exception:  # show_config's layout differs across NumPy versions
        return "unknown"


def _met(ratio, target):
    if target is None or ratio is None:
        return "-"
    return "met" if ratio <= target else "not met"


def _percent(v):
    return "-" if v != v else f"{v:.0%}"  # NaN: too few samples


def print_table(headers, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row))


def report(results):
    print(f"\ntraining step, median ms ({results['meta']['dtype']}); "
          "ratio = tensorgrad / torch, < 1 means tensorgrad is faster")
    print_table(("config", "tensorgrad ms", "torch ms", "ratio", "target", "met", "spread tg",
                 "spread torch"), [
        (r["config"], f"{r['tensorgrad_ms']:.2f}", f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}",
         "-" if r["target"] is None else f"<= {r['target']:.1f}", _met(r["ratio"], r["target"]),
         _percent(r["tensorgrad_spread"]), _percent(r["torch_spread"]))
        for r in results["timing"]])
    print("  spread: interquartile range of the step times / median")
    if not results["memory"]:
        return
    print(f"\npeak memory growth of building the model and taking {MEMORY_STEPS} steps, MB "
          f"(RSS, median of {results['memory'][0]['runs']} fresh processes each; "
          "target ratio <= 1.0)")
    print_table(("config", "tensorgrad MB", "torch MB", "ratio", "met", "tg tracemalloc MB"), [
        (m["config"], f"{m['tensorgrad_mb']:.1f}", f"{m['torch_mb']:.1f}", f"{m['ratio']:.2f}",
         _met(m["ratio"], 1.0), f"{m['tracemalloc_mb']:.1f}") for m in results["memory"]])
    print(f"  peak RSS read as: {results['memory'][0]['method']}")


# ---------------------------------------------------------------- driver


def run_config(name, args, results):
    """Check agreement, then time both frameworks on one configuration."""
    import dann.torch as dt

    config = make_config(name, args.dtype)
    model = build_model(config)
    twin = dt.to_torch(model)
    check = check_agreement(model, twin, config)
    results["checks"].append({"config": name, **check})
    print(f"check {name}: loss {check['loss']:.6f} vs {check['torch_loss']:.6f} "
          f"(|diff| {check['loss_diff']:.1e}); worst gradient |diff| {check['grad_abs_diff']:.1e}"
          f" = {check['grad_rel_diff']:.1e} of its scale ({check['worst_param']}): "
          f"{'ok' if check['ok'] else 'DISAGREE, tolerance %.0e' % check['tolerance']}")

    runs = {"tensorgrad": tensorgrad_step(model, config),
            "torch": torch_step(twin, config, args.torch_adamw)}
    times = time_steps(runs, args.rounds, args.turn, args.settle, args.warmup)
    target = CONFIGS[name][1]
    (ours, our_spread), (theirs, their_spread) = times["tensorgrad"], times["torch"]
    results["timing"].append({"config": name, "tensorgrad_ms": ours, "torch_ms": theirs,
                              "ratio": ours / theirs, "target": target,
                              "tensorgrad_spread": our_spread, "torch_spread": their_spread})


def run_memory(name, args, results):
    """Median over ``args.memory_runs`` fresh processes of each framework's peak RSS growth."""
    runs = {framework: [measure_memory(name, framework, args.dtype, args.torch_adamw)
                        for _ in range(args.memory_runs)]
            for framework in ("tensorgrad", "torch")}
    ours, theirs = (statistics.median(r["rss_growth_kb"] for r in runs[f]) / 1024
                    for f in ("tensorgrad", "torch"))
    traced = statistics.median(r["tracemalloc_peak_kb"] for r in runs["tensorgrad"]) / 1024
    results["memory"].append({"config": name, "tensorgrad_mb": ours, "torch_mb": theirs,
                              "ratio": ours / theirs if theirs > 0 else float("inf"),
                              "tracemalloc_mb": traced, "runs": args.memory_runs,
                              "method": runs["tensorgrad"][0]["peak_method"]})


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per config (default 12, or 4 with --quick)")
    parser.add_argument("--torch-adamw", choices=("fused", "foreach", "default"),
                        default="fused", help="PyTorch's AdamW implementation (default fused, "
                                              "its fastest on CPU)")
    parser.add_argument("--settle", type=float, default=0.1, metavar="SECONDS",
                        help="pause before each turn (default 0.1)")
    parser.add_argument("--memory-runs", type=int, default=None, metavar="N",
                        help="fresh processes per framework and config for the memory peak "
                             "(median; default 3, or 1 with --quick; 0 skips memory)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc thresholds alone (see tg.reuse_freed_memory)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="limit PyTorch's and NumPy's BLAS thread pools to N")
    parser.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 4 if args.quick else 12
    if args.memory_runs is None:
        args.memory_runs = 1 if args.quick else 3
    if args.rounds < 1 or args.memory_runs < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--rounds and --threads must be at least 1, --memory-runs at least 0")
    args.turn = 0.05 if args.quick else 0.25  # seconds per framework per round
    args.warmup = 3 if args.quick else 10
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Both frameworks allocate through glibc's malloc, so this process-wide setting helps both;
    # --system-malloc measures without it.
    malloc = "system default" if args.system_malloc else (
        "freed memory reused (tg.reuse_freed_memory)" if tg.reuse_freed_memory() else "default")
    if args.memory_child:
        _memory_child(json.loads(args.memory_child))
        return 0
    if args.threads and any(os.environ.get(v) != str(args.threads) for v in THREAD_VARS):
        _restart_with_threads(args.threads, sys.argv[1:] if argv is None else argv)
    try:
        import dann.torch  # noqa: F401
    except ImportError as error:
        print(f"bench_model needs PyTorch to compare against: {error}")
        return 1

    info = {**environment(args.dtype, args.torch_adamw), "malloc": malloc}
    print("bench_model: one training step (forward, cross-entropy, backward, AdamW), "
          "tensorgrad vs PyTorch CPU")
    for key, value in info.items():
        print(f"  {key}: {value}")
    results = {"meta": {**info, "rounds": args.rounds, "quick": args.quick},
               "checks": [], "timing": [], "memory": []}
    for name in CONFIGS:
        run_config(name, args, results)
        if args.memory_runs:
            run_memory(name, args, results)
    report(results)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0 if all(c["ok"] for c in results["checks"]) else 1


def _restart_with_threads(n, argv):
    """Run this script again with every thread pool set to n: the pools read it at start-up."""
    env = {**os.environ, **{var: str(n) for var in THREAD_VARS}}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


if __name__ == "__main__":
    sys.exit(main())
