"""Parameters and Modules: the containers a model is built from, under PyTorch's names.

A ``Module`` registers the ``Parameter``s, buffers and sub-modules assigned to it as attributes,
so it can walk them by dotted name (``blocks.0.attn.q.weight``) for optimizers, state dicts and
graph drawing. Calling a module runs ``forward`` inside ``tape.scope(module)``, which tags every
record made inside with the module, so a graph drawer can cluster a layer's ops.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from tensorgrad import tape
from tensorgrad.errors import DtypeError, TensorgradError
from tensorgrad.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that a Module trains: floating point, ``requires_grad`` always on.

    Made from a Tensor it shares that tensor's array (as ``torch.nn.Parameter`` does).
    """

    __slots__ = ()

    def __init__(self, data, name=None):
        array = data.data if isinstance(data, Tensor) else np.asarray(data)
        if array.dtype.kind != "f":
            raise DtypeError(f"Parameter: data must be floating point, not {array.dtype}")
        super().__init__(array, requires_grad=True, name=name)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model; subclasses define ``forward``.

    Assigning a ``Parameter`` or a ``Module`` as an attribute registers it; ``register_buffer``
    registers non-trainable state (masks, fixed wiring) that the state dict saves but
    ``parameters()`` does not return.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        with tape.scope(self):
            return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ registration

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise TensorgradError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._register(params, name, value)
        elif isinstance(value, Module):
            _check_name(self, name)
            self._register(modules, name, value)
        elif name in params:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a parameter: assign a "
                                f"Parameter or None, not {type(value).__name__}")
            params[name] = None
        elif name in buffers:
            buffers[name] = _buffer_value(self, name, value)
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a sub-module: assign a "
                                f"Module or None, not {type(value).__name__}")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: registered entries live in the three dicts.
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name) -> bool:
        """Drop ``name`` from every registry and from ``__dict__``; whether it was registered."""
        found = False
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                found = True
        self.__dict__.pop(name, None)
        return found

    def _register(self, table, name, value):
        """Put ``value`` in ``table``; a name already there keeps its place (and its order)."""
        if name not in table:
            self._forget(name)
        table[name] = value

    def register_buffer(self, name: str, value):
        """Register non-trainable state (an array, a Tensor or None) saved in the state dict."""
        _check_name(self, name)
        self._register(self._buffers, name, _buffer_value(self, name, value))

    def register_parameter(self, name: str, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        _check_name(self, name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name} must be a Parameter or None")
        self._register(self._parameters, name, param)

    def add_module(self, name: str, module):
        """Register ``module`` (a Module or None) under ``name``."""
        _check_name(self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name} must be a Module or None")
        self._register(self._modules, name, module)

    # ------------------------------------------------------------ walking the tree

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """``("", self)`` first, then every sub-module by dotted name, each one once, pre-order."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(_join(name, key), child) for key, child in module._modules.items()
                        if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter by dotted name; a parameter shared by two modules comes once."""
        seen = set()
        for name, module in self.named_modules(prefix):
            for key, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield _join(name, key), param

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for name, module in self.named_modules(prefix):
            for key, buffer in module._buffers.items():
                if buffer is not None:
                    yield _join(name, key), buffer

    def buffers(self) -> Iterator[object]:
        for _, buffer in self.named_buffers():
            yield buffer

    def num_parameters(self) -> int:
        """The number of trainable scalars (each shared parameter counted once)."""
        return sum(p.size for p in self.parameters())

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every sub-module, children before parents, then return self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------ modes and gradients

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (Dropout active) on this module and every sub-module."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode: the same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (``.grad = None``, as PyTorch does by default)."""
        for param in self.parameters():
            param.grad = None

    def astype(self, dtype) -> "Module":
        """Convert every parameter and floating buffer to ``dtype`` in place; return self.

        The Parameter objects stay the same (so tied weights stay tied), only their arrays change.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise DtypeError(f"{type(self).__name__}.astype: {dtype} is not a floating dtype")
        for param in self.parameters():
            param.data = param.data.astype(dtype)
            if param.grad is not None:
                param.grad = param.grad.astype(dtype)
        for module in self.modules():
            for key, buffer in module._buffers.items():
                if buffer is not None and np.asarray(_array(buffer)).dtype.kind == "f":
                    module._buffers[key] = _cast_buffer(buffer, dtype)
        return self

    to = astype

    # ------------------------------------------------------------ state dicts

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Name -> copy of every parameter's and buffer's array, module by module."""
        return OrderedDict((key, np.array(array, copy=True))
                           for key, array in self._state_arrays().items())

    def _state_arrays(self) -> "OrderedDict[str, np.ndarray]":
        """Name -> the live array of every parameter and buffer (tied ones under each name)."""
        arrays = OrderedDict()
        for name, module in self.named_modules():
            for key, param in module._parameters.items():
                if param is not None:
                    arrays[_join(name, key)] = param.data
            for key, buffer in module._buffers.items():
                if buffer is not None:
                    arrays[_join(name, key)] = _array(buffer)
        return arrays

    def load_state_dict(self, state, strict: bool = True):
        """Copy ``state`` into the existing arrays in place (keeping their dtypes).

        Everything is validated before anything is copied. Missing and unexpected keys are an
        error when ``strict``; a wrong shape or an uncastable dtype always is. One
        ``TensorgradError`` lists every problem. Returns ``(missing_keys, unexpected_keys)``.
        """
        targets = self._state_arrays()
        missing = [key for key in targets if key not in state]
        unexpected = [key for key in state if key not in targets]
        values, problems = {}, []
        for key in targets:
            if key in state:
                values[key] = np.asarray(_array(state[key]))
                problems += _mismatch(key, targets[key], values[key])
        if strict:
            problems = [f"missing key {key!r}" for key in missing] + problems
            problems += [f"unexpected key {key!r}" for key in unexpected]
        if problems:
            raise TensorgradError(f"{type(self).__name__}.load_state_dict: "
                                  f"{len(problems)} problem(s): " + "; ".join(problems))

        for key, value in values.items():
            np.copyto(targets[key], value, casting="same_kind")
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ printing

    def extra_repr(self) -> str:
        """The text between this module's parentheses in its repr (subclasses override)."""
        return ""

    def __repr__(self):
        return "\n".join(self._repr_lines(top=True))

    def _repr_lines(self, top=False) -> list[str]:
        count = self.num_parameters()
        note = f"  # {count:,} parameters in total" if top else f"  # {count:,} params"
        if not self._modules:
            return [f"{type(self).__name__}({self.extra_repr()}){note if count else ''}"]
        lines = [f"{type(self).__name__}({self.extra_repr()}{note}"]
        for name, child in self._modules.items():
            child_lines = ["None"] if child is None else child._repr_lines()
            lines.append(f"  ({name}): {child_lines[0]}")
            lines += ["  " + line for line in child_lines[1:]]
        lines.append(")")
        return lines


class _IncompatibleKeys(tuple):
    """``(missing_keys, unexpected_keys)`` with names, as PyTorch returns them."""

    def __new__(cls, missing, unexpected):
        return super().__new__(cls, (missing, unexpected))

    missing_keys = property(lambda self: self[0])
    unexpected_keys = property(lambda self: self[1])


# ---------------------------------------------------------------- containers


class Sequential(Module):
    """Modules applied one after another: ``Sequential(a, b)(x) == b(a(x))``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def append(self, module) -> "Sequential":
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[_position(index, len(modules), "Sequential")]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of modules, registered under ``"0"``, ``"1"``, ... so their parameters are found."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module) -> "ModuleList":
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[_position(index, len(modules), "ModuleList")]

    def __setitem__(self, index, module):
        self.add_module(str(_position(index, len(self._modules), "ModuleList")), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it instead")


class ModuleDict(Module):
    """A dict of modules by string key, registered under those keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, not {type(key).__name__}")
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(); index it instead")


# ---------------------------------------------------------------- helpers


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_name(module, name):
    if not isinstance(name, str) or not name or "." in name:
        raise KeyError(f"{type(module).__name__}: {name!r} is not a valid name (a non-empty "
                       "string without '.')")


def _position(index, length, owner) -> int:
    if not -length <= index < length:
        raise IndexError(f"{owner}: index {index} is out of range for {length} modules")
    return index % length


def _array(value):
    """The ndarray inside a Tensor, or the value itself."""
    return value.data if isinstance(value, Tensor) else value


def _buffer_value(module, name, value):
    """A buffer is an ndarray, a Tensor that needs no gradient, or None."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise TypeError(f"{type(module).__name__}.{name}: a buffer cannot require grad; "
                            "use a Parameter for trainable state")
        return value
    raise TypeError(f"{type(module).__name__}.{name}: a buffer must be an ndarray, a Tensor "
                    f"or None, not {type(value).__name__}")


def _cast_buffer(buffer, dtype):
    if isinstance(buffer, Tensor):
        return Tensor(buffer.data.astype(dtype), name=buffer.name)
    return buffer.astype(dtype)


def _mismatch(key, target, value) -> list[str]:
    """Why ``value`` cannot be copied into ``target`` (an empty list if it can)."""
    if value.shape != target.shape:
        return [f"{key!r} has shape {value.shape} in the state dict but {target.shape} in the "
                "model"]
    if not np.can_cast(value.dtype, target.dtype, casting="same_kind"):
        return [f"{key!r} has dtype {value.dtype}, which cannot be cast to the model's "
                f"{target.dtype}"]
    return []
