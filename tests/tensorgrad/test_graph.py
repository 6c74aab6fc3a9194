"""Graph drawing: exact nodes, edges and labels read back from the DOT source."""

import logging
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tensorgrad as tg
from tensorgrad import tape
from tensorgrad.errors import BackwardError
from tensorgrad.graph import draw_graph, render_graph
from tensorgrad.ops.indexing import getitem
from tensorgrad.ops.nn import cross_entropy, layer_norm

pytest.importorskip("graphviz")

_NODE = re.compile(r"^(\w+) \[(.*)\]$")
_EDGE = re.compile(r"^(\w+) -> (\w+)(?: \[(.*)\])?$")
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]]+)')


def _attrs(text):
    """DOT attributes as a dict, quotes removed and ``\\n`` turned into newlines in labels."""
    out = {}
    for key, value in _ATTR.findall(text or ""):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        out[key] = value.replace("\\n", "\n")
    return out


class Parsed:
    """Nodes (with their cluster path), edges and clusters of a Digraph's body."""

    def __init__(self, graph):
        self.nodes, self.edges, self.clusters = {}, [], {}
        stack = []
        for raw in graph.body:
            line = raw.strip()
            if line.startswith("subgraph "):
                stack.append(line.split()[1])
                self.clusters[stack[-1]] = {"parents": tuple(stack[:-1])}
            elif line == "}":
                stack.pop()
            elif (m := _EDGE.match(line)) is not None:
                self.edges.append((m[1], m[2], _attrs(m[3])))
            elif (m := _NODE.match(line)) is not None and m[1] != "graph":
                self.nodes[m[1]] = dict(_attrs(m[2]), cluster=tuple(stack))
            elif (m := _NODE.match(line)) is not None:
                self.clusters[stack[-1]].update(_attrs(m[2]))

    def label(self, node_id):
        return self.nodes[node_id]["label"]

    def pairs(self):
        return [(src, dst) for src, dst, _ in self.edges]

    def cluster_named(self, label):
        (name,) = [k for k, v in self.clusters.items() if v["label"] == label]
        return name


def _small_expression():
    a = tg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    b = tg.tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3), requires_grad=True)
    c = tg.tensor(np.ones((2, 3)))
    return ((a * b) + c).sum(), a, b, c


# ---------------------------------------------------------------- a small known expression


def test_small_expression_has_exact_nodes_edges_and_labels():
    y, a, b, _ = _small_expression()
    g = Parsed(draw_graph(y, params={"a": a, "b": b}))

    assert list(g.nodes) == ["leaf0", "leaf1", "op0", "leaf2", "op1", "op2"]
    assert g.pairs() == [("leaf0", "op0"), ("leaf1", "op0"), ("op0", "op1"), ("leaf2", "op1"),
                         ("op1", "op2")]
    assert g.label("op0") == "mul\n(2, 3)"
    assert g.label("op1") == "add\n(2, 3)"
    assert g.label("op2") == "sum\nscalar"
    assert g.label("leaf0") == "a\n(2, 3) float64"
    assert g.label("leaf1") == "b\n(2, 3) float64"
    assert g.label("leaf2") == "(2, 3) float64"
    assert g.clusters == {}


def test_output_is_marked_and_only_the_output():
    y, a, b, _ = _small_expression()
    g = Parsed(draw_graph(y, params={"a": a, "b": b}))
    marked = [k for k, v in g.nodes.items() if v.get("peripheries") == "2"]
    assert marked == ["op2"]


def test_inputs_without_grad_are_styled_apart_from_parameters():
    y, a, b, _ = _small_expression()
    g = Parsed(draw_graph(y, params={"a": a, "b": b}))
    param, data = g.nodes["leaf0"], g.nodes["leaf2"]
    assert (param["shape"], param["fillcolor"]) == (g.nodes["leaf1"]["shape"],
                                                    g.nodes["leaf1"]["fillcolor"])
    assert data["shape"] != param["shape"]
    assert data["fillcolor"] != param["fillcolor"]
    edge_style = {(s, d): attrs.get("color") for s, d, attrs in g.edges}
    assert edge_style[("leaf2", "op1")] is not None
    assert edge_style[("leaf0", "op0")] is None


