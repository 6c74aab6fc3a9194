"""tensorgrad.nn.functional against NumPy, PyTorch and composites of primitive ops."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorgrad as tg
from tensorgrad.errors import ShapeError
from tensorgrad.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]


# ---------------------------------------------------------------- independent references


def numpy_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def numpy_cross_entropy(logits, target, ignore_index=None, reduction="mean", smoothing=0.0):
    """Per-entry loss from an explicit one-hot / uniform mixture, then masked and reduced."""
    classes = logits.shape[-1]
    logp = numpy_log_softmax(logits)
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    onehot = np.eye(classes)[np.where(keep, target, 0)]
    mixture = (1 - smoothing) * onehot + smoothing / classes
    loss = -(mixture * logp).sum(-1) * keep
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / keep.sum()


def ce_case(shape, classes, seed, ignore=False):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape + (classes,)) * 2
    target = rng.integers(0, classes, size=shape)
    if ignore:
        target.flat[::3] = -100
    return logits, target


# ---------------------------------------------------------------- composites of primitives


def composite_softmax(x, axis=-1):
    e = (x - x.max(axis=axis, keepdims=True).detach()).exp()
    return e / e.sum(axis=axis, keepdims=True)


def composite_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True).detach()
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


def composite_layer_norm(x, weight, bias, eps):
    centred = x - x.mean(axis=-1, keepdims=True)
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / (var + eps).sqrt() * weight + bias


def composite_cross_entropy(logits, target, ignore_index, reduction, smoothing):
    classes = logits.shape[-1]
    keep = np.ones(target.shape) if ignore_index is None else (target != ignore_index) * 1.0
    onehot = np.eye(classes)[np.where(keep > 0, target, 0)]
    mixture = (1 - smoothing) * onehot + smoothing / classes
    loss = -(composite_log_softmax(logits) * mixture).sum(axis=-1) * keep
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / keep.sum()


def values_and_grads(fn, arrays, seed=0):
    """fn's output and the gradients of a random projection of it w.r.t. every array."""
    tensors = [tg.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    direction = np.random.default_rng(seed).standard_normal(out.shape)
    grads = tg.grad((out * direction).sum(), tensors)
    return out.data, [g.data for g in grads]


def assert_same_function(fused, composite, arrays):
    out_f, grads_f = values_and_grads(fused, arrays)
    out_c, grads_c = values_and_grads(composite, arrays)
    np.testing.assert_allclose(out_f, out_c, rtol=1e-10, atol=1e-12)
    for gf, gc in zip(grads_f, grads_c):
        np.testing.assert_allclose(gf, gc, rtol=1e-8, atol=1e-10)


finite = st.floats(-5, 5, allow_nan=False, width=64)
small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


# ---------------------------------------------------------------- fused ops vs composites


@given(data=st.data(), shape=small_shapes)
def test_softmax_and_log_softmax_match_their_composites(data, shape):
    x = data.draw(hnp.arrays(np.float64, shape, elements=finite))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert_same_function(lambda t: F.softmax(t, axis), lambda t: composite_softmax(t, axis), [x])
    assert_same_function(lambda t: F.log_softmax(t, dim=axis),
                         lambda t: composite_log_softmax(t, axis), [x])


@given(data=st.data(), shape=small_shapes.filter(lambda s: s[-1] > 1))
def test_layer_norm_matches_its_composite(data, shape):
    x = data.draw(hnp.arrays(np.float64, shape, elements=finite))
    w = data.draw(hnp.arrays(np.float64, shape[-1:], elements=finite))
    b = data.draw(hnp.arrays(np.float64, shape[-1:], elements=finite))
    assert_same_function(lambda x, w, b: F.layer_norm(x, shape[-1], w, b, eps=1e-3),
                         lambda x, w, b: composite_layer_norm(x, w, b, 1e-3), [x, w, b])


@given(shape=st.sampled_from([(5,), (2, 3)]), classes=st.integers(2, 5),
       reduction=st.sampled_from(REDUCTIONS), smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       ignore=st.booleans(), seed=st.integers(0, 1000))
def test_cross_entropy_matches_its_composite(shape, classes, reduction, smoothing, ignore, seed):
    logits, target = ce_case(shape, classes, seed, ignore)
    ignore_index = -100 if ignore else None
    assert_same_function(
        lambda t: F.cross_entropy(t, target, ignore_index, reduction, smoothing),
        lambda t: composite_cross_entropy(t, target, ignore_index, reduction, smoothing),
        [logits])


# ---------------------------------------------------------------- cross_entropy


@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=["NC", "NTC"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_matches_numpy(shape, reduction, smoothing, ignore):
    logits, target = ce_case(shape, 5, seed=1, ignore=ignore)
    ignore_index = -100 if ignore else None
    out = F.cross_entropy(tg.tensor(logits), target, ignore_index, reduction, smoothing)
    expected = numpy_cross_entropy(logits, target, ignore_index, reduction, smoothing)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=["NC", "NTC"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_matches_torch(shape, reduction, smoothing, ignore):
    torch = pytest.importorskip("torch")
    logits, target = ce_case(shape, 5, seed=2, ignore=ignore)
    ignore_index = -100 if ignore else None
    x = tg.tensor(logits, requires_grad=True)
    out = F.cross_entropy(x, tg.tensor(target), ignore_index, reduction, smoothing)
    out.backward(np.ones(out.shape))

    tx = torch.tensor(logits, requires_grad=True)
    class_axis_second = tx if tx.ndim == 2 else tx.permute(0, 2, 1)  # torch wants (N, C, T)
    expected = torch.nn.functional.cross_entropy(
        class_axis_second, torch.tensor(target), ignore_index=-100, reduction=reduction,
        label_smoothing=smoothing)
    expected.backward(torch.ones_like(expected))
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_gradcheck(reduction, smoothing):
    logits, target = ce_case((2, 3), 4, seed=3, ignore=True)
    assert tg.gradcheck(lambda x: F.cross_entropy(x, target, -100, reduction, smoothing),
                        [tg.tensor(logits, requires_grad=True)])


def test_cross_entropy_keeps_float32_and_rejects_bad_targets():
    logits = tg.tensor(np.zeros((2, 3), dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, [0, 2])
    assert loss.dtype == np.float32 and loss.item() == pytest.approx(math.log(3), rel=1e-6)
    with pytest.raises(ShapeError, match="out of range"):
        F.cross_entropy(logits, [0, 3])
    with pytest.raises(ShapeError, match="target of shape"):
        F.cross_entropy(logits, [0, 1, 2])
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(logits, [0, 1], reduction="avg")


# ---------------------------------------------------------------- stability


def test_log_softmax_and_softmax_are_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    t = tg.tensor(x, requires_grad=True)
    out = F.log_softmax(t)
    log2 = math.log(2)
    expected = [[0.0, -2e4, -1e4], [-math.log(3)] * 3, [-log2, -log2, -2e4 - log2]]
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    out.sum().backward()
    assert np.isfinite(t.grad).all()
    np.testing.assert_allclose(F.softmax(tg.tensor(x)).data[0], [1.0, 0.0, 0.0])

    x32 = tg.tensor(x.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x32, np.array([1, 0, 2]), reduction="none")
    np.testing.assert_allclose(loss.data, [2e4, math.log(3), 2e4 + math.log(2)], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x32.grad).all()


# ---------------------------------------------------------------- other losses and functions


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_numpy_and_gradcheck(reduction):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    expected = {"mean": ((a - b) ** 2).mean(), "sum": ((a - b) ** 2).sum(), "none": (a - b) ** 2}
    out = F.mse_loss(tg.tensor(a), b, reduction)
    np.testing.assert_allclose(out.data, expected[reduction], rtol=1e-12)
    assert tg.gradcheck(lambda x, y: F.mse_loss(x, y, reduction),
                        [tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)])
    with pytest.raises(ShapeError, match="mse_loss"):
        F.mse_loss(tg.tensor(a), b[:2])


def test_linear_matches_numpy_and_gradcheck():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    np.testing.assert_allclose(F.linear(tg.tensor(x), w, b).data, x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(F.linear(tg.tensor(x), w).data, x @ w.T, rtol=1e-12)
    assert tg.gradcheck(F.linear, [tg.tensor(a, requires_grad=True) for a in (x, w, b)])


def test_embedding_function_picks_rows():
    w = tg.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    out = F.embedding(np.array([[3, 0], [3, 3]]), w)
    np.testing.assert_array_equal(out.data[1, 0], [9.0, 10.0, 11.0])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad[:, 0], [1, 0, 0, 3])
    with pytest.raises(ShapeError, match=r"embedding: index 4 is out of range \[0, 4\)"):
        F.embedding([4], w)


def test_layer_norm_function_checks_its_normalized_shape():
    x = tg.tensor(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="normalized_shape"):
        F.layer_norm(x, 4)
    with pytest.raises(TypeError, match="normalized_shape"):
        F.layer_norm(x, np.ones(3))


def test_dropout_function():
    x = tg.ones(4000)
    a = F.dropout(x, 0.5, training=True, rng=3)
    np.testing.assert_array_equal(a.data, F.dropout(x, 0.5, rng=np.random.default_rng(3)).data)
    assert set(np.unique(a.data)) == {0.0, 2.0}
    assert (a.data == 0).mean() == pytest.approx(0.5, abs=0.04)
    assert F.dropout(x, 0.5, training=False) is x


def test_activation_functions():
    x = np.array([-2.0, -0.5, 0.5, 2.0])
    t = tg.tensor(x)
    np.testing.assert_allclose(F.relu(t).data, [0, 0, 0.5, 2])
    np.testing.assert_allclose(F.leaky_relu(t, 0.1).data, [-0.2, -0.05, 0.5, 2])
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(F.gelu(t).data, x * 0.5 * (1 + erf(x / math.sqrt(2))), rtol=1e-7)
    np.testing.assert_allclose(F.tanh(t).data, np.tanh(x))
    np.testing.assert_allclose(F.sigmoid(t).data, 1 / (1 + np.exp(-x)))


def test_activations_match_torch():
    torch = pytest.importorskip("torch")
    x = np.linspace(-3, 3, 13)
    tx = torch.tensor(x)
    tnf = torch.nn.functional
    pairs = [(F.gelu(tg.tensor(x)), tnf.gelu(tx)),
             (F.gelu(tg.tensor(x), "tanh"), tnf.gelu(tx, approximate="tanh")),
             (F.leaky_relu(tg.tensor(x), 0.3), tnf.leaky_relu(tx, 0.3)),
             (F.layer_norm(tg.tensor(x.reshape(1, -1)), 13),
              tnf.layer_norm(tx.reshape(1, -1), (13,)))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-7, atol=1e-12)
