"""Arithmetic: + - * / ** @, negation and dtype casts.

Each VJP returns the cotangent at the broadcast shape; the registry sums it down to each
input's shape, so no rule here handles broadcasting.
"""

import numpy as np

from tensorgrad.errors import ShapeError
from tensorgrad.ops.registry import needs_grad, op


@op("add", inputs=("x", "y"))
def add(x, y):
    return np.add(x, y)


@add.defvjp
def add_vjp(g, out, x, y):
    return g, g


@add.def_fast_vjp
def add_fast_vjp(g, out, x, y, needs=()):
    return g, g


@op("sub", inputs=("x", "y"))
def sub(x, y):
    return np.subtract(x, y)


@sub.defvjp
def sub_vjp(g, out, x, y):
    return g, (-g if needs_grad(y) else None)


@sub.def_fast_vjp
def sub_fast_vjp(g, out, x, y, needs=()):
    return g, (np.negative(g) if needs[1] else None)


@op("mul", inputs=("x", "y"))
def mul(x, y):
    return np.multiply(x, y)


@mul.defvjp
def mul_vjp(g, out, x, y):
    return (g * y if needs_grad(x) else None), (g * x if needs_grad(y) else None)


@mul.def_fast_vjp
def mul_fast_vjp(g, out, x, y, needs=()):
    return (np.multiply(g, y) if needs[0] else None), (np.multiply(g, x) if needs[1] else None)


@op("div", inputs=("x", "y"))
def div(x, y):
    return np.true_divide(x, y)


@div.defvjp
def div_vjp(g, out, x, y):
    gx = g / y if needs_grad(x) else None
    gy = -g * out / y if needs_grad(y) else None  # d(x/y)/dy = -x/y^2 = -out/y
    return gx, gy


@op("pow", inputs=("x", "y"), not_implemented=("d/dy where x <= 0 (log of the base)",))
def pow(x, y):
    return np.power(x, y)


@pow.defvjp
def pow_vjp(g, out, x, y):
    gx = g * y * x ** (y - 1) if needs_grad(x) else None  # d/dx x^y = y x^(y-1)
    gy = g * out * log(x) if needs_grad(y) else None  # d/dy x^y = x^y log x
    return gx, gy


@op("neg")
def neg(x):
    return np.negative(x)


@neg.defvjp
def neg_vjp(g, out, x):
    return (-g,)


@neg.def_fast_vjp
def neg_fast_vjp(g, out, x, needs=()):
    return (np.negative(g),)


@op("matmul", inputs=("x", "y"))
def matmul(x, y):
    """Matrix product with NumPy's rules for 1-D operands and batched stacks."""
    xs, ys = np.shape(x), np.shape(y)
    if not xs or not ys:
        raise ShapeError(f"matmul: 0-d operands are not allowed (shapes {xs} and {ys})")
    if xs[-1] != ys[-2 if len(ys) > 1 else 0]:
        raise ShapeError(f"matmul: shapes {xs} and {ys} are not aligned")
    if len(xs) > 2 and len(ys) == 2:  # a stack times one matrix is one GEMM, not len(stack)
        return np.matmul(np.reshape(x, (-1, xs[-1])), y).reshape(xs[:-1] + ys[-1:])
    return np.matmul(x, y)


@matmul.defvjp
def matmul_vjp(g, out, x, y):
    if x.ndim == 2 and y.ndim == 2:  # the common case, without the reshapes below
        return (g @ y.T if needs_grad(x) else None), (x.T @ g if needs_grad(y) else None)
    # Promote 1-D operands to matrices so one rule covers every case, then drop the axes again.
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    y2 = y.reshape(-1, 1) if y.ndim == 1 else y
    shape = g.shape + ((1,) if y.ndim == 1 else ())
    shape = shape[:-1] + (1,) + shape[-1:] if x.ndim == 1 else shape
    g2 = g.reshape(shape) if shape != g.shape else g

    gx = gy = None
    if needs_grad(x):
        gx = matmul(g2, y2.swapaxes(-1, -2))
        gx = gx.reshape(gx.shape[:-2] + (-1,)) if x.ndim == 1 else gx
    if needs_grad(y) and x.ndim > 2 and y.ndim == 2:  # fold the stack into one GEMM
        gy = matmul(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]))
    elif needs_grad(y):
        gy = matmul(x2.swapaxes(-1, -2), g2)
        gy = gy.reshape(gy.shape[:-2] + (-1,)) if y.ndim == 1 else gy
    return gx, gy


@op("astype", inputs=("x",))
def astype(x, dtype):
    """Cast to ``dtype``; the cotangent is cast back to the input's dtype."""
    return np.asarray(x).astype(dtype, copy=False)


@astype.defvjp
def astype_vjp(g, out, x, dtype):
    return (astype(g, x.dtype),)


from tensorgrad.ops.elementwise import log  # noqa: E402  (pow's VJP uses log)
