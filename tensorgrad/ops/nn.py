"""Fused neural-network ops: softmax, log_softmax, layer_norm, cross_entropy.

Each could be composed from primitives; fused, the forward makes fewer NumPy passes and the
VJP is one closed form instead of a chain of records. Residuals saved by a forward (the
softmax probabilities, the normalised input) are constants, which is right for first-order
gradients only: under ``create_graph`` each VJP recomputes them with differentiable ops
(``first_order``), so second derivatives stay exact.
"""

import numpy as np

from tensorgrad import tape
from tensorgrad.errors import ShapeError
from tensorgrad.ops.registry import needs_grad, op
from tensorgrad.tensor import Tensor, array_of


def first_order(saved: np.ndarray, recompute) -> Tensor:
    """A saved residual as a constant when backward records nothing, else recomputed."""
    return recompute() if tape.state.grad_enabled else Tensor._wrap(saved)


def _check_axis(x, axis, name):
    if not -np.ndim(x) <= axis < np.ndim(x):
        raise ShapeError(f"{name}: axis {axis} is out of range for shape {np.shape(x)}")


@op("softmax")
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the maximum so it never overflows."""
    _check_axis(x, axis, "softmax")
    e = np.exp(x - np.maximum.reduce(x, axis=axis, keepdims=True))
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e


@softmax.defvjp
def softmax_vjp(g, out, x, axis=-1):
    return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)  # J = diag(y) - y y^T


@softmax.def_fast_vjp
def softmax_fast_vjp(g, out, x, axis=-1, needs=()):
    gx = g * out
    gx -= out * np.add.reduce(gx, axis=axis, keepdims=True)
    return (gx,)


@op("log_softmax")
def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``; stable for logits of any size."""
    _check_axis(x, axis, "log_softmax")
    shifted = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    return shifted - np.log(np.add.reduce(np.exp(shifted), axis=axis, keepdims=True))


@log_softmax.defvjp
def log_softmax_vjp(g, out, x, axis=-1):
    return (g - out.exp() * g.sum(axis=axis, keepdims=True),)


@op("layer_norm", inputs=("x", "weight", "bias"), saves=("xhat", "rstd"),
    not_implemented=("normalising over more than the last axis",))
def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalise over the last axis to zero mean and unit variance, then scale and shift."""
    if weight is not None and np.shape(weight) != np.shape(x)[-1:]:
        raise ShapeError(f"layer_norm: weight of shape {np.shape(weight)} does not match the "
                         f"last axis of input of shape {np.shape(x)}")
    n = np.shape(x)[-1]
    xhat = x - np.add.reduce(x, axis=-1, keepdims=True) / n
    var = np.add.reduce(xhat * xhat, axis=-1, keepdims=True) / n
    rstd = 1.0 / np.sqrt(var + eps)
    xhat *= rstd
    out = xhat if weight is None else xhat * weight
    if bias is not None:
        out = out + bias
    return out, {"xhat": xhat, "rstd": rstd}


@layer_norm.defvjp
def layer_norm_vjp(g, out, x, weight=None, bias=None, eps=1e-5, xhat=None, rstd=None):
    rstd_t = first_order(rstd, lambda: (x.var(axis=-1, keepdims=True) + eps) ** -0.5)
    xhat_t = first_order(xhat, lambda: (x - x.mean(axis=-1, keepdims=True)) * rstd_t)
    gxhat = g * weight if weight is not None else g
    gx = None
    if needs_grad(x):
        mean_g = gxhat.mean(axis=-1, keepdims=True)
        mean_gx = (gxhat * xhat_t).mean(axis=-1, keepdims=True)
        gx = rstd_t * (gxhat - mean_g - xhat_t * mean_gx)
    gw = g * xhat_t if needs_grad(weight) else None
    gb = g if needs_grad(bias) else None
    return gx, gw, gb


@layer_norm.def_fast_vjp
def layer_norm_fast_vjp(g, out, x, weight=None, bias=None, eps=1e-5, xhat=None, rstd=None,
                        needs=()):
    rows = (slice(None),) * (g.ndim - 1)
    flat = g.reshape(-1, g.shape[-1])
    gw = np.einsum("ij,ij->j", flat, xhat.reshape(flat.shape)) if _wants(needs, 1) else None
    gb = np.add.reduce(flat, axis=0) if _wants(needs, 2) else None
    gx = None
    if needs[0]:
        gxhat = g * weight if weight is not None else g.copy()
        n = g.shape[-1]
        mean_g = np.add.reduce(gxhat, axis=-1, keepdims=True) / n
        mean_gx = np.einsum("...j,...j->...", gxhat, xhat)[rows + (None,)] / n
        gxhat -= mean_g
        gxhat -= xhat * mean_gx
        gxhat *= rstd
        gx = gxhat
    return gx, gw, gb


@op("cross_entropy", inputs=("logits", "target"), differentiable=("logits",), saves=("probs",),
    not_implemented=("class weights", "probability (soft) targets"))
def cross_entropy(logits, target, ignore_index=None, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of (..., C) logits against integer class targets of shape (...)."""
    logits, target = _check_cross_entropy(logits, target, reduction, label_smoothing)
    classes = logits.shape[-1]
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    sum_exp = np.sum(np.exp(shifted), axis=-1, keepdims=True)
    logp = shifted - np.log(sum_exp)

    safe = _safe_target(target, ignore_index)
    if safe.size and (safe.min() < 0 or safe.max() >= classes):
        bad = safe.min() if safe.min() < 0 else safe.max()
        raise ShapeError(f"cross_entropy: target class {bad} is out of range for {classes} classes")
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    loss = -(1.0 - label_smoothing) * picked
    if label_smoothing:
        loss = loss - label_smoothing * logp.mean(axis=-1)
    loss = loss * _weights(target, ignore_index, loss.dtype)

    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = loss.sum() / max(_count(target, ignore_index), 1)
    probs = np.exp(logp, out=logp)
    return np.asarray(loss, dtype=logits.dtype), {"probs": probs}