def test_leaf_names_fall_back_to_tensor_name_and_params_may_be_pairs():
    w = tg.Tensor(np.ones(3), requires_grad=True, name="w")
    v = tg.tensor(np.ones(3), requires_grad=True)
    g = Parsed(draw_graph((w * v).sum(), params=[("velocity", v)]))
    assert g.label("leaf0") == "w\n(3,) float64"
    assert g.label("leaf1") == "velocity\n(3,) float64"


def test_bad_params_and_arguments_raise_clear_errors():
    y, _, _, _ = _small_expression()
    with pytest.raises(TypeError, match="params must be"):
        draw_graph(y, params=3)
    with pytest.raises(TypeError, match="output must be a Tensor"):
        draw_graph(np.ones(3))
    with pytest.raises(ValueError, match="depth"):
        draw_graph(y, depth=-1)
    with pytest.raises(ValueError, match="max_nodes"):
        draw_graph(y, max_nodes=0)


def test_a_leaf_output_is_one_marked_node():
    a = tg.tensor(np.ones((4,)), requires_grad=True)
    g = Parsed(draw_graph(a, params={"a": a}))
    assert list(g.nodes) == ["leaf0"] and g.edges == []
    assert g.label("leaf0") == "a\n(4,) float64"
    assert g.nodes["leaf0"]["peripheries"] == "2"


# ---------------------------------------------------------------- attributes and constants


def test_key_attributes_are_shown_compactly():
    x = tg.tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    y = tg.leaky_relu(layer_norm(x, eps=1e-3), 0.2).sum(axis=1, keepdims=True).astype(np.float64)
    g = Parsed(draw_graph(y))
    labels = [g.label(f"op{i}") for i in range(4)]
    assert labels == [
        "layer_norm\neps=0.001\n(3, 4)",
        "leaky_relu\nnegative_slope=0.2\n(3, 4)",
        "sum\naxis=1, keepdims=True\n(3, 1)",
        "astype\ndtype=float64\n(3, 1) float64",
    ]


def test_attributes_that_are_none_or_false_or_repeat_the_shape_are_left_out():
    x = tg.tensor(np.ones((3, 4)), requires_grad=True)
    y = x.reshape(2, 6).reshape(-1, 3).sum(axis=None, keepdims=False)
    g = Parsed(draw_graph(y))
    assert [g.label(f"op{i}") for i in range(3)] == [
        "reshape\n(2, 6)", "reshape\nshape=(-1, 3)\n(4, 3)", "sum\nscalar"]


def test_a_big_index_array_shows_its_shape_not_its_values():
    x = tg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    rows = np.arange(50) % 3
    g = Parsed(draw_graph(getitem(x, (rows, slice(None, 2))).sum()))
    assert g.label("op0") == "getitem\n[int64(50,), :2]\n(50, 2)"


def test_constants_are_small_nodes_one_per_use():
    a = tg.tensor(np.ones(3), requires_grad=True)
    big = np.full((3, 5), 0.5)
    y = (a * 2.0).sum() + (big * a[:, None] * 2.0).sum()
    g = Parsed(draw_graph(y, params={"a": a}))
    consts = {k: v for k, v in g.nodes.items() if k.startswith("const")}
    assert [v["label"] for v in consts.values()] == ["2", "float64(3, 5)", "2"]
    assert all(v["shape"] == "plaintext" for v in consts.values())
    assert all(attrs.get("color") for s, _, attrs in g.edges if s.startswith("const"))


def test_an_input_used_twice_is_one_edge_that_says_so():
    a = tg.tensor(np.ones(3), requires_grad=True)
    g = Parsed(draw_graph((a * a).sum()))
    assert g.pairs() == [("leaf0", "op0"), ("op0", "op1")]
    assert g.edges[0][2]["label"] == "×2"


