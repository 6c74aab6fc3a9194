"""One hypothesis strategy per registered op, each drawing a ``Case`` the property tests run.

A case holds the op's differentiable inputs as float64 arrays, how to call the op on tensors
made from them (attributes and constants are baked in), and a reference forward written with
NumPy or ``math`` independently of tensorgrad's own forward code. Values are kept a margin
away from each op's kinks (zero for abs and relu, ties for max and maximum, the bounds of clip)
that is far larger than gradcheck's finite-difference step, and shapes stay tiny so that second
derivatives are cheap to check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorgrad as tg

MAX_ENTRIES = 12  # per array: gradgradcheck costs two backward passes per entry
MARGIN = 0.05  # distance kept from kinks, ties and bounds; gradcheck's eps is 1e-6


@dataclass
class Case:
    """One drawn call of an op: ``call(op, *tensors)`` against ``reference(*arrays)``."""

    label: str
    arrays: list
    call: Callable
    reference: Callable
    out_dtype: Callable = lambda dtype: dtype  # the output dtype for inputs of ``dtype``
    tolerances: dict = field(default_factory=dict)  # gradcheck overrides (eps, atol, rtol)


# ---------------------------------------------------------------- shapes, axes and values


def _small(shape) -> bool:
    return math.prod(shape) <= MAX_ENTRIES


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=3):
    """Array shapes of at most MAX_ENTRIES entries; size-1 axes and 0-d included."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).filter(_small)


def broadcasting(num_shapes=2, max_dims=3):
    """Shapes that broadcast together (size-1 and missing axes), with a small result."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=0, max_dims=max_dims, max_side=3
    ).filter(lambda b: _small(b.result_shape) and all(map(_small, b.input_shapes)))


def floats(low=-2.0, high=2.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def off_zero(high=2.0):
    """Floats at least MARGIN away from zero, of either sign."""
    return st.one_of(floats(-high, -MARGIN), floats(MARGIN, high))


def arrays(shape, elements=None):
    return hnp.arrays(np.float64, shape, elements=floats() if elements is None else elements)


@st.composite
def grid(draw, shape, parity):
    """Values near multiples of 0.1 of one parity, so arrays of opposite parities never tie.

    An even-grid value and an odd-grid value are at least 0.07 apart.
    """
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(-9, 9)))
    noise = draw(hnp.arrays(np.float64, shape, elements=floats(0.0, 0.03)))
    return (2 * k + parity) * 0.1 + noise


@st.composite
def distinct(draw, shape):
    """Values whose entries are pairwise at least 0.17 apart (no ties anywhere)."""
    n = math.prod(shape)
    order = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    noise = draw(hnp.arrays(np.float64, n, elements=floats(0.0, 0.03)))
    return ((order - n / 2) * 0.2 + noise).reshape(shape)


def axes(ndim):
    """Valid ``axis`` values for a reduction: None, an int (maybe negative) or a tuple."""
    options = [st.none(), hnp.valid_tuple_axes(ndim)]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
    return st.one_of(options)


def _normalized(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(sorted(a % ndim for a in axis))


def _count(shape, axis) -> int:
    return math.prod(shape[a] for a in _normalized(axis, len(shape)))


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


# ---------------------------------------------------------------- arithmetic and elementwise


@st.composite
def binary(draw, name, reference, x_elements=None, y_elements=None):
    """Two broadcasting arrays, or one array and a Python scalar on either side."""
    sx, sy = draw(broadcasting()).input_shapes
    x = draw(arrays(sx, x_elements))
    y = draw(arrays(sy, y_elements))
    mode = draw(st.sampled_from(["tensors", "scalar right", "scalar left"]))
    if mode == "scalar right":
        c = draw(floats() if y_elements is None else y_elements)
        return Case(f"{name}(x, {c!r})", [x], lambda f, t: f(t, c), lambda a: reference(a, c))
    if mode == "scalar left":
        c = draw(floats() if x_elements is None else x_elements)
        return Case(f"{name}({c!r}, y)", [y], lambda f, t: f(c, t), lambda b: reference(c, b))
    return Case(f"{name}(x, y)", [x, y], lambda f, a, b: f(a, b), reference)


@st.composite
def power(draw):
    """x ** y with a positive base, or any nonzero base raised to a Python int."""
    if draw(st.booleans()):
        return draw(binary("pow", lambda a, b: np.exp(b * np.log(a)), floats(0.3, 2.0),
                           floats(-2.0, 2.5)))
    x = draw(arrays(draw(shapes()), off_zero()))
    k = draw(st.sampled_from([2, 3, -1]))
    return Case(f"pow(x, {k})", [x], lambda f, t: f(t, k), lambda a: _int_power(a, k))


def _int_power(a, k):
    out = np.ones_like(a)
    for _ in range(abs(k)):
        out = out * a
    return out if k >= 0 else 1.0 / out


def _matmul_reference(a, b):
    """Matrix product by broadcast multiply and sum, with NumPy's promotion of 1-D operands."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    out = (a2[..., :, :, None] * b2[..., None, :, :]).sum(axis=-2)
    if b.ndim == 1:
        out = out[..., 0]
    if a.ndim == 1:
        out = out[..., 0, :] if b.ndim > 1 else out[..., 0]
    return out


