"""dann.train: the loss falls below chance, resume reproduces the run, evaluate's metrics.

Tiny sizes (d_model 16, length 4, vocab 6) keep each run to a second or two on 2 cores.
"""

import dataclasses
import math

import numpy as np
import pytest

import dann.train as training
import tensorgrad as tg
from dann.train import TrainConfig, chance, evaluate, steps_to_reach, train
from tensorgrad import nn
from tensorgrad.checkpoint import load
from tensorgrad.errors import CheckpointError


def tiny_config(**changes):
    config = TrainConfig(task="reverse", vocab=6, length=4, d_model=16, n_heads=2, n_blocks=1,
                         n_somas=16, dendrites_per_soma=4, synapses_per_dendrite=4, steps=300,
                         batch_size=32, lr=5e-3, warmup=20, eval_every=1000, eval_size=200)
    return dataclasses.replace(config, **changes)


def assert_same_parameters(a, b, atol=0.0):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        np.testing.assert_allclose(state_a[key], state_b[key], rtol=0, atol=atol, err_msg=key)


# ---- learning ----------------------------------------------------------------------------


@pytest.mark.parametrize("ffn", ["dendritic", "dense"])
def test_loss_falls_well_below_chance(ffn):
    config = tiny_config(ffn=ffn)

    result = train(config, progress=False)

    losses = [loss for _, loss, _ in result.history]
    assert len(losses) == result.steps == config.steps
    assert np.mean(losses[:5]) > 0.8 * chance(config), "the run did not start near chance"
    assert np.mean(losses[-20:]) < 0.5 * chance(config)
    assert result.metrics.loss < 0.5 * chance(config)
    # Guessing each token gives 1/5 of tokens and 1/625 of sequences.
    assert result.metrics.token_accuracy > 0.5
    assert result.metrics.exact_match > 0.1


def test_learning_rate_warms_up_then_follows_a_cosine():
    config = tiny_config(steps=30, warmup=5, lr=1e-2, eval_every=100, eval_size=20)

    result = train(config, progress=False)

    for step, _, lr in result.history:
        if step < 5:
            expected = 1e-2 * step / 5
        else:
            expected = 1e-2 * (1 + math.cos(math.pi * (step - 5) / 25)) / 2
        assert lr == pytest.approx(expected, abs=1e-12), f"step {step}"


def test_every_step_clips_the_gradient_norm(monkeypatch):
    real_clip, norms = training.optim.clip_grad_norm, []

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        norms.append((max_norm, len(params)))
        return real_clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(training.optim, "clip_grad_norm", spy)
    config = tiny_config(steps=3, clip=0.5, eval_size=20)
    result = train(config, progress=False)

    assert norms == [(0.5, len(list(result.model.parameters())))] * 3


def test_chance_is_uniform_over_data_tokens():
    assert chance(tiny_config()) == pytest.approx(math.log(5))


def test_stop_at_ends_the_run_at_the_second_evaluation_in_a_row_that_reaches_it():
    result = train(tiny_config(steps=50, eval_every=10, stop_at=0.0), progress=False)
    assert result.steps == 20
    assert [row[0] for row in result.evals] == [10, 20]
    never = train(tiny_config(steps=30, eval_every=10, stop_at=1.01), progress=False)
    assert never.steps == 30


def test_steps_to_reach():
    evals = [(10, 1.0, 0.5, 0.2), (20, 0.5, 0.9, 0.98), (30, 0.1, 1.0, 0.995)]
    assert steps_to_reach(evals, 0.99) == 30
    assert steps_to_reach(evals, 0.2) == 10
    assert steps_to_reach(evals, 0.999) is None


# ---- checkpoints and resume --------------------------------------------------------------


RESUME = dict(steps=40, batch_size=16, warmup=5, eval_every=20, eval_size=50)


class Interrupted(Exception):
    """Stands for the process being killed in the middle of a run."""


