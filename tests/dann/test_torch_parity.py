"""dann.torch: the PyTorch twin computes what dann's model computes, and weights move both ways.

PyTorch is the independent reference here: in float64 the twin's logits, loss and every
parameter's gradient must equal tensorgrad's to 1e-10, and AdamW steps taken in each framework
must keep the parameters equal.
"""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dann  # noqa: E402
import dann.torch as dt  # noqa: E402
from tensorgrad import nn, optim  # noqa: E402

SMALL = dict(vocab_size=7, d_model=16, n_heads=4, n_blocks=2, max_len=6, n_somas=12,
             dendrites_per_soma=3, synapses_per_dendrite=5)
# Row 0 is unpadded, the others end in padding; every row starts with a real token, so no
# query ever has all its keys masked, even with causal attention.
PADDING = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=bool)
VARIANTS = [("dendritic", "dense"), ("dendritic", "gather"), ("dense", "dense")]


def make_model(ffn="dendritic", form="dense", dtype=np.float64, rng=0, **kwargs):
    return dann.DANNTransformer(**{**SMALL, **kwargs}, ffn=ffn, form=form, rng=rng, dtype=dtype)


def batch(seed=1, vocab=SMALL["vocab_size"], shape=(3, 6)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=shape), rng.integers(0, vocab, size=shape)


def tg_loss_and_grads(model, tokens, targets, padding=None):
    logits = model(tokens, padding)
    loss = nn.functional.cross_entropy(logits, targets)
    model.zero_grad()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return logits.data, loss.item(), grads


def torch_loss_and_grads(twin, tokens, targets, padding=None):
    mask = None if padding is None else torch.from_numpy(padding)
    logits = twin(torch.from_numpy(tokens), mask)
    loss = dt.cross_entropy(logits, torch.from_numpy(targets))
    twin.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    return logits.detach().numpy(), loss.item(), grads


# ---- optional import ---------------------------------------------------------------------


def test_import_dann_does_not_import_torch():
    code = "import sys, dann, dann.train; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "dann.torch")
    with pytest.raises(ImportError, match=r"pip install torch.*\[torch\]"):
        import dann.torch  # noqa: F401
    monkeypatch.undo()
    assert sys.modules["dann.torch"] is dt


# ---- same names, same numbers ------------------------------------------------------------


@pytest.mark.parametrize("ffn, form", VARIANTS)
def test_state_dict_keys_shapes_and_dtypes_match(ffn, form):
    model = make_model(ffn, form, dtype=np.float32)
    ours, theirs = model.state_dict(), dt.to_torch(model).state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert ours[key].shape == tuple(theirs[key].shape), key
        assert ours[key].dtype == theirs[key].numpy().dtype, key


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("ffn, form", VARIANTS)
def test_logits_loss_and_every_gradient_match_in_float64(ffn, form, causal, padded):
    model = make_model(ffn, form, causal=causal)
    twin = dt.to_torch(model)
    tokens, targets = batch()
    padding = PADDING if padded else None

    logits, loss, grads = tg_loss_and_grads(model, tokens, targets, padding)
    t_logits, t_loss, t_grads = torch_loss_and_grads(twin, tokens, targets, padding)

    assert np.abs(logits - t_logits).max() <= 1e-10
    assert abs(loss - t_loss) <= 1e-10
    assert list(grads) == list(t_grads)
    for name, grad in grads.items():
        assert np.abs(grad).max() > 0, f"{name}: no gradient reached it"
        assert np.abs(grad - t_grads[name]).max() <= 1e-10, name


def test_padding_changes_the_logits_of_real_tokens():
    """Guards the mask test above: with padding the attention really differs."""
    model = make_model()
    tokens, _ = batch()
    plain = dt.to_torch(model)(torch.from_numpy(tokens)).detach().numpy()
    masked = dt.to_torch(model)(torch.from_numpy(tokens), torch.from_numpy(PADDING))
    assert np.abs(plain[1, :4] - masked.detach().numpy()[1, :4]).max() > 1e-3


def test_eval_mode_twin_of_a_dropout_model_matches():
    model = make_model(dropout=0.3).eval()
    twin = dt.to_torch(model)
    assert not twin.training
    tokens, _ = batch()
    expected = model(tokens).data
    assert np.abs(twin(torch.from_numpy(tokens)).detach().numpy() - expected).max() <= 1e-10


# ---- weight transfer ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ffn, form", VARIANTS)
def test_round_trip_gives_identical_state_and_config(ffn, form, dtype):
    model = make_model(ffn, form, dtype=dtype, causal=True, sampling="local", init="fan_in")
    twin = dt.to_torch(model)
    back = dt.from_torch(twin)

    assert twin.embed.weight.dtype == dt._torch_dtype(dtype)
    assert dt.config_of(back) == dt.config_of(model)
    original, returned = model.state_dict(), back.state_dict()
    assert list(original) == list(returned)
    for key, value in original.items():
        assert returned[key].dtype == value.dtype, key
        np.testing.assert_array_equal(returned[key], value, err_msg=key)


def test_twin_owns_its_weights():
    model = make_model()
    twin = dt.to_torch(model)
    with torch.no_grad():
        twin.head.weight.add_(1.0)
    assert not np.allclose(model.head.weight.data, twin.head.weight.detach().numpy())


def test_torch_built_model_comes_back_with_its_weights():
    twin = dt.DANNTransformer(**SMALL, causal=True, rng=3, dtype=torch.float64)
    model = dt.from_torch(twin)
    tokens, _ = batch()
    expected = twin(torch.from_numpy(tokens)).detach().numpy()
    assert np.abs(model(tokens).data - expected).max() <= 1e-10
    np.testing.assert_array_equal(model.blocks[1].ffn.dendritic.wiring,
                                  twin.blocks[1].ffn.dendritic.wiring.numpy())


def test_from_torch_refuses_other_modules():
    with pytest.raises(TypeError, match="from_torch.*Linear"):
        dt.from_torch(torch.nn.Linear(2, 2))


def test_twin_rejects_bad_tokens_and_masks():
    twin = dt.to_torch(make_model())
    with pytest.raises(ValueError, match="length <= 6"):
        twin(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="padding mask of shape"):
        twin(torch.zeros(3, 6, dtype=torch.long), torch.ones(3, 5, dtype=torch.bool))


# ---- training in both frameworks ---------------------------------------------------------


@pytest.mark.parametrize("ffn, form", [("dendritic", "dense"), ("dense", "dense")])
def test_adamw_steps_keep_the_parameters_equal(ffn, form):
    model = make_model(ffn, form, causal=True)
    twin = dt.to_torch(model)
    start = model.state_dict()
    hyper = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.1)
    ours = optim.AdamW(model.parameters(), **hyper)
    theirs = torch.optim.AdamW(twin.parameters(), **hyper)

    for step in range(4):
        tokens, targets = batch(seed=10 + step)
        tg_loss_and_grads(model, tokens, targets, PADDING)
        ours.step()
        torch_loss_and_grads(twin, tokens, targets, PADDING)
        theirs.step()

    for name, p in twin.named_parameters():
        value = model.state_dict()[name]
        assert np.abs(value - start[name]).max() > 1e-3, f"{name} did not train"
        assert np.abs(value - p.detach().numpy()).max() <= 1e-9, name
