"""The Tensor: constructors, dtype rules, conversions, repr and comparisons."""

import numpy as np
import pytest

import tensorgrad as tg


# ---------------------------------------------------------------- constructors


def test_tensor_wraps_data_with_numpy_dtypes():
    assert tg.tensor([1.0, 2.5]).dtype == np.float64
    assert tg.tensor(2.5).shape == () and tg.tensor(2.5).ndim == 0
    assert tg.tensor([[1, 2, 3]]).dtype.kind == "i"
    assert tg.tensor([True, False]).dtype == np.bool_
    assert tg.tensor([1, 2], dtype=np.float32).dtype == np.float32
    t = tg.tensor(np.zeros((2, 3)))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3), 2, 6, 2)
    assert t.grad is None and not t.requires_grad and t.is_leaf


def test_tensor_of_a_tensor_is_a_copy():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor(a)
    b.data[0] = 5.0
    assert a.data[0] == 1.0 and not b.requires_grad


def test_object_data_is_refused():
    with pytest.raises(tg.DtypeError):
        tg.tensor({"a": 1})


def test_zeros_ones_and_likes():
    np.testing.assert_array_equal(tg.zeros(2, 3).data, np.zeros((2, 3)))
    np.testing.assert_array_equal(tg.ones((3,)).data, np.ones(3))
    assert tg.zeros(2, dtype=np.float32).dtype == np.float32
    assert tg.ones(2, requires_grad=True).requires_grad
    like = tg.zeros_like(tg.ones((2, 2), dtype=np.float32))
    assert like.shape == (2, 2) and like.dtype == np.float32 and like.data.sum() == 0
    assert tg.ones_like(np.zeros((3, 1), dtype=np.float32)).data.sum() == 3
    assert tg.ones_like(np.zeros((3, 1), dtype=np.float32)).dtype == np.float32


def test_randn_is_seeded_by_an_int_or_a_generator():
    a = tg.randn(3, 4, rng=7)
    b = tg.randn((3, 4), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.data, np.random.default_rng(7).standard_normal((3, 4)))
    assert not np.array_equal(a.data, tg.randn(3, 4, rng=8).data)
    rng = np.random.default_rng(0)
    assert not np.array_equal(tg.randn(2, rng=rng).data, tg.randn(2, rng=rng).data)
    assert tg.randn(2, rng=0, dtype=np.float32).dtype == np.float32


def test_arange_follows_numpy():
    np.testing.assert_array_equal(tg.arange(5).data, np.arange(5))
    np.testing.assert_array_equal(tg.arange(1.0, 2.0, 0.25).data, [1.0, 1.25, 1.5, 1.75])
    assert tg.arange(3, dtype=np.float32).dtype == np.float32


# ---------------------------------------------------------------- dtype rules


def test_integer_and_bool_tensors_cannot_require_grad():
    with pytest.raises(tg.DtypeError, match="int64"):
        tg.tensor([1, 2], requires_grad=True)
    with pytest.raises(tg.DtypeError, match="bool"):
        tg.tensor([True]).requires_grad_()
    with pytest.raises(tg.DtypeError):
        tg.arange(3, requires_grad=True)


def test_float32_stays_float32_with_python_scalars():
    x = tg.tensor([0.5, 1.5], dtype=np.float32, requires_grad=True)
    results = [x * 2.0, 2.0 - x, x / 3, 1 / x, x**2, x**0.5, 2.0**x, x + 1, -x,
               tg.maximum(x, 1.0), tg.where(x.data > 1, x, 0.0), x.sum() * 0.1]
    for y in results:
        assert y.dtype == np.float32, y
    sum(y.sum() for y in results).backward()
    assert x.grad.dtype == np.float32


def test_mixed_float32_and_float64_promote_and_grads_keep_each_dtype():
    a = tg.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = tg.tensor(np.arange(3.0), requires_grad=True)
    y = (a * b).sum()
    assert y.dtype == np.result_type(np.float32, np.float64) == np.float64
    y.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, np.broadcast_to(np.arange(3.0), (2, 3)))
    np.testing.assert_allclose(b.grad, [2.0, 2.0, 2.0])


def test_astype_round_trips_the_gradient_dtype():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


# ---------------------------------------------------------------- conversions and repr


def test_item_numpy_float_and_int():
    assert tg.tensor([[3.5]]).item() == 3.5
    assert float(tg.tensor(2.0)) == 2.0 and int(tg.tensor(7)) == 7
    with pytest.raises(ValueError, match=r"\(2,\)"):
        tg.tensor([1.0, 2.0]).item()
    t = tg.tensor([1.0, 2.0])
    assert t.numpy() is t.data


def test_detach_gives_a_leaf_without_grad_over_the_same_data():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2.0).detach()
    assert not y.requires_grad and y.is_leaf
    np.testing.assert_array_equal(y.data, [2.0, 4.0])
    z = (y * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])  # no path through the detached y


def test_repr_is_readable():
    assert repr(tg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tg.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    assert "op=mul" in repr(x * 2.0)
    assert "dtype=float32" in repr(tg.tensor([1.0], dtype=np.float32))
    assert "dtype=int64" in repr(tg.tensor([1, 2]))


def test_iteration_yields_differentiable_rows():
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    rows = list(x)
    assert [r.shape for r in rows] == [(2,), (2,)]
    (rows[0] * rows[1]).sum().backward()
    np.testing.assert_array_equal(x.grad, [[3.0, 4.0], [1.0, 2.0]])


# ---------------------------------------------------------------- comparisons


@pytest.mark.parametrize("compare, expected", [
    (lambda a, b: a < b, [True, False, False]),
    (lambda a, b: a <= b, [True, True, False]),
    (lambda a, b: a > b, [False, False, True]),
    (lambda a, b: a >= b, [False, True, True]),
    (lambda a, b: a == b, [False, True, False]),
    (lambda a, b: a != b, [True, False, True]),
])
def test_comparisons_give_bool_tensors_without_grad(compare, expected):
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for other in (2.0, tg.tensor([2.0, 2.0, 2.0], requires_grad=True), np.full(3, 2.0)):
        result = compare(x, other)
        assert isinstance(result, tg.Tensor)
        assert result.dtype == np.bool_ and not result.requires_grad and result._record is None
        np.testing.assert_array_equal(result.data, expected)


def test_tensors_stay_hashable_despite_elementwise_eq():
    a, b = tg.tensor(1.0), tg.tensor(1.0)
    assert len({a, b}) == 2 and {a: 1}[a] == 1


def test_integer_inputs_are_promoted_by_float_ops_not_truncated():
    ints = tg.tensor([-2, 1, 3])
    floats = tg.tensor([-2.0, 1.0, 3.0])
    for fn in (tg.sigmoid, tg.gelu, tg.erf, lambda t: tg.leaky_relu(t, 0.1)):
        np.testing.assert_allclose(fn(ints).data, fn(floats).data)
    logits = np.array([[1, 2, 3]])
    expected = np.log(np.exp(logits).sum()) - 1
    np.testing.assert_allclose(tg.nn.functional.cross_entropy(tg.tensor(logits), [0]).item(),
                               expected)


def test_requires_grad_assignment_is_checked_and_integer_results_carry_no_grad():
    with pytest.raises(tg.DtypeError, match="only floating-point"):
        tg.tensor([1, 2, 3]).requires_grad = True
    z = tg.tensor([1.5, 2.5], requires_grad=True)
    assert not z.astype(np.int64).requires_grad
    assert (z * 2).requires_grad
