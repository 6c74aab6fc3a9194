"""Optimizers, clipping and schedules against hand-written reference loops and torch.optim."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from tensorgrad import checkpoint
from tensorgrad.errors import TensorgradError
from tensorgrad.optim import (
    SGD, Adam, AdamW, LambdaLR, StepLR, WarmupCosine, clip_grad_norm, clip_grad_norm_,
)

SHAPES = [(3,), (2, 3)]
STEPS = 6


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [SimpleNamespace(data=rng.standard_normal(s).astype(dtype), grad=None) for s in SHAPES]


def grad_sequence(dtype=np.float64, seed=1):
    """One gradient per parameter per step; the second parameter gets none on step 2."""
    rng = np.random.default_rng(seed)
    seq = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    seq[2][1] = None
    return seq


def run(opt_cls, kwargs, dtype=np.float64):
    """Our optimizer over the gradient sequence; the parameter values after every step."""
    params = make_params(dtype)
    opt = opt_cls(params, **kwargs)
    history = []
    for grads in grad_sequence(dtype):
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
        history.append([p.data.copy() for p in params])
    return history


# ---- hand-written references (straight from the documented algorithms) ------------------


def reference_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                  maximize=False):
    """Element by element; like torch's code, maximize negates the gradient before decay."""
    thetas = [p.data.copy() for p in make_params()]
    bufs = [{} for _ in thetas]  # element index -> momentum buffer, absent before its 1st step
    history = []
    for grads in grad_sequence():
        for i, g in enumerate(grads):
            if g is None:
                continue
            theta, buf = thetas[i], bufs[i]
            for j in np.ndindex(theta.shape):
                d = -g[j] if maximize else g[j]
                d = d + weight_decay * theta[j]
                if momentum != 0:
                    if j in buf:
                        buf[j] = momentum * buf[j] + (1 - dampening) * d
                    else:
                        buf[j] = d
                    d = d + momentum * buf[j] if nesterov else buf[j]
                theta[j] = theta[j] - lr * d
        history.append([t.copy() for t in thetas])
    return history


def reference_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                   decoupled=False):
    beta1, beta2 = betas
    thetas = [p.data.copy() for p in make_params()]
    m = [np.zeros_like(t) for t in thetas]
    v = [np.zeros_like(t) for t in thetas]
    vmax = [np.zeros_like(t) for t in thetas]
    steps = [0] * len(thetas)
    history = []
    for grads in grad_sequence():
        for i, g in enumerate(grads):
            if g is None:
                continue
            steps[i] += 1
            t = steps[i]
            for j in np.ndindex(thetas[i].shape):
                theta, d = thetas[i][j], g[j]
                if decoupled:
                    theta = theta * (1 - lr * weight_decay)
                else:
                    d = d + weight_decay * theta
                m[i][j] = beta1 * m[i][j] + (1 - beta1) * d
                v[i][j] = beta2 * v[i][j] + (1 - beta2) * d * d
                m_hat = m[i][j] / (1 - beta1 ** t)
                vmax[i][j] = max(vmax[i][j], v[i][j])
                second = vmax[i][j] if amsgrad else v[i][j]
                v_hat = second / (1 - beta2 ** t)
                thetas[i][j] = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
        history.append([t.copy() for t in thetas])
    return history


def assert_histories_close(ours, theirs, tol):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol,
                                       err_msg=f"step {step}, parameter {i}")


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.1, momentum=0.8, nesterov=True),
    dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True, maximize=True),
]
ADAM_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.05, amsgrad=True),
]
ADAMW_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.02, betas=(0.8, 0.9), weight_decay=0.3, amsgrad=True),
]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_matches_reference(kwargs):
    assert_histories_close(run(SGD, kwargs), reference_sgd(**kwargs), 1e-12)


@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_adam_matches_reference(kwargs):
    assert_histories_close(run(Adam, kwargs), reference_adam(**kwargs), 1e-12)


@pytest.mark.parametrize("kwargs", ADAMW_CASES)
def test_adamw_matches_reference(kwargs):
    kwargs_ref = {"weight_decay": 1e-2, **kwargs, "decoupled": True}
    assert_histories_close(run(AdamW, kwargs), reference_adam(**kwargs_ref), 1e-12)


# ---- torch.optim ---------------------------------------------------------------------------


def run_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True)
              for p in make_params()]
    opt = getattr(torch.optim, name)(params, **kwargs)
    history = []
    for grads in grad_sequence():
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


