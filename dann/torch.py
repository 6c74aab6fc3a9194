"""The dendritic transformer in PyTorch, with weight transfer to and from tensorgrad's model.

    import dann.torch as dt
    twin = dt.to_torch(model)            # a torch.nn.Module with model's config and weights
    loss = dt.cross_entropy(twin(tokens), targets)
    model = dt.from_torch(twin)          # back to a dann.DANNTransformer

The modules mirror dann's one for one, under the same names, with the same parameter and
buffer names (the dendritic wiring and the sinusoidal positions are buffers), so the two state
dicts map key to key. The maths is the same: pre-LN blocks, a fused qkv projection, scores
scaled by 1/sqrt(d_head) with an additive -1e9 mask bias, LeakyReLU(0.1) dendrites and somas,
exact GELU in the dense feed-forward, LayerNorm eps 1e-5, unscaled token embeddings.

Optional: it needs PyTorch (``pip install torch``, or the project's ``torch`` extra), and
``import dann`` never imports it.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as error:  # pragma: no cover - exercised by simulating a missing torch
    raise ImportError(
        "dann.torch needs PyTorch, which is not installed: pip install torch "
        "(or pip install -e '.[torch]' for the project's torch extra)"
    ) from error

import dann
from dann.attention import NEG_INF
from dann.dendritic import INITS, SLOPE, sample_wiring
from dann.transformer import FFNS, sinusoidal_positions

__all__ = [
    "DANNTransformer", "DendriticFeedForward", "DendriticLayer", "DenseFeedForward",
    "MultiHeadAttention", "TransformerBlock", "config_of", "cross_entropy", "from_torch",
    "to_torch",
]


# ---------------------------------------------------------------- dendritic neurons


class DendriticLayer(nn.Module):
    """S somas of D dendrites with K synapses each, as ``dann.DendriticLayer``.

    The (D*S, K) synapse weights are scattered into a dense (D*S, in) matrix along the wiring
    and applied with one matmul: on CPU that beats gathering each dendrite's inputs by 10x and
    more (the gather's backward is a scatter over a (..., D*S, K) array).
    """

    def __init__(self, in_features, n_somas, dendrites_per_soma, synapses_per_dendrite,
                 sampling="random", init="glorot", rng=None, dtype=torch.float32):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"DendriticLayer: init must be one of {INITS}, not {init!r}")
        rng = np.random.default_rng(rng)
        self.in_features, self.n_somas = in_features, n_somas
        self.dendrites_per_soma = dendrites_per_soma
        self.synapses_per_dendrite = synapses_per_dendrite
        self.sampling, self.init = sampling, init

        n_dendrites = n_somas * dendrites_per_soma
        wiring = sample_wiring(in_features, n_dendrites, synapses_per_dendrite, sampling, rng)
        self.register_buffer("wiring", torch.from_numpy(wiring))

        dendrite_bound, soma_bound = self._init_bounds()
        self.dendrite_weight = nn.Parameter(_uniform(rng, dendrite_bound,
                                                     (n_dendrites, synapses_per_dendrite), dtype))
        self.dendrite_bias = nn.Parameter(torch.zeros(n_dendrites, dtype=dtype))
        self.soma_weight = nn.Parameter(_uniform(rng, soma_bound,
                                                 (n_somas, dendrites_per_soma), dtype))
        self.soma_bias = nn.Parameter(torch.zeros(n_somas, dtype=dtype))

    def _init_bounds(self):
        """The uniform bounds ``dann.DendriticLayer`` draws from (glorot or fan_in)."""
        n_dendrites = self.n_somas * self.dendrites_per_soma
        if self.init == "glorot":
            return (math.sqrt(6.0 / (self.in_features + n_dendrites)),
                    math.sqrt(6.0 / (n_dendrites + self.n_somas)))
        return (1.0 / math.sqrt(self.synapses_per_dendrite),
                1.0 / math.sqrt(self.dendrites_per_soma))

    def dense_dendrite_weight(self):
        """The (D*S, in) weight matrix of the wiring: zero off each dendrite's K inputs."""
        dense = self.dendrite_weight.new_zeros(self.wiring.shape[0], self.in_features)
        return dense.scatter_add(1, self.wiring, self.dendrite_weight)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"DendriticLayer: expected {self.in_features} input features, "
                             f"got input of shape {tuple(x.shape)}")
        d = F.leaky_relu(F.linear(x, self.dense_dendrite_weight(), self.dendrite_bias), SLOPE)
        blocks = d.unflatten(-1, (self.n_somas, self.dendrites_per_soma))
        soma = (blocks * self.soma_weight).sum(dim=-1) + self.soma_bias
        return F.leaky_relu(soma, SLOPE)

    def extra_repr(self):
        return (f"in={self.in_features}, somas={self.n_somas}, "
                f"dendrites_per_soma={self.dendrites_per_soma}, "
                f"synapses_per_dendrite={self.synapses_per_dendrite}, sampling={self.sampling}, "
                f"init={self.init}")


