"""Per-op overhead and medium-sized ops, tensorgrad side by side with PyTorch CPU and NumPy.

    python benchmarks/bench_ops.py [--quick] [--dtype float32|float64] [--repeats N]
                                   [--cases SUBSTRING] [--settle SECONDS]
                                   [--torch-threads N] [--json PATH]

Each case runs the same computation in every framework: tensorgrad, PyTorch (when installed)
and plain NumPy, whose backward is written by hand. The frameworks take turns, round after
round, in an order that changes, so a noisy neighbour slows them all alike; each turn times
batches of calls, and the table shows the median per call in microseconds. Backward always
starts from the same fixed random cotangent, and before timing, each case checks that
tensorgrad's gradients match PyTorch's and NumPy's.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import tensorgrad as tg
from tensorgrad import ops as tgops

FRAMEWORKS = ("tensorgrad", "torch", "numpy")
POOLS = {"tensorgrad": "blas", "numpy": "blas", "torch": "torch"}  # whose worker threads run
# Seconds of calls in one timed batch: long enough for the timer, short enough that a stall
# (a descheduled thread, a neighbour's burst) spoils few of the samples the median is taken over.
BATCH_TIME = 5e-4
WARM_UP = 0.02  # seconds of calls before calibrating, after at least three calls
BUSY_FLOOR = 0.7  # CPU seconds per wall second below which a time is flagged as noise
LN_EPS = 1e-5


# ---------------------------------------------------------------- case definitions


@dataclass
class Spec:
    """One computation, written once per framework.

    ``inputs(rng, dtype)`` gives the differentiable arrays and the constant ones (indices).
    ``tg`` and ``torch`` map framework tensors (differentiable, then constants) to the output;
    ``np_fwd`` does the same on arrays, and ``np_vjp(g, y, *arrays)`` returns the hand-written
    cotangent of each differentiable input.
    """

    name: str
    inputs: Callable
    tg: Callable
    torch: Callable
    np_fwd: Callable
    np_vjp: Callable | None = None
    note: str = ""


def _arrays(*shapes):
    """An ``inputs`` function drawing standard normal arrays of the given shapes."""
    def make(rng, dtype):
        return [rng.standard_normal(s).astype(dtype) for s in shapes], []
    return make


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_softmax_vjp(g, y, x):
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)  # J = diag(y) - y y^T


def _getitem_vjp(g, y, x):
    gx = np.zeros_like(x)
    gx[1:3] = g
    return (gx,)


def tiny_specs() -> list[Spec]:
    """Ops on 4-entry arrays, where the cost is all per-call overhead."""
    torch = _torch_module()
    F = torch.nn.functional if torch else None
    return [
        Spec("add", _arrays((4,), (4,)), lambda a, b: a + b, lambda a, b: a + b,
             lambda a, b: a + b, lambda g, y, a, b: (g, g)),
        Spec("mul", _arrays((4,), (4,)), lambda a, b: a * b, lambda a, b: a * b,
             lambda a, b: a * b, lambda g, y, a, b: (g * b, g * a)),
        Spec("matmul", _arrays((2, 2), (2, 2)), lambda a, b: a @ b, lambda a, b: a @ b,
             lambda a, b: a @ b, lambda g, y, a, b: (g @ b.T, a.T @ g)),
        Spec("exp", _arrays((4,)), lambda x: x.exp(), lambda x: x.exp(), np.exp,
             lambda g, y, x: (g * y,)),
        Spec("tanh", _arrays((4,)), lambda x: x.tanh(), lambda x: x.tanh(), np.tanh,
             lambda g, y, x: (g * (1 - y * y),)),
        Spec("sum", _arrays((4,)), lambda x: x.sum(), lambda x: x.sum(), np.sum,
             lambda g, y, x: (np.full_like(x, g),)),
        Spec("mean", _arrays((4,)), lambda x: x.mean(), lambda x: x.mean(), np.mean,
             lambda g, y, x: (np.full_like(x, g / x.size),)),
        Spec("reshape", _arrays((4,)), lambda x: x.reshape(2, 2), lambda x: x.reshape(2, 2),
             lambda x: x.reshape(2, 2), lambda g, y, x: (g.reshape(x.shape),)),
        Spec("getitem", _arrays((4,)), lambda x: x[1:3], lambda x: x[1:3], lambda x: x[1:3],
             _getitem_vjp),
        Spec("softmax", _arrays((2, 2)), lambda x: tgops.softmax(x, axis=-1),
             lambda x: F.softmax(x, dim=-1), _np_softmax, _np_softmax_vjp),
        Spec("relu", _arrays((4,)), lambda x: x.relu(), lambda x: x.relu(),
             lambda x: np.maximum(x, 0), lambda g, y, x: (g * (x > 0),)),
    ]


# ---------------------------------------------------------------- medium cases


def _tg_softmax_composite(x):
    e = (x - x.detach().max(axis=-1, keepdims=True)).exp()
    return e / e.sum(axis=-1, keepdims=True)


def _torch_softmax_composite(x):
    e = (x - x.detach().amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _layer_norm_composite(x, w, b, mean):
    """Layer norm from primitives; ``mean`` is the framework's mean over the last axis."""
    centred = x - mean(x)
    var = mean(centred * centred)
    return centred / (var + LN_EPS).sqrt() * w + b