def test_resume_after_interruption_reproduces_the_run(tmp_path, monkeypatch):
    config = tiny_config(**RESUME)
    uninterrupted = train(config, progress=False)

    real_step, calls = training._train_step, []

    def crash_after_25_steps(*args):
        calls.append(1)
        if len(calls) > 25:  # the checkpoint of step 20 has been written
            raise Interrupted
        return real_step(*args)

    monkeypatch.setattr(training, "_train_step", crash_after_25_steps)
    with pytest.raises(Interrupted):
        train(config, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(training, "_train_step", real_step)
    resumed = train(config, out_dir=tmp_path, resume=True, progress=False)

    assert resumed.steps == uninterrupted.steps == 40
    assert_same_parameters(resumed.model, uninterrupted.model)
    assert resumed.history == uninterrupted.history
    assert resumed.evals == uninterrupted.evals


def test_resume_with_more_steps_continues_the_same_run_or_refuses(tmp_path):
    """steps=N, then resume with steps=2N: the uninterrupted 2N-step run, or a clear error.

    Silently training a different run (the LR schedule depends on ``steps``) is the failure.
    """
    config = tiny_config(**RESUME)
    uninterrupted = train(config, progress=False)

    train(dataclasses.replace(config, steps=20), out_dir=tmp_path, progress=False)
    try:
        resumed = train(config, out_dir=tmp_path, resume=True, progress=False)
    except CheckpointError as err:
        assert "steps" in str(err)
        return
    rates = [lr for _, _, lr in resumed.history]
    assert rates == [lr for _, _, lr in uninterrupted.history], "another LR schedule was used"
    assert_same_parameters(resumed.model, uninterrupted.model, atol=1e-6)


def test_resume_with_another_config_raises(tmp_path):
    train(tiny_config(**RESUME), out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="d_model"):
        train(tiny_config(**dict(RESUME, d_model=8)), out_dir=tmp_path, resume=True,
              progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        train(tiny_config(**dict(RESUME, lr=1e-3)), out_dir=tmp_path, resume=True,
              progress=False)


def test_resume_without_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(tiny_config(**RESUME), out_dir=tmp_path, resume=True, progress=False)


def test_checkpoint_holds_the_trained_model(tmp_path):
    config = tiny_config(**RESUME)
    result = train(config, out_dir=tmp_path, progress=False)

    saved = load(tmp_path / training.CHECKPOINT)
    fresh = training.build_model(dataclasses.replace(config, seed=config.seed + 1))
    fresh.load_state_dict(saved["model"])

    assert saved["step"] == 40 and saved["config"]["d_model"] == 16
    ids = np.random.default_rng(0).integers(1, 6, size=(3, 4))
    np.testing.assert_array_equal(fresh(ids).data, result.model(ids).data)


# ---- evaluate ----------------------------------------------------------------------------


class FixedLogits(nn.Module):
    """A stand-in model that returns given logits, row by row, whatever its input."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.position, self.modes = logits, 0, []

    def forward(self, x):
        rows = self.logits[self.position:self.position + len(x)]
        self.position += len(x)
        self.modes.append(self.training)
        return tg.tensor(rows)


def test_evaluate_metrics_on_known_logits():
    rng = np.random.default_rng(0)
    targets = rng.integers(1, 4, size=(5, 3))
    predictions = targets.copy()
    predictions[1, 0] = 0                 # one wrong token
    predictions[3] = (targets[3] % 3) + 1  # every token wrong
    predictions[4, 1:] = 0                # two wrong tokens
    logits = rng.uniform(-1, 1, (5, 3, 4)) + 5 * np.eye(4)[predictions]
    model = FixedLogits(logits)

    metrics = evaluate(model, np.zeros((5, 3), dtype=np.int64), targets, batch_size=2)

    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected_loss = -np.take_along_axis(log_probs, targets[..., None], axis=-1).mean()
    assert (predictions[3] != targets[3]).all()
    assert metrics.token_accuracy == pytest.approx(9 / 15)
    assert metrics.exact_match == pytest.approx(2 / 5)
    assert metrics.loss == pytest.approx(expected_loss, rel=1e-10)
    assert model.position == 5 and model.modes == [False, False, False]
    assert model.training, "evaluate did not restore training mode"


def test_a_run_that_stopped_early_is_not_trained_further_on_resume(tmp_path):
    config = tiny_config(**dict(RESUME, steps=200, stop_at=0.0))  # stops at the 2nd eval
    first = train(config, out_dir=tmp_path, progress=False)
    assert first.steps == 2 * RESUME["eval_every"]
    resumed = train(config, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.steps == first.steps
    assert_same_parameters(resumed.model, first.model)


@pytest.mark.parametrize("change", [dict(steps=0), dict(batch_size=-1), dict(lr=0.0),
                                    dict(seed=-3), dict(vocab=2)])
def test_bad_configs_are_refused(change):
    with pytest.raises(ValueError):
        tiny_config(**change)
