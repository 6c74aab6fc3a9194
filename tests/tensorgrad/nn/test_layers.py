"""Layers: shapes, dtypes, PyTorch's initialisation, forward values and float64 gradchecks."""

import math

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.errors import DtypeError, ShapeError, TensorgradError
from tensorgrad.nn import init


def gradcheck_module(module, *inputs):
    """gradcheck of ``module(*inputs)`` with respect to its float inputs and every parameter.

    gradcheck differentiates float64 copies of what it is given, so for the duration of the
    check the module's parameter slots hold those copies.
    """
    module.astype(np.float64)
    slots = [(m, key) for _, m in module.named_modules()
             for key, p in m._parameters.items() if p is not None]
    originals = [m._parameters[key] for m, key in slots]
    n = len(inputs)

    def fn(*xs):
        for (m, key), x in zip(slots, xs[n:]):
            m._parameters[key] = x
        return module(*xs[:n])

    try:
        assert tg.gradcheck(fn, list(inputs) + originals)
    finally:
        for (m, key), p in zip(slots, originals):
            m._parameters[key] = p


def randn(*shape, seed=0, requires_grad=True):
    return tg.randn(*shape, rng=seed, requires_grad=requires_grad)


def away_from_zero(*shape, seed=0):
    """Normal entries pushed at least 0.1 from 0, so finite differences never cross a kink."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return tg.tensor(x + 0.1 * np.sign(x), requires_grad=True)


# ---------------------------------------------------------------- Linear


def test_linear_shapes_and_float32_default():
    layer = nn.Linear(5, 3, rng=0)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    out = layer(tg.tensor(np.ones((2, 4, 5), dtype=np.float32)))
    assert out.shape == (2, 4, 3) and out.dtype == np.float32
    assert nn.Linear(5, 3, bias=False, rng=0).bias is None
    assert nn.Linear(5, 3, rng=0, dtype=np.float64).weight.dtype == np.float64


def test_linear_forward_matches_numpy():
    layer = nn.Linear(4, 6, rng=1, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((3, 2, 4))
    expected = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(layer(tg.tensor(x)).data, expected, rtol=1e-12)


def test_linear_init_is_pytorchs_uniform_bound():
    fan_in = 16
    layer = nn.Linear(fan_in, 2000, rng=3)
    bound = 1.0 / math.sqrt(fan_in)
    for values in (layer.weight.data, layer.bias.data):
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.97 * bound  # fills the interval, not a narrower one
    w = layer.weight.data
    assert abs(w.mean()) < 0.01 * bound
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.03)  # the variance of U(-b, b)


def test_linear_init_is_reproducible_from_a_seed_or_generator():
    a, b = nn.Linear(3, 4, rng=7), nn.Linear(3, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, nn.Linear(3, 4, rng=8).weight.data)


def test_linear_rejects_a_mismatched_input():
    with pytest.raises(ShapeError, match=r"linear: input of shape \(2, 3\)"):
        nn.Linear(4, 2, rng=0)(tg.tensor(np.ones((2, 3))))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    gradcheck_module(nn.Linear(3, 2, bias=bias, rng=0), randn(2, 4, 3))


# ---------------------------------------------------------------- init


def test_init_bounds_follow_pytorchs_formulas():
    w = np.empty((300, 200))
    init.xavier_uniform_(w, gain=2.0, rng=0)
    bound = 2.0 * math.sqrt(6.0 / 500)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound

    init.kaiming_uniform_(w, a=0.0, nonlinearity="relu", rng=1)
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 200)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound

    init.kaiming_uniform_(w, mode="fan_out", rng=2)
    bound = math.sqrt(2.0 / (1 + 0.0)) * math.sqrt(3.0 / 300)  # a=0: leaky slope 0
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound

    t = tg.zeros(4, 5)
    assert init.normal_(t, 3.0, 0.0, rng=0) is t and np.all(t.data == 3.0)
    assert np.all(init.ones_(t).data == 1.0) and np.all(init.zeros_(t).data == 0.0)
    assert init.fans((8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ShapeError):
        init.fans((4,))


def test_init_gains_and_fans_match_torch():
    torch = pytest.importorskip("torch")
    for name, param in [("linear", None), ("tanh", None), ("relu", None), ("sigmoid", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param))
    for shape in [(3, 4), (8, 3, 5), (2, 3, 4, 5)]:
        assert init.fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(
            torch.empty(shape))


# ---------------------------------------------------------------- Embedding


def test_embedding_looks_up_rows_with_float32_default():
    emb = nn.Embedding(10, 3, rng=0)
    assert emb.weight.shape == (10, 3) and emb.weight.dtype == np.float32
    idx = np.array([[1, 4], [4, 9]])
    out = emb(idx)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    np.testing.assert_array_equal(emb(tg.tensor(idx)).data, out.data)


def test_embedding_init_is_standard_normal():
    w = nn.Embedding(4000, 8, rng=1).weight.data
    assert abs(w.mean()) < 0.02 and w.std() == pytest.approx(1.0, rel=0.02)


def test_embedding_repeated_indices_accumulate_gradients():
    emb = nn.Embedding(5, 2, rng=0, dtype=np.float64)
    emb(np.array([3, 1, 3, 3])).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [0, 1, 0, 3, 0])


def test_embedding_gradcheck_with_repeated_indices():
    gradcheck_module(nn.Embedding(6, 3, rng=0), np.array([[0, 5, 5], [2, 0, 5]]))


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=-1, rng=0, dtype=np.float64)
    assert emb.padding_idx == 4 and np.all(emb.weight.data[4] == 0)
    emb.weight.data[4] = 2.0
    out = emb(np.array([4, 1, 4]))
    np.testing.assert_array_equal(out.data[0], 2.0)  # the value is still looked up
    (out * out).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[4], 0.0)
    np.testing.assert_allclose(emb.weight.grad[1], 2 * emb.weight.data[1])


def test_embedding_out_of_range_names_the_layer_and_range():
    emb = nn.Embedding(10, 4, rng=0)
    message = r"Embedding\(10, 4\): index 10 is out of range \[0, 10\)"
    with pytest.raises(ShapeError, match=message):
        emb(np.array([0, 10]))
    with pytest.raises(ShapeError, match=r"index -1 is out of range"):
        emb(np.array([-1]))
    with pytest.raises(DtypeError, match="integers"):
        emb(np.array([1.0]))


# ---------------------------------------------------------------- LayerNorm


def test_layer_norm_normalises_the_last_axis():
    ln = nn.LayerNorm(6)
    assert ln.weight.dtype == np.float32 and np.all(ln.weight.data == 1)
    x = np.random.default_rng(0).standard_normal((3, 6)) * 5 + 2
    out = ln(tg.tensor(x.astype(np.float32))).data
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-3)
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_layer_norm_without_affine_has_no_parameters():
    ln = nn.LayerNorm(4, elementwise_affine=False)
    assert ln.weight is None and ln.bias is None and ln.num_parameters() == 0
    assert nn.LayerNorm(4, bias=False).bias is None
    with pytest.raises(ShapeError, match="normalized_shape"):
        ln(tg.tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match="one normalised axis"):
        nn.LayerNorm((2, 4))


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(affine):
    ln = nn.LayerNorm(5, eps=1e-3, elementwise_affine=affine)
    if affine:
        init.normal_(ln.weight, rng=1)
        init.normal_(ln.bias, rng=2)
    gradcheck_module(ln, randn(2, 3, 5))


# ---------------------------------------------------------------- Dropout


def test_dropout_is_reproducible_from_its_seed():
    x = tg.ones(1000)
    a, b = nn.Dropout(0.3, rng=11), nn.Dropout(0.3, rng=11)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert not np.array_equal(a(x).data, nn.Dropout(0.3, rng=12)(x).data)


def test_dropout_keeps_the_expected_fraction_scaled_up():
    p = 0.25
    out = nn.Dropout(p, rng=0)(tg.ones(20000)).data
    kept = out != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.015)  # ~5 standard deviations
    np.testing.assert_allclose(out[kept], 1 / (1 - p))


def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero():
    x = randn(4, 5)
    drop = nn.Dropout(0.5, rng=0)
    assert drop.eval()(x) is x
    assert nn.Dropout(0.0)(x) is x
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="p must be in"):
            nn.Dropout(p)


def test_dropout_gradcheck_with_a_fixed_mask():
    drop = nn.Dropout(0.4)
    x = randn(3, 4)

    def fn(x):
        drop.rng = np.random.default_rng(5)  # the same mask at every evaluation
        return drop(x)

    assert tg.gradcheck(fn, [x])


def test_dropout_keeps_float32():
    x = tg.tensor(np.ones((3, 3), dtype=np.float32))
    assert nn.Dropout(0.5, rng=0)(x).dtype == np.float32


# ---------------------------------------------------------------- activations


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.GELU(), lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    (nn.GELU("tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
]


@pytest.mark.parametrize("module, reference", ACTIVATIONS, ids=lambda v: repr(v)[:20])
def test_activation_values(module, reference):
    x = np.linspace(-4, 4, 41)
    np.testing.assert_allclose(module(tg.tensor(x)).data, reference(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("module", [m for m, _ in ACTIVATIONS], ids=lambda v: repr(v)[:20])
def test_activation_gradcheck(module):
    gradcheck_module(module, away_from_zero(3, 4))


def test_activation_reprs():
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.ReLU()) == "ReLU()"
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_a_small_model_trains_its_loss_down():
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((64, 3)).astype(np.float32))
    y = (x.data[:, 0] > x.data[:, 1]).astype(np.int64)
    model = nn.Sequential(nn.Linear(3, 16, rng=1), nn.GELU(), nn.LayerNorm(16),
                          nn.Linear(16, 2, rng=2))
    losses = []
    for _ in range(60):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        with tg.no_grad():
            for p in model.parameters():
                p.data -= 0.5 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_errors_are_tensorgrad_errors():
    with pytest.raises(TensorgradError):
        nn.Embedding(3, 2, rng=0)(np.array([5]))
