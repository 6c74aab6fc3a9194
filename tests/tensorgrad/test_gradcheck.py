"""gradcheck and gradgradcheck: they pass right gradients and catch wrong ones.

The wrong ones come from throwaway ops built with ``Op(...)`` directly, so they never enter
the global ``OPS`` table that the property tests walk.
"""

import re

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.ops import OPS
from tensorgrad.ops.registry import Op
from tensorgrad.tensor import Tensor


def leaf(values, dtype=np.float64):
    return tg.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def _square(x):
    return np.square(x)


def _scaled_product(x, y):
    return x * y * 3.0


# d/dx x^2 = 2x, but this VJP forgets the 2.
half_square = Op("half_square_test", _square, vjp=lambda g, out, x: (g * x,), inputs=("x",))

# Right for x; for y it gives 3 g x + 1, off by one everywhere.
off_by_one = Op("off_by_one_test", _scaled_product, inputs=("x", "y"),
                vjp=lambda g, out, x, y: (g * y * 3.0, g * x * 3.0 + 1.0))

# First order right (2 g x), but x enters as a constant, so d/dx of the VJP is lost.
frozen_square = Op("frozen_square_test", _square, inputs=("x",),
                   vjp=lambda g, out, x: (g * 2.0 * Tensor(x.data.copy()),))


def test_throwaway_ops_stay_out_of_the_registry():
    for bad in (half_square, off_by_one, frozen_square):
        assert bad.name not in OPS


def test_gradcheck_returns_true_on_correct_gradients():
    x, y = leaf([[0.3, -1.2], [2.0, 0.7]]), leaf([0.5, 1.5])
    assert tg.gradcheck(lambda a: (a * a).sum(), [x]) is True
    assert tg.gradcheck(lambda a, b: (a @ b).tanh(), [x, y]) is True  # non-scalar output
    assert tg.gradgradcheck(lambda a, b: (a * b).exp().sum(axis=0), [x, y]) is True


def test_gradcheck_checks_only_inputs_that_require_grad():
    x, c = leaf([1.0, 2.0]), tg.tensor([3.0, 4.0])
    assert tg.gradcheck(lambda a, b: off_by_one(a, b).sum(), [x, c])  # y's grad is unchecked
    with pytest.raises(tg.GradcheckError, match="nothing to check"):
        tg.gradcheck(lambda a: a * 2.0, [c])


def _parse(message):
    found = re.search(r"input (\d+), entry \(([\d, ]*)\): analytic (?:np\.float64\()?([-\d.e+]+)"
                      r"\)? vs numerical (?:np\.float64\()?([-\d.e+]+)", message)
    assert found, message
    index, entry, analytic, numeric = found.groups()
    entry = tuple(int(e) for e in entry.split(",") if e.strip())
    return int(index), entry, float(analytic), float(numeric)


def test_gradcheck_names_the_input_the_worst_entry_and_both_values():
    x = leaf([[0.5, -3.0], [1.0, 2.0]])
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a: half_square(a).sum(), [x])
    index, entry, analytic, numeric = _parse(str(info.value))
    assert (index, entry) == (0, (0, 1))  # the error |x| is largest at x = -3
    assert analytic == pytest.approx(-3.0) and numeric == pytest.approx(-6.0, rel=1e-6)


def test_gradcheck_names_the_second_input_when_only_it_is_wrong():
    x, y = leaf([1.0, -2.0, 0.5]), leaf([0.3, 0.2, -0.1])
    with pytest.raises(tg.GradcheckError) as info:
        tg.gradcheck(lambda a, b: off_by_one(a, b).sum(), [x, y])
    index, entry, analytic, numeric = _parse(str(info.value))
    assert index == 1 and len(entry) == 1
    assert analytic == pytest.approx(numeric + 1.0, rel=1e-6)
    assert numeric == pytest.approx(3.0 * x.data[entry], rel=1e-6)


def test_gradcheck_catches_a_wrong_vjp_behind_a_random_projection():
    x = leaf([[0.5, -1.0, 2.0]])
    with pytest.raises(tg.GradcheckError, match="input 0"):
        tg.gradcheck(lambda a: half_square(a) * 2.0, [x])  # non-scalar output


def test_gradgradcheck_catches_a_wrong_second_derivative():
    x = leaf([0.5, -1.0, 2.0])
    fn = lambda a: (frozen_square(a) * a).sum()  # noqa: E731  (x^3: second derivative 6x)
    assert tg.gradcheck(fn, [x])
    with pytest.raises(tg.GradcheckError, match="input 0"):
        tg.gradgradcheck(fn, [x])
    assert tg.gradgradcheck(lambda a: (a * a * a).sum(), [x])


def test_gradcheck_works_in_float64_for_float32_inputs_and_leaves_them_alone():
    x = leaf([0.1, 0.2, 0.3], dtype=np.float32)
    before = x.data.copy()
    assert tg.gradcheck(lambda a: (a.exp() * 1000.0).sum(), [x])  # too fine for float32 FD
    np.testing.assert_array_equal(x.data, before)
    assert x.grad is None and x.dtype == np.float32


def test_gradcheck_reports_a_nan_gradient():
    x = leaf([0.0, 1.0])
    with pytest.raises(tg.GradcheckError, match="entry \\(0,\\)"), np.errstate(all="ignore"):
        tg.gradcheck(lambda a: (a.sqrt() * 0.0).sum(), [x])  # analytic 0 * inf = nan


def test_gradcheck_passes_when_the_output_ignores_the_input():
    x = leaf([1.0, 2.0])
    assert tg.gradcheck(lambda a: tg.tensor(3.0), [x])


def test_gradcheck_needs_a_tensor_output():
    with pytest.raises(tg.GradcheckError, match="must return a Tensor"):
        tg.gradcheck(lambda a: 1.0, [leaf([1.0])])


@pytest.mark.parametrize("wrong", [
    lambda g, out, x: (g.sum(axis=0),),  # too few axes
    lambda g, out, x: (g.reshape(-1),),  # the right size, flattened: must not be reshaped back
    lambda g, out, x: (g.reshape(-1, 1) * np.ones(3),),  # broadcasts, but not down to x
])
def test_a_vjp_of_the_wrong_shape_is_a_shape_error(wrong):
    wrong_shape = Op("wrong_shape_test", _square, inputs=("x",), vjp=wrong)
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(tg.ShapeError, match=r"^wrong_shape_test: VJP gave shape \("):
        wrong_shape(x).sum().backward()


def test_gradcheck_fails_when_the_numerical_derivative_is_nan():
    # sqrt is undefined at 1e-7 - eps, so finite differences cannot confirm any value there.
    wrong = Op("wrong_sqrt_test", np.sqrt, inputs=("x",), vjp=lambda g, out, x: (g * 100.0,))
    x = leaf([1e-7])
    with pytest.raises(tg.GradcheckError, match="numerical np.float64\\(nan\\)"):
        with np.errstate(invalid="ignore"):
            tg.gradcheck(lambda a: wrong(a).sum(), [x])