@st.composite
def matmul(draw):
    """Operands with NumPy's matmul shapes: 1-D on either side and broadcast batch axes."""
    shape_pairs = hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=2, max_side=3
    ).filter(lambda b: all(map(_small, b.input_shapes)))
    sx, sy = draw(shape_pairs).input_shapes
    x, y = draw(arrays(sx)), draw(arrays(sy))
    return Case("matmul(x, y)", [x, y], lambda f, a, b: f(a, b), _matmul_reference)


@st.composite
def astype(draw):
    """A cast to float64 or float32; the float32 cast needs a coarser finite difference."""
    target = draw(st.sampled_from([np.float64, np.float32]))
    x = draw(arrays(draw(shapes())))
    coarse = {"eps": 1e-3, "atol": 1e-3, "rtol": 1e-2} if target == np.float32 else {}
    return Case(f"astype(x, {target.__name__})", [x], lambda f, t: f(t, target),
                lambda a: a.astype(target), out_dtype=lambda dtype: np.dtype(target),
                tolerances=coarse)


@st.composite
def unary(draw, name, reference, elements=None, **attr_strategies):
    """One array (any shape, 0-d included) and optionally drawn keyword attributes."""
    x = draw(arrays(draw(shapes()), elements))
    attrs = {k: draw(s) for k, s in attr_strategies.items()}
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return Case(f"{name}(x, **{attrs})", [x], lambda f, t: f(t, **attrs),
                lambda a: reference(a, **attrs))


def _leaky_relu(a, negative_slope=0.01):
    return np.where(a > 0, a, negative_slope * a)


def _gelu(a, approximate="none"):
    if approximate == "tanh":
        return 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))
    return 0.5 * a * (1 + _erf(a / math.sqrt(2)))


@st.composite
def extremum(draw, name, reference):
    """maximum / minimum of arrays (or a scalar) on opposite grids, so no pair ever ties."""
    sx, sy = draw(broadcasting()).input_shapes
    x = draw(grid(sx, 0))
    if draw(st.booleans()):
        c = float(draw(grid((), 1)))
        return Case(f"{name}(x, {c!r})", [x], lambda f, t: f(t, c), lambda a: reference(a, c))
    y = draw(grid(sy, 1))
    return Case(f"{name}(x, y)", [x, y], lambda f, a, b: f(a, b), reference)


@st.composite
def where(draw):
    """A boolean condition (array or bool tensor) broadcasting with both branches."""
    sc, sx, sy = draw(broadcasting(num_shapes=3)).input_shapes
    cond = draw(hnp.arrays(np.bool_, sc))
    x, y = draw(arrays(sx)), draw(arrays(sy))
    c = tg.tensor(cond) if draw(st.booleans()) else cond
    if draw(st.booleans()):
        k = draw(floats())
        return Case("where(cond, x, scalar)", [x], lambda f, a: f(c, a, k),
                    lambda a: np.where(cond, a, k))
    return Case("where(cond, x, y)", [x, y], lambda f, a, b: f(c, a, b),
                lambda a, b: np.where(cond, a, b))


@st.composite
def clip(draw):
    """Values on the even grid, bounds on the odd grid (either bound may be None)."""
    x = draw(grid(draw(shapes()), 0))
    low, high = sorted(float(v) for v in draw(grid((2,), 1)))
    low = low if draw(st.booleans()) else None
    high = high if draw(st.booleans()) and high != low else None

    def reference(a):
        a = a if low is None else np.where(a < low, low, a)
        return a if high is None else np.where(a > high, high, a)

    return Case(f"clip(x, {low}, {high})", [x], lambda f, t: f(t, min=low, max=high), reference)


# ---------------------------------------------------------------- reductions


