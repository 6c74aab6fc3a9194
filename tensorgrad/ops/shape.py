"""Shape ops: they move entries around, so each VJP moves the cotangent back."""

import numpy as np

from tensorgrad.errors import ShapeError
from tensorgrad.ops.reductions import normalize_axis
from tensorgrad.ops.registry import op
from tensorgrad.tensor import array_of


@op("reshape")
def reshape(x, shape):
    return np.reshape(x, shape)


@reshape.defvjp
def reshape_vjp(g, out, x, shape):
    return (reshape(g, x.shape),)


@reshape.def_fast_vjp
def reshape_fast_vjp(g, out, x, shape, needs=()):
    return (np.reshape(g, np.shape(x)),)


@op("transpose")
def transpose(x, axes=None):
    """Permute axes (reverse them when ``axes`` is None), as ``numpy.transpose``."""
    if axes is not None and sorted(int(a) % max(np.ndim(x), 1) for a in axes) != list(
        range(np.ndim(x))
    ):
        raise ShapeError(f"transpose: axes {tuple(axes)} are not a permutation of {np.ndim(x)}")
    return np.transpose(x, axes)


@transpose.defvjp
def transpose_vjp(g, out, x, axes=None):
    inverse = None if axes is None else tuple(np.argsort([a % x.ndim for a in axes]))
    return (transpose(g, inverse),)


def swapaxes(x, axis1, axis2):
    """Exchange two axes (a transpose with a two-element swap)."""
    ndim = x.ndim
    a, b = normalize_axis(axis1, ndim, "swapaxes")[0], normalize_axis(axis2, ndim, "swapaxes")[0]
    axes = list(range(ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


@op("expand_dims")
def expand_dims(x, axis):
    return np.expand_dims(x, axis)


@expand_dims.defvjp
def expand_dims_vjp(g, out, x, axis):
    return (reshape(g, x.shape),)


@op("squeeze")
def squeeze(x, axis=None):
    if axis is not None:
        for a in normalize_axis(axis, np.ndim(x), "squeeze"):
            if np.shape(x)[a] != 1:
                raise ShapeError(f"squeeze: axis {a} of shape {np.shape(x)} is not of size 1")
    return np.squeeze(x, axis)


@squeeze.defvjp
def squeeze_vjp(g, out, x, axis=None):
    return (reshape(g, x.shape),)


@op("broadcast_to")
def broadcast_to(x, shape):
    return np.broadcast_to(x, shape)


@broadcast_to.defvjp
def broadcast_to_vjp(g, out, x, shape):
    return (g,)  # the registry sums the broadcast axes back down


@op("concatenate", inputs=("xs",), variadic=True)
def concatenate(*xs, axis=0):
    """Join tensors along an existing axis."""
    if not xs:
        raise ShapeError("concatenate: needs at least one tensor")
    return np.concatenate(xs, axis=axis)


@concatenate.defvjp
def concatenate_vjp(g, out, *xs, axis=0):
    bounds = np.cumsum([np.shape(array_of(x))[axis] for x in xs])[:-1]
    return _split_at(g, bounds, axis)


@op("stack", inputs=("xs",), variadic=True)
def stack(*xs, axis=0):
    """Join same-shaped tensors along a new axis."""
    if not xs:
        raise ShapeError("stack: needs at least one tensor")
    shapes = {np.shape(x) for x in xs}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors must have one shape, got {sorted(shapes)}")
    return np.stack(xs, axis=axis)


@stack.defvjp
def stack_vjp(g, out, *xs, axis=0):
    parts = _split_at(g, np.arange(1, len(xs)), axis)
    return tuple(squeeze(p, axis) for p in parts)


def split(x, indices_or_sections, axis=0):
    """Split into pieces along ``axis``, as ``numpy.split`` (each piece is an indexing op)."""
    length = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if indices_or_sections <= 0 or length % indices_or_sections:
            raise ShapeError(
                f"split: axis {axis} of length {length} does not split into "
                f"{indices_or_sections} equal sections"
            )
        step = length // indices_or_sections
        bounds = list(range(step, length, step))
    else:
        bounds = list(indices_or_sections)
    return _split_at(x, bounds, axis)


def _split_at(x, bounds, axis):
    from tensorgrad.ops.indexing import getitem

    edges = [0, *[int(b) for b in bounds], x.shape[axis]]
    lead = (slice(None),) * (axis % x.ndim)
    return tuple(getitem(x, lead + (slice(a, b),)) for a, b in zip(edges[:-1], edges[1:]))
