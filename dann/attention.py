"""Multi-head scaled dot-product attention, built from tensorgrad ops."""

from __future__ import annotations

import numpy as np

from tensorgrad import nn, ops
from tensorgrad.tensor import array_of

NEG_INF = -1e9  # added to masked scores; finite, so a fully masked row stays NaN-free


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head) + mask) V over ``n_heads`` heads, then an output projection.

    ``causal`` hides later positions; a padding mask (B, T) of booleans, True where a token is
    real, hides padded keys. The last attention weights (B, H, T, T) are kept in
    ``last_attention`` for inspection.
    """

    def __init__(self, d_model, n_heads, causal=False, rng=None, dtype=np.float32):
        super().__init__()
        if not (isinstance(n_heads, int) and n_heads >= 1 and isinstance(d_model, int)
                and d_model >= 1):
            raise ValueError(f"MultiHeadAttention: d_model and n_heads must be positive "
                             f"integers, got {d_model!r} and {n_heads!r}")
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not divisible by "
                             f"n_heads={n_heads}")
        rng = np.random.default_rng(rng)
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, rng=rng, dtype=dtype)
        self.out = nn.Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.last_attention = None

    def forward(self, x, padding_mask=None):
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiHeadAttention: expected input (batch, length, "
                             f"{self.d_model}), got shape {x.shape}")
        batch, length, _ = x.shape
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)
        bias = self._mask_bias(batch, length, padding_mask, x.dtype)
        scale = float(1.0 / np.sqrt(self.d_head))
        context = ops.attention(q, k, v, bias, scale=scale, heads=self.n_heads)
        self.last_attention = self._weights(context, q, k, bias, scale)
        return self.out(context)

    def _weights(self, context, q, k, bias, scale):
        """The (B, H, T, T) attention weights: those the fused op saved, else recomputed."""
        if context._record is not None:
            return context._record.saved["probs"]
        heads = (q.shape[0], q.shape[1], self.n_heads, self.d_head)
        qh = q.data.reshape(heads).swapaxes(1, 2)
        kh = k.data.reshape(heads).swapaxes(1, 2)
        scores = (qh @ kh.swapaxes(-1, -2)) * scale
        return ops.softmax(scores if bias is None else scores + bias, axis=-1).data

    def _mask_bias(self, batch, length, padding_mask, dtype):
        """An additive (B or 1, 1, T, T) bias: 0 where attending is allowed, NEG_INF elsewhere."""
        allowed = None
        if self.causal:
            allowed = np.tril(np.ones((length, length), dtype=bool))[None, None]
        if padding_mask is not None:
            keys = np.asarray(array_of(padding_mask), dtype=bool)
            if keys.shape != (batch, length):
                raise ValueError(f"MultiHeadAttention: padding mask of shape {keys.shape} does "
                                 f"not match input (batch, length) = {(batch, length)}")
            keys = keys[:, None, None, :]
            allowed = keys if allowed is None else allowed & keys
        if allowed is None:
            return None
        return np.where(allowed, 0.0, NEG_INF).astype(dtype)

    def extra_repr(self):
        return f"d_model={self.d_model}, heads={self.n_heads}, causal={self.causal}"
