"""Drawing the tape: the records behind a tensor as a Graphviz graph.

``draw_graph(output)`` walks the records that lead to ``output`` and returns a
``graphviz.Digraph`` with one node per op, leaves named after the parameters they are, and the
ops a Module recorded grouped in a cluster per module. ``render_graph`` writes the DOT source,
and an SVG or PNG when Graphviz's ``dot`` program is installed.

Backward frees the records it replays, so to draw a graph after backward (for example with
``show_grads=True``) call ``backward(retain_graph=True)``.

What is drawn, and how:

- an op is a rounded box: its name, its attributes (those that are None or False are left out,
  as "not set"; arrays show their dtype and shape, not their values), the output's shape, and
  the output's dtype where it differs from the inputs';
- a leaf that needs a gradient (a parameter) is a filled blue box with its name and shape; a
  leaf that needs none (data, masks, targets) is a grey note; a Python number or array passed
  to an op is a small plain-text constant node, one per use; a ``None`` input is not drawn;
- edges run the way data flows, from inputs to the output, which has a double border; grey
  edges carry no gradient;
- ops recorded inside ``tape.scope(module)`` sit in a cluster per module, nested as the modules
  nest, and ``depth=N`` turns every module below the N-th level into a single node.

The walk uses an explicit queue, so a chain of any length draws.
"""

from __future__ import annotations

import logging
import numbers
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorgrad.errors import BackwardError, TensorgradError
from tensorgrad.tensor import Tensor

logger = logging.getLogger(__name__)

_INSTALL_PACKAGE = (
    "draw_graph needs the graphviz Python package: pip install graphviz "
    "(or install tensorgrad with the dev or train extras, pip install -e '.[dev]')"
)
_INSTALL_DOT = (
    "Graphviz's dot program is not on PATH, so only the DOT source was written to %s; install "
    "Graphviz to render it (apt-get install graphviz, brew install graphviz, conda install "
    "graphviz, or see https://graphviz.org/download/), then run: dot -T%s %s -o %s"
)

_GRAPH_ATTRS = {"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11", "nodesep": "0.25"}
_NODE_ATTRS = {"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.04"}
_EDGE_ATTRS = {"arrowsize": "0.6"}
_CLUSTER_ATTRS = {"style": "rounded", "color": "#8c8c8c", "fontcolor": "#404040",
                  "labeljust": "l", "fontsize": "10"}
_STYLES = {
    "op": {"shape": "box", "style": "rounded,filled", "fillcolor": "white"},
    "param": {"shape": "box", "style": "filled", "fillcolor": "#cfe2ff"},
    "data": {"shape": "note", "style": "filled", "fillcolor": "#eeeeee", "color": "#808080"},
    "const": {"shape": "plaintext", "fontsize": "9", "fontcolor": "#505050"},
    "module": {"shape": "box3d", "style": "filled", "fillcolor": "#fff4d6"},
    "note": {"shape": "box", "style": "dashed", "color": "#808080", "fontcolor": "#505050"},
}
_BAD_GRAD = {"fillcolor": "#e03131", "fontcolor": "white", "color": "#a00000", "penwidth": "2"}
_OUTPUT_MARK = {"peripheries": "2", "penwidth": "1.5"}
_NO_GRAD_EDGE = {"color": "#a0a0a0"}
_WRAP = 30
_DECADES = 4


# ---------------------------------------------------------------- public API