@pytest.mark.parametrize("name, cls, kwargs",
                         [("SGD", SGD, k) for k in SGD_CASES]
                         + [("Adam", Adam, k) for k in ADAM_CASES]
                         + [("AdamW", AdamW, k) for k in ADAMW_CASES])
def test_matches_torch(name, cls, kwargs):
    assert_histories_close(run(cls, kwargs), run_torch(name, kwargs), 1e-12)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    for norm_type in (2.0, 1.0, math.inf):
        params, grads = make_params(), grad_sequence()[0]
        tparams = [torch.tensor(p.data, requires_grad=True) for p in params]
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g.copy(), torch.tensor(g)
        total = clip_grad_norm(params, 0.5, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tparams, 0.5, norm_type)
        assert total == pytest.approx(float(ttotal), rel=1e-12)
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_step_lr_and_lambda_lr_match_torch():
    torch = pytest.importorskip("torch")
    for ours_cls, theirs_cls, kwargs in [
        (StepLR, torch.optim.lr_scheduler.StepLR, dict(step_size=3, gamma=0.5)),
        (LambdaLR, torch.optim.lr_scheduler.LambdaLR, dict(lr_lambda=lambda t: 1 / (t + 1))),
    ]:
        ours = ours_cls(SGD(make_params(), lr=0.1), **kwargs)
        theirs_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = theirs_cls(theirs_opt, **kwargs)
        for _ in range(10):
            assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
            theirs_opt.step()
            ours.step()
            theirs.step()


# ---- dtype, in-place updates, skipped gradients -------------------------------------------


@pytest.mark.parametrize("cls, kwargs", [
    (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)),
    (Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (AdamW, dict(lr=0.01, amsgrad=True)),
])
def test_float32_stays_float32_and_updates_in_place(cls, kwargs):
    base = np.ones((2, 3), dtype=np.float32)
    view = base[0]  # a view of the first row: it must see the update
    p = SimpleNamespace(data=view, grad=None)
    opt = cls([p], **kwargs)
    for _ in range(3):
        p.grad = np.full(3, 0.5, dtype=np.float32)
        opt.step()
    assert p.data is view and p.data.dtype == np.float32
    assert np.all(base[0] != 1.0) and np.all(base[1] == 1.0)
    for value in opt.state[id(p)].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32

    history = run(cls, kwargs, dtype=np.float32)
    assert all(x.dtype == np.float32 for step in history for x in step)
    assert_histories_close(history, run(cls, kwargs), 1e-5)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_none_grad_is_skipped(cls):
    p, q = make_params()
    before = p.data.copy()
    opt = cls([p, q], lr=0.1)
    q.grad = np.ones_like(q.data)
    opt.step()
    np.testing.assert_array_equal(p.data, before)
    assert not opt.state.get(id(p))
    assert np.all(q.data != make_params()[1].data)


