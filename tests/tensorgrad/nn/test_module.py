"""Module registration, tree walking, modes, state dicts, dtype conversion and printing."""

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.errors import DtypeError, TensorgradError


class Attention(nn.Module):
    def __init__(self, d, rng):
        super().__init__()
        self.q = nn.Linear(d, d, rng=rng)
        self.k = nn.Linear(d, d, bias=False, rng=rng)

    def forward(self, x):
        return self.q(x) * self.k(x)


class Block(nn.Module):
    def __init__(self, d, rng):
        super().__init__()
        self.attn = Attention(d, rng)
        self.norm = nn.LayerNorm(d)
        self.register_buffer("wiring", np.arange(d * d, dtype=np.float32).reshape(d, d))

    def forward(self, x):
        return self.norm(x + self.attn(x) @ self.wiring)


class Net(nn.Module):
    def __init__(self, d=4, vocab=7, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(vocab, d, rng=rng)
        self.blocks = nn.ModuleList([Block(d, rng) for _ in range(2)])
        self.head = nn.Sequential(nn.Linear(d, d, rng=rng), nn.GELU(),
                                  nn.Linear(d, vocab, rng=rng))
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))

    def forward(self, idx):
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(x) * self.scale


IDX = np.array([[0, 3, 6], [2, 2, 5]])


# ---------------------------------------------------------------- registration


def test_named_parameters_are_dotted_through_nesting():
    names = [name for name, _ in Net().named_parameters()]
    assert names == [
        "scale", "embed.weight",
        "blocks.0.attn.q.weight", "blocks.0.attn.q.bias", "blocks.0.attn.k.weight",
        "blocks.0.norm.weight", "blocks.0.norm.bias",
        "blocks.1.attn.q.weight", "blocks.1.attn.q.bias", "blocks.1.attn.k.weight",
        "blocks.1.norm.weight", "blocks.1.norm.bias",
        "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias",
    ]
    net = Net()
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert net.blocks[1].attn.k.bias is None


def test_named_modules_yields_self_first_then_preorder():
    names = [name for name, _ in Net().named_modules()]
    assert names == [
        "", "embed", "blocks",
        "blocks.0", "blocks.0.attn", "blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.norm",
        "blocks.1", "blocks.1.attn", "blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.norm",
        "head", "head.0", "head.1", "head.2",
    ]
    net = Net()
    assert [m for _, m in net.named_children()] == [net.embed, net.blocks, net.head]
    assert list(net.children()) == [net.embed, net.blocks, net.head]
    assert next(net.modules()) is net


def test_buffers_are_named_but_not_parameters():
    net = Net()
    assert [name for name, _ in net.named_buffers()] == ["blocks.0.wiring", "blocks.1.wiring"]
    param_ids = {id(p) for p in net.parameters()}
    assert all(id(b) not in param_ids for b in net.buffers())
    assert isinstance(net.blocks[0].wiring, np.ndarray)


def test_reassignment_replaces_the_entry():
    layer = nn.Linear(3, 2, rng=0)
    layer.weight = nn.Parameter(np.zeros((2, 3)))
    layer.extra = nn.Linear(2, 2, rng=0)
    layer.extra = None
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.data.sum() == 0
    with pytest.raises(TypeError, match="weight is a parameter"):
        layer.weight = np.zeros((2, 3))
    del layer.bias
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(3, 3, rng=0)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2
    assert seq.num_parameters() == 12
    assert [name for name, _ in seq.named_modules()] == ["", "0", "1"]


def test_assigning_before_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(TensorgradError, match=r"super\(\)\.__init__\(\)"):
        Broken()


def test_parameter_is_a_floating_leaf_that_shares_a_tensors_array():
    t = tg.tensor([1.0, 2.0])
    p = nn.Parameter(t, name="w")
    assert p.requires_grad and p.is_leaf and p.name == "w" and p.data is t.data
    with pytest.raises(DtypeError, match="floating point"):
        nn.Parameter(np.array([1, 2]))


def test_module_list_and_module_dict_behave_like_their_builtins():
    layers = nn.ModuleList([nn.ReLU()])
    layers.append(nn.Tanh()).extend([nn.Sigmoid(), nn.GELU()])
    assert len(layers) == 4 and isinstance(layers[-1], nn.GELU)
    assert [type(m).__name__ for m in layers[1:3]] == ["Tanh", "Sigmoid"]
    layers[0] = nn.LeakyReLU()
    assert isinstance(layers[0], nn.LeakyReLU)
    with pytest.raises(IndexError, match="out of range"):
        layers[4]

    heads = nn.ModuleDict({"a": nn.Linear(2, 2, rng=0)})
    heads["b"] = nn.Linear(2, 3, rng=0)
    assert list(heads) == ["a", "b"] and "b" in heads and len(heads) == 2
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    with pytest.raises(KeyError):
        heads["bad.key"] = nn.ReLU()


