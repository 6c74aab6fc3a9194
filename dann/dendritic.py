"""Dendritic neurons: somas that each sum a few dendrites, each dendrite sampling a few inputs.

After Chavlis & Poirazi, "Dendrites endow artificial neural networks with accurate, robust and
parameter-efficient learning" (Nature Communications 16:943, 2025). A layer of S somas has D
dendrites per soma and K synapses per dendrite:

    dendrite j:  d_j = LeakyReLU_0.1( sum_k w_jk x[wiring_jk] + b_j )      (K inputs each)
    soma s:      y_s = LeakyReLU_0.1( sum_{j in block s} u_sj d_j + c_s )   (its own D dendrites)

The wiring (which K inputs each dendrite reads) is drawn once at construction and kept as a
buffer, so it is saved with the state dict and never resampled.
"""

from __future__ import annotations

import numpy as np

from tensorgrad import nn, ops
from tensorgrad.ops.indexing import scatter_add

SLOPE = 0.1  # the LeakyReLU slope of dendrites and somas
SAMPLINGS = ("random", "local")
INITS = ("glorot", "fan_in")
FORMS = ("dense", "gather")


def sample_wiring(in_features, n_dendrites, synapses, sampling, rng) -> np.ndarray:
    """The input indices each dendrite reads: an int64 array (n_dendrites, synapses).

    ``random`` picks ``synapses`` distinct inputs per dendrite; ``local`` picks ``synapses``
    consecutive inputs on a ring around a random centre (a 1-D local receptive field).
    """
    if not 1 <= synapses <= in_features:
        raise ValueError(
            f"DendriticLayer: synapses_per_dendrite must be in 1..in_features={in_features}, "
            f"got {synapses}"
        )
    if sampling == "random":
        keys = rng.random((n_dendrites, in_features))
        wiring = np.argsort(keys, axis=1)[:, :synapses]
    elif sampling == "local":
        centres = rng.integers(0, in_features, size=(n_dendrites, 1))
        offsets = np.arange(synapses) - synapses // 2
        wiring = (centres + offsets) % in_features
    else:
        raise ValueError(f"DendriticLayer: sampling must be one of {SAMPLINGS}, not {sampling!r}")
    return np.sort(wiring, axis=1).astype(np.int64)


