"""The Tensor: a NumPy array that remembers, on the tape, the op that produced it."""

from __future__ import annotations

import numbers

import numpy as np

from tensorgrad import tape
from tensorgrad.errors import BackwardError, DtypeError


class Tensor:
    """An ndarray (``.data``) with an optional gradient (``.grad``) and a tape record.

    A tensor made by the user is a leaf: backward accumulates into its ``.grad``. A tensor made
    by an op on inputs that need a gradient holds the op's record, through which backward
    reaches the leaves.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_record", "_retains_grad", "name",
                 "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        array = np.array(data, dtype=dtype) if dtype is not None else np.asarray(data)
        if array.dtype == object:
            raise DtypeError(f"tensor: cannot make a tensor from {type(data).__name__} data")
        self.data = array
        self.grad = None
        self._requires_grad = False
        self._record = None
        self._retains_grad = False
        self.name = name
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array) -> "Tensor":
        """A tensor around an op's output, skipping the checks of ``__init__`` (hot path)."""
        t = cls.__new__(cls)
        t.data = array if type(array) is np.ndarray else np.asarray(array)
        t.grad = None
        t._requires_grad = False
        t._record = None
        t._retains_grad = False
        t.name = None
        return t

    # ------------------------------------------------------------ properties

    shape = property(lambda self: self.data.shape, doc="The shape of ``.data``.")
    ndim = property(lambda self: self.data.ndim, doc="The number of axes.")
    dtype = property(lambda self: self.data.dtype, doc="The NumPy dtype.")
    size = property(lambda self: self.data.size, doc="The number of entries.")
    is_leaf = property(lambda self: self._record is None, doc="Whether no op produced it.")

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this tensor (set it on float leaves only)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        self.requires_grad_(flag)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Mark a leaf as wanting a gradient; only floating-point tensors can."""
        if flag and self.data.dtype.kind not in "fc":
            raise DtypeError(
                f"tensor: only floating-point tensors can require grad, not {self.dtype}"
            )
        if not flag and self._record is not None:
            raise BackwardError("requires_grad_: cannot turn it off on a non-leaf; use detach()")
        self._requires_grad = bool(flag)
        return self

    def retain_grad(self) -> "Tensor":
        """Keep this non-leaf's gradient in ``.grad`` after backward, as PyTorch does."""
        self._retains_grad = True
        return self

    def item(self):
        """The single value of a one-entry tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item: tensor of shape {self.shape} has {self.size} entries")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def detach(self) -> "Tensor":
        """The same data as a new leaf that needs no gradient."""
        return Tensor._wrap(self.data)

    def __array__(self, dtype=None, copy=None):
        """NumPy sees the data (as with PyTorch tensors; what NumPy computes is not recorded)."""
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        extras = ""
        if self.data.dtype != np.float64:
            extras += f", dtype={self.dtype}"
        if self._record is not None:
            extras += f", op={self._record.op.name}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ------------------------------------------------------------ backward

    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that needs it."""
        if not self.requires_grad:
            raise BackwardError(
                "backward: this tensor does not require grad (no input of the ops that made "
                "it needs one, or it was computed under no_grad)"
            )
        found = tape.run_backward([self], [grad], retain_graph, create_graph)
        for t, g in found.values():
            if t._record is not None and not t._retains_grad:
                continue
            if create_graph:  # g may be shared with another input (add): make a new tensor
                t.grad = g + 0.0 if t.grad is None else t.grad + g
            else:
                t.grad = _accumulate_array(t.grad, g.data)

    # ------------------------------------------------------------ operators

    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops.abs(self)
    def __getitem__(self, index): return _ops.getitem(self, index)

    def __lt__(self, other): return _compare(np.less, self, other)
    def __le__(self, other): return _compare(np.less_equal, self, other)
    def __gt__(self, other): return _compare(np.greater, self, other)
    def __ge__(self, other): return _compare(np.greater_equal, self, other)
    def __eq__(self, other): return _compare(np.equal, self, other)
    def __ne__(self, other): return _compare(np.not_equal, self, other)
    __hash__ = object.__hash__

    # ------------------------------------------------------------ methods

    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def abs(self): return _ops.abs(self)
    def sin(self): return _ops.sin(self)
    def cos(self): return _ops.cos(self)
    def clip(self, min=None, max=None): return _ops.clip(self, min, max)
    def astype(self, dtype): return _ops.astype(self, dtype)

    def sum(self, axis=None, keepdims=False): return _ops.sum(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _ops.min(self, axis=axis, keepdims=keepdims)
    def var(self, axis=None, ddof=0, keepdims=False): return _ops.var(self, axis, ddof, keepdims)
    def std(self, axis=None, ddof=0, keepdims=False): return _ops.std(self, axis, ddof, keepdims)
    def logsumexp(self, axis=None, keepdims=False): return _ops.logsumexp(self, axis, keepdims)
    def argmax(self, axis=None): return Tensor._wrap(np.argmax(self.data, axis=axis))
    def argmin(self, axis=None): return Tensor._wrap(np.argmin(self.data, axis=axis))

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def swapaxes(self, a, b): return _ops.swapaxes(self, a, b)
    def expand_dims(self, axis): return _ops.expand_dims(self, axis)
    def squeeze(self, axis=None): return _ops.squeeze(self, axis)
    def broadcast_to(self, shape): return _ops.broadcast_to(self, shape)
    def flatten(self): return _ops.reshape(self, (-1,))
    T = property(lambda self: _ops.transpose(self), doc="The transpose (axes reversed).")


def array_of(x):
    """The ndarray inside a Tensor, or ``x`` itself (not ``getattr(x, "data")``: an ndarray's
    ``.data`` is its memoryview)."""
    return x.data if isinstance(x, Tensor) else x


def _compare(ufunc, a, b) -> Tensor:
    """A comparison: a bool tensor that never needs or carries a gradient."""
    return Tensor._wrap(ufunc(array_of(a), array_of(b)))


def _accumulate_array(total, g):
    """Add gradient ``g`` to an existing ``.grad`` (or start it), as PyTorch accumulates."""
    if total is None:
        return g.copy()  # cotangents may alias each other or live data: never hand one out
    total += g
    return total


# ---------------------------------------------------------------- constructors


def tensor(data, requires_grad=False, dtype=None, name=None) -> Tensor:
    """A new leaf tensor over ``data`` (copied when it is a tensor; dtype follows NumPy)."""
    if isinstance(data, Tensor):
        data = data.data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def as_tensor(x, dtype=None) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant tensor over it."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and dtype is not None:
        return Tensor(np.asarray(x, dtype=dtype))
    return Tensor(x, dtype=dtype)


def zeros(*shape, dtype=np.float64, requires_grad=False) -> Tensor:
    """A tensor of zeros."""
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float64, requires_grad=False) -> Tensor:
    """A tensor of ones."""
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def randn(*shape, rng=None, dtype=np.float64, requires_grad=False) -> Tensor:
    """Standard normal entries drawn from ``rng`` (a ``numpy.random.Generator`` or a seed)."""
    rng = np.random.default_rng(rng)
    data = rng.standard_normal(_shape(shape)).astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)


def arange(*args, dtype=None, requires_grad=False) -> Tensor:
    """Evenly spaced values, as ``numpy.arange``."""
    return Tensor(np.arange(*args, dtype=dtype), requires_grad=requires_grad)


def zeros_like(x, requires_grad=False) -> Tensor:
    """Zeros of ``x``'s shape and dtype."""
    return Tensor(np.zeros_like(array_of(x)), requires_grad=requires_grad)


def ones_like(x, requires_grad=False) -> Tensor:
    """Ones of ``x``'s shape and dtype."""
    return Tensor(np.ones_like(array_of(x)), requires_grad=requires_grad)


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return shape


from tensorgrad import ops as _ops  # noqa: E402  (ops need Tensor; Tensor methods need ops)
