"""Training and evaluation of a DANNTransformer on a sequence task, with resumable checkpoints.

The loop is AdamW with linear warmup then cosine decay, and gradient clipping. Batches come
from ``dann.tasks.batch_at``, a pure function of (seed, step), so a run resumed from a
checkpoint at step k sees exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

import tensorgrad as tg
from dann import tasks
from dann.transformer import DANNTransformer
from tensorgrad import nn, optim
from tensorgrad.checkpoint import load, save
from tensorgrad.errors import CheckpointError

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.npz"


@dataclass
class TrainConfig:
    """Everything that defines a run: the task, the model, the optimiser and the schedule."""

    task: str = "reverse"
    vocab: int = 10
    length: int = 8
    d_model: int = 64
    n_heads: int = 4
    n_blocks: int = 2
    ffn: str = "dendritic"
    n_somas: int = 64
    dendrites_per_soma: int = 4
    synapses_per_dendrite: int = 8
    sampling: str = "random"
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 50
    eval_size: int = 2000
    val_size: int = 500
    stop_at: float | None = None
    dtype: str = "float32"

    def __post_init__(self):
        positive = ("steps", "batch_size", "d_model", "n_heads", "n_blocks", "n_somas",
                    "dendrites_per_soma", "synapses_per_dendrite", "eval_every", "eval_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig: {name} must be a positive integer, got {value!r}")
        if not self.lr > 0 or self.warmup < 0 or self.weight_decay < 0 or self.clip <= 0:
            raise ValueError("TrainConfig: lr and clip must be > 0, warmup and weight_decay >= 0")
        if self.seed < 0:
            raise ValueError(f"TrainConfig: seed must be >= 0, got {self.seed}")
        self.spec()  # validates task, vocab and length

    def spec(self) -> tasks.TaskSpec:
        return tasks.TaskSpec(self.task, self.vocab, self.length)


def build_model(config: TrainConfig) -> DANNTransformer:
    """The model a config describes, initialised from the config's seed."""
    return DANNTransformer(
        vocab_size=config.vocab, d_model=config.d_model, n_heads=config.n_heads,
        n_blocks=config.n_blocks, max_len=config.length, ffn=config.ffn,
        n_somas=config.n_somas, dendrites_per_soma=config.dendrites_per_soma,
        synapses_per_dendrite=config.synapses_per_dendrite, sampling=config.sampling,
        d_hidden=config.n_somas, rng=np.random.default_rng([config.seed, 1]),
        dtype=np.dtype(config.dtype),
    )


@dataclass
class Metrics:
    """Held-out quality: the fraction of right tokens and of wholly right sequences."""

    loss: float
    token_accuracy: float
    exact_match: float


def evaluate(model, inputs, targets, batch_size=500) -> Metrics:
    """Loss, token accuracy and whole-sequence exact match of ``model`` on held-out data."""
    was_training = model.training
    model.eval()
    losses, right_tokens, right_rows = [], 0, 0
    with tg.no_grad():
        for start in range(0, len(inputs), batch_size):
            x, y = inputs[start:start + batch_size], targets[start:start + batch_size]
            logits = model(x)
            losses.append(nn.functional.cross_entropy(logits, y, reduction="sum").item())
            hits = logits.data.argmax(axis=-1) == y
            right_tokens += int(hits.sum())
            right_rows += int(hits.all(axis=1).sum())
    model.train(was_training)
    return Metrics(loss=sum(losses) / targets.size, token_accuracy=right_tokens / targets.size,
                   exact_match=right_rows / len(inputs))


@dataclass
class TrainResult:
    """What a run produced: the model, its final metrics and its history."""

    model: DANNTransformer
    metrics: Metrics
    steps: int
    seconds: float
    history: list = field(default_factory=list)  # rows of (step, loss, lr)
    evals: list = field(default_factory=list)  # rows of (step, loss, token_acc, exact)


def train(config: TrainConfig, out_dir=None, resume=False, progress=True) -> TrainResult:
    """Train a model as ``config`` says; checkpoint into ``out_dir`` and resume from it."""
    tg.reuse_freed_memory()  # a step's temporaries reuse the last step's pages
    spec = config.spec()
    (held_inputs, held_targets), (val_inputs, val_targets) = _unseen_sets(config)
    stream_exclude = tasks.SequenceSet(spec, np.concatenate([held_inputs, val_inputs]))

    model = build_model(config)
    optimizer = optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = optim.WarmupCosine(optimizer, config.warmup, max(config.steps, config.warmup + 1))
    state = {"step": 0, "history": [], "evals": [], "seconds": 0.0}
    if resume:
        _restore(out_dir, config, model, optimizer, schedule, state)

    started = time.perf_counter() - state["seconds"]
    bar = _Progress(config.steps, state["step"], progress)
    step = state["step"]
    while step < config.steps and not state.get("stopped"):
        inputs, targets = tasks.batch_at(spec, config.batch_size, config.seed, step,
                                         stream_exclude)
        loss, accuracy = _train_step(model, optimizer, inputs, targets, config.clip)
        state["history"].append((step, loss, optimizer.param_groups[0]["lr"]))
        schedule.step()
        step += 1
        bar.update(1, loss, accuracy)

        if step % config.eval_every == 0 or step == config.steps:
            metrics = evaluate(model, val_inputs, val_targets)
            state["evals"].append((step, metrics.loss, metrics.token_accuracy,
                                   metrics.exact_match))
            bar.note(f"step {step}: validation exact match {metrics.exact_match:.4f}")
            state["stopped"] = _reached(state["evals"], config.stop_at)
            if out_dir is not None:
                state["step"], state["seconds"] = step, time.perf_counter() - started
                save_checkpoint(out_dir, config, model, optimizer, schedule, state)
    bar.close()

    metrics = evaluate(model, held_inputs, held_targets)
    return TrainResult(model=model, metrics=metrics, steps=step,
                       seconds=time.perf_counter() - started, history=state["history"],
                       evals=state["evals"])