@cross_entropy.defvjp
def cross_entropy_vjp(g, out, logits, target, ignore_index=None, reduction="mean",
                      label_smoothing=0.0, probs=None):
    target = np.asarray(array_of(target))
    probs_t = first_order(probs, lambda: softmax(logits, axis=-1))
    classes = logits.shape[-1]
    smooth = np.full(logits.shape, label_smoothing / classes, dtype=logits.dtype)
    np.put_along_axis(smooth, _safe_target(target, ignore_index)[..., None],
                      1.0 - label_smoothing + label_smoothing / classes, axis=-1)
    weights = _weights(target, ignore_index, logits.dtype)
    if reduction == "mean":
        weights = weights / max(_count(target, ignore_index), 1)
    scale = g[..., None] if reduction == "none" else g
    return (probs_t - smooth) * (scale * weights[..., None]), None


def _check_cross_entropy(logits, target, reduction, label_smoothing):
    logits, target = np.asarray(logits), np.asarray(target)
    if logits.dtype.kind not in "fc":
        logits = logits.astype(np.float64)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be mean, sum or none, not {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], not {label_smoothing}")
    if target.dtype.kind not in "iu":
        raise ShapeError(f"cross_entropy: target must hold integer classes, not {target.dtype}")
    if logits.ndim < 1 or logits.shape[:-1] != target.shape:
        raise ShapeError(f"cross_entropy: logits of shape {logits.shape} need a target of shape "
                         f"{logits.shape[:-1]}, got {target.shape}")
    return logits, target


def _safe_target(target, ignore_index):
    """Targets with ignored entries replaced by class 0 (their loss is then weighted out)."""
    if ignore_index is None:
        return target
    return np.where(target == ignore_index, 0, target)


def _weights(target, ignore_index, dtype):
    if ignore_index is None:
        return np.ones(target.shape, dtype=dtype)
    return (target != ignore_index).astype(dtype)


def _count(target, ignore_index) -> int:
    return target.size if ignore_index is None else int(np.sum(target != ignore_index))


@op("linear", inputs=("x", "weight", "bias"))
def linear(x, weight, bias=None):
    """x @ weight.T + bias for x of shape (..., in) and weight (out, in), as one GEMM."""
    xs, ws = np.shape(x), np.shape(weight)
    if len(ws) != 2 or not xs or xs[-1] != ws[1]:
        raise ShapeError(f"linear: input of shape {xs} does not fit weight of shape {ws}")
    out = np.reshape(x, (-1, xs[-1])) @ weight.T
    if bias is not None:
        out = out + bias if np.result_type(out, bias) != out.dtype else np.add(out, bias, out=out)
    return out.reshape(xs[:-1] + ws[:1])


@linear.defvjp
def linear_vjp(g, out, x, weight, bias=None):
    g2 = g.reshape(-1, g.shape[-1])
    gx = g @ weight if needs_grad(x) else None
    gw = g2.T @ x.reshape(-1, x.shape[-1]) if needs_grad(weight) else None
    gb = g2.sum(axis=0) if needs_grad(bias) else None
    return gx, gw, gb


