"""Layers and containers for building models, under PyTorch's names.

    from tensorgrad import nn
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.GELU(), nn.Linear(8, 2, rng=1))
    loss = nn.functional.cross_entropy(model(x), y)

Parameters are float32 unless a layer is given another ``dtype``.
"""

from tensorgrad.nn import functional, init
from tensorgrad.nn.layers import (
    GELU, Dropout, Embedding, LayerNorm, LeakyReLU, Linear, ReLU, Sigmoid, Tanh,
)
from tensorgrad.nn.module import Module, ModuleDict, ModuleList, Parameter, Sequential

__all__ = [
    "Dropout", "Embedding", "GELU", "LayerNorm", "LeakyReLU", "Linear", "Module", "ModuleDict",
    "ModuleList", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "functional", "init",
]
