"""The tape: what each op records as it runs, and the reverse replay that turns it into gradients.

Every differentiable op whose inputs need a gradient appends a ``Record`` to the tape: the op,
its inputs, its attributes and whatever its forward saved for the vector-Jacobian product. A
record's sequence number is its place in execution order, so replaying the records that lead to
an output in decreasing sequence order is a valid reverse topological order. No recursion is
used anywhere, so a chain of any length backpropagates.

The tape is not one global list: each output tensor holds its own record, and each record holds
its inputs. Records that nobody can reach are freed by reference counting, and backward frees
the records it replays unless asked to retain them.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import sys
import weakref

import numpy as np

from tensorgrad.errors import AnomalyError, BackwardError, ShapeError

_sequence = itertools.count()
_by_sequence = operator.attrgetter("seq")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class _State:
    """Process-wide recording switches, kept on one object so the hot path reads one global."""

    grad_enabled = True
    anomaly = False
    scope: tuple = ()


state = _State()


# ---------------------------------------------------------------- grad mode and scopes


def is_grad_enabled() -> bool:
    """Whether ops record themselves on the tape right now."""
    return state.grad_enabled


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = state.grad_enabled
    state.grad_enabled = enabled
    try:
        yield
    finally:
        state.grad_enabled = previous


def no_grad():
    """Context manager in which nothing is recorded (inference, parameter updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager that turns recording back on, for example inside ``no_grad``."""
    return _grad_mode(True)


@contextlib.contextmanager
def scope(owner):
    """Tag the records made inside with ``owner`` (a Module), nested as calls nest.

    Graph drawing uses the tags to group a module's ops into one cluster.
    """
    previous = state.scope
    state.scope = previous + (owner,)
    try:
        yield
    finally:
        state.scope = previous


@contextlib.contextmanager
def detect_anomaly():
    """Raise at the first op whose forward or backward produces NaN or inf.

    The error names the op and the file and line of user code that created it. Recording where
    each op was created costs a stack walk per op, so this is for debugging only.
    """
    previous = state.anomaly
    state.anomaly = True
    try:
        yield
    finally:
        state.anomaly = previous


def _user_location() -> str:
    """The first stack frame outside the tensorgrad package, as ``file:line``."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def check_finite(op_name: str, what: str, array: np.ndarray, location: str | None = None):
    """Under detect_anomaly: raise AnomalyError if ``array`` holds NaN or inf."""
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        where = location or _user_location()
        raise AnomalyError(f"{op_name}: {what} produced NaN or inf (op created at {where})")


# ---------------------------------------------------------------- records


class Record:
    """One entry on the tape: an op applied to inputs, enough to replay its VJP."""

    __slots__ = ("op", "inputs", "attrs", "saved", "out_ref", "seq", "scope", "location")

    def __init__(self, op, inputs, attrs, saved, out):
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.saved = saved
        self.out_ref = weakref.ref(out)
        self.seq = next(_sequence)
        self.scope = state.scope
        self.location = _user_location() if state.anomaly else None

    @property
    def freed(self) -> bool:
        return self.inputs is None

    def free(self):
        """Drop inputs and residuals, so their memory can go once backward has used them."""
        self.inputs = None
        self.saved = None

    def __repr__(self):
        return f"<Record #{self.seq} {self.op.name}>"


# ---------------------------------------------------------------- reverse replay


def _reachable(roots):
    """The records that lead to ``roots``, latest first (a reverse topological order)."""
    seen = set()
    stack = [t._record for t in roots if t._record is not None]
    records = []
    while stack:
        record = stack.pop()
        if id(record) in seen:
            continue
        seen.add(id(record))
        records.append(record)
        if record.inputs is None:
            continue
        for x in record.inputs:
            parent = getattr(x, "_record", None)
            if parent is not None and id(parent) not in seen:
                stack.append(parent)
    records.sort(key=_by_sequence, reverse=True)
    return records


def _seed_gradient(output, grad):
    """The cotangent backward starts from: 1 for a scalar output, else the given ``grad``."""
    tensor_module = sys.modules["tensorgrad.tensor"]  # imported by now; no import on this path
    if grad is None:
        if output.size != 1:
            raise BackwardError(
                f"backward: output has shape {output.shape}; a non-scalar output needs an "
                "explicit grad of the same shape"
            )
        return tensor_module.Tensor._wrap(np.ones_like(output.data))
    grad = tensor_module.as_tensor(grad, dtype=output.dtype)
    if grad.shape != output.shape:
        raise ShapeError(
            f"backward: grad has shape {grad.shape} but the output has shape {output.shape}"
        )
    return grad


def run_backward(outputs, grads, retain_graph=False, create_graph=False, targets=None):
    """Replay the tape from ``outputs`` and return the cotangent of every reached tensor.

    Returns a dict from ``id(tensor)`` to ``(tensor, cotangent)`` for the leaves reached and for
    the non-leaf ``targets``. With ``create_graph`` the VJPs are themselves recorded, so the
    cotangents are differentiable.
    """
    fit_cotangent = sys.modules["tensorgrad.ops.registry"].fit_cotangent
    wanted = {id(t) for t in targets} if targets else set()
    cotangents = {}
    found = {}
    for out, g in zip(outputs, grads):
        _accumulate(cotangents, found, out, _seed_gradient(out, g))

    previous, state.grad_enabled = state.grad_enabled, create_graph
    try:
        for record in _reachable(outputs):
            entry = cotangents.pop(id(record), None)
            if entry is None:
                continue
            _replay(record, entry[1], cotangents, found, wanted, fit_cotangent)
            if not retain_graph:
                record.free()
    finally:
        state.grad_enabled = previous
    return found


def _replay(record, g, cotangents, found, wanted, fit_cotangent):
    """Apply one record's VJP to cotangent ``g`` and pass the results to its inputs."""
    if record.freed:
        raise BackwardError(
            f"backward: the records of this graph were freed by an earlier backward "
            f"(op {record.op.name}); pass retain_graph=True to the first backward to replay "
            "it twice"
        )
    out = record.out_ref()
    if out is not None and (out._retains_grad or id(out) in wanted):
        found[id(out)] = (out, g)

    attrs = record.attrs if not record.saved else {**record.attrs, **record.saved}
    try:
        if record.op.fast_vjp is not None and not state.grad_enabled:
            input_grads = _fast_vjp(record, g, out, attrs)
        else:
            input_grads = record.op.vjp(g, out, *record.inputs, **attrs)
    except AnomalyError:  # an op inside the VJP went non-finite: blame this record's op
        where = record.location or _user_location()
        raise AnomalyError(f"{record.op.name}: backward produced NaN or inf (op created at "
                           f"{where})") from None
    for x, gx in zip(record.inputs, input_grads):
        if gx is None or not getattr(x, "requires_grad", False):
            continue
        gx = fit_cotangent(record.op.name, gx, x)
        if state.anomaly:
            check_finite(record.op.name, "backward", gx.data, record.location)
        _accumulate(cotangents, found, x, gx)


def _fast_vjp(record, g, out, attrs):
    """The op's first-order VJP on raw arrays, its results wrapped back into tensors."""
    tensor = sys.modules["tensorgrad.tensor"].Tensor  # no import statement on this hot path
    inputs = record.inputs
    needs = tuple(isinstance(x, tensor) and x.requires_grad for x in inputs)
    arrays = [x.data if isinstance(x, tensor) else x for x in inputs]
    grads = record.op.fast_vjp(g.data, out.data, *arrays, needs=needs, **attrs)
    return [None if gx is None else tensor._wrap(gx) for gx in grads]


def _accumulate(cotangents, found, x, g):
    """Add ``g`` to the cotangent of ``x``: on its record if it has one, else as a leaf."""
    record = x._record
    if record is None:
        key, table = id(x), found
    else:
        key, table = id(record), cotangents
    entry = table.get(key)
    table[key] = (x, g if entry is None else entry[1] + g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, without touching any ``.grad``.

    ``inputs`` may be leaves or non-leaves; one gradient is returned per input, in order. With
    ``create_graph=True`` the gradients are on the tape themselves, so they can be
    differentiated again (Hessian-vector products, gradient penalties). An input that the
    outputs do not depend on is an error unless ``allow_unused``, which gives zeros for it.
    """
    from tensorgrad.tensor import Tensor

    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    for out in outputs:
        if not out.requires_grad:
            raise BackwardError("grad: an output does not require grad, so it has no gradient")
    if retain_graph is None:
        retain_graph = create_graph

    found = run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=inputs)
    grads = []
    for i, x in enumerate(inputs):
        if id(x) in found:
            g = found[id(x)][1]
            # A cotangent may be shared (add hands one to both inputs) or be grad_outputs
            # itself: copy, so writing into one returned gradient cannot change another.
            grads.append(g if create_graph else Tensor._wrap(g.data.copy()))
        elif allow_unused:
            grads.append(Tensor._wrap(np.zeros_like(x.data)))
        else:
            raise BackwardError(
                f"grad: input {i} (shape {x.shape}) is not reached from the outputs; pass "
                "allow_unused=True to get zeros for it"
            )
    return grads[0] if single else grads
