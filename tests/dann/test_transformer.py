"""Attention, the pre-LN block and the whole DANNTransformer against independent computations.

Attention is compared with a per-head NumPy loop (and with torch.nn.MultiheadAttention where
torch is installed); the whole model's gradients with central differences for every parameter.
"""

import math

import numpy as np
import pytest

import tensorgrad as tg
from dann import (
    DANNTransformer, DendriticFeedForward, DenseFeedForward, MultiHeadAttention,
    TransformerBlock, sinusoidal_positions,
)
from helpers import check_module_grads
from tensorgrad import checkpoint

TINY = dict(vocab_size=5, d_model=8, n_heads=2, max_len=4, n_somas=4, dendrites_per_soma=2,
            synapses_per_dendrite=3)


def numpy_layer_norm(x, weight, bias, eps=1e-5):
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + eps) * weight + bias


def numpy_gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def numpy_attention(x, attn, causal=False, padding=None):
    """Scaled dot-product attention head by head, from the module's raw weights."""
    batch, length, d = x.shape
    heads, d_head = attn.n_heads, d // attn.n_heads
    qkv = x @ attn.qkv.weight.data.T + attn.qkv.bias.data
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    context = np.zeros_like(x)
    weights = np.zeros((batch, heads, length, length))
    for b in range(batch):
        allowed = np.ones((length, length), dtype=bool)
        if causal:
            allowed &= np.tril(allowed)
        if padding is not None:
            allowed &= padding[b][None, :]
        for h in range(heads):
            cols = slice(h * d_head, (h + 1) * d_head)
            scores = q[b, :, cols] @ k[b, :, cols].T / math.sqrt(d_head)
            scores = np.where(allowed, scores, -np.inf)
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            weights[b, h] = p
            context[b, :, cols] = p @ v[b, :, cols]
    return context @ attn.out.weight.data.T + attn.out.bias.data, weights


def tiny_model(ffn="dendritic", n_blocks=2, rng=0, **kwargs):
    config = dict(TINY, n_blocks=n_blocks, ffn=ffn, rng=rng, dtype=np.float64)
    config.update(kwargs)
    return DANNTransformer(**config)


def tokens(shape=(2, 4), vocab=5, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


# ---- attention ---------------------------------------------------------------------------


PADDING = np.array([[True, True, True, False], [True, True, False, False]])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_matches_numpy(causal, padded):
    attn = MultiHeadAttention(8, 2, causal=causal, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 4, 8))
    padding = PADDING if padded else None

    out = attn(tg.tensor(x), padding)
    expected, weights = numpy_attention(x, attn, causal, padding)

    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(attn.last_attention, weights, rtol=1e-10, atol=1e-12)


def test_attention_matches_torch():
    torch = pytest.importorskip("torch")
    attn = MultiHeadAttention(8, 4, causal=True, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 4, 8))

    reference = torch.nn.MultiheadAttention(8, 4, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.from_numpy(attn.qkv.weight.data))
        reference.in_proj_bias.copy_(torch.from_numpy(attn.qkv.bias.data))
        reference.out_proj.weight.copy_(torch.from_numpy(attn.out.weight.data))
        reference.out_proj.bias.copy_(torch.from_numpy(attn.out.bias.data))
    xt = torch.from_numpy(x)
    hidden = torch.from_numpy(~np.tril(np.ones((4, 4), dtype=bool)))
    expected, weights = reference(xt, xt, xt, attn_mask=hidden,
                                  key_padding_mask=torch.from_numpy(~PADDING),
                                  average_attn_weights=False)

    out = attn(tg.tensor(x), PADDING)

    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(attn.last_attention, weights.detach().numpy(), atol=1e-12)


def test_last_attention_rows_sum_to_one_and_masks_are_zero():
    attn = MultiHeadAttention(8, 2, causal=True, rng=0)
    x = tg.tensor(np.random.default_rng(1).standard_normal((2, 4, 8)).astype(np.float32))

    attn(x, PADDING)
    weights = attn.last_attention

    assert weights.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-6)
    upper = np.triu(np.ones((4, 4), dtype=bool), k=1)
    assert (weights[:, :, upper] == 0).all()
    assert (weights[0, :, :, 3] == 0).all() and (weights[1, :, :, 2:] == 0).all()
    assert (weights[:, :, ~upper] > 0).any()