@st.composite
def reduction(draw, name, reference, values=None, ddof=False):
    """A reduction over drawn axes, with keepdims; ``values`` may forbid ties."""
    shape = draw(shapes())
    x = draw(values(shape) if values else arrays(shape))
    attrs = {"axis": draw(axes(len(shape))), "keepdims": draw(st.booleans())}
    if ddof and _count(shape, attrs["axis"]) > 1:
        attrs["ddof"] = draw(st.sampled_from([0, 1]))
    return Case(f"{name}(x, **{attrs})", [x], lambda f, t: f(t, **attrs),
                lambda a: reference(a, **attrs))


def _mean(a, axis=None, keepdims=False):
    return np.sum(a, axis=axis, keepdims=keepdims) / _count(a.shape, axis)


def _var(a, axis=None, keepdims=False, ddof=0):
    centred = a - np.sum(a, axis=axis, keepdims=True) / _count(a.shape, axis)
    total = np.sum(centred * centred, axis=axis, keepdims=keepdims)
    return total / (_count(a.shape, axis) - ddof)


def _logsumexp(a, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))


# ---------------------------------------------------------------- shape ops


def _prime_factors(n):
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def reshape(draw):
    """A new shape of the same size: factors regrouped, size-1 axes added, maybe a -1."""
    x = draw(arrays(draw(shapes())))
    k = draw(st.integers(1, 3))
    dims = [1] * k
    for p in _prime_factors(x.size):
        dims[draw(st.integers(0, k - 1))] *= p
    if x.size == 1 and draw(st.booleans()):
        dims = []
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    shape = tuple(dims)
    return Case(f"reshape(x, {shape})", [x], lambda f, t: f(t, shape),
                lambda a: a.reshape(shape))


@st.composite
def transpose(draw):
    """Reversed axes (None) or a drawn permutation, some entries written negative."""
    x = draw(arrays(draw(shapes())))
    perm = None
    if draw(st.booleans()):
        perm = tuple(a - x.ndim if draw(st.booleans()) else a
                     for a in draw(st.permutations(range(x.ndim))))
    return Case(f"transpose(x, {perm})", [x], lambda f, t: f(t, perm),
                lambda a: np.transpose(a, perm))


@st.composite
def expand_dims(draw):
    """New size-1 axes at an int or a tuple of positions (negative ones included)."""
    x = draw(arrays(draw(shapes())))
    n = draw(st.integers(1, 2))
    axis = draw(hnp.valid_tuple_axes(x.ndim + n, min_size=n, max_size=n))
    if n == 1 and draw(st.booleans()):
        axis = axis[0]
    return Case(f"expand_dims(x, {axis})", [x], lambda f, t: f(t, axis),
                lambda a: np.expand_dims(a, axis))


@st.composite
def squeeze(draw):
    """Drop all size-1 axes (None) or some of them, by int or tuple."""
    shape = draw(shapes(min_side=1, max_side=2))
    x = draw(arrays(shape))
    ones = [a - len(shape) if draw(st.booleans()) else a
            for a, n in enumerate(shape) if n == 1]
    axis = draw(st.one_of(st.none(), st.lists(st.sampled_from(ones), unique=True).map(tuple)))\
        if ones else None
    if isinstance(axis, tuple) and len(axis) == 1 and draw(st.booleans()):
        axis = axis[0]
    return Case(f"squeeze(x, {axis})", [x], lambda f, t: f(t, axis),
                lambda a: np.squeeze(a, axis))


@st.composite
def broadcast_to(draw):
    """A target shape and an input that broadcasts to it (fewer axes, size-1 axes)."""
    target = draw(shapes())
    lead = draw(st.integers(0, len(target)))
    shape = tuple(1 if draw(st.booleans()) else n for n in target[lead:])
    x = draw(arrays(shape))
    return Case(f"broadcast_to(x, {target})", [x], lambda f, t: f(t, target),
                lambda a: a + np.zeros(target))


