"""The op table: every differentiable op, its forward and its VJP, registered once.

An op is defined by two functions that sit side by side in the module that defines it:

- ``forward(*arrays, **attrs) -> array`` computes the output on NumPy arrays. An op declared
  with ``saves=(...)`` returns ``(array, {name: residual})`` instead; the residuals are handed
  to its VJP by name.
- ``vjp(g, out, *inputs, **attrs) -> tuple`` maps the output's cotangent ``g`` to one cotangent
  per input (``None`` where an input needs none). ``g``, ``out`` and the tensor inputs are
  Tensors, and the rule is written with tensorgrad ops, so when backward runs with
  ``create_graph=True`` the VJP is itself recorded and second derivatives come for free.

What every op needs is done here, once: unwrapping inputs, recording on the tape, turning NumPy
errors into errors that name the op, and, on the way back, summing a broadcast cotangent down to
its input's shape and casting it to the input's dtype.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tensorgrad import tape
from tensorgrad.errors import DtypeError, ShapeError, TensorgradError
from tensorgrad.tensor import Tensor

OPS: dict[str, "Op"] = {}
_NO_RESIDUALS: dict = {}


@dataclass(eq=False)
class Op:
    """One registered op: a name, a forward on arrays and a VJP on tensors."""

    name: str
    forward: Callable
    vjp: Callable | None = None
    fast_vjp: Callable | None = None
    inputs: tuple[str, ...] = ("x",)
    differentiable: tuple[str, ...] | None = None
    saves: tuple[str, ...] = ()
    variadic: bool = False
    not_implemented: tuple[str, ...] = ()
    doc: str = field(default="", repr=False)

    def __post_init__(self):
        if self.differentiable is None:
            self.differentiable = self.inputs
        self.constant_inputs = tuple(
            i for i, name in enumerate(self.inputs) if name not in self.differentiable
        )
        params = list(inspect.signature(self.forward).parameters)
        self.attr_names = tuple(p for p in params if p not in self.inputs and p[0] != "_")

    def __call__(self, *args, **attrs) -> Tensor:
        if self.variadic:  # one sequence of tensors, then attributes (stack(xs, axis))
            if isinstance(args[0], Tensor):
                raise DtypeError(f"{self.name}: takes a list of tensors, not a Tensor")
            attrs.update(zip(self.attr_names, args[1:]))
            args = tuple(args[0])
        elif len(args) > len(self.inputs):  # trailing positionals are attributes, by name
            attrs.update(zip(self.attr_names, args[len(self.inputs):]))
            args = args[: len(self.inputs)]
        if attrs:
            attrs = self._attribute_values(attrs)
        arrays = []
        wants_grad = False
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a.data)
                wants_grad = wants_grad or a._requires_grad
            else:
                arrays.append(a)
        try:
            result = self.forward(*arrays, **attrs)
        except TensorgradError:
            raise
        except (ValueError, IndexError, TypeError) as err:
            raise _op_error(self.name, arrays, err) from None

        saved = _NO_RESIDUALS
        if self.saves:
            result, saved = result
        out = Tensor._wrap(result)
        if out.data.dtype.kind == "O":  # NumPy made an array of Tensors out of an attribute
            raise DtypeError(f"{self.name}: got an object array; pass attributes (like clip's "
                             "bounds) as numbers or arrays, not Tensors")
        if tape.state.anomaly:
            tape.check_finite(self.name, "forward", out.data)

        if wants_grad and tape.state.grad_enabled and out.data.dtype.kind in "fc":
            self._refuse_grad_for_constants(args)  # integer results carry no gradient
            out._requires_grad = True
            out._record = tape.Record(self, args, attrs, saved, out)
        return out

    def _attribute_values(self, attrs):
        """Attributes as plain values: a Tensor is unwrapped, unless it wants a gradient."""
        for key, value in attrs.items():
            if isinstance(value, Tensor):
                if value.requires_grad:
                    raise TensorgradError(
                        f"{self.name}: attribute {key!r} is a Tensor that requires grad, but "
                        "attributes are constants; pass it detached"
                    )
                attrs = {**attrs, key: value.data}
        return attrs

    def _refuse_grad_for_constants(self, args):
        """A gradient asked for through an input this op does not differentiate is an error."""
        for i in self.constant_inputs:
            if i < len(args) and isinstance(args[i], Tensor) and args[i].requires_grad:
                raise TensorgradError(
                    f"{self.name}: input {self.inputs[i]!r} is not differentiable "
                    f"(not implemented: {', '.join(self.not_implemented) or 'a gradient'}); "
                    "pass it detached"
                )

    def defvjp(self, vjp: Callable) -> Callable:
        """Attach ``vjp`` to this op (used as a decorator right under the forward)."""
        self.vjp = vjp
        return vjp

    def def_fast_vjp(self, fast_vjp: Callable) -> Callable:
        """Attach a first-order VJP on arrays: ``fast_vjp(g, out, *arrays, needs, **attrs)``.

        Backward uses it when nothing is being recorded (no ``create_graph``): the same
        cotangents as ``vjp``, computed in place on arrays without tensors or records.
        ``needs`` says which inputs want a cotangent. Both rules are checked against finite
        differences: ``vjp`` by gradgradcheck, ``fast_vjp`` by gradcheck.
        """
        self.fast_vjp = fast_vjp
        return fast_vjp


def op(name, inputs=("x",), differentiable=None, saves=(), variadic=False, not_implemented=()):
    """Register the decorated forward function as op ``name``; attach its VJP with ``defvjp``."""

    def register(forward: Callable) -> Op:
        if name in OPS:
            raise TensorgradError(f"op {name!r} is registered twice")
        entry = Op(
            name,
            forward,
            inputs=tuple(inputs),
            differentiable=None if differentiable is None else tuple(differentiable),
            saves=tuple(saves),
            variadic=variadic,
            not_implemented=tuple(not_implemented),
            doc=forward.__doc__ or "",
        )
        OPS[name] = entry
        return entry

    return register


def _op_error(name, arrays, err) -> TensorgradError:
    shapes = " and ".join(str(np.shape(a)) for a in arrays if isinstance(a, (np.ndarray, list)))
    message = str(err).split("\n")[0].removeprefix(f"{name}: ")  # forwards may name the op
    if "broadcast" in message:
        return ShapeError(f"{name}: shapes {shapes} cannot be broadcast together")
    if isinstance(err, TypeError):
        return DtypeError(f"{name}: {message} (inputs of shapes {shapes})")
    return ShapeError(f"{name}: {message} (inputs of shapes {shapes})")


# ---------------------------------------------------------------- shared backward mechanics


def needs_grad(x) -> bool:
    """Whether input ``x`` of a VJP wants a cotangent (VJPs skip work for those that don't)."""
    return isinstance(x, Tensor) and x.requires_grad


def fit_cotangent(name: str, g: Tensor, x: Tensor) -> Tensor:
    """Sum a broadcast cotangent down to ``x``'s shape and cast it to ``x``'s dtype."""
    if g.shape != x.shape:
        if not _broadcasts_to(x.shape, g.shape):  # else unbroadcast's reshape could hide it
            raise ShapeError(f"{name}: VJP gave shape {g.shape} for an input of shape {x.shape}")
        g = unbroadcast(g, x.shape)
    if g.dtype != x.dtype:
        g = OPS["astype"](g, x.dtype)
    return g


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether NumPy broadcasting stretches ``shape`` to exactly ``target``."""
    if len(shape) > len(target):
        return False
    return all(n == 1 or n == m for n, m in zip(shape[::-1], target[::-1]))


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` over the axes that broadcasting added or stretched to reach its shape."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if axes:
        g = OPS["sum"](g, axis=axes, keepdims=False)
    if g.shape != tuple(shape):
        g = OPS["reshape"](g, shape)
    return g
