"""The tape itself: reuse, diamonds, non-leaf grads, retain_graph, no_grad, deep chains, memory.

Expected values are closed forms worked out by hand for each small function.
"""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import tape


def leaf(values):
    return tg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- graph shapes


def test_a_tensor_used_twice_gets_both_contributions():
    x = leaf([1.0, -2.0, 3.0])
    (x * x + x).sum().backward()  # d/dx (x^2 + x) = 2x + 1
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_diamond_sums_both_paths():
    x = leaf(0.7)
    a = x.exp()
    b, c = a * 2.0, a.sin()
    (b * c).backward()  # f = 2 e^x sin(e^x); f' = 2 e^x sin(e^x) + 2 e^{2x} cos(e^x)
    e = np.exp(0.7)
    np.testing.assert_allclose(x.grad, 2 * e * np.sin(e) + 2 * e * e * np.cos(e))


def test_same_input_twice_in_one_op():
    x = leaf([1.5, -0.5])
    tg.maximum(x, x).sum().backward()  # a tie everywhere: the halves add up to 1
    np.testing.assert_allclose(x.grad, [1.0, 1.0])
    y = leaf([[1.0, 2.0], [3.0, 4.0]])
    (y @ y).sum().backward()  # d/dY sum(Y Y) = 1 Y^T + Y^T 1
    ones = np.ones((2, 2))
    np.testing.assert_allclose(y.grad, ones @ y.data.T + y.data.T @ ones)


def test_non_leaf_gradients_through_grad_and_retain_grad():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    h.retain_grad()
    y = (h * h).sum()
    (gh,) = tg.grad(y, [h], retain_graph=True)
    np.testing.assert_allclose(gh.data, 2 * h.data)
    y.backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    np.testing.assert_allclose(x.grad, 18 * x.data)


def test_intermediates_without_retain_grad_keep_no_grad():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    (h * h).sum().backward()
    assert h.grad is None and x.grad is not None


# ---------------------------------------------------------------- repeated backward


def test_second_backward_needs_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)  # two backwards accumulate 2x + 2x
    with pytest.raises(tg.BackwardError, match="retain_graph"):
        y.backward()


def test_grads_accumulate_across_backward_calls_until_zeroed():
    x = leaf([1.0, -1.0])
    for _ in range(3):
        (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.grad = None
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0])


# ---------------------------------------------------------------- what gets recorded


def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with tg.no_grad():
        y = x * 2.0 + 1.0
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert y._record is None and not y.requires_grad
    with pytest.raises(tg.BackwardError):
        y.sum().backward()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tg.no_grad():
            1 / 0
    assert tg.is_grad_enabled()
    with tg.no_grad():
        with pytest.raises(KeyError):
            with tg.enable_grad():
                assert tg.is_grad_enabled()
                raise KeyError
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_ops_on_inputs_that_need_no_grad_record_nothing():
    a, b = tg.tensor([1.0, 2.0]), tg.tensor([3.0, 4.0])
    y = (a * b).exp().sum()
    assert y._record is None and not y.requires_grad

    x = leaf([1.0, 2.0])
    z = a * b + x
    assert z._record.op.name == "add"
    assert all(not getattr(t, "requires_grad", False) or t is x for t in z._record.inputs)
    assert (a * b)._record is None


def test_records_carry_op_inputs_attrs_and_order():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    h = x.sum(axis=0, keepdims=True)
    y = h.exp()
    assert h._record.op.name == "sum" and h._record.attrs == {"axis": 0, "keepdims": True}
    assert h._record.inputs[0] is x
    assert y._record.seq > h._record.seq
    assert y._record.out_ref() is y


# ---------------------------------------------------------------- bad backward calls


def test_backward_on_a_non_scalar_needs_a_grad():
    x = leaf([1.0, 2.0])
    with pytest.raises(tg.BackwardError, match=r"\(2,\)"):
        (x * 2.0).backward()


