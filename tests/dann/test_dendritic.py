"""DendriticLayer: parameter count, wiring, the forward formula, gradients, init and errors.

The forward is compared with a plain NumPy loop over somas and dendrites, and the gradients
with central differences, so neither check reuses the layer's own vectorised code.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tensorgrad as tg
from dann import DendriticFeedForward, DendriticLayer
from helpers import check_module_grads
from tensorgrad import optim

SLOPE = 0.1


@st.composite
def layer_sizes(draw):
    """(in_features, somas, dendrites per soma, synapses per dendrite) with K <= in."""
    n_in = draw(st.integers(1, 24))
    return (n_in, draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, n_in)))


def leaky(z):
    return np.where(z > 0, z, SLOPE * z)


def reference_forward(layer, x):
    """The layer's formula, one soma and one dendrite at a time, from its raw arrays."""
    w, b = layer.dendrite_weight.data, layer.dendrite_bias.data
    u, c = layer.soma_weight.data, layer.soma_bias.data
    n_somas, per_soma = u.shape
    out = np.zeros(x.shape[:-1] + (n_somas,))
    for s in range(n_somas):
        total = np.full(x.shape[:-1], c[s], dtype=np.float64)
        for j in range(per_soma):
            dendrite = s * per_soma + j
            pre = np.full(x.shape[:-1], b[dendrite], dtype=np.float64)
            for k, feature in enumerate(layer.wiring[dendrite]):
                pre = pre + w[dendrite, k] * x[..., feature]
            total = total + u[s, j] * leaky(pre)
        out[..., s] = leaky(total)
    return out


def wiring_mask(layer):
    mask = np.zeros((layer.wiring.shape[0], layer.in_features), dtype=bool)
    for row, features in enumerate(layer.wiring):
        mask[row, features] = True
    return mask


def randomise_biases(layer, rng):
    """Biases start at zero; give them values so the checks exercise them."""
    layer.dendrite_bias.data[...] = rng.uniform(-0.5, 0.5, layer.dendrite_bias.shape)
    layer.soma_bias.data[...] = rng.uniform(-0.5, 0.5, layer.soma_bias.shape)


# ---- parameters and wiring ---------------------------------------------------------------


@pytest.mark.parametrize("n_in, S, D, K", [(1, 1, 1, 1), (16, 8, 4, 3), (64, 64, 4, 8),
                                           (10, 3, 7, 10), (33, 5, 2, 17)])
def test_parameter_count_is_the_papers(n_in, S, D, K):
    layer = DendriticLayer(n_in, S, D, K, rng=0)
    assert layer.num_parameters() == (K + 1) * D * S + (D + 1) * S
    assert sum(p.size for p in layer.parameters()) == (K + 1) * D * S + (D + 1) * S


@given(sizes=layer_sizes(), seed=st.integers(0, 2**32 - 1))
def test_parameter_count_any_size(sizes, seed):
    n_in, S, D, K = sizes
    layer = DendriticLayer(n_in, S, D, K, sampling="local", rng=seed)
    assert layer.num_parameters() == (K + 1) * D * S + (D + 1) * S


@given(sizes=layer_sizes(), seed=st.integers(0, 2**32 - 1))
def test_random_wiring_reads_k_distinct_inputs(sizes, seed):
    n_in, S, D, K = sizes
    layer = DendriticLayer(n_in, S, D, K, sampling="random", rng=seed)
    wiring = layer.wiring

    assert wiring.shape == (S * D, K) and wiring.dtype.kind == "i"
    assert wiring.min() >= 0 and wiring.max() < n_in
    for row in wiring:
        assert len(set(row.tolist())) == K
    assert (wiring_mask(layer).sum(axis=1) == K).all()


def _is_ring_run(features, n_in):
    """Whether ``features`` is {c, c+1, ..., c+K-1} mod n_in for some c."""
    chosen = set(features.tolist())
    return any(chosen == {(c + i) % n_in for i in range(len(features))} for c in range(n_in))


@given(sizes=layer_sizes(), seed=st.integers(0, 2**32 - 1))
def test_local_wiring_reads_k_consecutive_inputs_on_a_ring(sizes, seed):
    n_in, S, D, K = sizes
    layer = DendriticLayer(n_in, S, D, K, sampling="local", rng=seed)

    for row in layer.wiring:
        assert len(set(row.tolist())) == K
        assert _is_ring_run(row, n_in), f"{row.tolist()} is not a run on a ring of {n_in}"


