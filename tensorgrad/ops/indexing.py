"""Indexing ``x[index]`` and its adjoint, scatter-add, each the other's VJP.

Slices, ellipsis, None, integer arrays and boolean masks are all NumPy's. Only integer arrays
can pick an entry twice, so only they need an accumulating scatter; every other index is a
plain assignment into zeros.
"""

import numpy as np

from tensorgrad.errors import ShapeError
from tensorgrad.ops.registry import op
from tensorgrad.tensor import Tensor


def normalize_index(index):
    """``index`` with tensors and lists turned into arrays, always as a tuple."""
    if not isinstance(index, tuple):
        index = (index,)
    parts = []
    for part in index:
        if isinstance(part, Tensor):  # not getattr(part, "data"): an ndarray has .data too
            part = part.data
        if isinstance(part, list):
            part = np.asarray(part)
        if isinstance(part, np.ndarray) and part.dtype.kind not in "biu":
            raise ShapeError(f"getitem: index arrays must be integer or bool, not {part.dtype}")
        parts.append(part)
    return tuple(parts)


def _repeats_possible(index) -> bool:
    return any(isinstance(p, np.ndarray) and p.dtype.kind in "iu" for p in index)


@op("getitem")
def getitem(x, index):
    """``x[index]`` with NumPy's basic and advanced indexing."""
    index = normalize_index(index)
    try:
        return x[index]
    except IndexError as err:
        raise ShapeError(f"getitem: {err} (tensor of shape {np.shape(x)})") from None


@getitem.defvjp
def getitem_vjp(g, out, x, index):
    return (scatter_add(g, index=index, shape=x.shape),)


@op("scatter_add", inputs=("values",))
def scatter_add(values, index, shape):
    """Zeros of ``shape`` with ``values`` added at ``index`` (repeated indices accumulate)."""
    index = normalize_index(index)
    values = np.asarray(values)
    if len(index) == 1 and _repeats_possible(index) and len(shape) >= 1:
        return _scatter_rows(values, index[0], tuple(shape))
    out = np.zeros(shape, dtype=values.dtype)
    if _repeats_possible(index):
        np.add.at(out, index, values)
    else:
        out[index] = values
    return out


def _scatter_rows(values, rows, shape):
    """Rows picked by one integer array, summed where repeated: sort, then ``add.reduceat``.

    The embedding gradient's case; several times faster than ``np.add.at``.
    """
    rows = rows.ravel()
    if rows.size == 0:
        return np.zeros(shape, dtype=values.dtype)
    if rows.min() < -shape[0] or rows.max() >= shape[0]:
        raise ShapeError(f"scatter_add: an index is out of range for an axis of size {shape[0]}")
    rows = rows % shape[0]
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sums = np.add.reduceat(values.reshape(rows.size, -1)[order], starts, axis=0)
    out = np.zeros((shape[0], sums.shape[1]), dtype=values.dtype)
    out[ordered[starts]] = sums
    return out.reshape(shape)


@scatter_add.defvjp
def scatter_add_vjp(g, out, values, index, shape):
    return (getitem(g, index=index),)