# ---------------------------------------------------------------- a random expression


_BINARY = [tg.add, tg.mul, tg.sub, tg.maximum]
_UNARY = [tg.tanh, tg.sin, tg.exp, tg.neg]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 50), st.integers(0, 50)),
                min_size=1, max_size=25))
def test_random_expressions_draw_one_node_per_op_and_leaf(steps):
    """Every op is one node, every distinct leaf one node, each (input, op) pair one edge."""
    leaves = [tg.tensor(np.full(2, 0.1 * i), requires_grad=True) for i in range(3)]
    pool = list(leaves)
    expected_edges = set()
    for kind, i, j in steps:
        x, y = pool[i % len(pool)], pool[j % len(pool)]
        out = _BINARY[kind % 4](x, y) if kind < 4 else _UNARY[kind % 4](x)
        pool.append(out)
        for inp in ((x, y) if kind < 4 else (x,)):
            expected_edges.add((id(inp), id(out)))

    g = Parsed(draw_graph(pool[-1], max_nodes=None))
    reached = _reached(pool[-1])
    used_leaves = {id(x) for x in reached if x._record is None}
    ops = [x for x in reached if x._record is not None]
    assert sum(k.startswith("op") for k in g.nodes) == len(ops)
    assert sum(k.startswith("leaf") for k in g.nodes) == len(used_leaves)
    reached_ids = {id(x) for x in reached}
    wanted = {e for e in expected_edges if e[1] in reached_ids}
    assert len(g.edges) == len(wanted)


def _reached(output):
    """The tensors ``output`` depends on, found by following inputs (an independent walk)."""
    seen, stack, found = set(), [output], []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        found.append(t)
        if t._record is not None:
            stack.extend(x for x in t._record.inputs if isinstance(x, tg.Tensor))
    return found


# ---------------------------------------------------------------- modules and clusters


class _Lin:
    """A module-like object that needs no tensorgrad.nn: a scope around an affine map."""

    def __init__(self, n, m, rng):
        self.weight = tg.tensor(rng.standard_normal((n, m)), requires_grad=True)
        self.bias = tg.tensor(np.zeros(m), requires_grad=True)

    def named_children(self):
        return []

    def own(self):
        return [("weight", self.weight), ("bias", self.bias)]

    def __call__(self, x):
        with tape.scope(self):
            return x @ self.weight + self.bias


class _Block:
    def __init__(self, rng):
        self.fc1, self.fc2 = _Lin(4, 8, rng), _Lin(8, 4, rng)

    def named_children(self):
        return [("fc1", self.fc1), ("fc2", self.fc2)]

    def own(self):
        return []

    def __call__(self, x):
        with tape.scope(self):
            return x + tg.tanh(self.fc2(tg.relu(self.fc1(x))))


class _Net:
    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.b0, self.b1, self.head = _Block(rng), _Block(rng), _Lin(4, 3, rng)

    def named_children(self):
        return [("blocks.0", self.b0), ("blocks.1", self.b1), ("head", self.head)]

    def own(self):
        return []

    def named_modules(self):
        out, stack = [], [("", self)]
        while stack:
            prefix, module = stack.pop()
            out.append((prefix, module))
            for name, child in reversed(module.named_children()):
                stack.append((f"{prefix}.{name}" if prefix else name, child))
        return out

    def named_parameters(self):
        return [(f"{m}.{p}" if m else p, t) for m, module in self.named_modules()
                for p, t in module.own()]

    def __call__(self, x):
        with tape.scope(self):
            return self.head(self.b1(self.b0(x)))


def _net_loss(seed=0):
    net = _Net(seed)
    x = tg.Tensor(np.random.default_rng(1).standard_normal((2, 4)), name="x")
    return cross_entropy(net(x), tg.tensor(np.array([0, 2]))), net


