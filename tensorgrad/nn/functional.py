"""Stateless neural-network functions, as ``torch.nn.functional`` names them.

softmax, log_softmax, layer_norm and cross_entropy are fused ops (tensorgrad/ops/nn.py) with
one closed-form VJP each; the rest are compositions of primitive ops.

One deliberate difference from PyTorch: the class axis of ``cross_entropy`` is the last one,
so sequence logits are (N, T, C) rather than PyTorch's (N, C, T).
"""

from __future__ import annotations

import numpy as np

from tensorgrad import ops
from tensorgrad.errors import DtypeError, ShapeError
from tensorgrad.tensor import Tensor, as_tensor

__all__ = [
    "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "leaky_relu", "linear",
    "log_softmax", "mse_loss", "relu", "sigmoid", "softmax", "tanh",
]


def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight.T + bias`` for ``weight`` of shape (out, in) and any leading axes of x."""
    return ops.linear(x, weight, bias)  # fused: one record, one GEMM each way


def embedding(indices, weight, padding_idx=None) -> Tensor:
    """Rows of ``weight`` picked by integer ``indices``; output shape ``indices.shape + (D,)``.

    Repeated indices accumulate their gradients (getitem's scatter-add). The ``padding_idx``
    row gets no gradient, as in PyTorch.
    """
    idx = check_indices(indices, weight.shape[0], "embedding")
    rows = ops.getitem(weight, idx)
    if padding_idx is None:
        return rows
    keep = (idx != padding_idx)[..., None]
    return ops.where(keep, rows, weight.data[idx])


def check_indices(indices, num_embeddings: int, who: str) -> np.ndarray:
    """``indices`` as an integer array, or an error naming ``who`` and the valid range."""
    idx = _array(indices)
    if idx.dtype.kind not in "iu":
        raise DtypeError(f"{who}: indices must be integers, not {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise ShapeError(f"{who}: index {bad} is out of range [0, {num_embeddings})")
    return idx


def softmax(x, axis=-1, dim=None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (``dim`` is accepted as PyTorch's name for it)."""
    return ops.softmax(x, axis=axis if dim is None else dim)


def log_softmax(x, axis=-1, dim=None) -> Tensor:
    """x - logsumexp(x) along ``axis``; finite for logits of any magnitude."""
    return ops.log_softmax(x, axis=axis if dim is None else dim)


def cross_entropy(logits, target, ignore_index=None, reduction="mean",
                  label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy of (N, C) or (N, T, C) logits against integer targets (N,) / (N, T).

    ``ignore_index`` entries contribute nothing and are left out of the mean; ``reduction`` is
    ``"mean"``, ``"sum"`` or ``"none"``; ``label_smoothing`` mixes the one-hot target with the
    uniform distribution, as PyTorch does.
    """
    target = _array(target)
    return ops.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=float(label_smoothing))


def mse_loss(input, target, reduction="mean") -> Tensor:
    """Squared error ``(input - target)^2``, averaged, summed or kept per entry."""
    input = as_tensor(input)
    if np.shape(_array(target)) != input.shape:
        raise ShapeError(f"mse_loss: input of shape {input.shape} and target of shape "
                         f"{np.shape(_array(target))} differ")
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Normalise the last axis to zero mean and unit variance, then scale and shift.

    Limitation: only a single normalised axis (the last) is supported.
    """
    if isinstance(normalized_shape, (Tensor, np.ndarray)):
        raise TypeError("layer_norm: the second argument is normalized_shape (as in PyTorch); "
                        "pass the weight by keyword")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = as_tensor(x)
    if len(shape) != 1 or x.shape[-1:] != shape:
        raise ShapeError(f"layer_norm: normalized_shape {shape} must be the last axis of the "
                         f"input of shape {x.shape} (only one axis is supported)")
    return ops.layer_norm(x, weight, bias, eps=eps)


def dropout(x, p=0.5, training=True, rng=None) -> Tensor:
    """Zero each entry with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout).

    The identity when not ``training`` or ``p == 0``. ``rng`` is a numpy Generator or a seed;
    pass one for reproducible masks.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), not {p}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    rng = np.random.default_rng(rng)
    keep = rng.random(x.shape) >= p
    scale = np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * (keep * scale).astype(x.dtype, copy=False)


def relu(x) -> Tensor:
    return ops.relu(x)


def leaky_relu(x, negative_slope=0.01) -> Tensor:
    return ops.leaky_relu(x, negative_slope=negative_slope)


def gelu(x, approximate="none") -> Tensor:
    """Exact GELU ``x * Phi(x)``, or its tanh approximation with ``approximate="tanh"``."""
    return ops.gelu(x, approximate=approximate)


def tanh(x) -> Tensor:
    return ops.tanh(x)


def sigmoid(x) -> Tensor:
    return ops.sigmoid(x)


def _array(x) -> np.ndarray:
    """The array inside a Tensor, or ``x`` as an array (not ``x.data``: ndarrays have one too)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _reduce(loss, reduction, who) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{who}: reduction must be mean, sum or none, not {reduction!r}")