@linear.def_fast_vjp
def linear_fast_vjp(g, out, x, weight, bias=None, needs=()):
    g2 = g.reshape(-1, g.shape[-1])
    gx = (g2 @ weight).reshape(np.shape(x)) if needs[0] else None
    gw = g2.T @ np.reshape(x, (-1, np.shape(x)[-1])) if needs[1] else None
    gb = np.add.reduce(g2, axis=0) if _wants(needs, 2) else None
    return gx, gw, gb


def _wants(needs, i) -> bool:
    """Whether optional input ``i`` was given and wants a cotangent."""
    return len(needs) > i and needs[i]


@op("sparse_linear", inputs=("x", "weight", "bias"), saves=("dense",))
def sparse_linear(x, weight, bias=None, index=None):
    """out[..., j] = sum_k weight[j, k] * x[..., index[j, k]] + bias[j]: unit j reads K inputs.

    The fixed wiring ``index`` (J, K) picks which inputs each unit sees, as a dendrite's
    synapses do. In general the (J, K) weights are scattered into a dense (J, in) matrix, zero
    off the wiring, so the product is one GEMM each way. Block wiring, where unit j reads
    inputs j*K .. j*K + K - 1 (a soma and its own dendrites), is a reshape and a weighted sum.
    """
    if _is_blocks(index, np.shape(x)[-1]):
        out = _block_sums(np.reshape(x, (-1,) + np.shape(index)), weight)
        out = out.reshape(np.shape(x)[:-1] + out.shape[-1:])
        return (out if bias is None else out + bias), {"dense": None}
    dense = _wire(weight, index, np.shape(x)[-1])
    return linear.forward(x, dense, bias), {"dense": dense}


@sparse_linear.defvjp
def sparse_linear_vjp(g, out, x, weight, bias=None, index=None, dense=None):
    from tensorgrad.ops.indexing import getitem, scatter_add

    index = np.asarray(index)  # the forward takes nested lists too
    g2 = g.reshape(-1, g.shape[-1])
    gb = g2.sum(axis=0) if needs_grad(bias) else None
    if _is_blocks(index, x.shape[-1]):
        gblocks = g.expand_dims(-1)
        gx = (gblocks * weight).reshape(x.shape) if needs_grad(x) else None
        blocks = x.reshape(-1, *index.shape)
        gw = (gblocks.reshape(-1, *gblocks.shape[-2:]) * blocks).sum(axis=0) \
            if needs_grad(weight) else None
        return gx, gw, gb

    rows = np.arange(index.shape[0])[:, None]
    gx = gw = None
    if needs_grad(x):
        wired = first_order(dense, lambda: scatter_add(
            weight, index=(rows, index), shape=(index.shape[0], x.shape[-1])))
        gx = g @ wired
    if needs_grad(weight):
        gw = getitem(g2.T @ x.reshape(-1, x.shape[-1]), index=(rows, index))
    return gx, gw, gb


@sparse_linear.def_fast_vjp
def sparse_linear_fast_vjp(g, out, x, weight, bias=None, index=None, dense=None, needs=()):
    index = np.asarray(index)
    g2 = g.reshape(-1, g.shape[-1])
    gb = np.add.reduce(g2, axis=0) if _wants(needs, 2) else None
    gx = gw = None
    if dense is None:  # block wiring: per unit j, a (1, N) @ (N, K) product for the weights
        blocks = np.reshape(x, (-1,) + index.shape).transpose(1, 0, 2)
        gw = np.matmul(g2.T[:, None, :], blocks)[:, 0] if needs[1] else None
        gx = np.einsum("nj,jk->njk", g2, weight).reshape(np.shape(x)) if needs[0] else None
        return gx, gw, gb
    if needs[0]:
        gx = (g2 @ dense).reshape(np.shape(x))
    if needs[1]:
        full = g2.T @ np.reshape(x, (-1, np.shape(x)[-1]))
        gw = np.take_along_axis(full, index, axis=1)
    return gx, gw, gb


def _block_sums(blocks, weight):
    """out[n, j] = sum_k blocks[n, j, k] * weight[j, k], as J batched (N, K) @ (K, 1) GEMVs
    (three times faster than einsum or a broadcast multiply and sum over the short K axis)."""
    return np.matmul(blocks.transpose(1, 0, 2), weight[:, :, None])[..., 0].T


def _is_blocks(index, n_inputs) -> bool:
    """Whether ``index`` is the block wiring arange(J * K).reshape(J, K) over all inputs."""
    index = np.asarray(index)
    return (index.ndim == 2 and index.size == n_inputs and index.dtype.kind in "iu"
            and bool((index.ravel() == np.arange(n_inputs)).all()))


