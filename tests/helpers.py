"""Test helpers shared by the dann tests: gradient checks of whole modules.

``tg.gradcheck`` checks the inputs it is given, as float64 copies; a module's parameters live
inside the module, so they are checked here by perturbing each parameter's array in place.
"""

from __future__ import annotations

import numpy as np

import tensorgrad as tg


def check_module_grads(module, forward, inputs=(), eps=1e-6, atol=1e-6, rtol=1e-4, seed=0):
    """Check d sum(forward() * v) / d(every parameter and input) against central differences.

    ``module`` must be float64; ``forward()`` takes no arguments and returns a Tensor computed
    with ``module`` (and with ``inputs``, float64 Tensors requiring grad). ``v`` is a fixed
    random direction, so the whole vector-Jacobian product is checked at once. Raises
    AssertionError naming the worst entry; every parameter must also get a nonzero gradient,
    so one left out of the computation cannot pass by being zero on both sides.
    Returns {name: (analytic, numeric)}.
    """
    named = list(module.named_parameters()) + [(f"input {i}", x) for i, x in enumerate(inputs)]
    for name, tensor in named:
        assert tensor.dtype == np.float64, f"{name} is {tensor.dtype}, not float64"
    direction = {}

    def scalar():
        out = forward()
        if out.shape not in direction:
            direction[out.shape] = np.random.default_rng(seed).standard_normal(out.shape)
        return (out * direction[out.shape]).sum()

    analytic = tg.grad(scalar(), [tensor for _, tensor in named], allow_unused=True)
    results = {}
    for (name, tensor), a in zip(named, analytic):
        numeric = central_difference(lambda: scalar().item(), tensor.data, eps)
        _assert_close(name, a.data, numeric, atol, rtol)
        assert np.abs(numeric).max() > 0, f"{name}: gradient is identically zero"
        results[name] = (a.data, numeric)
    return results


def central_difference(value, array, eps):
    """d value() / d array, entry by entry, perturbing ``array`` in place and restoring it."""
    numeric = np.zeros_like(array, dtype=np.float64)
    for idx in np.ndindex(array.shape):
        original = array[idx]
        array[idx] = original + eps
        plus = value()
        array[idx] = original - eps
        minus = value()
        array[idx] = original
        numeric[idx] = (plus - minus) / (2 * eps)
    return numeric


def _assert_close(name, analytic, numeric, atol, rtol):
    assert analytic.shape == numeric.shape, f"{name}: {analytic.shape} vs {numeric.shape}"
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert np.isfinite(analytic).all() and excess[worst] <= 0, (
        f"{name}, entry {tuple(int(i) for i in worst)}: analytic {analytic[worst]!r} vs "
        f"numerical {numeric[worst]!r}"
    )
