"""Gradient checks: analytic gradients against central finite differences, in float64."""

from __future__ import annotations

import numpy as np

from tensorgrad.errors import GradcheckError
from tensorgrad.tape import grad
from tensorgrad.tensor import Tensor


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0) -> bool:
    """Check ``fn``'s gradients at ``inputs`` against central differences; True or raise.

    Inputs are cast to float64 copies; those with ``requires_grad`` are checked. A non-scalar
    output is reduced through a random projection ``sum(out * v)``, which checks the whole
    vector-Jacobian product at once. On a mismatch, ``GradcheckError`` names the input, the
    worst entry's index and both values.
    """
    inputs = _float64_copies(inputs)
    projection = _Projection(seed)

    def scalar(*xs):
        return projection(fn(*xs))

    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise GradcheckError("gradcheck: no input requires grad, so there is nothing to check")
    out = scalar(*inputs)
    if not out.requires_grad:
        analytic = [np.zeros_like(inputs[i].data) for i in wrt]
    else:
        grads = grad(out, [inputs[i] for i in wrt], allow_unused=True)
        analytic = [g.data for g in grads]
    for i, a in zip(wrt, analytic):
        numeric = _central_difference(scalar, inputs, i, eps)
        _compare(i, a, numeric, atol, rtol)
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0) -> bool:
    """Check second derivatives: gradcheck of ``fn``'s projected first-order gradients.

    The first-order gradients are built with ``create_graph=True`` and projected onto random
    directions, so what is checked is a Hessian-vector product of every op on the way.
    """
    inputs = _float64_copies(inputs)
    outer = _Projection(seed + 1)
    inner = _Projection(seed)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]

    def first_order(*xs):
        out = inner(fn(*xs))
        grads = grad(out, [xs[i] for i in wrt], create_graph=True, allow_unused=True)
        total = None
        for g in grads:
            term = outer(g)
            total = term if total is None else total + term
        return total

    return gradcheck(first_order, inputs, eps=eps, atol=atol, rtol=rtol, seed=seed + 2)


class _Projection:
    """Maps a tensor to ``sum(t * v)`` with a fixed random ``v`` per shape."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.directions = {}

    def __call__(self, t):
        if not isinstance(t, Tensor):
            raise GradcheckError(f"gradcheck: fn must return a Tensor, not {type(t).__name__}")
        if t.size == 1:
            return t.sum()
        if t.shape not in self.directions:
            self.directions[t.shape] = self.rng.standard_normal(t.shape)
        return (t * self.directions[t.shape]).sum()


def _float64_copies(inputs):
    copies = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            copies.append(Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad))
        else:
            copies.append(x)
    return copies


def _central_difference(scalar, inputs, i, eps):
    """d scalar / d inputs[i], one entry at a time, by (f(x + eps) - f(x - eps)) / 2 eps."""
    x = inputs[i].data
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        original = x[idx]
        x[idx] = original + eps
        plus = scalar(*inputs).item()
        x[idx] = original - eps
        minus = scalar(*inputs).item()
        x[idx] = original
        numeric[idx] = (plus - minus) / (2 * eps)
    return numeric


def _compare(i, analytic, numeric, atol, rtol):
    if analytic.shape != numeric.shape:
        raise GradcheckError(
            f"gradcheck: input {i}: analytic gradient has shape {analytic.shape}, expected "
            f"{numeric.shape}"
        )
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    error = np.where(np.isfinite(error), error, np.inf)  # NaN or inf on either side: a failure
    if error.size and error.max() > 0:
        worst = np.unravel_index(np.argmax(error), error.shape)
        raise GradcheckError(
            f"gradcheck: input {i}, entry {tuple(int(w) for w in worst)}: analytic "
            f"{analytic[worst]!r} vs numerical {numeric[worst]!r} (atol={atol}, rtol={rtol})"
        )