def draw_graph(output, params=None, show_grads=False, depth=None, max_nodes=2000, title=None):
    """A ``graphviz.Digraph`` of what the tape recorded on the way to ``output``.

    ``params`` names the leaves: a mapping from name to Tensor, or an object with
    ``named_parameters()`` (a Module), whose ``named_modules()`` also names the clusters.
    ``show_grads`` (after ``backward(retain_graph=True)``) shades each parameter by its gradient
    norm, on a log scale spanning four decades below the largest, and prints the norm; NaN or
    inf gradients are red. ``depth=N`` draws N levels of module clusters and turns each module
    one level deeper into one node. Past ``max_nodes`` ops (None: no limit) only the ops
    nearest the output are drawn, with a note of how many were left out. Node ids count
    records and leaves in tape order, so the same code gives the same DOT source.
    """
    graphviz = _import_graphviz()
    _check_arguments(output, depth, max_nodes)

    records, left_out = _collect(output, max_nodes)
    plan = _Plan(records, _Names(params), depth)
    if left_out:
        plan.add_note(left_out, max_nodes)
    plan.add_inputs()
    plan.mark_output(output)
    if show_grads:
        _shade_gradients(plan)
    return _emit(graphviz, plan, title)


def render_graph(graph_or_output, path, format="svg", **draw_kwargs) -> Path:
    """Write the DOT source to ``path`` with suffix ``.dot``, and render it when ``dot`` exists.

    ``graph_or_output`` is a Digraph from ``draw_graph`` or a Tensor to draw (with
    ``draw_kwargs``). Returns the rendered file, or the ``.dot`` file (with a warning that says
    how to install Graphviz) when the ``dot`` program is not on PATH.
    """
    # Limitation: dot's layout time grows quickly past a few thousand nodes; draw a large
    # model with ``depth`` or a smaller ``max_nodes`` rather than waiting on it.
    if not isinstance(format, str) or not format.isalnum():
        raise ValueError(f"render_graph: format must be a Graphviz format name such as 'svg' or "
                         f"'png', not {format!r}")
    if isinstance(graph_or_output, Tensor):
        graph = draw_graph(graph_or_output, **draw_kwargs)
    elif draw_kwargs:
        raise TypeError(f"render_graph: {sorted(draw_kwargs)} apply only when drawing a Tensor")
    elif hasattr(graph_or_output, "source"):
        graph = graph_or_output
    else:
        raise TypeError(f"render_graph: expected a Tensor or a graphviz graph, not "
                        f"{type(graph_or_output).__name__}")

    base = _strip_suffix(Path(path), format)
    base.parent.mkdir(parents=True, exist_ok=True)
    dot_path = base.with_name(base.name + ".dot")
    dot_path.write_text(graph.source, encoding="utf-8")

    out_path = base.with_name(f"{base.name}.{format}")
    program = shutil.which("dot")
    if program is None:
        logger.warning(_INSTALL_DOT, dot_path, format, dot_path, out_path)
        return dot_path
    _run_dot(program, format, dot_path, out_path)
    return out_path


# ---------------------------------------------------------------- walking the tape


def _import_graphviz():
    try:
        import graphviz
    except ImportError as err:
        raise ImportError(_INSTALL_PACKAGE) from err
    return graphviz


def _check_arguments(output, depth, max_nodes):
    if not isinstance(output, Tensor):
        raise TypeError(f"draw_graph: output must be a Tensor, not {type(output).__name__}")
    if depth is not None and (not isinstance(depth, int) or depth < 0):
        raise ValueError(f"draw_graph: depth must be None or an int >= 0, not {depth!r}")
    if max_nodes is not None and (not isinstance(max_nodes, int) or max_nodes < 1):
        raise ValueError(f"draw_graph: max_nodes must be None or an int >= 1, not {max_nodes!r}")


def _collect(output, max_nodes):
    """The records behind ``output`` in tape order, at most ``max_nodes`` of the nearest.

    Breadth-first from the output, so the records kept are those fewest steps from it. Returns
    the kept records sorted by sequence number and how many were left out.
    """
    root = output._record
    if root is None:
        return [], 0
    seen = {id(root)}
    queue = deque([root])
    order = []
    while queue:
        record = queue.popleft()
        if record.freed:
            raise BackwardError(
                f"draw_graph: the record of op {record.op.name!r} was freed by backward; call "
                "backward(retain_graph=True) to draw the graph after backward"
            )
        order.append(record)
        for x in record.inputs:
            parent = x._record if isinstance(x, Tensor) else None
            if parent is not None and id(parent) not in seen:
                seen.add(id(parent))
                queue.append(parent)

    kept = order if max_nodes is None else order[:max_nodes]
    kept.sort(key=lambda r: r.seq)
    return kept, len(order) - len(kept)


