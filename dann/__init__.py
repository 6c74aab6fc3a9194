"""dann: a dendritic transformer whose feed-forward layers are dendritic neurons.

Built only from tensorgrad ops and modules, so every gradient is automatic.
"""

from dann.attention import MultiHeadAttention
from dann.dendritic import DendriticFeedForward, DendriticLayer, DenseFeedForward
from dann.transformer import DANNTransformer, TransformerBlock, sinusoidal_positions
from dann import tasks

__all__ = [
    "DANNTransformer", "DendriticFeedForward", "DendriticLayer", "DenseFeedForward",
    "MultiHeadAttention", "TransformerBlock", "sinusoidal_positions", "tasks",
]