@st.composite
def concatenate(draw):
    """One to three arrays that differ only in the length of the joined axis."""
    base = list(draw(shapes(min_dims=1, max_side=2)))
    axis = draw(st.integers(-len(base), len(base) - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        base[axis] = draw(st.integers(1, 2))
        parts.append(draw(arrays(tuple(base))))
    return Case(f"concatenate(xs, axis={axis})", parts, _variadic_call(draw, axis),
                lambda *a: _concatenate_reference(a, axis))


def _variadic_call(draw, axis):
    """Call op(list_of_tensors, axis) with the axis by keyword or by position, as NumPy allows."""
    if draw(st.booleans()):
        return lambda f, *ts: f(list(ts), axis)
    return lambda f, *ts: f(list(ts), axis=axis)


def _concatenate_reference(parts, axis):
    axis %= parts[0].ndim
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    out, start = np.empty(shape), 0
    for p in parts:
        where = [slice(None)] * len(shape)
        where[axis] = slice(start, start + p.shape[axis])
        out[tuple(where)] = p
        start += p.shape[axis]
    return out


@st.composite
def stack(draw):
    """One to three same-shaped arrays stacked along a new axis."""
    shape = draw(shapes(max_side=2))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    parts = [draw(arrays(shape)) for _ in range(draw(st.integers(1, 3)))]
    return Case(f"stack(xs, axis={axis})", parts, _variadic_call(draw, axis),
                lambda *a: np.moveaxis(np.array(a), 0, axis))


# ---------------------------------------------------------------- indexing


@st.composite
def int_index(draw, length):
    """An integer index array into an axis of ``length`` entries, with a repeat when it can."""
    picks = draw(st.lists(st.integers(-length, length - 1), min_size=1, max_size=3))
    if draw(st.booleans()):
        picks.append(picks[0])  # a repeated entry: its cotangents must add up
    index = np.array(picks)
    return index.reshape(2, -1) if index.size % 2 == 0 and draw(st.booleans()) else index


@st.composite
def indices(draw, shape):
    """Any index NumPy takes: basic (slices, ints, ellipsis, None), integer arrays, masks."""
    kind = draw(st.sampled_from(["basic", "int", "int mixed", "int all axes", "mask", "mask lead"]
                                if shape else ["basic"]))
    if kind == "basic":
        return draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    if kind == "int":
        return draw(int_index(shape[0]))
    if kind == "int mixed":
        lead = draw(st.sampled_from([(), (slice(None),) * (len(shape) - 1), (Ellipsis,)]))
        return lead + (draw(int_index(shape[-1 if lead else 0])),)
    if kind == "int all axes":
        return draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_side=3,
                                                                                   max_dims=1)))
    if kind == "mask":
        return draw(hnp.arrays(np.bool_, shape))
    return (draw(hnp.arrays(np.bool_, shape[:1])), Ellipsis)


def _positions(shape, index):
    """The flat position in ``shape`` of every entry that ``index`` picks."""
    return np.arange(math.prod(shape)).reshape(shape)[index]


def _as_given(draw, index):
    """Pass an index array as it is or wrapped in a tensor, as a user might."""
    how = draw(st.sampled_from(["array", "tensor"]))
    if how == "tensor" and isinstance(index, np.ndarray):
        return tg.tensor(index)
    return index


@st.composite
def getitem(draw):
    x = draw(arrays(draw(shapes())))
    index = draw(indices(x.shape))
    given = _as_given(draw, index)
    return Case(f"getitem(x, {index!r})", [x], lambda f, t: f(t, given),
                lambda a: a.reshape(-1)[_positions(a.shape, index)])


@st.composite
def scatter_add(draw):
    shape = draw(shapes())
    index = draw(indices(shape))
    values = draw(arrays(_positions(shape, index).shape))

    def reference(v):
        out = np.zeros(math.prod(shape))
        for position, value in zip(_positions(shape, index).reshape(-1), v.reshape(-1)):
            out[position] += value
        return out.reshape(shape)

    return Case(f"scatter_add(v, {index!r}, {shape})", [values],
                lambda f, t: f(t, index=index, shape=shape), reference)


# ---------------------------------------------------------------- fused nn ops


@st.composite
def softmax_like(draw, name, reference):
    """An array of at least one axis and a normalised axis (default, int, negative)."""
    x = draw(arrays(draw(shapes(min_dims=1))))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    attrs = {} if axis is None else {"axis": axis}
    return Case(f"{name}(x, **{attrs})", [x], lambda f, t: f(t, **attrs),
                lambda a: reference(a, attrs.get("axis", -1)))


def _softmax(a, axis):
    e = np.exp(a)
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(a, axis):
    return np.log(_softmax(a, axis))