def test_step_does_not_modify_the_gradient():
    p = make_params()[0]
    grad = np.array([1.0, -2.0, 3.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    for _ in range(2):
        p.grad = grad
        opt.step()
    np.testing.assert_array_equal(grad, [1.0, -2.0, 3.0])


def test_zero_grad():
    p, q = make_params()
    opt = SGD([p, q], lr=0.1)
    p.grad, q.grad = np.ones(3), np.ones((2, 3))
    g = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is g and np.all(g == 0)
    opt.zero_grad()
    assert p.grad is None and q.grad is None


# ---- param groups -----------------------------------------------------------------------------


def test_param_groups_take_their_own_hyperparameters():
    p, q = make_params()
    opt = SGD([{"params": [p]}, {"params": [q], "lr": 1.0, "momentum": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]
    assert opt.param_groups[0]["momentum"] == 0.0
    p0, q0 = p.data.copy(), q.data.copy()
    p.grad, q.grad = np.ones(3), np.ones((2, 3))
    opt.step()
    np.testing.assert_allclose(p.data, p0 - 0.1)
    np.testing.assert_allclose(q.data, q0 - 1.0)


@pytest.mark.parametrize("make, message", [
    (lambda ps: SGD(ps, lr=-0.1), "lr"),
    (lambda ps: SGD(ps, lr=float("nan")), "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-1), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda ps: SGD([{"params": ps, "lr": -1.0}], lr=0.1), "lr"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), "betas"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), "betas"),
    (lambda ps: AdamW(ps, eps=-1e-8), "eps"),
    (lambda ps: AdamW(ps, weight_decay=-0.1), "weight_decay"),
    (lambda ps: Adam([]), "empty"),
    (lambda ps: Adam(ps[0]), "single parameter"),
    (lambda ps: Adam(ps + ps[:1]), "more than once"),
    (lambda ps: Adam([np.zeros(3)]), "ndarray"),
])
def test_invalid_arguments_are_refused(make, message):
    with pytest.raises(TensorgradError, match=message):
        make(make_params())


# ---- state_dict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", [
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (AdamW, dict(lr=0.01)),
])
def test_state_dict_round_trip_through_a_checkpoint_continues_identically(cls, kwargs, tmp_path):
    grads = grad_sequence()
    params = make_params()
    opt = cls(params, **kwargs)
    sched = StepLR(opt, step_size=2, gamma=0.5)

    def train(params, opt, sched, steps):
        for step_grads in steps:
            for p, g in zip(params, step_grads):
                p.grad = None if g is None else g.copy()
            opt.step()
            sched.step()

    train(params, opt, sched, grads[:3])
    checkpoint.save({"params": [p.data for p in params], "optim": opt.state_dict(),
                     "sched": sched.state_dict()}, tmp_path / "ckpt.npz")
    train(params, opt, sched, grads[3:])

    loaded = checkpoint.load(tmp_path / "ckpt.npz")
    params2 = make_params(seed=5)
    for p, saved in zip(params2, loaded["params"]):
        p.data[...] = saved
    opt2 = cls(params2, **kwargs)
    sched2 = StepLR(opt2, step_size=2, gamma=0.5)
    opt2.load_state_dict(loaded["optim"])
    sched2.load_state_dict(loaded["sched"])
    train(params2, opt2, sched2, grads[3:])

    for p, p2 in zip(params, params2):
        np.testing.assert_array_equal(p.data, p2.data)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_state_dict_is_a_copy_keyed_by_position():
    p, q = make_params()
    opt = Adam([{"params": [p]}, {"params": [q], "lr": 0.5}])
    q.grad = np.ones((2, 3))
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [1]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["state"][1]["step"] == 1
    sd["state"][1]["exp_avg"][...] = 99.0
    assert not np.any(opt.state[id(q)]["exp_avg"] == 99.0)


def test_load_state_dict_casts_state_to_the_parameter_dtype():
    opt = Adam(make_params())
    for p in opt.param_groups[0]["params"]:
        p.grad = np.ones_like(p.data)
    opt.step()
    params32 = make_params(np.float32)
    opt32 = Adam(params32)
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[id(params32[0])]["exp_avg"].dtype == np.float32


def _stepped(cls, params, **kwargs):
    opt = cls(params, **kwargs)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    return opt


@pytest.mark.parametrize("make_target, message", [
    (lambda: Adam([{"params": make_params()[:1]}, {"params": make_params()[1:]}]),
     "has 1 parameter groups, this optimizer has 2"),
    (lambda: Adam(make_params()[:1]), "group 0: loaded state has 2 parameters"),
    (lambda: Adam([SimpleNamespace(data=np.zeros(4), grad=None),
                   SimpleNamespace(data=np.zeros((2, 3)), grad=None)]), r"shape \(3,\)"),
    (lambda: SGD(make_params(), lr=0.1), r"lacks \['momentum'.*another optimizer than SGD"),
])
def test_mismatched_state_dict_is_refused_and_changes_nothing(make_target, message):
    sd = _stepped(Adam, make_params(), lr=0.01).state_dict()
    target = make_target()
    groups_before = [dict(g) for g in target.param_groups]
    with pytest.raises(TensorgradError, match=message):
        target.load_state_dict(sd)
    assert target.param_groups == groups_before and target.state == {}


def test_sgd_state_loaded_into_adam_names_the_missing_hyperparameters():
    sd = _stepped(SGD, make_params(), lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(TensorgradError, match="another optimizer than Adam"):
        Adam(make_params()).load_state_dict(sd)


# ---- clip_grad_norm -------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_against_numpy(norm_type):
    params, grads = make_params(), grad_sequence()[0]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    flat = np.concatenate([g.ravel() for g in grads])
    expected = np.abs(flat).max() if norm_type == math.inf else \
        np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)

    total = clip_grad_norm(params, 0.5, norm_type=norm_type)
    assert type(total) is float and total == pytest.approx(expected, rel=1e-12)
    assert expected > 0.5
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g * 0.5 / (expected + 1e-6), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_and_skips_none():
    params = make_params(np.float32)
    params[0].grad = np.array([0.3, 0.0, -0.4], dtype=np.float32)
    total = clip_grad_norm_(params, max_norm=1.0)
    assert total == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_array_equal(params[0].grad, np.array([0.3, 0.0, -0.4], np.float32))
    assert params[1].grad is None

    params[0].grad = np.array([3.0, 0.0, -4.0], dtype=np.float32)
    assert clip_grad_norm(params[0], max_norm=1.0) == pytest.approx(5.0)
    assert params[0].grad.dtype == np.float32
    assert np.linalg.norm(params[0].grad) == pytest.approx(1.0, rel=1e-5)
    assert clip_grad_norm(make_params(), 1.0) == 0.0


# ---- schedules ------------------------------------------------------------------------------


def lrs(sched, steps):
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        sched.step()
    return out


def test_step_lr():
    opt = SGD(make_params(), lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    assert opt.param_groups[0]["initial_lr"] == 1.0
    assert lrs(sched, 6) == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_lambda_lr_per_group():
    p, q = make_params()
    opt = SGD([{"params": [p]}, {"params": [q], "lr": 2.0}], lr=1.0)
    sched = LambdaLR(opt, [lambda t: 0.5 ** t, lambda t: t + 1])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [0.25, 6.0]
    assert [g["lr"] for g in opt.param_groups] == [0.25, 6.0]
    with pytest.raises(TensorgradError, match="2 param groups"):
        LambdaLR(opt, [lambda t: 1.0])


def test_warmup_cosine_key_steps():
    opt = SGD(make_params(), lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=4, total_steps=12, min_lr=0.1)
    values = lrs(sched, 16)
    assert values[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert values[8] == pytest.approx(0.55)  # halfway through the cosine: (base + min) / 2
    assert values[6] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert values[12:] == pytest.approx([0.1] * 4)
    assert all(a >= b for a, b in zip(values[4:], values[5:]))


def test_warmup_cosine_without_warmup_starts_at_base():
    sched = WarmupCosine(SGD(make_params(), lr=0.2), warmup_steps=0, total_steps=10)
    assert lrs(sched, 11)[0] == 0.2 and sched.get_last_lr() == [0.0]


@pytest.mark.parametrize("make", [
    lambda opt: WarmupCosine(opt, warmup_steps=5, total_steps=5),
    lambda opt: WarmupCosine(opt, warmup_steps=-1, total_steps=5),
    lambda opt: WarmupCosine(opt, warmup_steps=1, total_steps=5, min_lr=-1.0),
    lambda opt: StepLR(opt, step_size=0),
])
def test_invalid_schedules_are_refused(make):
    with pytest.raises(TensorgradError):
        make(SGD(make_params(), lr=0.1))


def test_scheduler_state_dict_round_trip():
    opt = SGD(make_params(), lr=1.0)
    sched = WarmupCosine(opt, warmup_steps=3, total_steps=10)
    lrs(sched, 5)
    state = sched.state_dict()
    expected = lrs(sched, 4)

    opt2 = SGD(make_params(), lr=1.0)
    sched2 = WarmupCosine(opt2, warmup_steps=3, total_steps=10)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == state["last_lr"][0]
    assert lrs(sched2, 4) == expected


@pytest.mark.parametrize("make", [
    lambda ps: Adam(ps, lr=0.01),
    lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
])
def test_fused_group_update_is_bitwise_the_per_parameter_update(make):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    fused = [SimpleNamespace(data=a.copy(), grad=None) for a in start]
    single = [SimpleNamespace(data=a.copy(), grad=None) for a in start]
    opt_fused = make(fused)                               # one group: the flat update
    opt_single = make([{"params": [p]} for p in single])  # one parameter a group: the loop
    for step in range(6):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, q, g in zip(fused, single, grads):
            p.grad, q.grad = g.copy(), g.copy()
        opt_fused.step()
        opt_single.step()
        if step == 2:  # a state round trip in the middle re-creates the flat buffers
            opt_fused.load_state_dict(opt_fused.state_dict())
    for p, q in zip(fused, single):
        assert p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, q.data)


def test_zero_grad_in_place_after_create_graph_detaches_the_tensor_grad():
    import tensorgrad as tg

    w = tg.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward(create_graph=True)
    assert isinstance(w.grad, tg.Tensor)
    opt = SGD([w], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert isinstance(w.grad, np.ndarray) and not w.grad.any()
