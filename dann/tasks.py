"""Seeded sequence-to-sequence toy tasks: reverse, copy and sort.

Token 0 is reserved for padding; data tokens are drawn uniformly from 1..vocab-1. A task is a
target function in `TASKS`, so adding one is a single entry. Every batch is a pure function of
(spec, batch_size, seed, step), which makes training resumable at any step with identical data,
and training batches never contain a sequence of the held-out set.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

# ---- tasks -----------------------------------------------------------------------------------

TargetFn = Callable[[np.ndarray], np.ndarray]

TASKS: dict[str, TargetFn] = {
    "reverse": lambda inputs: inputs[:, ::-1].copy(),
    "copy": lambda inputs: inputs.copy(),
    "sort": lambda inputs: np.sort(inputs, axis=1),
}


@dataclass(frozen=True)
class TaskSpec:
    """Which task, over how many tokens (including the reserved 0), at what sequence length."""

    name: str
    vocab: int
    length: int

    def __post_init__(self):
        if self.name not in TASKS:
            known = ", ".join(sorted(TASKS))
            raise ValueError(f"unknown task {self.name!r}; known tasks: {known}")
        if not _is_int(self.vocab) or self.vocab < 3:
            raise ValueError(
                f"vocab must be an int >= 3 (token 0 is reserved, so at least two data tokens),"
                f" got {self.vocab!r}"
            )
        if not _is_int(self.length) or self.length < 1:
            raise ValueError(f"length must be an int >= 1, got {self.length!r}")

    @property
    def n_sequences(self) -> int:
        """How many distinct input sequences exist: (vocab-1) ** length, as an exact int."""
        return (self.vocab - 1) ** self.length

    def targets(self, inputs: np.ndarray) -> np.ndarray:
        """The task's targets for a (B, T) array of inputs."""
        return TASKS[self.name](inputs)


def chance_loss(spec: TaskSpec) -> float:
    """The "chance" baseline: cross-entropy in nats of a uniform guess over the data tokens."""
    return float(np.log(spec.vocab - 1))


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_count(what: str, n) -> None:
    if not _is_int(n) or n < 0:
        raise ValueError(f"{what} must be an int >= 0, got {n!r}")


# ---- sets of sequences -----------------------------------------------------------------------


class SequenceSet:
    """A set of (T,) sequences with a vectorised membership test for (B, T) arrays.

    Each sequence is encoded as one integer in base `vocab` when vocab ** length fits in int64,
    so a lookup is one `searchsorted`; otherwise rows are hashed as bytes.
    """

    def __init__(self, spec: TaskSpec, sequences: np.ndarray):
        sequences = _as_rows(spec, sequences, "sequences")
        self.spec = spec
        if spec.vocab**spec.length <= 2**63:
            self._powers = spec.vocab ** np.arange(spec.length - 1, -1, -1, dtype=np.int64)
            self._codes = np.unique(sequences @ self._powers)
            self._bytes = None
        else:
            self._powers = None
            self._bytes = {row.tobytes() for row in sequences}

    def __len__(self) -> int:
        return len(self._codes) if self._bytes is None else len(self._bytes)

    def contains(self, sequences: np.ndarray) -> np.ndarray:
        """A (B,) bool mask: which rows of `sequences` are in the set."""
        sequences = _as_rows(self.spec, sequences, "sequences")
        if self._bytes is not None:
            return np.fromiter((row.tobytes() in self._bytes for row in sequences), bool,
                               count=len(sequences))
        if len(self._codes) == 0:
            return np.zeros(len(sequences), bool)
        codes = sequences @ self._powers
        where = np.searchsorted(self._codes, codes).clip(max=len(self._codes) - 1)
        return self._codes[where] == codes


def _as_rows(spec: TaskSpec, sequences: np.ndarray, what: str) -> np.ndarray:
    sequences = np.ascontiguousarray(sequences, dtype=np.int64)
    if sequences.ndim != 2 or sequences.shape[1] != spec.length:
        raise ValueError(f"{what} must have shape (N, {spec.length}), got {sequences.shape}")
    return sequences