def test_last_attention_without_grad_is_the_same():
    attn = MultiHeadAttention(8, 2, causal=True, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 4, 8))
    _, expected = numpy_attention(x, attn, causal=True, padding=PADDING)

    with tg.no_grad():
        attn(tg.tensor(x), PADDING)

    np.testing.assert_allclose(attn.last_attention, expected, rtol=1e-10, atol=1e-12)


def test_fully_masked_row_stays_finite():
    attn = MultiHeadAttention(4, 1, causal=True, rng=0, dtype=np.float64)
    x = tg.tensor(np.random.default_rng(0).standard_normal((1, 3, 4)), requires_grad=True)
    out = attn(x, np.array([[False, True, True]]))
    out.sum().backward()
    assert np.isfinite(out.data).all() and np.isfinite(x.grad).all()


def test_attention_gradients():
    attn = MultiHeadAttention(4, 2, causal=True, rng=0, dtype=np.float64)
    x = tg.tensor(np.random.default_rng(1).standard_normal((2, 3, 4)), requires_grad=True)
    check_module_grads(attn, lambda: attn(x, PADDING[:, 1:]), inputs=[x])


def test_attention_errors():
    with pytest.raises(ValueError, match="d_model=10.*n_heads=4"):
        MultiHeadAttention(10, 4)
    attn = MultiHeadAttention(8, 2, rng=0)
    with pytest.raises(ValueError, match="padding mask"):
        attn(tg.tensor(np.zeros((2, 4, 8), dtype=np.float32)), np.ones((2, 3), dtype=bool))


# ---- block, positions, feed-forwards ------------------------------------------------------


def test_block_is_pre_ln_residual():
    rng = np.random.default_rng(0)
    ffn = DendriticFeedForward(8, 4, 2, 3, rng=1, dtype=np.float64)
    block = TransformerBlock(8, 2, ffn, rng=2, dtype=np.float64)
    for ln in (block.ln1, block.ln2):
        ln.weight.data[...] = rng.uniform(0.5, 1.5, 8)
        ln.bias.data[...] = rng.uniform(-0.5, 0.5, 8)
    x = rng.standard_normal((2, 4, 8))

    out = block(tg.tensor(x), PADDING)

    attended, _ = numpy_attention(numpy_layer_norm(x, block.ln1.weight.data,
                                                   block.ln1.bias.data), block.attn,
                                  padding=PADDING)
    h = x + attended
    normed = tg.tensor(numpy_layer_norm(h, block.ln2.weight.data, block.ln2.bias.data))
    expected = h + ffn(normed).data
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)


def test_block_in_eval_mode_ignores_dropout():
    ffn = DenseFeedForward(8, 6, rng=1, dtype=np.float64)
    block = TransformerBlock(8, 2, ffn, dropout=0.5, rng=2, dtype=np.float64)
    x = tg.tensor(np.random.default_rng(0).standard_normal((2, 4, 8)))
    block.eval()
    h = x + block.attn(block.ln1(x))
    np.testing.assert_allclose(block(x).data, (h + ffn(block.ln2(h))).data, atol=1e-12)


@pytest.mark.parametrize("max_len, d_model", [(6, 8), (5, 7), (1, 2), (50, 16)])
def test_sinusoidal_positions_closed_form(max_len, d_model):
    table = sinusoidal_positions(max_len, d_model)

    assert table.shape == (max_len, d_model)
    for pos in range(max_len):
        for i in range(d_model):
            angle = pos / 10000 ** ((i - i % 2) / d_model)
            expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert table[pos, i] == pytest.approx(expected, abs=1e-12)


