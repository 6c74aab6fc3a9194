"""Weight initialisers with PyTorch's formulas, filling a Tensor (or ndarray) in place.

Every random initialiser takes ``rng`` explicitly (a ``numpy.random.Generator`` or an int
seed; ``None`` draws a fresh generator), so a model built from one seed is reproducible.
The fan of a weight of shape (out, in, *k) is ``in * prod(k)`` in and ``out * prod(k)`` out.
"""

from __future__ import annotations

import math

import numpy as np

from tensorgrad.errors import ShapeError
from tensorgrad.tensor import Tensor


def uniform_(tensor, a=0.0, b=1.0, *, rng):
    """Fill with draws from U(a, b)."""
    target = _array(tensor)
    target[...] = _generator(rng).uniform(a, b, size=target.shape)
    return tensor


def normal_(tensor, mean=0.0, std=1.0, *, rng):
    """Fill with draws from N(mean, std^2)."""
    target = _array(tensor)
    target[...] = _generator(rng).normal(mean, std, size=target.shape)
    return tensor


def zeros_(tensor):
    _array(tensor)[...] = 0
    return tensor


def ones_(tensor):
    _array(tensor)[...] = 1
    return tensor


def xavier_uniform_(tensor, gain=1.0, *, rng):
    """Glorot: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(_array(tensor).shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, rng=rng)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng):
    """He: U(-b, b) with b = gain * sqrt(3 / fan); a=sqrt(5) gives PyTorch's Linear default."""
    fan_in, fan_out = fans(_array(tensor).shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be fan_in or fan_out, not {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, rng=rng)


def calculate_gain(nonlinearity, param=None) -> float:
    """The gain PyTorch recommends for an activation (leaky_relu's slope is ``param``)."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith("conv"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *receptive_field)."""
    if len(shape) < 2:
        raise ShapeError(f"init: fan in and fan out need at least 2 axes, not shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _array(tensor) -> np.ndarray:
    return tensor.data if isinstance(tensor, Tensor) else tensor


def _generator(rng) -> np.random.Generator:
    return np.random.default_rng(rng)