class _Names:
    """Parameter names by tensor and module names by owner, from ``params`` (duck-typed)."""

    def __init__(self, params):
        self.tensors = {}
        self.modules = {}
        if params is None:
            return
        for name, t in _pairs(params, "named_parameters"):
            self.tensors.setdefault(id(t), (name, t))
        for name, module in _module_pairs(params):
            self.modules.setdefault(id(module), (name, module))

    def tensor(self, t) -> str | None:
        entry = self.tensors.get(id(t))
        return entry[0] if entry is not None else t.name

    def module(self, owner) -> tuple:
        """The module's dotted name ('' when unknown) and its label, ``blocks.0 (Block)``."""
        kind = type(owner).__name__
        entry = self.modules.get(id(owner))
        name = entry[0] if entry is not None else ""
        return name, (f"{name} ({kind})" if name else kind)


def _pairs(params, method):
    """(name, value) pairs from ``params.<method>()``, a mapping, or an iterable of pairs."""
    if hasattr(params, method):
        params = getattr(params, method)()
    if hasattr(params, "items"):
        params = params.items()
    try:
        return [(str(name), value) for name, value in params]
    except (TypeError, ValueError):
        raise TypeError(
            "draw_graph: params must be a mapping from name to Tensor, an iterable of "
            f"(name, Tensor) pairs, or have named_parameters(); got {type(params).__name__}"
        ) from None


def _module_pairs(params):
    """(name, module) pairs: ``named_modules()``, else ``named_children()`` walked, else none."""
    if hasattr(params, "named_modules"):
        return _pairs(params, "named_modules")
    if not hasattr(params, "named_children"):
        return []
    pairs, stack = [], [("", params)]
    while stack:
        prefix, module = stack.pop()
        pairs.append((prefix, module))
        children = _pairs(module, "named_children") if hasattr(module, "named_children") else []
        for name, child in reversed(children):
            stack.append((f"{prefix}.{name}" if prefix else name, child))
    return pairs


# ---------------------------------------------------------------- what to draw


@dataclass
class _Node:
    """One node to draw: its lines of text, its style and the cluster it sits in."""

    kind: str
    lines: list
    cluster: tuple = ()
    attrs: dict = field(default_factory=dict)
    leaf: Tensor | None = None
    name: str | None = None
    ops: int = 0
    absorbed: list = field(default_factory=list)


