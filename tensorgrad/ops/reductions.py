"""Reductions over axes: sum, mean, max, min, var, std, logsumexp.

``axis`` may be an int, a negative int, a tuple or None; ``keepdims`` keeps reduced axes as
size 1. Every VJP first restores the reduced axes (``_expand``) so the cotangent broadcasts
against the input.
"""

import math

import numpy as np

from tensorgrad.errors import ShapeError
from tensorgrad.ops.registry import op


def normalize_axis(axis, ndim, name) -> tuple:
    """``axis`` as a sorted tuple of non-negative ints, with an error naming the op if invalid."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:  # as NumPy: a 0-d tensor has no axis to name
            raise ShapeError(f"{name}: axis {a} is out of range for a tensor with {ndim} axes")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{name}: repeated axis in {axis}")
    return tuple(sorted(out))


def _expand(g, x, axis, keepdims):
    """Reinsert the axes a reduction removed, so ``g`` broadcasts against ``x``."""
    if keepdims or axis is None and g.ndim == 0:
        return g
    axes = normalize_axis(axis, x.ndim, "reduction")
    shape = list(x.shape)
    for a in axes:
        shape[a] = 1
    return g.reshape(tuple(shape))


def _count(x, axis) -> int:
    """How many entries each reduced value covers."""
    if axis is None:
        return np.size(x)
    shape = np.shape(x)
    return math.prod(shape[a] for a in normalize_axis(axis, len(shape), "reduction"))


@op("sum")
def sum(x, axis=None, keepdims=False):
    return np.add.reduce(x, axis=_axis(axis, x, "sum"), keepdims=keepdims)


@sum.defvjp
def sum_vjp(g, out, x, axis=None, keepdims=False):
    return (broadcast_to(_expand(g, x, axis, keepdims), x.shape),)


@sum.def_fast_vjp
def sum_fast_vjp(g, out, x, axis=None, keepdims=False, needs=()):
    return (np.broadcast_to(_expand(g, x, axis, keepdims), np.shape(x)),)


@op("mean")
def mean(x, axis=None, keepdims=False):
    total = np.add.reduce(x, axis=_axis(axis, x, "mean"), keepdims=keepdims)
    return np.true_divide(total, _count(x, axis))  # np.mean's result, without its overhead


@mean.defvjp
def mean_vjp(g, out, x, axis=None, keepdims=False):
    return (broadcast_to(_expand(g, x, axis, keepdims) / _count(x.data, axis), x.shape),)


@mean.def_fast_vjp
def mean_fast_vjp(g, out, x, axis=None, keepdims=False, needs=()):
    scaled = np.true_divide(_expand(g, x, axis, keepdims), _count(x, axis))
    return (np.broadcast_to(scaled, np.shape(x)),)


@op("max")
def max(x, axis=None, keepdims=False):
    return _extreme(np.max, x, axis, keepdims, "max")


@max.defvjp
def max_vjp(g, out, x, axis=None, keepdims=False):
    return (_extreme_vjp(g, out, x, axis, keepdims),)


@op("min")
def min(x, axis=None, keepdims=False):
    return _extreme(np.min, x, axis, keepdims, "min")


@min.defvjp
def min_vjp(g, out, x, axis=None, keepdims=False):
    return (_extreme_vjp(g, out, x, axis, keepdims),)


def _extreme(reduce, x, axis, keepdims, name):
    if np.size(x) == 0:
        raise ShapeError(f"{name}: cannot reduce an empty tensor of shape {np.shape(x)}")
    return reduce(x, axis=_axis(axis, x, name), keepdims=keepdims)


def _extreme_vjp(g, out, x, axis, keepdims):
    """Tied extremes share the cotangent equally (the mask is a constant for d^2)."""
    hit = x.data == _expand(out, x, axis, keepdims).data
    share = hit / np.sum(hit, axis=_axis(axis, x.data, "max"), keepdims=True)
    return _expand(g, x, axis, keepdims) * share.astype(x.dtype, copy=False)


@op("var")
def var(x, axis=None, ddof=0, keepdims=False):
    return np.var(x, axis=_axis(axis, x, "var"), ddof=ddof, keepdims=keepdims)


@var.defvjp
def var_vjp(g, out, x, axis=None, ddof=0, keepdims=False):
    centred = x - mean(x, axis=axis, keepdims=True)
    scale = 2.0 / (_count(x.data, axis) - ddof)
    return (_expand(g, x, axis, keepdims) * centred * scale,)  # d var = 2 (x - mean) / (n - ddof)


def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation: the square root of ``var`` (its gradient comes from the two)."""
    from tensorgrad.ops.elementwise import sqrt

    return sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims))


@op("logsumexp")
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed stably by shifting by the maximum."""
    axes = _axis(axis, x, "logsumexp")
    shift = np.max(x, axis=axes, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0)
    total = np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift
    return total if keepdims else np.squeeze(total, axis=axes)


@logsumexp.defvjp
def logsumexp_vjp(g, out, x, axis=None, keepdims=False):
    from tensorgrad.ops.elementwise import exp

    return (_expand(g, x, axis, keepdims) * exp(x - _expand(out, x, axis, keepdims)),)


def _axis(axis, x, name):
    """Validate ``axis`` for NumPy, keeping None as None (faster for full reductions)."""
    return None if axis is None else normalize_axis(axis, np.ndim(x), name)


from tensorgrad.ops.shape import broadcast_to  # noqa: E402
