"""Draw what the tape records for a tiny two-layer network, as in the README.

    python examples/draw_graph.py            # writes examples/graph_example.dot (and .svg)
"""

import numpy as np

import tensorgrad as tg
from tensorgrad import nn


def main(path="examples/graph_example"):
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 2, rng=1))
    x = tg.randn(5, 3, rng=2, dtype=np.float32)
    loss = nn.functional.cross_entropy(model(x), np.array([0, 1, 1, 0, 1]))
    loss.backward(retain_graph=True)
    written = tg.render_graph(loss, path, params=model, show_grads=True)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