def _np_layer_norm(x, w, b):
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LN_EPS)
    return centred * rstd * w + b


def _np_layer_norm_vjp(g, y, x, w, b):
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LN_EPS)
    xhat = centred * rstd
    gxhat = g * w
    gx = rstd * (gxhat - gxhat.mean(axis=-1, keepdims=True)
                 - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return gx, (g * xhat).sum(axis=lead), g.sum(axis=lead)


def _layer_norm_inputs(rng, dtype):
    x = rng.standard_normal((64, 16, 64)).astype(dtype)
    w = (1.0 + 0.1 * rng.standard_normal(64)).astype(dtype)
    b = (0.1 * rng.standard_normal(64)).astype(dtype)
    return [x, w, b], []


def _gather_inputs(rng, dtype):
    table = rng.standard_normal((1000, 64)).astype(dtype)
    return [table], [rng.integers(0, 1000, size=4096)]


def _np_gather_vjp(g, y, table, idx):
    """Scatter-add of rows by sorting once and summing runs (np.add.at is several times slower)."""
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    gtable = np.zeros_like(table)
    gtable[sorted_idx[starts]] = np.add.reduceat(g[order], starts, axis=0)
    return (gtable,)


def medium_specs() -> list[Spec]:
    """Ops big enough that arithmetic, not overhead, should dominate."""
    torch = _torch_module()
    F = torch.nn.functional if torch else None
    tg_mean = lambda x: x.mean(axis=-1, keepdims=True)  # noqa: E731
    torch_mean = lambda x: x.mean(dim=-1, keepdim=True)  # noqa: E731
    return [
        Spec("matmul 256x256 @ 256x256", _arrays((256, 256), (256, 256)),
             lambda a, b: a @ b, lambda a, b: a @ b, lambda a, b: a @ b,
             lambda g, y, a, b: (g @ b.T, a.T @ g)),
        Spec("softmax (64,16,64) fused", _arrays((64, 16, 64)),
             lambda x: tgops.softmax(x, axis=-1), lambda x: F.softmax(x, dim=-1),
             _np_softmax, _np_softmax_vjp),
        Spec("softmax (64,16,64) composite", _arrays((64, 16, 64)),
             _tg_softmax_composite, _torch_softmax_composite, _np_softmax, _np_softmax_vjp,
             note="composite rows run the same primitive chain in torch; numpy is the same"
                  " hand-written code as the fused row"),
        Spec("layer_norm (64,16,64) fused", _layer_norm_inputs,
             lambda x, w, b: tgops.layer_norm(x, w, b, eps=LN_EPS),
             lambda x, w, b: F.layer_norm(x, (64,), w, b, eps=LN_EPS),
             _np_layer_norm, _np_layer_norm_vjp),
        Spec("layer_norm (64,16,64) composite", _layer_norm_inputs,
             lambda x, w, b: _layer_norm_composite(x, w, b, tg_mean),
             lambda x, w, b: _layer_norm_composite(x, w, b, torch_mean),
             _np_layer_norm, _np_layer_norm_vjp),
        Spec("gather (1000,64)[4096 idx]", _gather_inputs,
             lambda t, idx: t[idx], lambda t, idx: t[idx], lambda t, idx: t[idx],
             _np_gather_vjp,
             note="numpy gather backward sorts the indices and sums runs with np.add.reduceat"),
    ]


# ---------------------------------------------------------------- building runnable cases


@dataclass
class Case:
    """A spec made runnable: per framework, a zero-argument call and a gradient getter."""

    name: str
    runs: dict[str, Callable] = field(default_factory=dict)
    grads: dict[str, Callable] = field(default_factory=dict)


def _torch_module():
    """PyTorch if it imports, else None (it is an optional extra)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def build_case(spec: Spec, backward: bool, dtype, rng) -> Case:
    """The runnable forms of ``spec``: forward alone, or forward then ``backward(g)``."""
    diff, consts = spec.inputs(rng, dtype)
    y = spec.np_fwd(*diff, *consts)
    g = rng.standard_normal(np.shape(y)).astype(dtype)

    case = Case(spec.name)
    builders = {"tensorgrad": _tg_runner, "torch": _torch_runner, "numpy": _numpy_runner}
    for name, builder in builders.items():
        built = builder(spec, diff, consts, g, backward)
        if built is not None:
            case.runs[name], case.grads[name] = built
    return case


def _tg_runner(spec, diff, consts, g, backward):
    xs = [tg.tensor(a.copy(), requires_grad=True) for a in diff]
    cs = [tg.tensor(c) for c in consts]  # indices as tensors, as PyTorch gets them
    g_t = tg.tensor(g)

    def forward():
        return spec.tg(*xs, *cs)

    def step():
        for x in xs:
            x.grad = None
        spec.tg(*xs, *cs).backward(g_t)

    def grads():
        step()
        return [x.grad for x in xs]

    return (step if backward else forward), grads


def _torch_runner(spec, diff, consts, g, backward):
    torch = _torch_module()
    if torch is None:
        return None
    xs = [torch.from_numpy(a.copy()).requires_grad_() for a in diff]
    cs = [torch.from_numpy(c) for c in consts]
    g_t = torch.from_numpy(g.copy())

    def forward():
        return spec.torch(*xs, *cs)

    def step():
        for x in xs:
            x.grad = None
        spec.torch(*xs, *cs).backward(g_t)

    def grads():
        step()
        return [x.grad.numpy() for x in xs]

    return (step if backward else forward), grads


def _numpy_runner(spec, diff, consts, g, backward):
    if backward and spec.np_vjp is None:
        return None

    def forward():
        return spec.np_fwd(*diff, *consts)

    def step():
        return spec.np_vjp(g, spec.np_fwd(*diff, *consts), *diff, *consts)

    def grads():
        return [np.asarray(gx) for gx in step()]

    return (step if backward else forward), grads


def check_gradients(case: Case, dtype) -> list[str]:
    """Warnings for every framework whose gradients disagree with tensorgrad's."""
    tol = {"rtol": 1e-3, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-6, "atol": 1e-8}
    ours = case.grads["tensorgrad"]()
    warnings = []
    for name in ("torch", "numpy"):
        if name not in case.grads:
            continue
        for i, (a, b) in enumerate(zip(ours, case.grads[name]())):
            if a is None or np.shape(a) != np.shape(b):
                problem = f"shapes {np.shape(a)} and {np.shape(b)}"
            elif not np.allclose(a, b, **tol):
                problem = f"max |diff| {np.max(np.abs(a - b)):.3g}"
            else:
                continue
            warnings.append(f"WARNING: {case.name}: tensorgrad's and {name}'s gradients of "
                            f"input {i} disagree ({problem})")
    return warnings


# ---------------------------------------------------------------- timing


def calibrate(fn: Callable, batch_time: float) -> int:
    """Warm ``fn`` up and return how many calls fill about ``batch_time`` seconds."""
    warm_until = time.perf_counter() + WARM_UP
    for i in itertools.count():
        fn()
        if i >= 2 and time.perf_counter() > warm_until:
            break
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= batch_time / 4 or calls >= 1 << 20:
            return max(1, round(calls * batch_time / max(elapsed, 1e-9)))
        calls *= 4


def measure(runs: dict[str, Callable], repeats: int, turn: float, settle: float) -> dict:
    """Per-call µs (median, quartiles, samples, busy) of each run over interleaved rounds.

    In each round every framework takes a turn of about ``turn`` seconds, timing batches of
    calls, and the order changes from round to round. Before a turn that switches between
    PyTorch's threads and NumPy's BLAS threads, sleep ``settle`` seconds: on a 2-core machine
    the workers of one pool, still spinning, slow the other many times over.
    """
    names = list(runs)
    calls = {name: calibrate(runs[name], BATCH_TIME) for name in names}
    samples = {name: [] for name in names}
    busy = {name: [] for name in names}
    pool = None
    for r in range(repeats):
        for name in _round_order(names, r):
            if settle and POOLS[name] != pool:
                time.sleep(settle)
            pool = POOLS[name]
            times, cpu = _turn(runs[name], calls[name], turn)
            samples[name] += times
            busy[name].append(cpu)
    return {name: _summary(samples[name], busy[name]) for name in names}


def _round_order(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: pools alternate ends, so each round switches pool only once."""
    pools = list(dict.fromkeys(POOLS[name] for name in names))
    if r % 2:
        pools.reverse()
    order = []
    for pool in pools:
        members = [name for name in names if POOLS[name] == pool]
        k = (r // 2) % len(members)
        order += members[k:] + members[:k]
    return order


def _turn(fn: Callable, calls: int, duration: float) -> tuple[list[float], float]:
    """Seconds per call of each batch of ``calls`` calls, for about ``duration`` seconds.

    Also returns the process's CPU seconds per wall second over the turn (``busy``): a
    single-threaded op keeps it near 1, and far below 1 means the calls sat waiting.
    """
    times = []
    wall, cpu = time.perf_counter(), time.process_time()
    end = wall + duration
    while not times or time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return times, (time.process_time() - cpu) / (time.perf_counter() - wall)


def _summary(seconds: list[float], busy: list[float]) -> dict:
    q1, median, q3 = np.percentile(np.asarray(seconds) * 1e6, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3),
            "samples": len(seconds), "busy": float(np.median(busy))}


def warm_up_threads(limit: float) -> float | None:
    """Run a threaded PyTorch kernel until it answers promptly for 0.2 s; return the seconds
    that took, or None if it never did within ``limit`` seconds.

    On a busy 2-core machine PyTorch's OpenMP workers can stall each parallel region for
    milliseconds, for seconds at a time (the first seconds of a process especially).
    """
    torch = _torch_module()
    if torch is None:
        return 0.0
    x = torch.randn(64, 16, 64, requires_grad=True)
    g = torch.randn(64, 16, 64)
    start = prompt = time.perf_counter()
    while time.perf_counter() - prompt < 0.2:
        if time.perf_counter() - start > limit:
            return None
        call = time.perf_counter()
        torch.softmax(x, dim=-1).backward(g)
        if time.perf_counter() - call > 0.005:
            prompt = time.perf_counter()
    return time.perf_counter() - start


def cpu_share(seconds: float = 0.1) -> float:
    """CPU time a busy loop gets per second of wall time: about 1.0 on an idle machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        pass
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


# ---------------------------------------------------------------- report


def make_row(case_name: str, stats: dict[str, dict]) -> dict:
    """One table row: each framework's median and the two ratios, plus the full statistics."""
    us = {name: stats[name]["median"] if name in stats else None for name in FRAMEWORKS}
    ours = us["tensorgrad"]
    return {
        "case": case_name,
        "tensorgrad_us": ours, "torch_us": us["torch"], "numpy_us": us["numpy"],
        "tg_torch": ours / us["torch"] if us["torch"] else None,
        "tg_numpy": ours / us["numpy"] if us["numpy"] else None,
        "stats": stats,
    }


def _fmt_us(row: dict, name: str) -> str:
    v = row[f"{name}_us"]
    if v is None:
        return "-"
    text = f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    return text + ("*" if row["stats"][name]["busy"] < BUSY_FLOOR else " ")


def _fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def print_table(title: str, rows: list[dict], notes: list[str]):
    headers = ("case", "tensorgrad (µs)", "torch (µs)", "numpy (µs)", "tg/torch", "tg/numpy")
    cells = [(r["case"], *(_fmt_us(r, name) for name in FRAMEWORKS),
              _fmt_ratio(r["tg_torch"]), _fmt_ratio(r["tg_numpy"])) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(cols):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cols, widths)))

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print(line(c))
    if any(c.endswith("*") for cells_row in cells for c in cells_row[1:4]):
        notes = notes + [f"* this process got under {BUSY_FLOOR:.0%} of a CPU during those "
                         "turns: the machine was busy, so treat the number as noise"]
    for note in notes:
        print(f"  note: {note}")


