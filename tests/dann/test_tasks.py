"""Tests for dann.tasks: targets, token range, determinism, held-out hygiene, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dann.tasks import (
    TASKS,
    SequenceSet,
    TaskSpec,
    TrainStream,
    batch_at,
    chance_loss,
    held_out,
    make_batch,
)

# Independent, pure-Python statements of each task.
REFERENCE = {
    "reverse": lambda seq: seq[::-1],
    "copy": lambda seq: list(seq),
    "sort": sorted,
}

specs = st.builds(
    TaskSpec,
    name=st.sampled_from(sorted(TASKS)),
    vocab=st.integers(3, 40),
    length=st.integers(1, 20),
)


def test_every_task_has_a_reference():
    assert set(TASKS) == set(REFERENCE)


# ---- targets and token range -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(spec=specs, batch_size=st.integers(0, 16), seed=st.integers(0, 2**32))
def test_targets_match_reference(spec, batch_size, seed):
    inputs, targets = make_batch(spec, batch_size, np.random.default_rng(seed))

    assert inputs.shape == targets.shape == (batch_size, spec.length)
    assert inputs.dtype == targets.dtype == np.int64
    for x, y in zip(inputs.tolist(), targets.tolist()):
        assert y == REFERENCE[spec.name](x)


@settings(max_examples=60, deadline=None)
@given(spec=specs, seed=st.integers(0, 2**32), step=st.integers(0, 10**6))
def test_tokens_in_data_range(spec, seed, step):
    inputs, targets = batch_at(spec, 32, seed, step)

    for array in (inputs, targets):
        assert array.min() >= 1 and array.max() <= spec.vocab - 1


def test_every_data_token_appears():
    inputs, _ = make_batch(TaskSpec("copy", 10, 16), 64, np.random.default_rng(0))
    assert set(np.unique(inputs).tolist()) == set(range(1, 10))


def test_targets_do_not_alias_inputs():
    for name in TASKS:
        inputs, targets = make_batch(TaskSpec(name, 10, 5), 4, np.random.default_rng(0))
        before = inputs.copy()
        targets[...] = 0
        np.testing.assert_array_equal(inputs, before)


def test_chance_loss_is_uniform_cross_entropy():
    spec = TaskSpec("reverse", 10, 8)
    uniform = np.full(spec.vocab - 1, 1 / (spec.vocab - 1))
    assert chance_loss(spec) == pytest.approx(-np.log(uniform[0]))
    assert chance_loss(spec) == pytest.approx(np.log(9))


# ---- determinism -----------------------------------------------------------------------------


def test_make_batch_deterministic_by_seed():
    spec = TaskSpec("sort", 10, 12)
    a = make_batch(spec, 8, np.random.default_rng(7))
    b = make_batch(spec, 8, np.random.default_rng(7))
    c = make_batch(spec, 8, np.random.default_rng(8))

    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_batch_at_is_pure():
    spec = TaskSpec("reverse", 10, 8)
    exclude, _ = held_out(spec, 100)
    first = batch_at(spec, 16, 3, 41, exclude)

    batch_at(spec, 16, 3, 40, exclude)  # unrelated calls leave no state behind
    np.random.seed(0)
    again = batch_at(spec, 16, 3, 41, SequenceSet(spec, exclude))

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], batch_at(spec, 16, 3, 42, exclude)[0])
    assert not np.array_equal(first[0], batch_at(spec, 16, 4, 41, exclude)[0])


def test_stream_is_deterministic_and_resumable():
    spec = TaskSpec("sort", 10, 6)
    exclude, _ = held_out(spec, 500)
    stream = TrainStream(spec, 8, seed=5, exclude=exclude)
    run = [next(stream) for _ in range(20)]
    assert stream.step == 20

    fresh = TrainStream(spec, 8, seed=5, exclude=exclude)
    np.testing.assert_array_equal(next(fresh)[0], run[0][0])

    resumed = TrainStream(spec, 8, seed=5, exclude=exclude, start=13)
    for step in range(13, 20):
        x, y = next(resumed)
        np.testing.assert_array_equal(x, run[step][0])
        np.testing.assert_array_equal(y, run[step][1])
        np.testing.assert_array_equal(x, batch_at(spec, 8, 5, step, exclude)[0])


# ---- held-out set ----------------------------------------------------------------------------


@pytest.mark.parametrize("vocab, length, n", [(3, 4, 16), (3, 4, 10), (10, 16, 2000),
                                              (100, 16, 500), (5, 3, 64)])
def test_held_out_distinct_and_deterministic(vocab, length, n):
    spec = TaskSpec("reverse", vocab, length)
    inputs, targets = held_out(spec, n)

    assert inputs.shape == targets.shape == (n, length)
    assert inputs.dtype == targets.dtype == np.int64
    assert len({tuple(row) for row in inputs.tolist()}) == n
    assert inputs.min() >= 1 and inputs.max() <= vocab - 1
    for x, y in zip(inputs.tolist(), targets.tolist()):
        assert y == x[::-1]
    np.testing.assert_array_equal(inputs, held_out(spec, n)[0])
    assert not np.array_equal(inputs, held_out(spec, n, seed=1)[0]) or n == spec.n_sequences


def test_held_out_too_large_is_an_error():
    spec = TaskSpec("copy", 3, 4)
    held_out(spec, 16)
    with pytest.raises(ValueError, match="exceeds the 16 distinct sequences"):
        held_out(spec, 17)


def test_held_out_is_not_biased_to_low_tokens():
    inputs, _ = held_out(TaskSpec("copy", 10, 16), 2000)
    counts = np.bincount(inputs.ravel(), minlength=10)[1:]
    assert counts.min() > 0.8 * counts.mean()


# ---- training batches avoid the held-out set -------------------------------------------------


@pytest.mark.parametrize("vocab, length, n", [(3, 4, 8), (3, 4, 15), (4, 3, 20)])
def test_stream_never_yields_held_out(vocab, length, n):
    spec = TaskSpec("sort", vocab, length)
    inputs, _ = held_out(spec, n)
    banned = {tuple(row) for row in inputs.tolist()}
    seen = set()

    for _, (x, y) in zip(range(300), TrainStream(spec, 32, seed=0, exclude=inputs)):
        rows = {tuple(row) for row in x.tolist()}
        assert not rows & banned
        seen |= rows
        assert [sorted(row) for row in x.tolist()] == y.tolist()

    assert len(seen) == spec.n_sequences - n  # every allowed sequence still turns up


def test_sequence_set_byte_fallback_agrees():
    spec = TaskSpec("copy", 100, 16)  # 100 ** 16 overflows int64, so rows are hashed
    inputs, _ = held_out(spec, 50)
    members = SequenceSet(spec, inputs[:25])
    expected = np.arange(50) < 25

    np.testing.assert_array_equal(members.contains(inputs), expected)
    x, _ = batch_at(spec, 64, 0, 0, inputs)
    assert not SequenceSet(spec, inputs).contains(x).any()


def test_sequence_set_empty_and_duplicates():
    spec = TaskSpec("copy", 3, 2)
    assert not SequenceSet(spec, np.empty((0, 2), np.int64)).contains([[1, 2]]).any()
    assert len(SequenceSet(spec, [[1, 2], [1, 2], [2, 1]])) == 2


def test_excluding_everything_is_an_error():
    spec = TaskSpec("copy", 3, 2)
    everything, _ = held_out(spec, 4)
    with pytest.raises(ValueError, match="none is left"):
        batch_at(spec, 4, 0, 0, everything)


# ---- errors ----------------------------------------------------------------------------------


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="unknown task 'rotate'.*copy, reverse, sort"):
        TaskSpec("rotate", 10, 8)


@pytest.mark.parametrize("vocab", [2, 0, -1, 3.0, True])
def test_bad_vocab(vocab):
    with pytest.raises(ValueError, match="vocab must be an int >= 3"):
        TaskSpec("copy", vocab, 8)


@pytest.mark.parametrize("length", [0, -3, 2.5])
def test_bad_length(length):
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        TaskSpec("copy", 10, length)


def test_bad_counts_and_shapes():
    spec = TaskSpec("copy", 10, 4)
    with pytest.raises(ValueError, match="batch_size"):
        make_batch(spec, -1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="step"):
        batch_at(spec, 4, 0, -1)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        SequenceSet(spec, np.ones((3, 5), np.int64))


def test_spec_is_frozen_and_hashable():
    spec = TaskSpec("copy", 10, 4)
    with pytest.raises(AttributeError):
        spec.vocab = 11
    assert {spec: 1}[TaskSpec("copy", 10, 4)] == 1