def test_sequential_chains_its_modules():
    seq = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))
    x = tg.tensor(np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32))
    expected = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).data, expected.data)
    assert len(seq) == 3 and len(seq[:2]) == 2


def test_call_tags_records_with_the_module_scope():
    net = Net()
    out = net(IDX)
    assert out._record.scope == (net,)
    head_matmul = out._record.inputs[0]._record  # head.2's bias add
    assert head_matmul.scope == (net, net.head, net.head[2])


# ---------------------------------------------------------------- modes and gradients


def test_zero_grad_clears_every_gradient():
    net = Net()
    tg.nn.functional.cross_entropy(net(IDX), IDX).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_train_and_eval_propagate_to_every_module():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.blocks.train()
    assert net.blocks[1].attn.q.training and not net.training and not net.head.training


def test_apply_visits_children_before_parents():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(m))
    assert seen[-1] is net and len(seen) == len(list(net.modules()))
    position = [seen.index(m) for m in (net.blocks[0].attn.q, net.blocks[0].attn, net.blocks)]
    assert position == sorted(position)


# ---------------------------------------------------------------- state dicts


def test_state_dict_round_trip_gives_identical_outputs():
    source, target = Net(seed=1), Net(seed=2)
    source.blocks[0].wiring[...] = -1.0
    assert not np.allclose(source(IDX).data, target(IDX).data)
    state = source.state_dict()
    assert "blocks.0.wiring" in state and "blocks.0.attn.q.weight" in state
    arrays_before = [p.data for p in target.parameters()]
    result = target.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(source(IDX).data, target(IDX).data)
    assert all(a is p.data for a, p in zip(arrays_before, target.parameters()))  # in place
    np.testing.assert_array_equal(target.blocks[0].wiring, -1.0)


def test_state_dict_holds_copies():
    net = Net()
    state = net.state_dict()
    state["embed.weight"][...] = 123.0
    assert not np.any(net.embed.weight.data == 123.0)


def test_strict_load_lists_every_problem_in_one_error_and_changes_nothing():
    net = Net()
    before = net.state_dict()
    state = Net(seed=5).state_dict()
    del state["embed.weight"], state["blocks.1.wiring"]
    state["blocks.0.norm.bias"] = np.zeros(9)
    state["extra.weight"] = np.zeros(2)
    with pytest.raises(TensorgradError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    for key in ("embed.weight", "blocks.1.wiring", "blocks.0.norm.bias", "extra.weight"):
        assert key in message
    assert "missing" in message and "unexpected" in message and "shape" in message
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_non_strict_load_reports_and_loads_the_rest():
    net, other = Net(seed=0), Net(seed=3)
    state = other.state_dict()
    del state["head.2.bias"]
    state["unused"] = np.zeros(1)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["head.2.bias"] and unexpected == ["unused"]
    np.testing.assert_array_equal(net.embed.weight.data, other.embed.weight.data)
    assert not np.array_equal(net.head[2].bias.data, other.head[2].bias.data)


def test_non_strict_load_still_refuses_wrong_shapes():
    net = Net()
    state = net.state_dict()
    state["head.0.weight"] = np.zeros((1, 1))
    with pytest.raises(TensorgradError, match="head.0.weight"):
        net.load_state_dict(state, strict=False)


def test_load_keeps_the_models_dtype():
    net = Net()
    state = {k: v.astype(np.float64) for k, v in Net(seed=4).state_dict().items()}
    net.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in net.parameters())
    np.testing.assert_allclose(net.embed.weight.data, state["embed.weight"], rtol=1e-6)


# ---------------------------------------------------------------- dtype and printing


def test_astype_converts_parameters_and_float_buffers_in_place():
    net = Net()
    params = list(net.parameters())
    net.register_buffer("steps", np.zeros(1, dtype=np.int64))
    assert net.astype(np.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(isinstance(p, nn.Parameter) and p.dtype == np.float64 for p in net.parameters())
    assert net.blocks[0].wiring.dtype == np.float64 and net.steps.dtype == np.int64
    assert net(IDX).dtype == np.float64
    assert net.to(np.float32).embed.weight.dtype == np.float32
    with pytest.raises(DtypeError):
        net.astype(np.int32)


def test_repr_prints_the_tree_with_parameter_counts():
    net = Net()
    text = repr(net)
    assert text.splitlines()[0] == f"Net(  # {net.num_parameters():,} parameters in total"
    assert "(blocks): ModuleList(" in text
    assert "(q): Linear(in_features=4, out_features=4, bias=True)  # 20 params" in text
    assert "(k): Linear(in_features=4, out_features=4, bias=False)  # 16 params" in text
    assert "(1): GELU(approximate='none')" in text
    assert "(embed): Embedding(7, 4)  # 28 params" in text
    assert net.num_parameters() == sum(p.size for p in net.parameters())
    assert net.num_parameters() == 1 + 28 + 2 * 44 + 20 + 35
