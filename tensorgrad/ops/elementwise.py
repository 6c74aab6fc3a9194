"""Elementwise functions of one or more tensors.

Where a derivative is a function of the output, the VJP reuses ``out`` (exp, tanh, sigmoid),
as PyTorch's derivative table does, instead of recomputing the forward.
"""

import math

import numpy as np

from tensorgrad.ops.registry import needs_grad, op
from tensorgrad.tensor import array_of

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _floating(x) -> np.ndarray:
    """``x`` as an array of a floating dtype: integers become float64, as NumPy's exp does."""
    x = np.asarray(x)
    return x if x.dtype.kind in "fc" else x.astype(np.float64)


@op("exp")
def exp(x):
    return np.exp(x)


@exp.defvjp
def exp_vjp(g, out, x):
    return (g * out,)


@exp.def_fast_vjp
def exp_fast_vjp(g, out, x, needs=()):
    return (np.multiply(g, out),)


@op("log")
def log(x):
    return np.log(x)


@log.defvjp
def log_vjp(g, out, x):
    return (g / x,)


@op("sqrt")
def sqrt(x):
    return np.sqrt(x)


@sqrt.defvjp
def sqrt_vjp(g, out, x):
    return (g / (2 * out),)


@op("tanh")
def tanh(x):
    return np.tanh(x)


@tanh.defvjp
def tanh_vjp(g, out, x):
    return (g * (1 - out * out),)  # d/dx tanh = 1 - tanh^2


@tanh.def_fast_vjp
def tanh_fast_vjp(g, out, x, needs=()):
    return (g * (1 - out * out),)


@op("sigmoid")
def sigmoid(x):
    """The logistic function, computed without overflow for large negative inputs."""
    x = _floating(x)
    return np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)


@sigmoid.defvjp
def sigmoid_vjp(g, out, x):
    return (g * out * (1 - out),)


@op("sin")
def sin(x):
    return np.sin(x)


@sin.defvjp
def sin_vjp(g, out, x):
    return (g * cos(x),)


@op("cos")
def cos(x):
    return np.cos(x)


@cos.defvjp
def cos_vjp(g, out, x):
    return (-g * sin(x),)


@op("abs")
def abs(x):
    return np.abs(x)


@abs.defvjp
def abs_vjp(g, out, x):
    return (g * np.sign(x.data),)  # the sign is piecewise constant: a constant for d^2


@op("relu")
def relu(x):
    return np.maximum(x, 0)


@relu.defvjp
def relu_vjp(g, out, x):
    return (g * (x.data > 0),)


@relu.def_fast_vjp
def relu_fast_vjp(g, out, x, needs=()):
    return (np.multiply(g, x > 0),)


@op("leaky_relu")
def leaky_relu(x, negative_slope=0.01):
    x = _floating(x)
    scaled = np.multiply(x, negative_slope, dtype=np.result_type(x))
    if 0 <= negative_slope <= 1:  # max(x, a x) is x for x > 0 and a x below: no slow np.where
        return np.maximum(x, scaled)
    return np.where(x > 0, x, scaled)


@leaky_relu.defvjp
def leaky_relu_vjp(g, out, x, negative_slope=0.01):
    factor = (x.data > 0).astype(x.dtype)  # 1 where x > 0, else the slope: constant for d^2
    factor *= 1 - negative_slope
    factor += negative_slope
    return (g * factor,)


@leaky_relu.def_fast_vjp
def leaky_relu_fast_vjp(g, out, x, negative_slope=0.01, needs=()):
    factor = (x > 0).astype(x.dtype)
    factor *= 1 - negative_slope
    factor += negative_slope
    factor *= g
    return (factor,)


@op("gelu")
def gelu(x, approximate="none"):
    """Gaussian error linear unit: exact (``"none"``) or its tanh approximation (``"tanh"``)."""
    x = _floating(x)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + np.tanh(inner))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return (0.5 * x * (1 + _erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)


@gelu.defvjp
def gelu_vjp(g, out, x, approximate="none"):
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        t = tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner),)
    cdf = 0.5 * (1 + erf(x * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * exp(-0.5 * x * x)
    return (g * (cdf + x * pdf),)  # d/dx x Phi(x) = Phi(x) + x phi(x)


@op("erf")
def erf(x):
    """The error function (used by the exact GELU)."""
    return _erf(_floating(x))


@erf.defvjp
def erf_vjp(g, out, x):
    return (g * (2 / math.sqrt(math.pi)) * exp(-x * x),)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf on arrays: SciPy's when available, else ``math.erf`` entry by entry."""
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:  # Limitation: without SciPy, erf loops in Python (slow on big arrays)
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return scipy_erf(x).astype(x.dtype, copy=False)


@op("maximum", inputs=("x", "y"))
def maximum(x, y):
    return np.maximum(x, y)


@maximum.defvjp
def maximum_vjp(g, out, x, y):
    return _pick_vjp(g, x, y, np.greater)


@op("minimum", inputs=("x", "y"))
def minimum(x, y):
    return np.minimum(x, y)


@minimum.defvjp
def minimum_vjp(g, out, x, y):
    return _pick_vjp(g, x, y, np.less)


def _pick_vjp(g, x, y, wins):
    """Route ``g`` to the input that was picked; on a tie both get half, as PyTorch does."""
    xd, yd = array_of(x), array_of(y)
    share = np.where(wins(xd, yd), 1.0, np.where(xd == yd, 0.5, 0.0)).astype(g.dtype)
    return (g * share if needs_grad(x) else None), (g * (1 - share) if needs_grad(y) else None)


@op("where", inputs=("condition", "x", "y"), differentiable=("x", "y"))
def where(condition, x, y):
    return np.where(condition, x, y)


@where.defvjp
def where_vjp(g, out, condition, x, y):
    mask = np.asarray(array_of(condition), dtype=bool)
    gx = g * mask if needs_grad(x) else None
    gy = g * ~mask if needs_grad(y) else None
    return None, gx, gy


@op("clip")
def clip(x, min=None, max=None):
    if min is None and max is None:
        return np.array(x, copy=True)
    return np.clip(x, min, max)


@clip.defvjp
def clip_vjp(g, out, x, min=None, max=None):
    inside = np.ones(x.shape, dtype=bool)
    if min is not None:
        inside &= x.data >= min
    if max is not None:
        inside &= x.data <= max
    return (g * inside,)