def _uniform(rng, bound, shape, dtype):
    return torch.from_numpy(rng.uniform(-bound, bound, shape)).to(dtype)


class DendriticFeedForward(nn.Module):
    """d_model -> dendritic somas -> Linear back to d_model, as ``dann.DendriticFeedForward``."""

    def __init__(self, d_model, n_somas, dendrites_per_soma, synapses_per_dendrite,
                 sampling="random", init="glorot", rng=None, dtype=torch.float32):
        super().__init__()
        self.dendritic = DendriticLayer(d_model, n_somas, dendrites_per_soma,
                                        synapses_per_dendrite, sampling=sampling, init=init,
                                        rng=rng, dtype=dtype)
        self.out = nn.Linear(n_somas, d_model, dtype=dtype)

    def forward(self, x):
        return self.out(self.dendritic(x))


class DenseFeedForward(nn.Module):
    """Linear, exact GELU, Linear: the baseline feed-forward, as ``dann.DenseFeedForward``."""

    def __init__(self, d_model, d_hidden, dtype=torch.float32):
        super().__init__()
        self.up = nn.Linear(d_model, d_hidden, dtype=dtype)
        self.down = nn.Linear(d_hidden, d_model, dtype=dtype)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


# ---------------------------------------------------------------- attention and blocks


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head) + mask) V over heads, as ``dann.MultiHeadAttention``.

    The mask is the same additive bias (0 or -1e9, causal and/or padded keys), handed to
    ``scaled_dot_product_attention``, which is about twice as fast as spelling the softmax out.
    """

    # Limitation: unlike dann's, it keeps no ``last_attention``: the fused kernel never forms
    # the weights.

    def __init__(self, d_model, n_heads, causal=False, dtype=torch.float32):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not divisible by "
                             f"n_heads={n_heads}")
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, dtype=dtype)
        self.out = nn.Linear(d_model, d_model, dtype=dtype)

    def forward(self, x, padding_mask=None):
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d_head)

        bias = self._mask_bias(batch, length, padding_mask, x)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                               scale=1.0 / math.sqrt(self.d_head))
        context = heads.transpose(1, 2).reshape(batch, length, self.d_model)
        return self.out(context)

    def _mask_bias(self, batch, length, padding_mask, x):
        """An additive (B or 1, 1, T, T) bias: 0 where attending is allowed, -1e9 elsewhere."""
        allowed = None
        if self.causal:
            allowed = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        if padding_mask is not None:
            keys = torch.as_tensor(padding_mask, dtype=torch.bool, device=x.device)
            if tuple(keys.shape) != (batch, length):
                raise ValueError(f"MultiHeadAttention: padding mask of shape "
                                 f"{tuple(keys.shape)} does not match input (batch, length) = "
                                 f"{(batch, length)}")
            keys = keys[:, None, None, :]
            allowed = keys if allowed is None else allowed & keys
        if allowed is None:
            return None
        return x.new_zeros(allowed.shape).masked_fill_(~allowed, NEG_INF)

    def extra_repr(self):
        return f"d_model={self.d_model}, heads={self.n_heads}, causal={self.causal}"


class TransformerBlock(nn.Module):
    """Pre-LN residual block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, d_model, n_heads, ffn, causal=False, dropout=0.0, dtype=torch.float32):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=1e-5, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=causal, dtype=dtype)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-5, dtype=dtype)
        self.ffn = ffn
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, padding_mask=None):
        x = x + self.dropout(self.attn(self.ln1(x), padding_mask))
        return x + self.dropout(self.ffn(self.ln2(x)))