def test_full_model_graph_counts():
    """17 ops (7 per block, 2 in the head, the loss), 10 parameters, x and the target; 30
    edges (12 per block, 4 in the head, 2 into the loss)."""
    loss, net = _net_loss()
    g = Parsed(draw_graph(loss, params=net))
    kinds = [k.rstrip("0123456789") for k in g.nodes]
    assert (kinds.count("op"), kinds.count("leaf"), len(g.nodes)) == (17, 12, 29)
    assert len(g.edges) == 30 and len(set(g.pairs())) == 30


def test_clusters_are_labelled_and_nested_as_modules_nest():
    loss, net = _net_loss()
    g = Parsed(draw_graph(loss, params=net))
    root = g.cluster_named("_Net")
    block0 = g.cluster_named("blocks.0 (_Block)")
    fc1 = g.cluster_named("blocks.0.fc1 (_Lin)")
    head = g.cluster_named("head (_Lin)")
    assert len(g.clusters) == 1 + 2 * 3 + 1
    assert g.clusters[root]["parents"] == ()
    assert g.clusters[block0]["parents"] == (root,)
    assert g.clusters[fc1]["parents"] == (root, block0)
    assert g.clusters[head]["parents"] == (root,)

    in_fc1 = [v["label"] for v in g.nodes.values() if v["cluster"] == (root, block0, fc1)]
    assert in_fc1 == ["weight\n(4, 8) float64", "matmul\n(2, 8)", "bias\n(8,) float64",
                      "add\n(2, 8)"]
    loss_node = [v for v in g.nodes.values() if v["label"].startswith("cross_entropy")]
    assert loss_node[0]["cluster"] == ()


def test_clusters_fall_back_to_class_names_without_params():
    loss, _ = _net_loss()
    g = Parsed(draw_graph(loss))
    labels = sorted(v["label"] for v in g.clusters.values())
    assert labels == ["_Block", "_Block", "_Lin", "_Lin", "_Lin", "_Lin", "_Lin", "_Net"]


def test_module_names_come_from_named_children_without_named_modules():
    loss, net = _net_loss()

    class Params:
        """Only named_children() and named_parameters(): the drawer walks the tree itself."""

        named_children = net.named_children
        named_parameters = net.named_parameters

    walked = Parsed(draw_graph(loss, params=Params()))
    listed = Parsed(draw_graph(loss, params=net))
    assert walked.clusters == listed.clusters
    assert walked.nodes == listed.nodes


def test_depth_collapses_modules_into_single_nodes():
    loss, net = _net_loss()
    g = Parsed(draw_graph(loss, params=net, depth=1))
    assert list(g.nodes) == ["leaf11", "op16", "leaf0", "mod0", "mod1", "mod2"]
    assert g.label("mod0") == "blocks.0 (_Block)\n7 ops, 4 params"
    assert g.label("mod2") == "head (_Lin)\n2 ops, 2 params"
    assert g.pairs() == [("leaf0", "mod0"), ("mod0", "mod1"), ("mod1", "mod2"),
                         ("mod2", "op16"), ("leaf11", "op16")]
    assert [v["label"] for v in g.clusters.values()] == ["_Net"]

    whole = Parsed(draw_graph(loss, params=net, depth=0))
    assert whole.label("mod0") == "_Net\n16 ops, 10 params"
    assert len(whole.nodes) == 4 and len(whole.edges) == 3


def test_collapsed_edges_are_the_full_graph_edges_merged():
    """Project every full-graph edge onto the depth-1 nodes; the collapsed graph has exactly
    those edges, once each."""
    loss, net = _net_loss()
    full = Parsed(draw_graph(loss, params=net))
    collapsed = Parsed(draw_graph(loss, params=net, depth=1))
    module_of = {
        name: k for k, v in collapsed.nodes.items() if k.startswith("mod")
        for name, c in full.clusters.items() if c["label"] == v["label"].split("\n")[0]
    }

    def visible(node_id):
        path = full.nodes[node_id]["cluster"]
        is_param = node_id.startswith("leaf") and full.nodes[node_id]["shape"] == "box"
        if len(path) < 2 or (node_id.startswith("leaf") and not is_param):
            return node_id
        return None if is_param else module_of[path[1]]

    projected = []
    for src, dst in full.pairs():
        pair = (visible(src), visible(dst))
        if None not in pair and pair[0] != pair[1] and pair not in projected:
            projected.append(pair)
    assert collapsed.pairs() == projected
    assert set(collapsed.nodes) >= {n for pair in collapsed.pairs() for n in pair}