def test_backward_with_a_grad_of_the_wrong_shape():
    x = leaf([1.0, 2.0])
    with pytest.raises(tg.ShapeError, match=r"\(3,\).*\(2,\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_with_an_explicit_grad():
    x = leaf([1.0, 2.0])
    (x * x).backward(np.array([10.0, -1.0]))
    np.testing.assert_allclose(x.grad, [20.0, -4.0])


def test_backward_on_a_tensor_that_needs_no_grad():
    with pytest.raises(tg.BackwardError, match="does not require grad"):
        tg.tensor(1.0).backward()


# ---------------------------------------------------------------- depth and memory


def test_a_100000_op_chain_backpropagates():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.000001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.000001**100_000, rtol=1e-9)


def _live_records() -> int:
    gc.collect()
    return sum(type(o) is tape.Record for o in gc.get_objects())


def test_a_deep_graph_dropped_without_backward_is_freed():
    x = leaf(1.0)
    y = early = x + 1.0
    for _ in range(50_000):
        y = y + 1.0
    probe = weakref.ref(early)
    del y, early
    gc.collect()
    assert probe() is None


def test_records_and_intermediates_are_freed_after_backward():
    before = _live_records()
    x = leaf(np.ones(4))
    h = x.exp()
    y = (h * 2.0).sum()
    intermediate, holder = weakref.ref(h), weakref.ref(h.data)
    del h
    assert intermediate() is not None  # the tape holds it until backward
    assert _live_records() == before + 3
    y.backward()
    assert y._record.freed
    assert intermediate() is None and holder() is None  # freed by backward, before y goes
    del y
    assert _live_records() == before
    np.testing.assert_allclose(x.grad, 2 * np.exp(1.0) * np.ones(4))