class DANNTransformer(nn.Module):
    """Embedding + sinusoidal positions + pre-LN blocks + LayerNorm + head, as dann's model.

    Takes ``dann.DANNTransformer``'s arguments and keeps them, resolved, in ``self.config``
    (which ``from_torch`` rebuilds the tensorgrad model from). The linear, embedding and norm
    layers start from PyTorch's default initialisation (the same distributions as dann's);
    the dendritic wiring and weights are drawn from the numpy generator ``rng``. ``form`` is
    kept for the round trip only: the twin always computes dendrites in the dense form.
    """

    # Limitation: dropout masks come from torch's generator, so with dropout > 0 in training
    # mode the twin and the tensorgrad model drop different entries.

    def __init__(self, vocab_size, d_model, n_heads, n_blocks, max_len, ffn="dendritic",
                 n_somas=None, dendrites_per_soma=4, synapses_per_dendrite=8, d_hidden=None,
                 sampling="random", init="glorot", causal=False, dropout=0.0, form="dense",
                 rng=None, dtype=torch.float32):
        super().__init__()
        if ffn not in FFNS:
            raise ValueError(f"DANNTransformer: ffn must be one of {FFNS}, not {ffn!r}")
        rng = np.random.default_rng(rng)
        n_somas = n_somas or 2 * d_model
        d_hidden = d_hidden or n_somas
        self.config = dict(
            vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_blocks=n_blocks,
            max_len=max_len, ffn=ffn, n_somas=n_somas, dendrites_per_soma=dendrites_per_soma,
            synapses_per_dendrite=synapses_per_dendrite, d_hidden=d_hidden, sampling=sampling,
            init=init, causal=causal, dropout=dropout, form=form)
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len

        self.embed = nn.Embedding(vocab_size, d_model, dtype=dtype)
        positions = torch.from_numpy(sinusoidal_positions(max_len, d_model)).to(dtype)
        self.register_buffer("positions", positions)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, self._ffn(rng, dtype), causal=causal,
                             dropout=dropout, dtype=dtype)
            for _ in range(n_blocks))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5, dtype=dtype)
        self.head = nn.Linear(d_model, vocab_size, dtype=dtype)

    def _ffn(self, rng, dtype):
        c = self.config
        if c["ffn"] == "dense":
            return DenseFeedForward(c["d_model"], c["d_hidden"], dtype=dtype)
        return DendriticFeedForward(c["d_model"], c["n_somas"], c["dendrites_per_soma"],
                                    c["synapses_per_dendrite"], sampling=c["sampling"],
                                    init=c["init"], rng=rng, dtype=dtype)

    def forward(self, tokens, padding_mask=None):
        tokens = torch.as_tensor(tokens, device=self.positions.device)
        if tokens.dim() != 2 or tokens.shape[1] > self.max_len:
            raise ValueError(f"DANNTransformer: tokens must be (batch, length <= {self.max_len}),"
                             f" got shape {tuple(tokens.shape)}")
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, padding_mask)
        return self.head(self.ln_f(x))

    def extra_repr(self):
        return (f"vocab={self.vocab_size}, d_model={self.d_model}, max_len={self.max_len}, "
                f"ffn={self.config['ffn']}")


def cross_entropy(logits, target, **kwargs):
    """Cross-entropy with the classes on the last axis, as tensorgrad's: (..., C) vs (...)."""
    target = torch.as_tensor(target, device=logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), **kwargs)


# ---------------------------------------------------------------- weight transfer


def config_of(model: dann.DANNTransformer) -> dict:
    """The constructor arguments that rebuild ``model`` (read off its modules)."""
    config = dict(vocab_size=model.vocab_size, d_model=model.d_model, max_len=model.max_len,
                  ffn=model.ffn_kind, n_blocks=len(model.blocks), n_heads=1, causal=False,
                  dropout=0.0)
    if not len(model.blocks):
        return config
    block = model.blocks[0]
    config.update(n_heads=block.attn.n_heads, causal=block.attn.causal, dropout=block.dropout.p)
    if model.ffn_kind == "dense":
        width = block.ffn.up.out_features
        config.update(n_somas=width, d_hidden=width)
        return config
    layer = block.ffn.dendritic
    config.update(n_somas=layer.n_somas, d_hidden=layer.n_somas,
                  dendrites_per_soma=layer.dendrites_per_soma,
                  synapses_per_dendrite=layer.synapses_per_dendrite, sampling=layer.sampling,
                  init=layer.init, form=layer.form)
    return config


def to_torch(model: dann.DANNTransformer) -> DANNTransformer:
    """A PyTorch twin of ``model``: same config, dtype, weights, wiring and training mode."""
    dtype = model.embed.weight.data.dtype
    twin = DANNTransformer(**config_of(model), dtype=_torch_dtype(dtype))
    state = {key: torch.from_numpy(np.array(value, copy=True))
             for key, value in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin.train(model.training)


def from_torch(module: DANNTransformer) -> dann.DANNTransformer:
    """The tensorgrad model of a twin: its config, dtype, weights, wiring and training mode."""
    if not isinstance(getattr(module, "config", None), dict):
        raise TypeError(f"from_torch: expected a dann.torch.DANNTransformer (with a config "
                        f"dict), got {type(module).__name__}")
    dtype = torch.empty((), dtype=module.embed.weight.dtype).numpy().dtype
    model = dann.DANNTransformer(**module.config, rng=0, dtype=dtype)
    state = {key: value.detach().cpu().numpy() for key, value in module.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model.train(module.training)


def _torch_dtype(dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