def _reached(evals, stop_at, times=2) -> bool:
    """Whether the last ``times`` validation exact matches all reached ``stop_at``.

    One lucky evaluation of a small validation set stops too early; two in a row rarely do.
    """
    recent = [row[3] for row in evals[-times:]]
    return stop_at is not None and len(recent) == times and min(recent) >= stop_at


_WARNED = set()  # (spec, size) pairs whose shrunken test set was already reported


def held_out_set(config: TrainConfig):
    """The test sequences the final metrics are measured on; training never sees them."""
    return _unseen_sets(config)[0]


def _unseen_sets(config: TrainConfig):
    """(test, validation): distinct sequences excluded from training.

    Early stopping (``stop_at``) and the periodic evaluations look at the validation set only,
    so the test set's figures are not chosen by looking at them. Each shrinks to a share of a
    small sequence space.
    """
    spec = config.spec()
    test = min(config.eval_size, spec.n_sequences // 2)
    val = min(config.val_size, (spec.n_sequences - test) // 2)
    if test < config.eval_size and (spec, test) not in _WARNED:
        _WARNED.add((spec, test))
        log.warning("only %d sequences exist; holding out %d for test instead of %d",
                    spec.n_sequences, test, config.eval_size)
    inputs, targets = tasks.held_out(spec, n=test + val, seed=config.seed + 12345)
    return (inputs[:test], targets[:test]), (inputs[test:], targets[test:])


def _train_step(model, optimizer, inputs, targets, clip):
    """One forward, backward and AdamW update; returns the batch loss and token accuracy."""
    logits = model(inputs)
    loss = nn.functional.cross_entropy(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    optim.clip_grad_norm(model.parameters(), clip)
    optimizer.step()
    accuracy = float((logits.data.argmax(axis=-1) == targets).mean())
    return loss.item(), accuracy


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(out_dir, config, model, optimizer, schedule, state):
    """Write model, optimiser, schedule and progress atomically to ``out_dir/checkpoint.npz``."""
    os.makedirs(out_dir, exist_ok=True)
    save({
        "config": dataclasses.asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "step": state["step"],
        "seconds": state["seconds"],
        "stopped": bool(state.get("stopped", False)),
        "history": [list(row) for row in state["history"]],
        "evals": [list(row) for row in state["evals"]],
    }, os.path.join(out_dir, CHECKPOINT))


def _restore(out_dir, config, model, optimizer, schedule, state):
    """Load a checkpoint into the fresh objects; its config must match the run's."""
    path = os.path.join(out_dir or ".", CHECKPOINT)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    saved = load(path)
    mismatched = {key: (value, saved["config"].get(key))
                  for key, value in dataclasses.asdict(config).items()
                  if key not in ("eval_every", "stop_at")
                  and saved["config"].get(key) != value}
    if mismatched:
        raise CheckpointError(f"{path}: checkpoint was made with another configuration "
                              f"(run value, checkpoint value): {mismatched}")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    state.update(step=int(saved["step"]), seconds=float(saved["seconds"]),
                 stopped=bool(saved.get("stopped", False)),
                 history=[tuple(row) for row in saved["history"]],
                 evals=[tuple(row) for row in saved["evals"]])
    log.info("resumed from %s at step %d", path, state["step"])


# ---------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar with the running loss and accuracy; log lines when tqdm is not installed."""

    def __init__(self, total, initial, enabled):
        self.bar = None
        self.smoothed = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                log.info("tqdm is not installed (pip install tqdm); logging progress instead")
            else:
                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self.step = initial
        self.total = total

    def update(self, n, loss, accuracy):
        self.step += n
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{self.smoothed:.3f}", acc=f"{accuracy:.3f}",
                                 refresh=False)
        elif self.step % max(1, self.total // 20) == 0:
            log.info("step %d/%d loss %.4f accuracy %.3f", self.step, self.total,
                     self.smoothed, accuracy)

    def note(self, message):
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.info(message)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def steps_to_reach(evals, threshold=0.99):
    """The first evaluated step whose exact match reached ``threshold``, else None."""
    for step, _, _, exact in evals:
        if exact >= threshold:
            return int(step)
    return None


def chance(config: TrainConfig) -> float:
    """The loss of a uniform guess over the data tokens, ln(V - 1)."""
    return math.log(config.vocab - 1)