def test_memory_stays_flat_over_training_like_steps():
    rng = np.random.default_rng(0)
    w = tg.tensor(rng.standard_normal((8, 4)) * 0.1, requires_grad=True)
    data = rng.standard_normal((16, 8))

    def step():
        loss = ((tg.tensor(data) @ w).tanh() ** 2).mean()
        loss.backward()
        with tg.no_grad():
            w.data -= 0.01 * w.grad
        w.grad = None

    tracemalloc.start()
    try:
        peaks = []
        for _ in range(4):
            tracemalloc.reset_peak()
            for _ in range(500):
                step()
            peaks.append(tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    (first_now, first_peak), (last_now, last_peak) = peaks[0], peaks[-1]
    assert last_peak < first_peak * 1.5 + 64_000
    assert last_now < first_now + 64_000


# ---------------------------------------------------------------- functional API and higher order


def test_grad_does_not_touch_dot_grad():
    x = leaf([1.0, 2.0])
    (g,) = tg.grad((x * x).sum(), [x])
    np.testing.assert_allclose(g.data, 2 * x.data)
    assert x.grad is None
    assert not g.requires_grad


def test_grad_results_alias_nothing():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    seed = np.array([1.0, -1.0])
    gx, gy = tg.grad(x + y, [x, y], grad_outputs=tg.tensor(seed))
    assert not np.shares_memory(gx.data, gy.data)
    (gs,) = tg.grad(x, [x], grad_outputs=tg.tensor(seed))
    assert not np.shares_memory(gs.data, seed)
    gx.data += 1.0
    np.testing.assert_array_equal(gy.data, seed)


def test_grad_of_an_unused_input():
    x, unused = leaf([1.0, 2.0]), leaf([5.0])
    y = (x * x).sum()
    with pytest.raises(tg.BackwardError, match="input 1"):
        tg.grad(y, [x, unused], retain_graph=True)
    gx, gu = tg.grad(y, [x, unused], allow_unused=True)
    np.testing.assert_allclose(gu.data, [0.0])
    np.testing.assert_allclose(gx.data, 2 * x.data)


def test_grad_with_grad_outputs_and_several_outputs():
    x = leaf([1.0, 2.0, 3.0])
    a, b = x * x, x.sin()
    ga = np.array([1.0, 0.0, 2.0])
    gx = tg.grad([a, b], x, grad_outputs=[ga, np.ones(3)])
    np.testing.assert_allclose(gx.data, 2 * x.data * ga + np.cos(x.data))


def test_hessian_vector_product_matches_the_closed_form():
    # f(x) = sum(x^3) + (sum x)^2, so H = diag(6x) + 2 * ones and H v = 6 x v + 2 sum(v).
    x = leaf([0.5, -1.0, 2.0])
    v = np.array([1.0, 2.0, -0.5])
    f = (x**3).sum() + x.sum() ** 2
    (g,) = tg.grad(f, [x], create_graph=True)
    assert g.requires_grad
    np.testing.assert_allclose(g.data, 3 * x.data**2 + 2 * x.data.sum())
    (hv,) = tg.grad((g * v).sum(), [x])
    np.testing.assert_allclose(hv.data, 6 * x.data * v + 2 * v.sum())


def test_gradient_penalty_trains_through_the_input_gradient():
    # D(x) = tanh(x @ w); the penalty (|dD/dx|^2 - 1)^2 is differentiated with respect to w.
    rng = np.random.default_rng(1)
    w = leaf(rng.standard_normal(3))
    x = leaf(rng.standard_normal((4, 3)))
    (gx,) = tg.grad(tg.tanh(x @ w).sum(), [x], create_graph=True)
    penalty = (((gx * gx).sum(axis=1) - 1.0) ** 2).mean()
    penalty.backward()

    def numeric_penalty(wv):
        t = np.tanh(x.data @ wv)
        grad_x = (1 - t * t)[:, None] * wv[None, :]
        return (((grad_x**2).sum(axis=1) - 1) ** 2).mean()

    eps, expected = 1e-6, np.zeros(3)
    for i in range(3):
        step = np.eye(3)[i] * eps
        expected[i] = (numeric_penalty(w.data + step) - numeric_penalty(w.data - step)) / (2 * eps)
    np.testing.assert_allclose(w.grad, expected, rtol=1e-5, atol=1e-8)


def test_backward_with_create_graph_gives_differentiable_grads():
    x = leaf(1.5)
    (x**3).backward(create_graph=True)  # x.grad = 3 x^2, itself on the tape
    assert isinstance(x.grad, tg.Tensor)
    (gg,) = tg.grad(x.grad, [x])
    np.testing.assert_allclose(gg.data, 6 * 1.5)


def test_create_graph_grads_are_separate_tensors_on_the_tape():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + y).sum().backward(create_graph=True)  # add hands one cotangent to both inputs
    assert x.grad is not y.grad and not np.shares_memory(x.grad.data, y.grad.data)
    (x * 2.0 + y).sum().backward(create_graph=True)
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    np.testing.assert_array_equal(y.grad.data, [2.0, 2.0])


def test_third_derivative_matches_the_closed_form():
    x = leaf([0.7, -1.3])
    (g1,) = tg.grad((x**4).sum(), [x], create_graph=True)
    (g2,) = tg.grad(g1.sum(), [x], create_graph=True)
    (g3,) = tg.grad(g2.sum(), [x])
    np.testing.assert_allclose(g3.data, 24 * x.data)  # d^3/dx^3 x^4 = 24 x


def test_grad_without_create_graph_records_nothing_during_backward():
    x = leaf([1.0, 2.0])
    (g,) = tg.grad((x.exp()).sum(), [x])
    assert g._record is None
    assert tape.is_grad_enabled()


def test_reuse_freed_memory_stops_page_faults_between_steps():
    import resource
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc tuning is Linux-only")
    assert tg.reuse_freed_memory()
    x = tg.randn(256, 256, rng=0, requires_grad=True)

    def step():
        ((x * 2).tanh() * x).sum().backward()

    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 20 * 16  # each step frees and reallocates ~10 arrays of 64 pages
