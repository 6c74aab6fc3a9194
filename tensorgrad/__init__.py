"""tensorgrad: reverse-mode automatic differentiation on NumPy, small enough to read.

    import tensorgrad as tg
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x

Where things live: the Tensor in ``tensor.py``, the tape and backward in ``tape.py``, the op
table in ``ops/`` (``ops/registry.py`` is the machinery, the other modules the ops), finite
difference checks in ``gradcheck.py``, layers in ``nn/``, optimisers in ``optim.py``,
checkpoints in ``checkpoint.py`` and graph drawing in ``graph.py``.
"""

from tensorgrad.tensor import (
    Tensor, arange, as_tensor, ones, ones_like, randn, tensor, zeros, zeros_like,
)
from tensorgrad.tape import detect_anomaly, enable_grad, grad, is_grad_enabled, no_grad
from tensorgrad.errors import (
    AnomalyError, BackwardError, CheckpointError, DtypeError, GradcheckError, ShapeError,
    TensorgradError,
)
from tensorgrad.ops import (
    OPS, abs, add, astype, broadcast_to, clip, concatenate, cos, div, erf, exp, expand_dims,
    gelu, getitem, leaky_relu, log, logsumexp, matmul, max, maximum, mean, min, minimum, mul,
    neg, pow, relu, reshape, sigmoid, sin, split, sqrt, squeeze, stack, std, sub, sum, swapaxes,
    tanh, transpose, var, where,
)

from tensorgrad.gradcheck import gradcheck, gradgradcheck
from tensorgrad.checkpoint import load, save
from tensorgrad.allocator import reuse_freed_memory
from tensorgrad.graph import draw_graph, render_graph
from tensorgrad import nn, optim

__version__ = "0.1.0"
