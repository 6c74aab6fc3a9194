"""DendriticLayer forward + backward: form="dense" against form="gather", at the example's sizes.

    python benchmarks/bench_dendritic.py [--rounds N] [--quick] [--json PATH]

``dense`` runs each stage as one fused ``sparse_linear`` op (the synapse weights scattered into
a dense matrix, one GEMM each way); ``gather`` composes primitives (gather each dendrite's K
inputs, multiply, sum). A third row, ``scatter+matmul``, is the dense idea written with
primitives (``dense_dendrite_weight()`` then ``@``), to show what the fusion itself buys.

Each size first checks that all forms give the same outputs and gradients. Then the forms take
turns, round by round (the first to go rotates), so a noisy neighbour slows them all alike;
each round times a batch of calls sized during warm-up, and the table shows the median per
call in milliseconds and each form's time relative to ``dense``. BLAS threads matter on a
small or shared machine: compare with ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np

import tensorgrad as tg
from dann import DendriticLayer
from dann.dendritic import SLOPE
from tensorgrad import ops

FORMS = ("dense", "gather", "scatter+matmul")


@dataclass
class Size:
    """One layer shape and the batch of activations it sees: x is (rows, in_features)."""

    name: str
    in_features: int
    n_somas: int
    dendrites: int
    synapses: int
    rows: int


SIZES = [
    Size("example: d_model 64", 64, 64, 4, 8, 64 * 8),
    Size("--preset seed: d_model 32", 32, 64, 4, 8, 64 * 5),
    Size("d_model 128", 128, 128, 4, 8, 64 * 8),
    Size("d_model 256", 256, 256, 4, 8, 64 * 8),
]


def scatter_matmul_forward(layer, x):
    """The layer's formula through its dense (D*S, in) weight matrix and plain primitives."""
    pre = x @ layer.dense_dendrite_weight().T + layer.dendrite_bias
    d = ops.leaky_relu(pre, SLOPE)
    blocks = d.reshape(d.shape[:-1] + (layer.n_somas, layer.dendrites_per_soma))
    return ops.leaky_relu((blocks * layer.soma_weight).sum(axis=-1) + layer.soma_bias, SLOPE)


def make_case(size, form, rng_seed=0):
    """A zero-argument function doing one forward and backward, and the tensors it touches."""
    layer_form = "dense" if form == "scatter+matmul" else form
    layer = DendriticLayer(size.in_features, size.n_somas, size.dendrites, size.synapses,
                           form=layer_form, rng=rng_seed)
    rng = np.random.default_rng(rng_seed + 1)
    layer.dendrite_bias.data[...] = rng.uniform(-0.1, 0.1, layer.dendrite_bias.shape)
    x = tg.tensor(rng.standard_normal((size.rows, size.in_features)).astype(np.float32),
                  requires_grad=True)
    cotangent = rng.standard_normal((size.rows, size.n_somas)).astype(np.float32)
    forward = (lambda: scatter_matmul_forward(layer, x)) if form == "scatter+matmul" else (
        lambda: layer(x))
    tensors = [x] + list(layer.parameters())

    def step():
        for t in tensors:
            t.grad = None
        out = forward()
        out.backward(cotangent)
        return out

    return step, tensors


def check_agreement(size):
    """All forms give the same outputs and gradients (float32, so to a relative 1e-4)."""
    results = {}
    for form in FORMS:
        step, tensors = make_case(size, form)
        out = step()
        results[form] = [out.data] + [t.grad for t in tensors]
    for form in FORMS[1:]:
        for a, b in zip(results["dense"], results[form]):
            scale = max(float(np.abs(a).max()), 1e-6)
            if np.abs(a - b).max() > 1e-4 * scale:
                raise AssertionError(f"{size.name}: {form} disagrees with dense")


def calls_per_round(step, target_seconds):
    """How many calls fill about ``target_seconds`` (after a few warm-up calls)."""
    for _ in range(3):
        step()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < target_seconds / 4 or n < 2:
        step()
        n += 1
    per_call = (time.perf_counter() - start) / n
    return max(1, int(target_seconds / per_call))


def time_size(size, rounds, target_seconds):
    """Median milliseconds per forward+backward of each form, rounds interleaved."""
    steps = {form: make_case(size, form)[0] for form in FORMS}
    batch = {form: calls_per_round(step, target_seconds) for form, step in steps.items()}
    samples = {form: [] for form in FORMS}
    for r in range(rounds):
        order = FORMS[r % len(FORMS):] + FORMS[:r % len(FORMS)]
        for form in order:
            start = time.perf_counter()
            for _ in range(batch[form]):
                steps[form]()
            samples[form].append((time.perf_counter() - start) / batch[form] * 1e3)
    return {form: statistics.median(values) for form, values in samples.items()}


def print_table(rows):
    header = (f"{'size':<28} {'x shape':>10} {'dense ms':>9} {'gather ms':>10} "
              f"{'scat+mm ms':>11} {'gather/dense':>13} {'scat+mm/dense':>14}")
    print(header)
    print("-" * len(header))
    for size, ms in rows:
        shape = f"{size.rows}x{size.in_features}"
        print(f"{size.name:<28} {shape:>10} {ms['dense']:>9.3f} {ms['gather']:>10.3f} "
              f"{ms['scatter+matmul']:>11.3f} {ms['gather'] / ms['dense']:>12.2f}x "
              f"{ms['scatter+matmul'] / ms['dense']:>13.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per size")
    parser.add_argument("--quick", action="store_true", help="5 short rounds (a smoke run)")
    parser.add_argument("--json", help="also write the medians to this file")
    args = parser.parse_args(argv)
    rounds, target = (5, 0.05) if args.quick else (args.rounds, 0.2)

    print(f"DendriticLayer forward+backward, float32, median of {rounds} interleaved rounds; "
          f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    threads = {key: os.environ.get(key, "unset")
               for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print("BLAS threads: " + ", ".join(f"{key}={value}" for key, value in threads.items()))
    print("layer: in -> S somas x D=4 dendrites x K=8 synapses; x requires grad\n")
    rows = []
    for size in SIZES:
        check_agreement(size)
        rows.append((size, time_size(size, rounds, target)))
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(size=vars(size), ms=ms) for size, ms in rows], f, indent=2)


if __name__ == "__main__":
    main()