class _Plan:
    """Nodes, clusters and edges for a list of records, before any Graphviz call.

    Clusters are keyed by the tuple of owner ids of a record's scope prefix. A record deeper
    than ``depth`` is drawn as the node of its module at level ``depth + 1``.
    """
    # Limitation: a module called twice puts both calls' ops in one cluster, and a module
    # shared by two parents gets one cluster under each, both with the same label.

    def __init__(self, records, names, depth):
        self.records = records
        self.names = names
        self.depth = depth
        self.nodes = {}
        self.edges = {}
        self.clusters = {}
        self.visible = {}
        self.leaves = {}
        self._consts = 0
        self._modules = {}
        for i, record in enumerate(records):
            self.visible[id(record)] = self._place(i, record)

    def _place(self, i, record) -> str:
        """Make the node that shows ``record`` (its own, or its collapsed module's)."""
        scope = record.scope
        if self.depth is None or len(scope) <= self.depth:
            node_id = f"op{i}"
            self.nodes[node_id] = _Node("op", _op_lines(record), self._cluster(scope))
            return node_id

        key = tuple(id(owner) for owner in scope[: self.depth + 1])
        node_id = self._modules.get(key)
        if node_id is None:
            node_id = self._modules[key] = f"mod{len(self._modules)}"
            label = self.names.module(scope[self.depth])[1]
            self.nodes[node_id] = _Node("module", [label], self._cluster(scope[: self.depth]))
        self.nodes[node_id].ops += 1
        return node_id

    def _cluster(self, scope) -> tuple:
        """The key of the cluster for ``scope``, registering it and its parents."""
        key = ()
        for owner in scope:
            key += (id(owner),)
            if key not in self.clusters:
                self.clusters[key] = (f"cluster{len(self.clusters)}", *self.names.module(owner))
        return key

    def add_inputs(self):
        """Nodes for leaves and constants, and the edges from every input to its op."""
        consumers = {}
        order = dict.fromkeys(k for k in self.nodes if k == "note")
        for record in self.records:
            dst = self.visible[id(record)]
            for x in record.inputs:
                if x is None:
                    continue
                src = self._source(x, dst, consumers)
                self._edge(src, dst, _edge_attrs(x))
                order.setdefault(src)
            order.setdefault(dst)
        self.nodes = {k: self.nodes[k] for k in order}
        for leaf_id, dsts in consumers.items():
            self._settle_leaf(leaf_id, dsts)
        self.edges = {k: v for k, v in self.edges.items() if self.nodes[k[0]].kind != "absorbed"}
        for node in self.nodes.values():
            if node.kind == "module":
                node.lines += _module_counts(node)

    def _source(self, x, dst, consumers) -> str:
        """The node an input is drawn as, creating a leaf or constant node on first sight."""
        if not isinstance(x, Tensor):
            return self._constant(x, dst)
        if x._record is not None:
            return self.visible.get(id(x._record), "note")

        leaf_id = self.leaves.get(id(x))
        if leaf_id is None:
            leaf_id = self.leaves[id(x)] = f"leaf{len(self.leaves)}"
            kind = "param" if x.requires_grad else "data"
            name = self.names.tensor(x)
            self.nodes[leaf_id] = _Node(kind, _leaf_lines(x, name), leaf=x, name=name)
        consumers.setdefault(leaf_id, []).append(dst)
        return leaf_id

    def _constant(self, value, dst) -> str:
        node_id = f"const{self._consts}"
        self._consts += 1
        node = _Node("const", [_short(value)], self.nodes[dst].cluster)
        if self.nodes[dst].kind == "module":
            node.kind = "absorbed"
        self.nodes[node_id] = node
        return node_id

    def _settle_leaf(self, leaf_id, dsts):
        """Put a leaf in the innermost cluster holding all its users, named relative to it.

        A parameter used only by one collapsed module is drawn inside it (counted in its label);
        data leaves stay visible, since they are what flows into the module.
        """
        node = self.nodes[leaf_id]
        first = self.nodes[dsts[0]]
        if node.kind == "param" and first.kind == "module" and all(d == dsts[0] for d in dsts):
            first.absorbed.append(node)
            node.kind = "absorbed"
            return
        clusters = [self.nodes[d].cluster for d in dsts]
        common = clusters[0]
        for c in clusters[1:]:
            n = 0
            while n < min(len(common), len(c)) and common[n] == c[n]:
                n += 1
            common = common[:n]
        node.cluster = common

        module_name = self.clusters[common][1] if common else ""
        if module_name and node.name and node.name.startswith(module_name + "."):
            node.lines[0] = node.name[len(module_name) + 1:]

    def _edge(self, src, dst, attrs):
        """Add ``src -> dst`` once; between two ops the edge counts how often it is used."""
        if src == dst:
            return
        entry = self.edges.get((src, dst))
        if entry is None:
            self.edges[(src, dst)] = [1, dict(attrs)]
        elif self.nodes[dst].kind == "op" and self.nodes[src].kind not in ("module", "note"):
            entry[0] += 1

    def mark_output(self, output):
        if output._record is None:
            kind = "param" if output.requires_grad else "data"
            lines = _leaf_lines(output, self.names.tensor(output))
            self.nodes["leaf0"] = _Node(kind, lines, leaf=output)
            self.leaves[id(output)] = "leaf0"
            node_id = "leaf0"
        else:
            node_id = self.visible[id(output._record)]
        self.nodes[node_id].attrs.update(_OUTPUT_MARK)

    def add_note(self, left_out, max_nodes):
        self.nodes["note"] = _Node(
            "note", [f"{left_out:,} earlier ops not drawn", f"(max_nodes={max_nodes})"]
        )


