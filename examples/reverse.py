"""Train the dendritic transformer to reverse sequences, and show what it learned.

    python examples/reverse.py                  # vocabulary 10, length 8
    python examples/reverse.py --preset seed    # the original model's configuration
    python examples/reverse.py --length 16 --vocab 32 --steps 4000

Writes into --out (default runs/reverse): checkpoint.npz, metrics.json, loss.csv (and loss.png
with matplotlib), attention.png (the reversal shows as an anti-diagonal), and the computation
graph as DOT source (and SVG when Graphviz's `dot` is installed).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys

# The model's matrices are small: BLAS threads would only fight over the cores (about 9x
# slower on a busy 2-core machine). Set before NumPy loads BLAS; an explicit setting wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

import tensorgrad as tg  # noqa: E402
from dann import tasks  # noqa: E402
from dann.train import (  # noqa: E402
    TrainConfig, build_model, held_out_set, steps_to_reach, train,
)
from tensorgrad import nn  # noqa: E402

PRESETS = {
    "default": {},
    # The original hand-written model: d_model 32, length 5, tokens 1..8, 2 blocks, 4 heads.
    "seed": dict(d_model=32, length=5, vocab=9, n_blocks=2, n_heads=4, n_somas=64,
                 dendrites_per_soma=4, synapses_per_dendrite=8),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--task", choices=sorted(tasks.TASKS), default=None)
    parser.add_argument("--length", type=int, default=None, help="sequence length")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (tokens 1..V-1)")
    parser.add_argument("--steps", type=int, default=None, help="training steps at most")
    parser.add_argument("--ffn", choices=["dendritic", "dense"], default=None)
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default="runs/reverse", help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def config_from(args) -> TrainConfig:
    values = dict(PRESETS[args.preset])
    for name in ("task", "length", "vocab", "steps", "ffn", "d_model", "seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    values.setdefault("stop_at", 0.999)  # judged on the validation set, not the test set
    return TrainConfig(**values)


MAX_VOCAB = 50_000  # the output layer's logits grow with the vocabulary: (batch, length, V)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    config = config_from(args)
    if config.vocab > MAX_VOCAB:
        raise ValueError(f"--vocab {config.vocab} is beyond this example's {MAX_VOCAB:,} "
                         "(its logits would not fit a small machine's memory)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a file, not a folder")
    os.makedirs(args.out, exist_ok=True)
    print(f"Training a {config.ffn} transformer on {config.task} "
          f"(vocab {config.vocab}, length {config.length}, at most {config.steps} steps)")

    result = train(config, out_dir=args.out, resume=args.resume, progress=not args.no_progress)
    report(config, result, args.out)
    return result


def report(config, result, out_dir):
    """Print the metrics, samples and parameter counts; write the figures and metrics.json."""
    model, m = result.model, result.metrics
    n_test = len(held_out_set(config)[0])
    print(f"\nHeld-out test set ({n_test} sequences never trained on): "
          f"token accuracy {m.token_accuracy:.4f}, exact match {m.exact_match:.4f}, loss {m.loss:.4f} "
          f"(chance {np.log(config.vocab - 1):.3f}) after {result.steps} steps in "
          f"{result.seconds:.1f} s")
    print_samples(model, config)

    counts = parameter_counts(config)
    for kind, count in counts.items():
        print(f"parameters, {kind} model: {count['total']:,} ({count['ffn']:,} in feed-forwards)")

    write_loss_curve(result.history, out_dir)
    write_attention_map(model, config, out_dir)
    write_graphs(model, config, out_dir)
    metrics = {
        "token_accuracy": m.token_accuracy, "exact_match": m.exact_match, "loss": m.loss,
        "steps": result.steps, "seconds": result.seconds,
        "steps_to_99": steps_to_reach(result.evals, 0.99),  # on the validation set
        "parameters": counts[config.ffn]["total"], "parameter_counts": counts,
        "config": dataclasses.asdict(config),
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote {out_dir}/: checkpoint.npz, metrics.json, loss.csv, figures and graphs")


def print_samples(model, config, n=4):
    """A few held-out sequences (never trained on) with the model's predictions."""
    inputs, targets = (part[:n] for part in held_out_set(config))
    model.eval()
    with tg.no_grad():
        predictions = model(inputs).data.argmax(axis=-1)
    for x, y, p in zip(inputs, targets, predictions):
        mark = "ok" if np.array_equal(y, p) else "WRONG"
        print(f"  input {x.tolist()}  target {y.tolist()}  predicted {p.tolist()}  {mark}")