@st.composite
def layer_norm(draw):
    """(..., D) inputs spread out along D (the op is ill-conditioned when std is near 0)."""
    width = draw(st.integers(2, 4))
    shape = draw(shapes(max_dims=2).filter(lambda b: math.prod(b) * width <= MAX_ENTRIES))
    shape += (width,)
    x = draw(arrays(shape).filter(lambda a: np.all(a.std(axis=-1) > 0.3)))
    has_w, has_b = draw(st.booleans()), draw(st.booleans())
    eps = draw(st.sampled_from([None, 1e-3]))
    given = [x]
    given += [draw(arrays(shape[-1:]))] if has_w else []
    given += [draw(arrays(shape[-1:]))] if has_b else []
    attrs = {} if eps is None else {"eps": eps}

    def call(f, t, *rest):
        rest = list(rest)
        w = rest.pop(0) if has_w else None
        b = rest.pop(0) if has_b else None
        return f(t, w, b, **attrs)

    def reference(a, *rest):
        rest = list(rest)
        xhat = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True)
                                                        + attrs.get("eps", 1e-5))
        xhat = xhat * rest.pop(0) if has_w else xhat
        return xhat + rest.pop(0) if has_b else xhat

    return Case(f"layer_norm(x, weight={has_w}, bias={has_b}, **{attrs})", given, call,
                reference)


@st.composite
def cross_entropy(draw):
    """Logits (..., C), integer targets (...), maybe ignored entries, smoothing, reductions."""
    classes = draw(st.integers(2, 4))
    batch = draw(shapes(max_dims=2).filter(lambda b: math.prod(b) * classes <= 2 * MAX_ENTRIES))
    logits = draw(arrays(batch + (classes,)))
    target = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)))
    attrs = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])),
             "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}
    if draw(st.booleans()):
        attrs["ignore_index"] = draw(st.sampled_from([-100, 0]))
        ignored = draw(hnp.arrays(np.bool_, batch))
        target = np.where(ignored, attrs["ignore_index"], target)
    given = tg.tensor(target) if draw(st.booleans()) else target
    return Case(f"cross_entropy(logits, {target.tolist()}, **{attrs})", [logits],
                lambda f, t: f(t, given, **attrs),
                lambda a: _cross_entropy_reference(a, target, **attrs))


def _cross_entropy_reference(logits, target, reduction, label_smoothing, ignore_index=None):
    logp = np.log(_softmax(logits, -1))
    kept = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    safe = np.where(kept, target, 0)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    loss = -(1 - label_smoothing) * picked - label_smoothing * logp.mean(axis=-1)
    loss = np.where(kept, loss, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / max(kept.sum(), 1)


@st.composite
def _optional(draw, strategy):
    return draw(strategy) if draw(st.booleans()) else None


@st.composite
def linear(draw):
    """x (..., in) against weight (out, in), with or without a bias (out,)."""
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(shapes(max_dims=2).filter(lambda b: math.prod(b) * n_in <= MAX_ENTRIES))
    x, w = draw(arrays(batch + (n_in,))), draw(arrays((n_out, n_in)))
    b = draw(_optional(arrays((n_out,))))
    return _with_optional_last(f"linear(x, w, bias={b is not None})", x, w, b, {},
                               _linear_reference)


def _linear_reference(x, w, b=None):
    out = (x[..., None, :] * w).sum(axis=-1)
    return out if b is None else out + b


@st.composite
def sparse_linear(draw):
    """Units that each read K fixed inputs (repeats allowed) through a (J, K) weight.

    Either random wiring, or block wiring (unit j reads inputs j*K .. j*K + K - 1), which the
    op runs by a faster path; the index is given as an array or as nested lists.
    """
    units, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()):
        n_in = units * k
        index = np.arange(n_in).reshape(units, k)
    else:
        n_in = draw(st.integers(1, 4))
        index = draw(hnp.arrays(np.int64, (units, k), elements=st.integers(0, n_in - 1)))
    batch = draw(shapes(max_dims=2).filter(lambda b: math.prod(b) * n_in <= MAX_ENTRIES))
    x, w = draw(arrays(batch + (n_in,))), draw(arrays((units, k)))
    b = draw(_optional(arrays((units,))))

    def reference(x, w, b=None):
        out = np.zeros(x.shape[:-1] + (units,))
        for j in range(units):
            for i in range(k):
                out[..., j] += w[j, i] * x[..., index[j, i]]
        return out if b is None else out + b

    given = index.tolist() if draw(st.booleans()) else index
    return _with_optional_last(f"sparse_linear(x, w, bias={b is not None}, index={index})",
                               x, w, b, {"index": given}, reference)


def _with_optional_last(label, x, w, b, attrs, reference):
    """A case for op(x, w, b, **attrs) where the bias ``b`` may be absent (None)."""
    if b is None:
        return Case(label, [x, w], lambda f, tx, tw: f(tx, tw, None, **attrs), reference)
    return Case(label, [x, w, b], lambda f, tx, tw, tb: f(tx, tw, tb, **attrs), reference)