def _wire(weight, index, n_inputs):
    """The dense (J, n_inputs) matrix with ``weight[j, k]`` at column ``index[j, k]``."""
    index = np.asarray(index)
    if index.ndim != 2 or index.dtype.kind not in "iu" or index.shape != np.shape(weight):
        raise ShapeError(f"sparse_linear: index must be an integer array of the weight's shape "
                         f"{np.shape(weight)}, got {index.dtype} {index.shape}")
    if index.size and (index.min() < 0 or index.max() >= n_inputs):
        raise ShapeError(f"sparse_linear: index refers to inputs outside 0..{n_inputs - 1}")
    units = index.shape[0]
    flat = (np.arange(units)[:, None] * n_inputs + index).ravel()
    dense = np.bincount(flat, weights=np.ravel(weight), minlength=units * n_inputs)
    return dense.reshape(units, n_inputs).astype(np.result_type(weight), copy=False)


@op("attention", inputs=("q", "k", "v", "bias"), differentiable=("q", "k", "v"),
    saves=("probs",), not_implemented=("a gradient for bias", "dropout on the weights"))
def attention(q, k, v, bias=None, scale=1.0, heads=1):
    """softmax(q @ k^T * scale + bias) @ v, for each of ``heads`` heads.

    q, k and v are (..., T, heads * d): the heads are split and merged again inside, so a
    multi-head layer records one op instead of a chain of reshapes, transposes and matmuls.
    ``bias`` broadcasts against the (..., heads, Tq, Tk) scores. The probabilities are saved
    for the VJP.
    """
    _check_attention(q, k, v, heads)
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    scores = np.matmul(qh, np.swapaxes(kh, -1, -2))
    scores *= scale
    if bias is not None:
        # Not in place: the bias may broadcast to a larger shape. It is cast to the scores'
        # dtype: a float64 mask must not turn float32 attention into float64.
        scores = scores + np.asarray(bias, dtype=scores.dtype)
    probs = softmax.forward(scores, axis=-1)
    return _merge_heads(np.matmul(probs, vh)), {"probs": probs}


@attention.defvjp
def attention_vjp(g, out, q, k, v, bias=None, scale=1.0, heads=1, probs=None):
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    gh = _split_heads(g, heads)

    def recompute():
        scores = (qh @ kh.swapaxes(-1, -2)) * scale
        return softmax(scores + bias if bias is not None else scores, axis=-1)

    p = first_order(probs, recompute)
    gv = _merge_heads(p.swapaxes(-1, -2) @ gh) if needs_grad(v) else None
    gp = gh @ vh.swapaxes(-1, -2)
    gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True)) * scale  # softmax's VJP
    gq = _merge_heads(gs @ kh) if needs_grad(q) else None
    gk = _merge_heads(gs.swapaxes(-1, -2) @ qh) if needs_grad(k) else None
    return gq, gk, gv, None


@attention.def_fast_vjp
def attention_fast_vjp(g, out, q, k, v, bias=None, scale=1.0, heads=1, probs=None, needs=()):
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    gh = _split_heads(g, heads)
    gv = _merge_heads(np.matmul(probs.swapaxes(-1, -2), gh)) if needs[2] else None
    gs = np.matmul(gh, vh.swapaxes(-1, -2))
    gs -= np.einsum("...ij,...ij->...i", gs, probs)[..., None]
    gs *= probs
    gs *= scale
    gq = _merge_heads(np.matmul(gs, kh)) if needs[0] else None
    gk = _merge_heads(np.matmul(gs.swapaxes(-1, -2), qh)) if needs[1] else None
    return gq, gk, gv, None


def _check_attention(q, k, v, heads):
    qs, ks, vs = np.shape(q), np.shape(k), np.shape(v)
    if min(len(qs), len(ks), len(vs)) < 2 or qs[-1] != ks[-1] or ks[-2] != vs[-2]:
        raise ShapeError(f"attention: q {qs}, k {ks} and v {vs} do not fit (need q (..., Tq, "
                         "d), k (..., Tk, d) and v (..., Tk, dv))")
    if qs[-1] % heads or vs[-1] % heads:
        raise ShapeError(f"attention: feature sizes {qs[-1]} and {vs[-1]} do not split into "
                         f"{heads} heads")


def _split_heads(x, heads):
    """(..., T, heads * d) -> (..., heads, T, d); a Tensor stays a Tensor (for the VJP)."""
    shape = x.shape[:-1] + (heads, x.shape[-1] // heads)
    return x.reshape(shape).swapaxes(-2, -3)


def _merge_heads(x):
    """(..., heads, T, d) -> (..., T, heads * d), the inverse of ``_split_heads``."""
    x = x.swapaxes(-2, -3)
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