def test_dense_feed_forward_shape_and_formula():
    ffn = DenseFeedForward(6, 10, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 6))

    out = ffn(tg.tensor(x))

    hidden = numpy_gelu(x @ ffn.up.weight.data.T + ffn.up.bias.data)
    assert out.shape == (2, 3, 6)
    assert ffn.up.weight.shape == (10, 6) and ffn.down.weight.shape == (6, 10)
    np.testing.assert_allclose(out.data, hidden @ ffn.down.weight.data.T + ffn.down.bias.data,
                               rtol=1e-10, atol=1e-12)


# ---- the whole model ---------------------------------------------------------------------


@pytest.mark.parametrize("ffn", ["dendritic", "dense"])
def test_logits_shape_and_dtype(ffn):
    model = DANNTransformer(vocab_size=7, d_model=16, n_heads=4, n_blocks=2, max_len=6,
                            ffn=ffn, rng=0)
    logits = model(tokens((3, 5), vocab=7))
    assert logits.shape == (3, 5, 7)
    assert logits.dtype == np.float32


def test_embedding_plus_positions_then_head():
    model = tiny_model(n_blocks=0)
    ids = tokens()
    rng = np.random.default_rng(3)
    model.ln_f.weight.data[...] = rng.uniform(0.5, 1.5, 8)

    x = model.embed.weight.data[ids] + sinusoidal_positions(4, 8)[None]
    expected = (numpy_layer_norm(x, model.ln_f.weight.data, model.ln_f.bias.data)
                @ model.head.weight.data.T + model.head.bias.data)
    np.testing.assert_allclose(model(ids).data, expected, rtol=1e-10, atol=1e-12)


def test_block_ffn_kinds_and_counts():
    dendritic, dense = tiny_model("dendritic"), tiny_model("dense")
    assert all(isinstance(b.ffn, DendriticFeedForward) for b in dendritic.blocks)
    assert all(isinstance(b.ffn, DenseFeedForward) for b in dense.blocks)
    assert len(dendritic.blocks) == 2
    layer = dendritic.blocks[0].ffn.dendritic
    assert (layer.n_somas, layer.dendrites_per_soma, layer.synapses_per_dendrite) == (4, 2, 3)


@pytest.mark.parametrize("ffn, n_blocks", [("dendritic", 2), ("dense", 1)])
def test_whole_model_gradients_every_parameter(ffn, n_blocks):
    model = tiny_model(ffn, n_blocks=n_blocks)
    ids = tokens()

    checked = check_module_grads(model, lambda: model(ids))

    assert set(checked) == {name for name, _ in model.named_parameters()}
    # embed, ln_f and head: 5 tensors; a block: ln1, qkv, out, ln2 (8) and its feed-forward:
    # dendritic (4 dendrite/soma tensors + out's weight and bias) or dense (up, down: 4).
    assert len(checked) == 5 + n_blocks * (8 + (6 if ffn == "dendritic" else 4))


def test_whole_model_gradients_causal_with_padding():
    model = tiny_model("dendritic", n_blocks=1, causal=True, sampling="local", init="fan_in")
    ids = tokens(seed=1)
    check_module_grads(model, lambda: model(ids, PADDING))


def test_model_input_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="length <= 4"):
        model(tokens((2, 5)))
    with pytest.raises(ValueError, match="ffn"):
        tiny_model("sparse")


@pytest.mark.parametrize("ffn", ["dendritic", "dense"])
def test_checkpoint_round_trip_gives_identical_logits(ffn, tmp_path):
    model = DANNTransformer(vocab_size=6, d_model=16, n_heads=2, n_blocks=2, max_len=5,
                            ffn=ffn, rng=0)
    fresh = DANNTransformer(vocab_size=6, d_model=16, n_heads=2, n_blocks=2, max_len=5,
                            ffn=ffn, rng=1)
    ids = tokens((3, 5), vocab=6)
    assert not np.allclose(model(ids).data, fresh(ids).data)

    checkpoint.save(model.state_dict(), tmp_path / "model.npz")
    fresh.load_state_dict(checkpoint.load(tmp_path / "model.npz"))

    np.testing.assert_array_equal(fresh(ids).data, model(ids).data)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)
