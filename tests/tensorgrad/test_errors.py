"""Errors: raised at the op's call, naming the op and the shapes, all TensorgradErrors.

And ``detect_anomaly``: the first op whose forward or backward goes NaN or inf raises,
naming the op and the line of this file that created it.
"""

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import tape
from tensorgrad.ops import OPS


def test_matmul_names_the_op_and_both_shapes():
    with pytest.raises(tg.ShapeError) as info:
        tg.ones(3, 4) @ tg.ones(5, 2)
    assert str(info.value) == "matmul: shapes (3, 4) and (5, 2) are not aligned"


@pytest.mark.parametrize("fn, pattern", [
    (lambda: tg.ones(2, 3) + tg.ones(4), r"^add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
    (lambda: tg.ones(2, 3) * tg.ones(4, 1, 2), r"^mul: shapes \(2, 3\) and \(4, 1, 2\)"),
    (lambda: tg.maximum(tg.ones(2), tg.ones(3)), r"^maximum: shapes \(2,\) and \(3,\)"),
    (lambda: tg.where(np.ones(3, bool), tg.ones(2), 0.0), r"^where: shapes \(3,\) and \(2,\)"),
    (lambda: tg.ones(2, 3).broadcast_to((3, 3)), r"^broadcast_to: shapes \(2, 3\)"),
])
def test_broadcasting_mismatch_names_the_op_and_shapes(fn, pattern):
    with pytest.raises(tg.ShapeError, match=pattern):
        fn()


@pytest.mark.parametrize("fn, pattern", [
    (lambda: tg.ones(2, 3).sum(axis=2), r"^sum: axis 2 is out of range for a tensor with 2"),
    (lambda: tg.ones(2, 3).mean(axis=(0, 0)), r"^mean: repeated axis"),
    (lambda: tg.ones(2, 3).max(axis=-3), r"^max: axis -3"),
    (lambda: tg.ones(2, 3).var(axis=5), r"^var: axis 5"),
    (lambda: tg.ones(2, 3).logsumexp(axis=(0, 2)), r"^logsumexp: axis 2"),
    (lambda: tg.ones(2, 3).swapaxes(0, 2), r"^swapaxes: axis 2"),
    (lambda: tg.ones(2, 3).squeeze(0), r"^squeeze: axis 0 of shape \(2, 3\) is not of size 1"),
    (lambda: tg.ones(2, 3).transpose(0, 0), r"^transpose: axes \(0, 0\)"),
    (lambda: tg.ones(2, 3).expand_dims(4), r"^expand_dims: axis 4"),
    (lambda: OPS["softmax"](tg.ones(2, 3), axis=2), r"^softmax: axis 2"),
])
def test_bad_axis_names_the_op(fn, pattern):
    with pytest.raises(tg.ShapeError, match=pattern):
        fn()


@pytest.mark.parametrize("index, pattern", [
    (5, r"index 5 is out of bounds for axis 0 with size 2.*\(2, 3\)"),
    ((slice(None), 3), r"index 3 is out of bounds for axis 1"),
    (np.array([0, 7]), r"index 7 is out of bounds"),
    (np.array([0.5]), r"index arrays must be integer or bool, not float64"),
    (np.array([True]), r"boolean index did not match"),
    ((0, 0, 0), r"too many indices"),
])
def test_bad_index_names_getitem(index, pattern):
    x = tg.ones((2, 3), requires_grad=True)
    with pytest.raises(tg.ShapeError, match="^getitem: " + pattern):
        x[index]


@pytest.mark.parametrize("fn", [
    lambda: tg.ones(2, 3).reshape(4, 2),
    lambda: tg.concatenate([tg.ones(2, 3), tg.ones(3, 2)]),
    lambda: tg.stack([tg.ones(2, 3), tg.ones(3, 2)]),
    lambda: tg.stack([]),
    lambda: tg.concatenate(tg.ones(2, 3), tg.ones(2, 3)),  # not a list: refused, not iterated
    lambda: tg.split(tg.ones(2, 3), 2, axis=1),
    lambda: tg.ones(3) @ tg.tensor(2.0),
    lambda: OPS["cross_entropy"](tg.ones(3, 4), np.array([0, 1])),
    lambda: OPS["cross_entropy"](tg.ones(3, 4), np.array([0, 1, 4])),
    lambda: OPS["cross_entropy"](tg.ones(3, 4), np.array([0.0, 1.0, 2.0])),
    lambda: OPS["layer_norm"](tg.ones(3, 4), tg.ones(3)),
    lambda: OPS["linear"](tg.ones(3, 4), tg.ones(3, 3)),
    lambda: OPS["sparse_linear"](tg.ones(3, 4), tg.ones(2, 2), index=np.array([[0, 9], [1, 2]])),
    lambda: OPS["attention"](tg.ones(3, 4), tg.ones(2, 3), tg.ones(2, 4)),
    lambda: tg.ones(3) + "a",
    lambda: tg.tensor([1, 2], requires_grad=True),
    lambda: tg.ones(2).backward(),
    lambda: (tg.ones(2, requires_grad=True) * 2.0).backward(),
])
def test_every_bad_call_is_a_tensorgrad_error_naming_what_failed(fn):
    with pytest.raises(tg.TensorgradError) as info:
        fn()
    message = str(info.value)
    assert ":" in message and "Traceback" not in message


def test_the_error_hierarchy():
    for error in (tg.ShapeError, tg.DtypeError, tg.BackwardError, tg.GradcheckError,
                  tg.AnomalyError, tg.CheckpointError):
        assert issubclass(error, tg.TensorgradError)
    assert issubclass(tg.ShapeError, ValueError) and issubclass(tg.DtypeError, TypeError)


def test_a_shape_error_raises_at_the_call_not_in_backward():
    x = tg.ones((2, 3), requires_grad=True)
    with pytest.raises(tg.ShapeError) as info:
        x.sum(axis=0) @ tg.ones(2)
    assert info.value.__cause__ is None
    package = Path(tg.__file__).parent
    assert package in Path(info.traceback[-1].path).parents  # raised by tensorgrad, not NumPy


@pytest.mark.parametrize("fn, message", [
    (lambda: tg.gelu(tg.ones(3), approximate="erf"),
     "gelu: approximate must be 'none' or 'tanh', not 'erf'"),
    (lambda: OPS["cross_entropy"](tg.ones(2, 3), np.array([0, 1]), reduction="avg"),
     "cross_entropy: reduction must be mean, sum or none, not 'avg'"),
])
def test_a_bad_attribute_names_the_op_once(fn, message):
    with pytest.raises(tg.TensorgradError) as info:
        fn()
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------- detect_anomaly


def _line_after() -> int:
    """The line number following the caller's current line."""
    return inspect.currentframe().f_back.f_lineno + 1


def test_detect_anomaly_names_the_forward_op_and_its_line():
    x = tg.tensor([1.0, -1.0], requires_grad=True)
    with warnings.catch_warnings(), tg.detect_anomaly():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(tg.AnomalyError) as info:
            line = _line_after()
            x.log()
    message = str(info.value)
    assert message.startswith("log: forward produced NaN or inf")
    assert f"{__file__}:{line}" in message


def test_detect_anomaly_names_the_op_whose_backward_goes_non_finite():
    x = tg.tensor([0.0, 1.0], requires_grad=True)
    with warnings.catch_warnings(), tg.detect_anomaly():
        warnings.simplefilter("ignore", RuntimeWarning)
        line = _line_after()
        y = x.sqrt()  # finite (0) forward; infinite gradient at 0
        loss = (y * 2.0).sum()
        with pytest.raises(tg.AnomalyError) as info:
            loss.backward()
    message = str(info.value)
    assert message.startswith("sqrt: backward produced NaN or inf")
    assert f"{__file__}:{line}" in message


def test_without_detect_anomaly_nothing_is_raised():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(tg.tensor([-1.0]).log().data).all()
        x = tg.tensor([0.0, 1.0], requires_grad=True)
        x.sqrt().sum().backward()
    assert np.isinf(x.grad[0]) and x.grad[1] == 0.5


def test_detect_anomaly_is_switched_off_again_after_an_error():
    with pytest.raises(tg.AnomalyError), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with tg.detect_anomaly():
            tg.tensor([0.0]).log()
    assert not tape.state.anomaly


def test_a_tensor_attribute_is_a_constant_and_one_needing_grad_is_refused():
    clipped = tg.clip(tg.tensor([0.0, 1.0, 2.0]), tg.tensor(0.5), 1.5)
    np.testing.assert_array_equal(clipped.data, [0.5, 1.0, 1.5])
    with pytest.raises(tg.TensorgradError, match="^clip: attribute 'min' is a Tensor that "):
        tg.clip(tg.tensor([1.0, 2.0]), tg.tensor(0.5, requires_grad=True), 1.5)


def test_gradient_through_a_constant_input_is_refused():
    from tensorgrad.ops import attention

    q = tg.randn(2, 3, 4, rng=0, requires_grad=True)
    bias = tg.zeros(3, 3, requires_grad=True)
    with pytest.raises(tg.TensorgradError, match="attention: input 'bias' is not differentiable"):
        attention(q, q, q, bias)
    assert attention(q, q, q, bias.detach()).shape == (2, 3, 4)


def test_a_zero_d_tensor_has_no_axis_to_reduce():
    with pytest.raises(tg.ShapeError, match="sum: axis 0 is out of range for a tensor with 0 axes"):
        tg.tensor(1.0).sum(axis=0)
    assert tg.tensor(2.0).sum().item() == 2.0