def test_local_wiring_wraps_around_and_moves_its_centre():
    layer = DendriticLayer(20, 16, 4, 5, sampling="local", rng=3)
    rows = [tuple(row) for row in layer.wiring.tolist()]

    assert any(0 in row and 19 in row for row in rows), "no receptive field wraps the ring"
    assert len(set(rows)) > 10, "the centres hardly vary"


def test_random_wiring_is_not_local_nor_repeated():
    layer = DendriticLayer(64, 16, 4, 8, sampling="random", rng=0)
    rows = [tuple(row) for row in layer.wiring.tolist()]

    assert len(set(rows)) == len(rows)
    assert not all(_is_ring_run(np.array(row), 64) for row in rows)
    # Every input is read by someone: 512 draws over 64 inputs miss one with p ~ 1e-26.
    assert wiring_mask(layer).any(axis=0).all()


def test_wiring_is_a_buffer_saved_and_restored():
    layer = DendriticLayer(12, 4, 3, 5, rng=1)
    other = DendriticLayer(12, 4, 3, 5, rng=2)
    assert not np.array_equal(layer.wiring, other.wiring)
    assert "wiring" in layer.state_dict()
    assert "wiring" not in dict(layer.named_parameters())

    other.load_state_dict(layer.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float32)

    np.testing.assert_array_equal(other.wiring, layer.wiring)
    np.testing.assert_array_equal(other(tg.tensor(x)).data, layer(tg.tensor(x)).data)


def test_same_rng_gives_same_layer():
    a, b = DendriticLayer(12, 4, 3, 5, rng=7), DendriticLayer(12, 4, 3, 5, rng=7)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])


# ---- the forward -------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["random", "local"])
@pytest.mark.parametrize("form", ["dense", "gather"])
def test_forward_matches_numpy_loops(form, sampling):
    rng = np.random.default_rng(0)
    layer = DendriticLayer(10, 4, 3, 4, sampling=sampling, form=form, rng=1, dtype=np.float64)
    randomise_biases(layer, rng)
    x = rng.standard_normal((2, 3, 10))

    out = layer(tg.tensor(x))

    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out.data, reference_forward(layer, x), rtol=1e-12, atol=1e-12)


def test_each_soma_reads_only_its_own_dendrites():
    layer = DendriticLayer(8, 3, 4, 3, rng=0, dtype=np.float64)
    x = tg.tensor(np.random.default_rng(1).standard_normal((1, 8)))

    for soma in range(3):
        (g,) = tg.grad(layer(x)[0, soma], [layer.dendrite_bias])
        block = np.zeros(12, dtype=bool)
        block[soma * 4:(soma + 1) * 4] = True
        assert (g.data[~block] == 0).all()
        assert (g.data[block] != 0).all()


def test_float32_stays_float32():
    layer = DendriticLayer(6, 2, 2, 3, rng=0)
    out = layer(tg.tensor(np.ones((4, 6), dtype=np.float32)))
    assert out.dtype == np.float32
    assert all(p.dtype == np.float32 for p in layer.parameters())