def parameter_counts(config):
    """Parameters of the dendritic model and of a dense one of the same width."""
    counts = {}
    for kind in ("dendritic", "dense"):
        model = build_model(dataclasses.replace(config, ffn=kind))
        ffn = sum(p.size for name, p in model.named_parameters() if ".ffn." in name)
        counts[kind] = {"total": sum(p.size for p in model.parameters()), "ffn": ffn}
    return counts


def write_loss_curve(history, out_dir):
    with open(os.path.join(out_dir, "loss.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "lr"])
        writer.writerows(history)
    plt = _pyplot()
    if plt is None or not history:
        return
    steps, losses, _ = zip(*history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (cross-entropy)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=120)
    plt.close(fig)


def write_attention_map(model, config, out_dir):
    """The last block's attention, averaged over heads, for one held-out example."""
    inputs, _ = tasks.held_out(config.spec(), n=1, seed=7)
    with tg.no_grad():
        model(inputs)
    weights = model.blocks[-1].attn.last_attention[0]  # (heads, T, T)
    np.savetxt(os.path.join(out_dir, "attention.csv"), weights.mean(axis=0), delimiter=",",
               fmt="%.4f")
    plt = _pyplot()
    if plt is None:
        return
    heads = weights.shape[0]
    fig, axes = plt.subplots(1, heads + 1, figsize=(2.4 * (heads + 1), 2.6))
    panels = [weights.mean(axis=0)] + list(weights)
    titles = ["mean of heads"] + [f"head {h}" for h in range(heads)]
    for ax, panel, title in zip(axes, panels, titles):
        ax.imshow(panel, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("key position", fontsize=7)
        ax.set_ylabel("query position", fontsize=7)
        ax.set_xticks(range(panel.shape[1]))
        ax.set_yticks(range(panel.shape[0]))
        ax.tick_params(labelsize=6)
    fig.suptitle(f"last block attention on {inputs[0].tolist()}", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))  # room for the axis labels and the title
    fig.savefig(os.path.join(out_dir, "attention.png"), dpi=120)
    plt.close(fig)


def write_graphs(model, config, out_dir):
    """The whole model at module depth 1, and one transformer block in detail."""
    try:
        from tensorgrad.graph import render_graph
    except ImportError as err:
        logging.warning("graph drawing unavailable: %s", err)
        return
    inputs, targets = tasks.held_out(config.spec(), n=2, seed=7)
    model.train()
    loss = nn.functional.cross_entropy(model(inputs), targets)
    try:
        render_graph(loss, os.path.join(out_dir, "graph_model"), params=model, depth=1,
                     title="DANNTransformer, module depth 1")
        x = tg.randn(2, config.length, config.d_model, rng=0, dtype=np.float32)
        block_out = model.blocks[0](x)
        render_graph(block_out, os.path.join(out_dir, "graph_block"), params=model,
                     title="one transformer block")
    except ImportError as err:
        logging.warning("graph drawing needs the graphviz package: %s", err)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.info("matplotlib is not installed (pip install matplotlib): skipping PNG figures")
        return None
    return plt


def cli(argv=None) -> int:
    """Run ``main``; a bad flag or file ends with a one-line error instead of a traceback."""
    try:
        main(argv)
    except (ValueError, OSError, tg.TensorgradError) as err:
        print(f"reverse.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nreverse.py: interrupted; the last checkpoint is kept: run again with the same "
              "flags and --resume to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
