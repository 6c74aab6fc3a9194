"""Property tests generated from the op registry: every op in ``tg.OPS`` against its case.

For each op, hypothesis draws cases from ``op_cases.CASES`` and checks the forward against an
independent NumPy reference, first derivatives against finite differences (``tg.gradcheck``),
second derivatives (``tg.gradgradcheck``), that float32 stays float32, that inputs are not
mutated and that gradients alias nothing. An op registered without a strategy fails the suite.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tensorgrad as tg
from tensorgrad.ops import OPS
from op_cases import CASES, arrays, broadcasting, distinct, floats, shapes

NAMES = sorted(OPS)


def test_every_registered_op_has_a_strategy():
    assert set(OPS) == set(CASES), (
        f"ops without a case: {sorted(set(OPS) - set(CASES))}; "
        f"cases without an op: {sorted(set(CASES) - set(OPS))}"
    )


def _leaves(case, dtype=np.float64):
    return [tg.tensor(a.astype(dtype), requires_grad=True) for a in case.arrays]


def _seed(out, seed=0):
    """A random cotangent for ``out`` (any shape), in its dtype."""
    return np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_forward_matches_reference(name, data):
    case = data.draw(CASES[name])
    out = case.call(OPS[name], *[tg.tensor(a) for a in case.arrays])
    expected = np.asarray(case.reference(*case.arrays))

    assert isinstance(out, tg.Tensor)
    assert out.shape == expected.shape
    assert out.dtype == case.out_dtype(np.dtype(np.float64))
    np.testing.assert_allclose(out.data, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_gradient_matches_finite_differences(name, data):
    case = data.draw(CASES[name])
    assert tg.gradcheck(lambda *ts: case.call(OPS[name], *ts), _leaves(case), **case.tolerances)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_second_derivative_matches_finite_differences(name, data):
    case = data.draw(CASES[name])
    fn = lambda *ts: case.call(OPS[name], *ts)  # noqa: E731
    assert tg.gradgradcheck(fn, _leaves(case), **case.tolerances)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_float32_stays_float32(name, data):
    case = data.draw(CASES[name])
    leaves = _leaves(case, np.float32)
    out = case.call(OPS[name], *leaves)
    assert out.dtype == case.out_dtype(np.dtype(np.float32))

    out.backward(_seed(out))
    for leaf in leaves:
        assert leaf.grad is not None
        assert leaf.grad.dtype == np.float32
        assert leaf.grad.shape == leaf.shape


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_inputs_are_not_mutated(name, data):
    case = data.draw(CASES[name])
    before = [a.copy() for a in case.arrays]
    leaves = [tg.tensor(a, requires_grad=True) for a in case.arrays]  # shares each array
    out = case.call(OPS[name], *leaves)
    out.backward(_seed(out))

    for a, b in zip(case.arrays, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_gradients_alias_nothing(name, data):
    case = data.draw(CASES[name])
    leaves = _leaves(case)
    out = case.call(OPS[name], *leaves)
    seed = _seed(out)
    out.backward(seed)

    arrays_seen = [seed, out.data] + [leaf.data for leaf in leaves]
    for leaf in leaves:
        assert leaf.grad.shape == leaf.shape and leaf.grad.dtype == leaf.dtype
        for other in arrays_seen:
            assert not np.shares_memory(leaf.grad, other)
        arrays_seen.append(leaf.grad)


# ---------------------------------------------------------------- composites and special cases


def _gradcheck_both_orders(fn, *arrays_):
    leaves = [tg.tensor(a, requires_grad=True) for a in arrays_]
    assert tg.gradcheck(fn, leaves)
    assert tg.gradgradcheck(fn, leaves)


@given(data=st.data())
def test_std_matches_numpy_and_its_gradients(data):
    x = data.draw(distinct(data.draw(shapes(min_dims=1).filter(lambda s: s[-1] > 1))))
    ddof = data.draw(st.sampled_from([0, 1]))
    out = tg.std(tg.tensor(x), axis=-1, ddof=ddof, keepdims=True)

    np.testing.assert_allclose(out.data, np.std(x, axis=-1, ddof=ddof, keepdims=True))
    _gradcheck_both_orders(lambda t: tg.std(t, axis=None, ddof=0), x)
    _gradcheck_both_orders(lambda t: t.std(axis=-1, ddof=ddof), x)


@given(data=st.data())
def test_split_swapaxes_transpose_and_flatten_gradients(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=2))))
    pieces = tg.split(tg.tensor(x), [1], axis=-1)
    for got, want in zip(pieces, np.split(x, [1], axis=-1)):
        np.testing.assert_array_equal(got.data, want)
    np.testing.assert_array_equal(tg.tensor(x).T.data, x.T)
    np.testing.assert_array_equal(tg.swapaxes(tg.tensor(x), 0, -1).data, np.swapaxes(x, 0, -1))

    matrix = x.reshape(x.shape[0], -1)
    weights = np.arange(matrix.size, dtype=np.float64).reshape(matrix.shape)
    _gradcheck_both_orders(lambda t: [p * p.sum() for p in tg.split(t, [1], axis=-1)][-1], x)
    _gradcheck_both_orders(lambda t: tg.swapaxes(t * t, 0, -1), x)
    _gradcheck_both_orders(lambda t: (t * weights).T @ t, matrix)
    _gradcheck_both_orders(lambda t: t.flatten() * t.flatten(), x)


def test_split_into_equal_sections():
    x = np.arange(12.0).reshape(2, 6)
    pieces = tg.split(tg.tensor(x), 3, axis=1)
    assert [p.shape for p in pieces] == [(2, 2)] * 3
    _gradcheck_both_orders(lambda t: tg.stack(tg.split(t * t, 3, axis=1))[::-1], x)


@given(sx=broadcasting(), c=floats(0.5, 2.0))
def test_scalars_on_either_side_of_sub_div_and_pow(sx, c):
    x = np.random.default_rng(0).uniform(0.5, 2.0, sx.input_shapes[0])
    cases = [
        (lambda t: c - t, c - x), (lambda t: t - c, x - c),
        (lambda t: c / t, c / x), (lambda t: t / c, x / c),
        (lambda t: t**c, np.exp(c * np.log(x))), (lambda t: c**t, np.exp(x * np.log(c))),
        (lambda t: t**2, x * x), (lambda t: 2**t, np.exp(x * np.log(2))),
        (lambda t: -t + c * t, (c - 1) * x),
    ]
    for fn, expected in cases:
        np.testing.assert_allclose(fn(tg.tensor(x)).data, expected, rtol=1e-12, atol=1e-12)
        _gradcheck_both_orders(fn, x)


def test_rpow_with_an_array_base():
    base = np.array([0.5, 1.5, 3.0])
    exponent = tg.tensor([1.0, -2.0, 0.5], requires_grad=True)
    out = base**exponent
    out.sum().backward()
    np.testing.assert_allclose(exponent.grad, base**exponent.data * np.log(base))


def test_tied_maxima_share_the_gradient_equally():
    x = tg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])

    y = tg.tensor([[-1.0, 4.0], [-1.0, 0.0]], requires_grad=True)
    tg.min(y).backward()
    np.testing.assert_allclose(y.grad, [[0.5, 0], [0.5, 0]])


def test_maximum_and_minimum_ties_split_half_and_half():
    for fn in (tg.maximum, tg.minimum):
        x = tg.tensor([1.0, 2.0, 5.0], requires_grad=True)
        y = tg.tensor([1.0, 3.0, 5.0], requires_grad=True)
        fn(x, y).sum().backward()
        x_wins = 0.0 if fn is tg.maximum else 1.0
        np.testing.assert_allclose(x.grad, [0.5, x_wins, 0.5])
        np.testing.assert_allclose(y.grad, [0.5, 1 - x_wins, 0.5])


def test_repeated_integer_indices_accumulate():
    x = tg.tensor([10.0, 20.0, 30.0], requires_grad=True)
    x[np.array([0, 2, 0, 0, -1])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 2.0])

    m = tg.tensor(np.zeros((2, 3)), requires_grad=True)
    (m[[1, 1], [2, 2]] * tg.tensor([1.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(m.grad, [[0, 0, 0], [0, 0, 5.0]])


def test_log_domain_ops_are_stable_for_huge_logits():
    logits = np.array([[1000.0, 1000.0, -1000.0], [-800.0, 0.0, 5.0]])
    x = tg.tensor(logits, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        lse = tg.logsumexp(x, axis=1)
        probs = OPS["softmax"](x)
        logp = OPS["log_softmax"](x)
        loss = OPS["cross_entropy"](x, np.array([2, 0]))
        (lse.sum() + (probs * probs).sum() + logp.sum() + loss).backward()
    np.testing.assert_allclose(lse.data, [1000 + np.log(2), 5 + np.log1p(np.exp(-5.0))])
    np.testing.assert_allclose(probs.data[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(logp.data[0], [-np.log(2), -np.log(2), -2000 - np.log(2)])
    np.testing.assert_allclose(loss.data, (2000 + np.log(2) + 805 + np.log1p(np.exp(-5.0)))
                               / 2, rtol=1e-6)
    assert np.isfinite(x.grad).all()
    np.testing.assert_array_equal(tg.sigmoid(tg.tensor([-1000.0, 1000.0])).data, [0.0, 1.0])


_UNARY_STEPS = {
    "sin": (lambda t: t.sin(), np.sin),
    "tanh": (lambda t: t.tanh(), np.tanh),
    "square": (lambda t: t * t, lambda a: a * a),
    "softplus": (lambda t: (t.exp() + 1.0).log(), lambda a: np.log1p(np.exp(a))),
    "sum_keep": (lambda t: t.sum(axis=-1, keepdims=True), lambda a: a.sum(-1, keepdims=True)),
    "flip": (lambda t: t[..., ::-1], lambda a: a[..., ::-1]),
}
_BINARY_STEPS = {
    "add": (lambda s, t: s + t, np.add),
    "mul": (lambda s, t: s * t, np.multiply),
    "sub": (lambda s, t: s - t, np.subtract),
}


@given(data=st.data())
def test_random_programs_reusing_values_differentiate_correctly(data):
    """Chains of ops where earlier values are reused: accumulation over many paths."""
    shape = data.draw(shapes(min_dims=1, max_dims=2).filter(lambda s: np.prod(s) <= 6))
    x0, y0 = data.draw(arrays(shape, floats(-1.5, 1.5))), data.draw(arrays(shape[-1:]))
    steps = data.draw(st.lists(st.tuples(
        st.sampled_from(sorted(_UNARY_STEPS) + sorted(_BINARY_STEPS)),
        st.integers(0, 100), st.integers(0, 100)), min_size=1, max_size=6))

    def run(x, y, pick):
        values = [x, y]
        for name, i, j in steps:
            a, b = values[i % len(values)], values[j % len(values)]
            if name in _UNARY_STEPS:
                values.append(pick(_UNARY_STEPS[name])(a))
            else:
                values.append(pick(_BINARY_STEPS[name])(a, b))
        return values[-1] * values[0]  # keep x in the result, so both inputs matter

    expected = run(x0, y0, lambda step: step[1])
    got = run(tg.tensor(x0), tg.tensor(y0), lambda step: step[0])
    np.testing.assert_allclose(got.data, expected, rtol=1e-10, atol=1e-12)
    fn = lambda x, y: run(x, y, lambda step: step[0])  # noqa: E731
    _gradcheck_both_orders(fn, x0, y0)