@st.composite
def attention(draw):
    """q (..., Tq, H d), k (..., Tk, H d), v (..., Tk, H dv), an optional additive bias."""
    heads, d, dv = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    tq, tk = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (1,), (2,)]).filter(
        lambda b: math.prod(b) * max(tq, tk) * heads * max(d, dv) <= MAX_ENTRIES))
    q = draw(arrays(batch + (tq, heads * d)))
    k = draw(arrays(batch + (tk, heads * d)))
    v = draw(arrays(batch + (tk, heads * dv)))
    bias_shape = draw(st.sampled_from([(tq, tk), (1, tk), (heads, 1, tk)]))
    bias = draw(_optional(arrays(bias_shape)))
    attrs = {"scale": draw(st.sampled_from([1.0, 0.7])), "heads": heads}

    def reference(q, k, v):
        split = lambda t: np.stack(np.split(t, heads, axis=-1), axis=-3)  # noqa: E731
        scores = (split(q)[..., :, None, :] * split(k)[..., None, :, :]).sum(-1)
        scores = scores * attrs["scale"] + (0.0 if bias is None else bias)
        mixed = _softmax(scores, -1)[..., None] * split(v)[..., None, :, :]
        heads_out = mixed.sum(axis=-2)
        return np.concatenate([heads_out[..., h, :, :] for h in range(heads)], axis=-1)

    return Case(f"attention(q, k, v, bias {None if bias is None else bias.shape}, **{attrs})",
                [q, k, v], lambda f, a, b, c: f(a, b, c, bias, **attrs), reference)


# ---------------------------------------------------------------- the table


CASES = {
    "add": binary("add", lambda a, b: a + b),
    "sub": binary("sub", lambda a, b: a - b),
    "mul": binary("mul", lambda a, b: a * b),
    "div": binary("div", lambda a, b: a / b, y_elements=off_zero(), x_elements=off_zero()),
    "pow": power(),
    "neg": unary("neg", lambda a: -a),
    "matmul": matmul(),
    "astype": astype(),
    "exp": unary("exp", np.exp),
    "log": unary("log", np.log, floats(0.2, 3.0)),
    "sqrt": unary("sqrt", lambda a: a**0.5, floats(0.2, 3.0)),
    "tanh": unary("tanh", lambda a: (np.exp(2 * a) - 1) / (np.exp(2 * a) + 1)),
    "sigmoid": unary("sigmoid", lambda a: 1 / (1 + np.exp(-a)), floats(-4.0, 4.0)),
    "sin": unary("sin", np.sin, floats(-4.0, 4.0)),
    "cos": unary("cos", np.cos, floats(-4.0, 4.0)),
    "abs": unary("abs", lambda a: np.where(a < 0, -a, a), off_zero()),
    "relu": unary("relu", lambda a: np.where(a > 0, a, 0.0), off_zero()),
    "leaky_relu": unary("leaky_relu", _leaky_relu, off_zero(),
                        negative_slope=st.sampled_from([None, 0.2])),
    "gelu": unary("gelu", _gelu, floats(-3.0, 3.0),
                  approximate=st.sampled_from([None, "none", "tanh"])),
    "erf": unary("erf", _erf),
    "maximum": extremum("maximum", lambda a, b: np.where(a > b, a, b)),
    "minimum": extremum("minimum", lambda a, b: np.where(a < b, a, b)),
    "where": where(),
    "clip": clip(),
    "sum": reduction("sum", np.sum),
    "mean": reduction("mean", _mean),
    "max": reduction("max", np.max, distinct),
    "min": reduction("min", np.min, distinct),
    "var": reduction("var", _var, ddof=True),
    "logsumexp": reduction("logsumexp", _logsumexp),
    "reshape": reshape(),
    "transpose": transpose(),
    "expand_dims": expand_dims(),
    "squeeze": squeeze(),
    "broadcast_to": broadcast_to(),
    "concatenate": concatenate(),
    "stack": stack(),
    "getitem": getitem(),
    "scatter_add": scatter_add(),
    "softmax": softmax_like("softmax", _softmax),
    "log_softmax": softmax_like("log_softmax", _log_softmax),
    "layer_norm": layer_norm(),
    "cross_entropy": cross_entropy(),
    "linear": linear(),
    "sparse_linear": sparse_linear(),
    "attention": attention(),
}