def test_same_module_code_gives_identical_sources():
    one, net_one = _net_loss(seed=0)
    two, net_two = _net_loss(seed=5)
    for depth in (None, 1):
        assert (draw_graph(one, params=net_one, depth=depth).source
                == draw_graph(two, params=net_two, depth=depth).source)


def test_tensorgrad_nn_modules_are_clustered():
    nn = pytest.importorskip("tensorgrad.nn")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 5, rng=0)
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(5, 2, rng=1)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    net = Net()
    y = net(tg.tensor(np.ones((4, 3), dtype=np.float32))).sum()
    g = Parsed(draw_graph(y, params=net))
    root = g.cluster_named("Net")
    fc1 = g.cluster_named("fc1 (Linear)")
    assert g.clusters[fc1]["parents"] == (root,)
    assert g.clusters[g.cluster_named("act (ReLU)")]["parents"] == (root,)
    in_fc1 = [v["label"].split("\n")[0] for v in g.nodes.values() if v["cluster"][-1:] == (fc1,)]
    assert "weight" in in_fc1 and "bias" in in_fc1

    collapsed = Parsed(draw_graph(y, params=net, depth=1))
    modules = [v["label"].split("\n")[0] for k, v in collapsed.nodes.items() if "mod" in k]
    assert modules == ["fc1 (Linear)", "act (ReLU)", "fc2 (Linear)"]


# ---------------------------------------------------------------- gradients


def test_grads_are_shaded_by_norm_after_backward():
    y, a, b, _ = _small_expression()
    y.backward(retain_graph=True)
    g = Parsed(draw_graph(y, params={"a": a, "b": b}, show_grads=True))
    norm_a, norm_b = np.linalg.norm(b.data), np.linalg.norm(a.data)  # d(a*b)/da = b
    assert g.label("leaf0") == f"a\n(2, 3) float64\n|grad| {norm_a:.3g}"
    assert g.label("leaf1") == f"b\n(2, 3) float64\n|grad| {norm_b:.3g}"
    assert g.nodes["leaf1"]["fillcolor"] == "0.600 0.700 1.000"
    share = 0.06 + 0.64 * (1 + np.log10(norm_a / norm_b) / 4)  # log scale over 4 decades
    assert g.nodes["leaf0"]["fillcolor"] == f"0.600 {share:.3f} 1.000"
    assert "grad" not in g.label("leaf2")