# ---- held-out set ----------------------------------------------------------------------------


def held_out(spec: TaskSpec, n: int = 2000, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """A fixed evaluation set of `n` distinct sequences, deterministic given (spec, n, seed).

    Returns (inputs, targets), int64 arrays of shape (n, length).
    """
    _check_count("n", n)
    if n > spec.n_sequences:
        raise ValueError(
            f"held_out: n={n} exceeds the {spec.n_sequences} distinct sequences of"
            f" vocab={spec.vocab}, length={spec.length}"
        )
    rng = np.random.default_rng(seed)
    base = spec.vocab - 1

    if spec.n_sequences <= 2**62:
        # Pick n distinct indices into the space, then write each in base (vocab-1) digits.
        index = rng.choice(spec.n_sequences, size=n, replace=False).astype(np.int64)
        powers = base ** np.arange(spec.length - 1, -1, -1, dtype=np.int64)
        inputs = (index[:, None] // powers) % base + 1
    else:
        # The space is astronomically large: draw, and drop the (vanishingly rare) repeats.
        inputs = np.empty((0, spec.length), np.int64)
        while len(inputs) < n:
            more = rng.integers(1, spec.vocab, size=(n - len(inputs), spec.length))
            inputs = np.concatenate([inputs, more])
            _, first = np.unique(inputs, axis=0, return_index=True)
            inputs = inputs[np.sort(first)]

    inputs = inputs.astype(np.int64)
    return inputs, spec.targets(inputs).astype(np.int64)


# ---- training batches ------------------------------------------------------------------------


def make_batch(spec: TaskSpec, batch_size: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (inputs, targets) batch of int64 arrays of shape (batch_size, length) from `rng`."""
    _check_count("batch_size", batch_size)
    inputs = rng.integers(1, spec.vocab, size=(batch_size, spec.length), dtype=np.int64)
    return inputs, spec.targets(inputs)


def batch_at(spec: TaskSpec, batch_size: int, seed: int, step: int,
             exclude: SequenceSet | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training batch for `step`: a pure function of its arguments.

    Rows found in `exclude` (a SequenceSet, or an array of sequences such as the held-out
    inputs) are redrawn, so training never sees them. Pass a prebuilt SequenceSet in a loop.
    """
    _check_count("step", step)
    if exclude is not None and not isinstance(exclude, SequenceSet):
        exclude = SequenceSet(spec, exclude)
    if exclude is not None and len(exclude) >= spec.n_sequences:
        raise ValueError(f"exclude holds all {spec.n_sequences} sequences; none is left to draw")

    rng = np.random.default_rng([seed, step])
    inputs, _ = make_batch(spec, batch_size, rng)

    if exclude is not None:
        bad = np.flatnonzero(exclude.contains(inputs))
        while len(bad):
            inputs[bad] = rng.integers(1, spec.vocab, size=(len(bad), spec.length))
            bad = bad[exclude.contains(inputs[bad])]
    return inputs, spec.targets(inputs)


class TrainStream:
    """An infinite, seeded iterator of training batches that avoids `exclude`.

    Batch k is `batch_at(spec, batch_size, seed, k)`, so `TrainStream(..., start=k)` resumes a
    run at step k with identical data. `step` is the step of the next batch.
    """

    def __init__(self, spec: TaskSpec, batch_size: int, seed: int,
                 exclude: SequenceSet | np.ndarray | None = None, start: int = 0):
        _check_count("batch_size", batch_size)
        _check_count("start", start)
        if exclude is not None and not isinstance(exclude, SequenceSet):
            exclude = SequenceSet(spec, exclude)
        self.spec, self.batch_size, self.seed = spec, batch_size, seed
        self.exclude, self.step = exclude, start

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        batch = batch_at(self.spec, self.batch_size, self.seed, self.step, self.exclude)
        self.step += 1
        return batch