class DendriticLayer(nn.Module):
    """S somas with D dendrites each, every dendrite reading K fixed inputs.

    Trainable parameters: ``(K + 1) * D * S`` for the dendrites (K synapse weights and a bias
    each) plus ``(D + 1) * S`` for the somas. ``form`` picks how the dendrites are computed:
    ``"dense"`` runs each stage as one fused ``sparse_linear`` op (the synapse weights scattered
    into a dense matrix, one GEMM); ``"gather"`` composes primitive ops: gather each dendrite's
    K inputs, multiply, sum. Both give the same values and gradients;
    ``benchmarks/bench_dendritic.py`` measures which is faster.
    """

    def __init__(self, in_features, n_somas, dendrites_per_soma, synapses_per_dendrite,
                 sampling="random", init="glorot", rng=None, form="dense", dtype=np.float32):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"DendriticLayer: init must be one of {INITS}, not {init!r}")
        if form not in FORMS:
            raise ValueError(f"DendriticLayer: form must be one of {FORMS}, not {form!r}")
        sizes = (in_features, n_somas, dendrites_per_soma, synapses_per_dendrite)
        if not all(isinstance(n, (int, np.integer)) and n >= 1 for n in sizes):
            raise ValueError("DendriticLayer: in_features, n_somas, dendrites_per_soma and "
                             f"synapses_per_dendrite must be positive integers, got {sizes}")
        rng = np.random.default_rng(rng)
        self.in_features = in_features
        self.n_somas = n_somas
        self.dendrites_per_soma = dendrites_per_soma
        self.synapses_per_dendrite = synapses_per_dendrite
        self.sampling, self.init, self.form = sampling, init, form

        n_dendrites = n_somas * dendrites_per_soma
        wiring = sample_wiring(in_features, n_dendrites, synapses_per_dendrite, sampling, rng)
        self.register_buffer("wiring", wiring)
        self.soma_wiring = np.arange(n_dendrites).reshape(n_somas, dendrites_per_soma)

        dendrite_bound, soma_bound = self._init_bounds()
        shape = (n_dendrites, synapses_per_dendrite)
        self.dendrite_weight = nn.Parameter(rng.uniform(-dendrite_bound, dendrite_bound, shape)
                                            .astype(dtype))
        self.dendrite_bias = nn.Parameter(np.zeros(n_dendrites, dtype=dtype))
        self.soma_weight = nn.Parameter(
            rng.uniform(-soma_bound, soma_bound, (n_somas, dendrites_per_soma)).astype(dtype))
        self.soma_bias = nn.Parameter(np.zeros(n_somas, dtype=dtype))

    def _init_bounds(self):
        """Uniform bounds for synapse and soma weights (biases start at zero either way).

        ``glorot`` is the paper's: Glorot-uniform over the dense (D*S, in) and (S, D*S) shapes,
        of which the wiring keeps K and D entries per row. ``fan_in`` scales to the inputs each
        unit really has: 1/sqrt(K) for a dendrite, 1/sqrt(D) for a soma.
        """
        n_dendrites = self.n_somas * self.dendrites_per_soma
        if self.init == "glorot":
            return (np.sqrt(6.0 / (self.in_features + n_dendrites)),
                    np.sqrt(6.0 / (n_dendrites + self.n_somas)))
        return 1.0 / np.sqrt(self.synapses_per_dendrite), 1.0 / np.sqrt(self.dendrites_per_soma)

    def dense_dendrite_weight(self):
        """The (D*S, in) weight matrix the wiring implies: zero outside each dendrite's K inputs."""
        rows = np.arange(self.wiring.shape[0])[:, None]
        return scatter_add(self.dendrite_weight, index=(rows, self.wiring),
                           shape=(self.wiring.shape[0], self.in_features))

    def dendrites(self, x):
        """Every dendrite's activation, shape (..., D*S)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"DendriticLayer: expected {self.in_features} input features, "
                             f"got input of shape {x.shape}")
        if self.form == "dense":
            pre = ops.sparse_linear(x, self.dendrite_weight, self.dendrite_bias, index=self.wiring)
        else:
            pre = (x[..., self.wiring] * self.dendrite_weight).sum(axis=-1) + self.dendrite_bias
        return ops.leaky_relu(pre, SLOPE)

    def forward(self, x):
        d = self.dendrites(x)
        if self.form == "dense":  # a soma is a unit wired to its own block of D dendrites
            soma = ops.sparse_linear(d, self.soma_weight, self.soma_bias, index=self.soma_wiring)
        else:
            blocks = d.reshape(d.shape[:-1] + (self.n_somas, self.dendrites_per_soma))
            soma = (blocks * self.soma_weight).sum(axis=-1) + self.soma_bias
        return ops.leaky_relu(soma, SLOPE)

    def extra_repr(self):
        return (f"in={self.in_features}, somas={self.n_somas}, "
                f"dendrites_per_soma={self.dendrites_per_soma}, "
                f"synapses_per_dendrite={self.synapses_per_dendrite}, sampling={self.sampling}, "
                f"init={self.init}, form={self.form}")


class DendriticFeedForward(nn.Module):
    """A transformer feed-forward made of dendritic neurons: d_model -> somas -> d_model."""

    def __init__(self, d_model, n_somas, dendrites_per_soma, synapses_per_dendrite,
                 sampling="random", init="glorot", rng=None, form="dense", dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.dendritic = DendriticLayer(d_model, n_somas, dendrites_per_soma,
                                        synapses_per_dendrite, sampling=sampling, init=init,
                                        rng=rng, form=form, dtype=dtype)
        self.out = nn.Linear(n_somas, d_model, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.out(self.dendritic(x))


class DenseFeedForward(nn.Module):
    """The usual transformer feed-forward, the baseline: Linear, GELU, Linear."""

    def __init__(self, d_model, d_hidden, rng=None, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.up = nn.Linear(d_model, d_hidden, rng=rng, dtype=dtype)
        self.down = nn.Linear(d_hidden, d_model, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.down(ops.gelu(self.up(x)))
