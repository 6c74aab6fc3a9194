"""Optimizers, gradient clipping and learning-rate schedules, with PyTorch's names and maths.

A parameter is any object with a ``data`` ndarray, which the optimizer updates in place (so
views and the dtype survive), and a ``grad`` ndarray of the same shape and dtype, or None when
the parameter got no gradient this step (it is then skipped, as in PyTorch).

    opt = Adam(params, lr=3e-4)
    sched = WarmupCosine(opt, warmup_steps=100, total_steps=10_000)
    for batch in batches:
        opt.zero_grad()
        loss(batch).backward()
        clip_grad_norm(params, 1.0)
        opt.step()
        sched.step()
"""

import logging
import math

import numpy as np

from tensorgrad.errors import TensorgradError

log = logging.getLogger(__name__)


def _is_param(x):
    return hasattr(x, "grad") and isinstance(getattr(x, "data", None), np.ndarray)


def _require(ok, message):
    if not ok:
        raise TensorgradError(message)


def _check_nonnegative(group, *names):
    for name in names:
        value = group[name]
        _require(value >= 0, f"invalid {name}: {value!r} (must be >= 0)")  # refuses NaN too


# ---- optimizer base ----------------------------------------------------------------------


class Optimizer:
    """Parameter groups plus per-parameter state; a subclass writes ``step`` and ``_validate``.

    ``params`` is an iterable of parameters, or of dicts ``{"params": [...], "lr": ...}`` whose
    keys override ``defaults`` for that group.
    """

    def __init__(self, params, defaults):
        _require(not _is_param(params),
                 "params must be an iterable of parameters or of param-group dicts, "
                 "not a single parameter")
        self.defaults = dict(defaults)
        self.param_groups = []
        # Keyed by id(param), since a parameter need not be hashable (a tensor with an
        # elementwise == is not); the groups hold the parameters, so the ids stay valid.
        self.state = {}
        groups = list(params)
        _require(len(groups) > 0, "optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a group of parameters with its own hyperparameters (missing ones from defaults)."""
        _require(isinstance(group, dict) and "params" in group,
                 f"a param group must be a dict with a 'params' key, got {type(group).__name__}")
        params = group["params"]
        params = [params] if _is_param(params) else list(params)
        for p in params:
            _require(_is_param(p), "optimizer can only take parameters (a .data ndarray and a "
                                   f".grad), got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        _require(len(set(ids)) == len(ids) and seen.isdisjoint(ids),
                 "some parameters appear more than once across the parameter groups")
        group = {**self.defaults, **group, "params": params}
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group):
        """Raise TensorgradError if the group's hyperparameters are invalid."""

    def step(self):
        """Update every parameter that has a gradient, in place."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def zero_grad(self, set_to_none=True):
        """Clear gradients: drop them (the default, as in PyTorch) or zero them in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif isinstance(p.grad, np.ndarray):
                    p.grad.fill(0)
                elif p.grad is not None:  # a Tensor from backward(create_graph=True): detach it
                    p.grad = np.zeros_like(p.data)

    def state_dict(self):
        """Copy of the state, keyed by each parameter's position across groups (as PyTorch).

        Holds only NumPy arrays, numbers, bools and tuples, so ``checkpoint.save`` takes it.
        """
        groups, state, position = [], {}, 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = list(range(position, position + len(group["params"])))
            groups.append(saved)
            for p in group["params"]:
                if self.state.get(id(p)):
                    state[position] = _copy_state(self.state[id(p)])
                position += 1
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state from ``state_dict()``; keeps this one's parameters.

        Everything is checked before anything changes, so a mismatch leaves the optimizer as it
        was, and the error names the group, parameter, entry or shape that differs.
        """
        _require(isinstance(state_dict, dict) and {"state", "param_groups"} <= state_dict.keys(),
                 "an optimizer state dict needs 'state' and 'param_groups' entries")
        saved_groups = state_dict["param_groups"]
        _require(len(saved_groups) == len(self.param_groups),
                 f"loaded state has {len(saved_groups)} parameter groups, "
                 f"this optimizer has {len(self.param_groups)}")
        by_saved_index, new_groups = {}, []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            n_saved, n_here = len(saved["params"]), len(group["params"])
            _require(n_saved == n_here, f"parameter group {i}: loaded state has {n_saved} "
                                        f"parameters, this optimizer has {n_here}")
            missing = [k for k in self.defaults if k not in saved]
            _require(not missing, f"parameter group {i}: loaded state lacks {missing} (was it "
                                  f"saved from another optimizer than {type(self).__name__}?)")
            by_saved_index.update(zip(saved["params"], group["params"]))
            new_group = {**saved, "params": group["params"]}
            self._validate(new_group)
            new_groups.append(new_group)

        new_state = {}
        for index, entries in state_dict["state"].items():
            _require(index in by_saved_index,
                     f"loaded state has an entry for parameter {index!r}, which is in no group")
            p = by_saved_index[index]
            for name, value in entries.items():
                if isinstance(value, np.ndarray):
                    _require(value.shape == p.data.shape,
                             f"state {name!r} of parameter {index} has shape {value.shape}, "
                             f"but the parameter has shape {p.data.shape}")
            # Array state is parameter-shaped; cast it to the parameter's dtype, as PyTorch does.
            new_state[id(p)] = {
                name: value.astype(p.data.dtype) if isinstance(value, np.ndarray) else value
                for name, value in entries.items()
            }
        self.param_groups, self.state = new_groups, new_state


def _copy_state(state):
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}


# ---- optimizers --------------------------------------------------------------------------


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    Per step, with gradient g:  g = -g if maximize;  g += weight_decay * p;  with momentum,
    b = g on the first step, else b = momentum * b + (1 - dampening) * g, and then
    g = g + momentum * b (nesterov) or g = b;  finally p -= lr * g.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, group):
        _check_nonnegative(group, "lr", "momentum", "weight_decay")
        _require(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
                 "nesterov=True needs a momentum > 0 and zero dampening")

    def step(self):
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            keep = 1.0 - group["dampening"]
            nesterov, maximize = group["nesterov"], group["maximize"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if maximize:
                    g = -g
                if weight_decay:
                    g = g + weight_decay * p.data
                if momentum:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= momentum
                        buf += keep * g
                    g = g + momentum * buf if nesterov else buf
                p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay folded into the gradient, as ``torch.optim.Adam``.

    Per step t = 1, 2, ...:  g += weight_decay * p;  m = b1 m + (1 - b1) g;
    v = b2 v + (1 - b2) g^2;  vmax = max(vmax, v) and use vmax for v if amsgrad;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _validate(self, group):
        _check_nonnegative(group, "lr", "eps", "weight_decay")
        betas = group["betas"]
        _require(len(betas) == 2 and all(0 <= b < 1 for b in betas),
                 f"invalid betas: {betas!r} (need two values in [0, 1))")

    def step(self):
        for group in self.param_groups:
            if self._fusable(group):
                self._fused_step(group)
                continue
            lr, weight_decay, amsgrad = group["lr"], group["weight_decay"], group["amsgrad"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self.state.setdefault(id(p), {})
                if not state:
                    state.update(step=0, exp_avg=np.zeros_like(p.data),
                                 exp_avg_sq=np.zeros_like(p.data))
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
                state["step"] += 1
                t = state["step"]

                if weight_decay and self.decoupled_weight_decay:
                    p.data *= 1.0 - lr * weight_decay
                elif weight_decay:
                    g = g + weight_decay * p.data

                vmax = state["max_exp_avg_sq"] if amsgrad else None
                p.data -= _adam_update(g, state["exp_avg"], state["exp_avg_sq"], vmax, t, group)


    def _fusable(self, group) -> bool:
        """Whether one flat update can serve the whole group: same dtype, all gradients, same
        step count, no amsgrad, no L2 decay (which would need the parameters flattened too)."""
        params = group["params"]
        if group["amsgrad"] or (group["weight_decay"] and not self.decoupled_weight_decay):
            return False
        if len(params) < 2 or any(p.grad is None for p in params):
            return False
        dtype = params[0].data.dtype
        steps = {self.state.get(id(p), {}).get("step", 0) for p in params}
        return len(steps) == 1 and all(p.data.dtype == dtype for p in params)

    def _fused_step(self, group):
        """The Adam update of every parameter of ``group`` at once, on flat moment buffers.

        The same operations in the same order as the per-parameter loop, so the result is
        bitwise identical; a dozen NumPy calls for the group instead of a dozen per parameter.
        """
        params = group["params"]
        m, v, bounds = self._flat_moments(params)
        lr, weight_decay = group["lr"], group["weight_decay"]
        for p in params:
            self.state[id(p)]["step"] += 1
        t = self.state[id(params[0])]["step"]

        g = np.concatenate([p.grad.ravel() for p in params])
        update = _adam_update(g, m, v, None, t, group)
        for p, (start, stop) in zip(params, bounds):
            if weight_decay:
                p.data *= 1.0 - lr * weight_decay
            p.data -= update[start:stop].reshape(p.data.shape)

    def _flat_moments(self, params):
        """Flat first and second moments whose slices are each parameter's state arrays.

        Made on the first fused step (from any existing state) and again whenever the state
        arrays were replaced, as ``load_state_dict`` does.
        """
        key = tuple(id(p) for p in params)
        flats = self.__dict__.setdefault("_flats", {})  # one entry per fused group
        states = [self.state.setdefault(id(p), {}) for p in params]
        flat = flats.get(key)
        if flat is not None and all(s.get("exp_avg") is view for s, view in zip(states, flat[2])):
            return flat[0], flat[1], flat[3]

        sizes = [p.data.size for p in params]
        edges = np.cumsum([0] + sizes)
        bounds = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
        dtype = params[0].data.dtype
        m, v = np.zeros(edges[-1], dtype), np.zeros(edges[-1], dtype)
        views = []
        for p, state, (start, stop) in zip(params, states, bounds):
            m_view = m[start:stop].reshape(p.data.shape)
            v_view = v[start:stop].reshape(p.data.shape)
            if "exp_avg" in state:
                m_view[...] = state["exp_avg"]
                v_view[...] = state["exp_avg_sq"]
            state.setdefault("step", 0)
            state["exp_avg"], state["exp_avg_sq"] = m_view, v_view
            views.append(m_view)
        flats[key] = (m, v, views, bounds)
        return m, v, bounds


def _adam_update(g, m, v, vmax, t, group):
    """Advance the moments m and v in place by gradient g; return the step to subtract.

    One scratch array per call; every other operation is in place. With ``vmax`` (amsgrad)
    the running maximum of v takes v's place in the denominator.
    """
    beta1, beta2 = group["betas"]
    scratch = np.multiply(g, 1.0 - beta1)
    m *= beta1
    m += scratch
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v *= beta2
    v += scratch
    if vmax is not None:
        v = np.maximum(vmax, v, out=vmax)

    np.sqrt(v, out=scratch)
    scratch /= math.sqrt(1.0 - beta2 ** t)
    scratch += group["eps"]
    np.divide(m, scratch, out=scratch)
    scratch *= group["lr"] / (1.0 - beta1 ** t)
    return scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Each step first shrinks the parameter, p *= 1 - lr * weight_decay, then takes a plain Adam
    step on the raw gradient.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


# ---- gradient clipping -------------------------------------------------------------------


def clip_grad_norm(params, max_norm, norm_type=2.0, eps=1e-6):
    """Scale all gradients together so their joint norm is at most about ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the ``norm_type`` norm of the
    per-gradient norms (``inf`` takes the largest absolute entry); when
    ``max_norm / (total + eps) < 1`` every gradient is multiplied by that factor in place.
    Returns the total norm before clipping, as a Python float (0.0 if there are no gradients).
    """
    params = [params] if _is_param(params) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    norm_type = float(norm_type)
    norms = [np.linalg.norm(g.ravel(), norm_type) for g in grads if g.size]
    if not norms:
        return 0.0
    total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), norm_type))

    if not math.isfinite(total):
        # PyTorch would scale by 0 or NaN here; leaving the gradients alone keeps them readable.
        log.warning("clip_grad_norm: total gradient norm is %s; gradients left unscaled", total)
        return total
    scale = max_norm / (total + eps)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


clip_grad_norm_ = clip_grad_norm


# ---- learning-rate schedules -------------------------------------------------------------


class LRScheduler:
    """Sets each group's ``lr`` to a function of its ``initial_lr`` and the step count.

    As in PyTorch: construction records ``initial_lr`` (unless a group already has one, e.g.
    from a loaded state) and applies step 0's rate; call ``step()`` after each
    ``optimizer.step()``. ``last_epoch`` (PyTorch's name) counts the scheduler steps taken.
    """

    # Limitation: each schedule is a closed form of the step count, so two schedulers on one
    # optimizer overwrite each other instead of composing as PyTorch's chainable ones do; and
    # param groups added after the scheduler was made are not scheduled.

    def __init__(self, optimizer):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def get_lr(self):
        """The learning rate of each group at step ``self.last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr()")

    def step(self):
        """Move to the next step and write its learning rates into the optimizer."""
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self):
        """The learning rates the last ``step()`` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """The schedule's progress (not its hyperparameters, which the constructor takes)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                "last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict):
        """Resume from ``state_dict()``; also writes the restored rates into the optimizer."""
        n = len(self.optimizer.param_groups)
        for key in ("base_lrs", "last_lr"):
            _require(len(state_dict[key]) == n, f"scheduler state has {len(state_dict[key])} "
                                                f"{key}, the optimizer has {n} groups")
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["last_lr"])
        for group, base, lr in zip(self.optimizer.param_groups, self.base_lrs, self._last_lr):
            group["initial_lr"], group["lr"] = base, lr


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(step); ``lr_lambda`` is one function or one per group."""

    def __init__(self, optimizer, lr_lambda):
        n = len(optimizer.param_groups)
        many = isinstance(lr_lambda, (list, tuple))
        self.lr_lambdas = list(lr_lambda) if many else [lr_lambda] * n
        _require(len(self.lr_lambdas) == n,
                 f"got {len(self.lr_lambdas)} lr_lambdas for {n} param groups")
        super().__init__(optimizer)

    def get_lr(self):
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (step // step_size): decay by ``gamma`` every ``step_size``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        _require(isinstance(step_size, int) and step_size > 0,
                 f"invalid step_size: {step_size!r} (must be a positive int)")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def get_lr(self):
        factor = self.gamma ** (self.last_epoch // self.step_size)
        return [base * factor for base in self.base_lrs]


class WarmupCosine(LRScheduler):
    """Linear warmup from 0, then cosine decay to ``min_lr``; the usual transformer schedule.

    With W = warmup_steps, T = total_steps and base = initial_lr, the rate at step t is
        base * t / W                                              for t < W,
        min_lr + (base - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2    for W <= t <= T,
        min_lr                                                    for t > T.
    So step 0 uses 0 (when W > 0), step W uses base and step T uses min_lr.
    """

    def __init__(self, optimizer, warmup_steps, total_steps, min_lr=0.0):
        _require(isinstance(warmup_steps, int) and warmup_steps >= 0,
                 f"invalid warmup_steps: {warmup_steps!r} (must be an int >= 0)")
        _require(isinstance(total_steps, int) and total_steps > warmup_steps,
                 f"invalid total_steps: {total_steps!r} (must be an int > warmup_steps)")
        _require(min_lr >= 0, f"invalid min_lr: {min_lr!r} (must be >= 0)")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer)

    def get_lr(self):
        t, warmup = self.last_epoch, self.warmup_steps
        if t < warmup:
            return [base * t / warmup for base in self.base_lrs]
        progress = min(1.0, (t - warmup) / (self.total_steps - warmup))
        scale = 0.5 * (1.0 + math.cos(math.pi * progress))
        return [self.min_lr + (base - self.min_lr) * scale for base in self.base_lrs]