def environment(dtype) -> dict:
    """Versions, dtype and thread settings, printed at the top and stored in the JSON."""
    torch = _torch_module()
    info = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "tensorgrad": tg.__version__, "numpy": np.__version__,
        "numpy_blas": _numpy_blas(), "torch": torch.__version__ if torch else None,
        "dtype": np.dtype(dtype).name,
    }
    if torch:
        info["torch_num_threads"] = torch.get_num_threads()
        info["torch_num_interop_threads"] = torch.get_num_interop_threads()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    info["load_average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    info["cpu_share_start"] = round(cpu_share(), 2)
    return info


def _numpy_blas() -> str | None:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout differs across NumPy versions
        return None


def print_header(info: dict):
    print("bench_ops: tensorgrad vs PyTorch CPU vs NumPy; median µs per call, lower is better")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print("  (cpu_share: CPU time a busy loop gets per wall second; well under 1.0 means other "
          "processes compete and the numbers are noisy)")
    if info["torch"] is None:
        print("PyTorch not installed: pip install -e '.[torch]' to compare with it; "
              "skipping torch columns")


def print_fusion_gain(rows: list[dict]):
    """How much slower tensorgrad's composite softmax and layer norm are than its fused ops."""
    by_name = {r["case"]: r for r in rows}
    for spec in medium_specs():
        if "fused" not in spec.name:
            continue
        fused, composite = by_name.get(spec.name), by_name.get(
            spec.name.replace("fused", "composite"))
        if fused and composite:
            gain = composite["tensorgrad_us"] / fused["tensorgrad_us"]
            print(f"fusion gain, tensorgrad {spec.name.split()[0]}: composite / fused = "
                  f"{gain:.2f}x")


# ---------------------------------------------------------------- driver


def run_section(title, specs, modes, settle, args, dtype, rng) -> tuple[list, list]:
    """Build, check and time every case of one section; print its table; return rows, warnings."""
    rows, notes, warnings = [], [], []
    for spec in specs:
        if args.cases and args.cases not in spec.name:
            continue
        for label, backward in modes:
            case = build_case(spec, backward, dtype, rng)
            if backward:
                warnings += check_gradients(case, dtype)
            gc.collect()
            stats = measure(case.runs, args.repeats, args.turn, settle)
            rows.append(make_row(f"{spec.name} {label}".strip(), stats))
        if spec.note:
            notes.append(spec.note)
    if rows:
        print_table(title, rows, notes)
    for w in warnings:
        print(w)
    return rows, warnings


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~20 s)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved rounds per case (default 15, or 5 with --quick)")
    parser.add_argument("--cases", default="", help="only cases whose name contains this")
    parser.add_argument("--settle", type=float, default=None, metavar="SECONDS",
                        help="pause when medium cases switch thread pools "
                             "(default 0.25, or 0.15 with --quick)")
    parser.add_argument("--torch-threads", type=int, default=None, metavar="N",
                        help="call torch.set_num_threads(N) first (default: leave PyTorch's)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.settle is None:
        args.settle = 0.15 if args.quick else 0.25
    args.turn = 0.004 if args.quick else 0.02  # seconds per framework per round
    return args


SECTIONS = (
    ("tiny", "1. per-op overhead, tiny arrays ((4,) or (2, 2)), inputs require grad",
     tiny_specs, (("forward", False), ("fwd+bwd", True)), False),
    ("medium", "2. medium ops, forward+backward", medium_specs, (("", True),), True),
)


def main(argv=None) -> dict:
    """Run the benchmark, print its tables and return the results (``--json PATH`` saves them)."""
    args = parse_args(argv)
    dtype = np.dtype(args.dtype).type
    rng = np.random.default_rng(0)
    if args.torch_threads and _torch_module():
        _torch_module().set_num_threads(args.torch_threads)
    info = environment(dtype)
    limit = 3.0 if args.quick else 10.0
    warm = warm_up_threads(limit)
    info["torch_warm_up_s"] = None if warm is None else round(warm, 2)
    print_header(info)
    if warm is None:
        print(f"WARNING: PyTorch's threaded kernels still stalled after {limit:.0f} s of warm-up "
              "(a busy machine?): its times will be inflated; rerun later, or compare with "
              "--torch-threads 1")

    results = {"meta": {**info, "repeats": args.repeats, "quick": args.quick},
               "sections": {}, "warnings": []}
    for key, title, specs, modes, settles in SECTIONS:
        settle = args.settle if settles else 0.0
        start = time.perf_counter()
        rows, warnings = run_section(title, specs(), modes, settle, args, dtype, rng)
        print(f"  ({time.perf_counter() - start:.1f} s)")
        results["sections"][key] = rows
        results["warnings"] += warnings
    print_fusion_gain(results["sections"]["medium"])

    results["meta"]["cpu_share_end"] = round(cpu_share(), 2)
    print(f"\ncpu_share at the end: {results['meta']['cpu_share_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