def test_dense_and_gather_agree_on_values_and_gradients():
    rng = np.random.default_rng(0)
    dense = DendriticLayer(12, 5, 3, 4, form="dense", rng=2, dtype=np.float64)
    gather = DendriticLayer(12, 5, 3, 4, form="gather", rng=99, dtype=np.float64)
    randomise_biases(dense, rng)
    gather.load_state_dict(dense.state_dict())
    x = rng.standard_normal((3, 4, 12))
    v = rng.standard_normal((3, 4, 5))

    grads = {}
    for name, layer in (("dense", dense), ("gather", gather)):
        xt = tg.tensor(x, requires_grad=True)
        out = layer(xt)
        params = list(layer.parameters())
        grads[name] = (out.data, [g.data for g in tg.grad((out * v).sum(), [xt] + params)])

    np.testing.assert_allclose(grads["dense"][0], grads["gather"][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads["dense"][1], grads["gather"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dense", "gather"])
def test_gradcheck_input(form):
    layer = DendriticLayer(7, 3, 2, 3, form=form, rng=0, dtype=np.float64)
    randomise_biases(layer, np.random.default_rng(1))
    x = tg.tensor(np.random.default_rng(2).standard_normal((2, 3, 7)), requires_grad=True)
    assert tg.gradcheck(lambda t: layer(t), [x])


@pytest.mark.parametrize("sampling", ["random", "local"])
@pytest.mark.parametrize("form", ["dense", "gather"])
def test_gradcheck_every_parameter_and_input(form, sampling):
    layer = DendriticLayer(7, 3, 2, 3, sampling=sampling, form=form, rng=0,
                           dtype=np.float64)
    randomise_biases(layer, np.random.default_rng(1))
    x = tg.tensor(np.random.default_rng(2).standard_normal((2, 3, 7)), requires_grad=True)

    checked = check_module_grads(layer, lambda: layer(x), inputs=[x])

    assert set(checked) == {"dendrite_weight", "dendrite_bias", "soma_weight", "soma_bias",
                            "input 0"}


def test_gradcheck_float32_layer_cast_to_float64():
    layer = DendriticLayer(5, 2, 2, 2, rng=4).astype(np.float64)
    x = tg.tensor(np.random.default_rng(0).standard_normal((3, 5)))
    check_module_grads(layer, lambda: layer(x))


def test_feed_forward_shape_count_and_gradients():
    ffn = DendriticFeedForward(6, 4, 2, 3, rng=0, dtype=np.float64)
    x = tg.tensor(np.random.default_rng(0).standard_normal((2, 3, 6)))

    out = ffn(x)
    expected = ffn.out.weight.data @ ffn.dendritic(x).data[..., None]

    assert out.shape == (2, 3, 6)
    np.testing.assert_allclose(out.data, expected[..., 0] + ffn.out.bias.data, atol=1e-12)
    assert ffn.num_parameters() == (3 + 1) * 2 * 4 + (2 + 1) * 4 + 4 * 6 + 6
    check_module_grads(ffn, lambda: ffn(x))


# ---- training keeps the sparsity ----------------------------------------------------------


OPTIMIZERS = {
    "adamw": lambda params: optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "sgd": lambda params: optim.SGD(params, lr=1e-2, momentum=0.9, weight_decay=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("form", ["dense", "gather"])
def test_weights_outside_wiring_stay_zero_through_training(form, name):
    rng = np.random.default_rng(0)
    layer = DendriticLayer(12, 4, 3, 5, form=form, rng=1)
    wiring, mask = layer.wiring.copy(), wiring_mask(layer)
    before = layer.dendrite_weight.data.copy()
    optimizer = OPTIMIZERS[name](layer.parameters())
    x = tg.tensor(rng.standard_normal((32, 12)).astype(np.float32))
    target = rng.standard_normal((32, 4)).astype(np.float32)

    for _ in range(100):
        loss = ((layer(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    dense = layer.dense_dendrite_weight().data
    assert dense.shape == (12, 12)
    assert (dense[~mask] == 0).all()
    np.testing.assert_array_equal(dense[mask].reshape(12, 5), layer.dendrite_weight.data)
    np.testing.assert_array_equal(layer.wiring, wiring)
    assert np.abs(layer.dendrite_weight.data - before).max() > 1e-3, "nothing was trained"


# ---- initialisation ----------------------------------------------------------------------


def _assert_uniform(values, bound):
    values = np.asarray(values, dtype=np.float64).ravel()
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() >= 0.9 * bound, "values do not reach the bound"
    assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)
    assert abs(values.mean()) < 0.1 * bound


def test_glorot_init_bounds():
    n_in, S, D, K = 64, 64, 4, 8
    layer = DendriticLayer(n_in, S, D, K, init="glorot", rng=0)

    _assert_uniform(layer.dendrite_weight.data, np.sqrt(6 / (n_in + D * S)))
    _assert_uniform(layer.soma_weight.data, np.sqrt(6 / (D * S + S)))
    assert (layer.dendrite_bias.data == 0).all() and (layer.soma_bias.data == 0).all()


def test_fan_in_init_bounds():
    n_in, S, D, K = 64, 64, 4, 8
    layer = DendriticLayer(n_in, S, D, K, init="fan_in", rng=0)

    _assert_uniform(layer.dendrite_weight.data, 1 / np.sqrt(K))
    _assert_uniform(layer.soma_weight.data, 1 / np.sqrt(D))
    assert (layer.dendrite_bias.data == 0).all() and (layer.soma_bias.data == 0).all()


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(synapses_per_dendrite=9), "synapses_per_dendrite"),
    (dict(synapses_per_dendrite=0), "synapses_per_dendrite"),
    (dict(sampling="grid"), "sampling"),
    (dict(init="xavier"), "init"),
    (dict(form="sparse"), "form"),
    (dict(n_somas=0), "positive"),
    (dict(dendrites_per_soma=0), "positive"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(in_features=8, n_somas=2, dendrites_per_soma=2, synapses_per_dendrite=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DendriticLayer(**args)


@pytest.mark.parametrize("form", ["dense", "gather"])
def test_wrong_input_width_raises(form):
    layer = DendriticLayer(8, 2, 2, 3, form=form, rng=0)
    with pytest.raises(ValueError, match="expected 8 input features.*5"):
        layer(tg.tensor(np.ones((3, 5), dtype=np.float32)))