# ---------------------------------------------------------------- labels


def _op_lines(record) -> list:
    """Op name, attributes wrapped to a readable width, then the output's shape and dtype."""
    out = record.out_ref()
    out_shape = out.shape if out is not None else None
    attrs = [_attr_text(k, v) for k, v in record.attrs.items()
             if _is_set(v) and not (k == "shape" and _same_shape(v, out_shape))]
    lines = [record.op.name] + _wrap(attrs)
    if out is None:
        return lines + ["?"]

    shape = _shape(out_shape)
    in_dtypes = {np.dtype(x.dtype) for x in record.inputs if isinstance(x, (Tensor, np.ndarray))}
    if in_dtypes and out.dtype not in in_dtypes:
        shape += f" {out.dtype}"
    return lines + [shape]


def _same_shape(value, shape) -> bool:
    """Whether a ``shape`` attribute only repeats the output's shape (then it is not drawn)."""
    try:
        return shape is not None and tuple(value) == shape
    except TypeError:
        return False


def _is_set(value) -> bool:
    """None and False mean "not set", so they are not drawn."""
    return value is not None and not (isinstance(value, (bool, np.bool_)) and not value)


def _leaf_lines(t, name) -> list:
    lines = [name] if name else []
    return lines + [f"{_shape(t.shape)} {t.dtype}"]


def _module_counts(node) -> list:
    text = f"{node.ops} op" + ("s" if node.ops != 1 else "")
    params = len(node.absorbed)
    if params:
        text += f", {params} param" + ("s" if params != 1 else "")
    return [text]


def _attr_text(name, value) -> str:
    if name == "index":
        parts = value if isinstance(value, tuple) else (value,)
        return "[" + ", ".join(_short(p, sliced=True) for p in parts) + "]"
    return f"{name}={_short(value)}"


def _wrap(items) -> list:
    lines, line = [], ""
    for item in items:
        if line and len(line) + 2 + len(item) > _WRAP:
            lines.append(line)
            line = item
        else:
            line = f"{line}, {item}" if line else item
    return lines + ([line] if line else [])


def _shape(shape) -> str:
    return "scalar" if shape == () else str(tuple(shape))