def test_grad_shades_follow_a_log_scale_of_four_decades():
    a, b, c = (tg.tensor(np.ones(1), requires_grad=True) for _ in range(3))
    y = (a * 1.0 + b * 1e-2 + c * 1e-6).sum()
    y.backward(retain_graph=True)
    g = Parsed(draw_graph(y, params={"a": a, "b": b, "c": c}, show_grads=True))
    fills = [g.nodes[k]["fillcolor"] for k in ("leaf0", "leaf1", "leaf2")]
    assert fills == ["0.600 0.700 1.000", "0.600 0.380 1.000", "0.600 0.060 1.000"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_gradients_are_red(bad):
    a = tg.tensor(np.ones(3), requires_grad=True)
    b = tg.tensor(np.array([1.0, bad, 2.0]), requires_grad=True)
    y = (a * b).sum()
    y.backward(retain_graph=True)
    g = Parsed(draw_graph(y, params={"a": a, "b": b}, show_grads=True))
    assert g.nodes["leaf0"]["fillcolor"] == "#e03131"
    assert g.label("leaf0").endswith(f"|grad| {bad}")
    assert g.nodes["leaf1"]["fillcolor"] != "#e03131"


def test_a_collapsed_module_shows_its_largest_gradient_and_turns_red_on_nan():
    loss, net = _net_loss()
    loss.backward(retain_graph=True)
    g = Parsed(draw_graph(loss, params=net, depth=1, show_grads=True))
    head = max(np.linalg.norm(net.head.weight.grad), np.linalg.norm(net.head.bias.grad))
    assert g.label("mod2").endswith(f"max |grad| {head:.3g}")

    net.b1.fc2.bias.grad[0] = np.nan
    g = Parsed(draw_graph(loss, params=net, depth=1, show_grads=True))
    assert g.nodes["mod1"]["fillcolor"] == "#e03131"
    assert g.nodes["mod0"]["fillcolor"] != "#e03131"


def test_drawing_after_a_freeing_backward_names_the_op():
    y, _, _, _ = _small_expression()
    y.backward()
    with pytest.raises(BackwardError, match=r"'sum'.*retain_graph=True"):
        draw_graph(y)


# ---------------------------------------------------------------- long chains


def test_a_long_chain_draws_without_recursion():
    x = tg.tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(5 * sys.getrecursionlimit()):
        y = tg.tanh(y)
    g = Parsed(draw_graph(y, max_nodes=None))
    n = 5 * sys.getrecursionlimit()
    assert len(g.nodes) == n + 1 and len(g.edges) == n


def test_a_100k_op_chain_is_summarised_past_max_nodes():
    x = tg.tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = tg.tanh(y)
    g = Parsed(draw_graph(y, max_nodes=2000))
    assert len(g.nodes) == 2001 and len(g.edges) == 2000
    assert g.label("note") == "98,000 earlier ops not drawn\n(max_nodes=2000)"
    assert g.pairs()[0] == ("note", "op0")
    assert g.nodes["op1999"]["peripheries"] == "2"
    assert not any(k.startswith("leaf") for k in g.nodes)


# ---------------------------------------------------------------- rendering


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_render_to_svg_gives_a_valid_svg(tmp_path):
    loss, net = _net_loss()
    out = render_graph(loss, tmp_path / "model.svg", params=net, depth=1, title="model")
    assert out == tmp_path / "model.svg"
    assert (tmp_path / "model.dot").read_text() == draw_graph(
        loss, params=net, depth=1, title="model").source
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    assert "blocks.0 (_Block)" in out.read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_render_to_png(tmp_path):
    y, _, _, _ = _small_expression()
    out = render_graph(draw_graph(y), tmp_path / "small", format="png")
    assert out.name == "small.png" and out.read_bytes()[:4] == b"\x89PNG"


def test_render_without_dot_writes_the_source_and_says_how_to_install(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    y, _, _, _ = _small_expression()
    graph = draw_graph(y)
    with caplog.at_level(logging.WARNING, logger="tensorgrad.graph"):
        out = render_graph(graph, tmp_path / "sub" / "small.svg")
    assert out == tmp_path / "sub" / "small.dot"
    assert out.read_text() == graph.source
    assert not (tmp_path / "sub" / "small.svg").exists()
    message = caplog.text
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda install graphviz",
                 "https://graphviz.org/download/"):
        assert hint in message


def test_render_rejects_bad_formats_and_stray_draw_arguments(tmp_path):
    y, _, _, _ = _small_expression()
    with pytest.raises(ValueError, match="format"):
        render_graph(y, tmp_path / "g", format="../svg")
    with pytest.raises(TypeError, match="depth"):
        render_graph(draw_graph(y), tmp_path / "g", depth=1)


def test_missing_graphviz_package_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    y, _, _, _ = _small_expression()
    with pytest.raises(ImportError, match="pip install graphviz"):
        draw_graph(y)


def test_tensorgrad_imports_without_graphviz():
    code = ("import sys; sys.modules['graphviz'] = None; import tensorgrad, tensorgrad.graph; "
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
