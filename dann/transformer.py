"""The dendritic transformer: pre-LN blocks whose feed-forward layers are dendritic neurons."""

from __future__ import annotations

import numpy as np

from dann.attention import MultiHeadAttention
from dann.dendritic import DendriticFeedForward, DenseFeedForward
from tensorgrad import nn
from tensorgrad.tensor import array_of

FFNS = ("dendritic", "dense")


def sinusoidal_positions(max_len, d_model) -> np.ndarray:
    """The fixed sine/cosine positional encoding of "Attention is all you need", (T, d)."""
    positions = np.arange(max_len)[:, None]
    rates = np.exp(-np.log(10000.0) * (np.arange(0, d_model, 2) / d_model))
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(positions * rates)
    table[:, 1::2] = np.cos(positions * rates[: d_model // 2])
    return table


class TransformerBlock(nn.Module):
    """Pre-LN residual block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, d_model, n_heads, ffn, causal=False, dropout=0.0, rng=None,
                 dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.ln1 = nn.LayerNorm(d_model, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=causal, rng=rng, dtype=dtype)
        self.ln2 = nn.LayerNorm(d_model, dtype=dtype)
        self.ffn = ffn
        self.dropout = nn.Dropout(dropout, rng=rng)

    def forward(self, x, padding_mask=None):
        x = x + self.dropout(self.attn(self.ln1(x), padding_mask))
        return x + self.dropout(self.ffn(self.ln2(x)))


class DANNTransformer(nn.Module):
    """Token embedding + sinusoidal positions + blocks + final LayerNorm + output projection.

    ``ffn="dendritic"`` gives each block a ``DendriticFeedForward`` with ``n_somas`` somas of
    ``dendrites_per_soma`` dendrites and ``synapses_per_dendrite`` synapses; ``ffn="dense"``
    gives the ``DenseFeedForward`` baseline of width ``d_hidden`` (default: ``n_somas``).
    Returns logits of shape (B, T, vocab_size).
    """

    def __init__(self, vocab_size, d_model, n_heads, n_blocks, max_len, ffn="dendritic",
                 n_somas=None, dendrites_per_soma=4, synapses_per_dendrite=8, d_hidden=None,
                 sampling="random", init="glorot", causal=False, dropout=0.0, form="dense",
                 rng=None, dtype=np.float32):
        super().__init__()
        if ffn not in FFNS:
            raise ValueError(f"DANNTransformer: ffn must be one of {FFNS}, not {ffn!r}")
        rng = np.random.default_rng(rng)
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.ffn_kind = ffn
        n_somas = n_somas or 2 * d_model
        d_hidden = d_hidden or n_somas

        self.embed = nn.Embedding(vocab_size, d_model, rng=rng, dtype=dtype)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model).astype(dtype))
        self.blocks = nn.ModuleList()
        for _ in range(n_blocks):
            if ffn == "dendritic":
                block_ffn = DendriticFeedForward(d_model, n_somas, dendrites_per_soma,
                                                 synapses_per_dendrite, sampling=sampling,
                                                 init=init, rng=rng, form=form, dtype=dtype)
            else:
                block_ffn = DenseFeedForward(d_model, d_hidden, rng=rng, dtype=dtype)
            self.blocks.append(TransformerBlock(d_model, n_heads, block_ffn, causal=causal,
                                                dropout=dropout, rng=rng, dtype=dtype))
        self.ln_f = nn.LayerNorm(d_model, dtype=dtype)
        self.head = nn.Linear(d_model, vocab_size, rng=rng, dtype=dtype)

    def forward(self, tokens, padding_mask=None):
        tokens = np.asarray(array_of(tokens))
        if tokens.ndim != 2 or tokens.shape[1] > self.max_len:
            raise ValueError(f"DANNTransformer: tokens must be (batch, length <= {self.max_len}),"
                             f" got shape {tokens.shape}")
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, padding_mask)
        return self.head(self.ln_f(x))

    def extra_repr(self):
        return (f"vocab={self.vocab_size}, d_model={self.d_model}, max_len={self.max_len}, "
                f"ffn={self.ffn_kind}")