def _short(value, sliced=False) -> str:
    """A compact text for an attribute or constant: big arrays show only dtype and shape."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    if isinstance(value, str):
        return value
    if sliced and isinstance(value, slice):
        text = ":".join("" if v is None else str(v) for v in (value.start, value.stop, value.step))
        return text[:-1] if text.endswith(":") and value.step is None else text
    if sliced and value is None:
        return "None"
    if value is Ellipsis:
        return "..."
    if isinstance(value, np.ndarray):
        if value.ndim <= 1 and value.size <= 4:
            return "[" + ", ".join(_short(v) for v in value.tolist()) + "]"
        return f"{value.dtype}{_shape(value.shape)}"
    if isinstance(value, (tuple, list)):
        if len(value) > 6 or any(isinstance(v, (tuple, list, np.ndarray)) for v in value):
            return f"{type(value).__name__} of {len(value)}"
        inner = ", ".join(_short(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else f"({inner})"
    if isinstance(value, (np.dtype, type)):
        try:
            return np.dtype(value).name
        except TypeError:
            return value.__name__
    text = repr(value)
    return text if len(text) <= 24 else text[:23] + "…"


def _edge_attrs(x) -> dict:
    """Grey for an input no gradient flows into (data and constants)."""
    return {} if isinstance(x, Tensor) and x.requires_grad else _NO_GRAD_EDGE


# ---------------------------------------------------------------- gradients


def _shade_gradients(plan):
    """Shade parameter nodes (and modules holding them) by gradient norm; red for NaN or inf."""
    norms = {}
    for node in plan.nodes.values():
        if node.leaf is not None and node.leaf.requires_grad:
            norms[id(node)] = _grad_norm(node.leaf)
    finite = [n for n in norms.values() if n is not None and np.isfinite(n)]
    largest = max(finite, default=0.0)

    for node in plan.nodes.values():
        if node.kind == "param":
            _shade(node, [norms.get(id(node))], largest, "|grad|")
        elif node.kind == "module" and node.absorbed:
            inner = [norms.get(id(n)) for n in node.absorbed if id(n) in norms]
            _shade(node, inner, largest, "max |grad|")


def _grad_norm(t) -> float | None:
    grad = t.grad
    if grad is None:
        return None
    grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.sum(np.square(grad.astype(np.float64)))))


def _shade(node, norms, largest, what):
    known = [n for n in norms if n is not None]
    if not known:
        node.lines.append(f"{what} none")
        return
    bad = [n for n in known if not np.isfinite(n)]
    norm = bad[0] if bad else max(known)
    node.lines.append(f"{what} {norm:.3g}")
    if bad:
        node.attrs.update(_BAD_GRAD)
        return
    saturation = 0.06 + 0.64 * _share(norm, largest)
    node.attrs.update(style="filled", fillcolor=f"0.600 {saturation:.3f} 1.000")


def _share(norm, largest) -> float:
    """Where ``norm`` sits on a log scale from ``largest`` (1) down _DECADES decades (0).

    A log scale, because the question a shaded graph answers is which layers get gradients
    orders of magnitude smaller than the rest; a linear one leaves all but the largest white.
    """
    if norm <= 0 or largest <= 0:
        return 0.0
    return float(np.clip(1 + np.log10(norm / largest) / _DECADES, 0.0, 1.0))


# ---------------------------------------------------------------- emitting DOT


def _emit(graphviz, plan, title):
    """Build the Digraph: top-level nodes, then clusters (innermost attached first), then edges."""
    graph_attrs = dict(_GRAPH_ATTRS)
    if title:
        graph_attrs.update(label=_escape(title), labelloc="t")
    graph = graphviz.Digraph("tensorgrad", graph_attr=graph_attrs, node_attr=_NODE_ATTRS,
                             edge_attr=_EDGE_ATTRS)
    subgraphs = {
        key: graphviz.Digraph(name, graph_attr=dict(_CLUSTER_ATTRS, label=_escape(label)))
        for key, (name, _, label) in plan.clusters.items()
    }

    for node_id, node in plan.nodes.items():
        if node.kind == "absorbed":
            continue
        target = subgraphs[node.cluster] if node.cluster else graph
        label = graphviz.nohtml(r"\n".join(_escape(line) for line in node.lines))
        target.node(node_id, label=label, **{**_STYLES[node.kind], **node.attrs})

    for key in sorted(subgraphs, key=len, reverse=True):
        parent = subgraphs[key[:-1]] if len(key) > 1 else graph
        parent.subgraph(subgraphs[key])

    for (src, dst), (count, attrs) in plan.edges.items():
        extra = {"label": f"×{count}"} if count > 1 else {}
        graph.edge(src, dst, **attrs, **extra)
    return graph


def _escape(text) -> str:
    """Backslashes doubled, so only our own ``\\n`` line breaks reach Graphviz as escapes."""
    return str(text).replace("\\", "\\\\")


# ---------------------------------------------------------------- rendering


def _strip_suffix(path, format) -> Path:
    if path.suffix.lower() in {".dot", ".gv", f".{format.lower()}"}:
        return path.with_suffix("")
    return path


def _run_dot(program, format, dot_path, out_path):
    command = [program, f"-T{format}", "-o", str(out_path), str(dot_path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise TensorgradError(
            f"render_graph: dot failed on {dot_path} (exit {result.returncode}): "
            f"{result.stderr.strip()}"
        )
