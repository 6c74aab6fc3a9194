"""Every op tensorgrad knows, gathered from the modules that define them.

``OPS`` is the registry (name -> Op) that tests, graph drawing and docs walk. A new op goes in
the module of its family, as a forward and a VJP side by side under ``@op``.
"""

from tensorgrad.ops.registry import OPS, Op, fit_cotangent, needs_grad, op, unbroadcast
from tensorgrad.ops.arithmetic import add, astype, div, matmul, mul, neg, pow, sub
from tensorgrad.ops.elementwise import (
    abs, clip, cos, erf, exp, gelu, leaky_relu, log, maximum, minimum, relu, sigmoid, sin,
    sqrt, tanh, where,
)
from tensorgrad.ops.reductions import logsumexp, max, mean, min, std, sum, var
from tensorgrad.ops.shape import (
    broadcast_to, concatenate, expand_dims, reshape, split, squeeze, stack, swapaxes, transpose,
)
from tensorgrad.ops.indexing import getitem, scatter_add
from tensorgrad.ops.nn import (
    attention, cross_entropy, layer_norm, linear, log_softmax, softmax, sparse_linear,
)

__all__ = sorted(name for name in dir() if not name.startswith("_"))
