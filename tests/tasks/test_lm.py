"""The language-model task: carries, truncation, both backward passes, eval, sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments.shakespeare_lstm_tiny as tiny
from jaxdl import data, losses, tasks
from jaxdl.tasks.lm import LMState
from jaxdl.train.mesh import jit_unoptimised
from tests.conftest import init_state

VOCAB = "abcdefghij"


def tiny_task(**model_overrides):
    """One layer unless asked: compilation dominates these tests' time."""
    config = tiny.get_config()
    config.model.update({"layers": 1, **model_overrides})
    config.optimizer.update(name="momentum", learning_rate=0.1)
    return tasks.build(config, {"name": "test", "vocab": VOCAB}, total_steps=20)


def jitted(task):
    """(init, train_step) compiled as the trainer compiles them: eager scans are slow, and
    these tests check values."""
    return jit_unoptimised(task.init, None), jax.jit(task.train_step)


def token_batch(seed=0, batch=4, window=6, reset=False):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, len(VOCAB), (batch, window + 1)).astype(np.int32)
    return {
        "inputs": jnp.asarray(tokens[:, :-1]),
        "targets": jnp.asarray(tokens[:, 1:]),
        "reset": jnp.full((batch,), reset),
    }


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_state_shapes_and_carry_is_passed_on(cell):
    task = tiny_task(cell=cell, layers=2)
    init, train_step = jitted(task)
    batch = token_batch()
    state = init(jax.random.PRNGKey(0), batch)
    per_layer = 2 if cell == "lstm" else 1
    assert len(state.carry) == 2 and all(len(c) == per_layer for c in state.carry)
    assert all(a.shape == (4, 32) for a in jax.tree.leaves(state.carry))
    assert not any(jnp.any(a) for a in jax.tree.leaves(state.carry))
    params = state.params
    state, metrics = train_step(state, batch)
    assert int(state.step) == 1 and set(metrics) == {"loss", "grad_norm", "learning_rate"}
    assert all(jnp.any(a) for a in jax.tree.leaves(state.carry))  # carried on, not reset
    # The carry is the model's final carry on this window from a zero start.
    _, expected = jax.jit(task.model.apply)(
        {"params": params}, batch["inputs"], task.model.initial_carry(4)
    )
    chex.assert_trees_all_close(state.carry, expected, atol=1e-6)


def test_reset_zeroes_the_carry_and_no_reset_keeps_it():
    init, train_step = jitted(tiny_task())
    batch = token_batch()
    state = init(jax.random.PRNGKey(0), batch)
    warm, _ = train_step(state, batch)
    fresh = state.replace(params=warm.params, opt_state=warm.opt_state, step=warm.step)
    _, loss_reset = train_step(warm, {**batch, "reset": jnp.ones(4, bool)})
    _, loss_fresh = train_step(fresh, batch)  # zero carry from init
    _, loss_kept = train_step(warm, batch)
    np.testing.assert_allclose(loss_reset["loss"], loss_fresh["loss"], rtol=1e-6)
    assert abs(float(loss_kept["loss"]) - float(loss_fresh["loss"])) > 1e-6


def test_no_gradient_crosses_the_window_boundary():
    task = tiny_task()
    first, second = token_batch(seed=1), token_batch(seed=2)
    state = init_state(task, first)

    def second_window_loss(first_params, stop=True):
        _, carry = task.model.apply({"params": first_params}, first["inputs"], state.carry)
        if not stop:  # what the task's stop_gradient removes
            return jnp.sum(jax.tree.leaves(carry)[0])
        _, metrics = task.train_step(state.replace(carry=carry), second)
        return metrics["loss"]

    grads = jax.jit(jax.grad(second_window_loss))(state.params)
    assert all(not jnp.any(g) for g in jax.tree.leaves(grads))
    leaky = jax.jit(jax.grad(lambda p: second_window_loss(p, stop=False)))(state.params)
    assert any(jnp.any(g) for g in jax.tree.leaves(leaky))  # the test can fail


def test_explicit_and_autodiff_backward_train_alike():
    batch = token_batch()
    results = {}
    for backward in ("explicit", "autodiff"):
        init, train_step = jitted(tiny_task(backward=backward))
        state = init(jax.random.PRNGKey(0), batch)
        for _ in range(3):
            state, metrics = train_step(state, batch)
        results[backward] = (state.params, metrics)
    chex.assert_trees_all_close(results["explicit"], results["autodiff"], rtol=1e-4, atol=1e-6)


def test_eval_is_the_whole_text_run_stream_by_stream():
    task = tiny_task()
    state = init_state(task, token_batch())
    text = np.random.default_rng(0).integers(0, len(VOCAB), 203).astype(np.int32)
    arrays = data.eval_streams(text, num_streams=2, window=8)
    batch = {k: jnp.asarray(v) for k, v in arrays.items()}
    batch["mask"] = jnp.ones(2, bool)
    eval_step = jax.jit(task.eval_step)
    metrics = eval_step(state, batch)
    # Reference: each stream's real tokens in one long pass from a zero carry.
    real = arrays["weights"].reshape(2, -1) == 1
    total, count = 0.0, 0
    for s in range(2):
        inputs = arrays["inputs"].reshape(2, -1)[s][real[s]][None]
        targets = arrays["targets"].reshape(2, -1)[s][real[s]][None]
        logits, _ = jax.jit(task.model.apply)(
            {"params": state.params}, inputs, task.model.initial_carry(1)
        )
        total += float(losses.softmax_cross_entropy(logits, targets).sum())
        count += inputs.shape[1]
    assert count == 202 and float(metrics["loss"].count) == 202
    np.testing.assert_allclose(metrics["loss"].compute(), total / count, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["bits_per_char"].compute(), total / count / np.log(2), rtol=1e-5
    )
    # A masked (padding) stream adds nothing.
    batch["mask"] = jnp.array([True, False])
    assert float(eval_step(state, batch)["loss"].count) == real[0].sum()


def test_sampling_is_deterministic_for_a_seed():
    task = tiny_task()
    state = init_state(task, token_batch())
    prompt = jnp.array([1, 2, 3], jnp.int32)
    sample = jax.jit(task.sample, static_argnums=(2, 4, 5))
    a = sample(state.params, prompt, 40, jax.random.PRNGKey(7), 1.0, 0)
    b = sample(state.params, prompt, 40, jax.random.PRNGKey(7), 1.0, 0)
    c = sample(state.params, prompt, 40, jax.random.PRNGKey(8), 1.0, 0)
    assert a.shape == (40,) and a.dtype == jnp.int32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy = sample(state.params, prompt, 5, jax.random.PRNGKey(0), 0.0, 0)
    top1 = sample(state.params, prompt, 5, jax.random.PRNGKey(1), 1.0, 1)
    np.testing.assert_array_equal(greedy, top1)  # top-1 sampling is greedy decoding


def test_lm_state_is_a_pytree_with_the_carry():
    state = init_state(tiny_task(), token_batch())
    assert isinstance(state, LMState)
    restored = jax.tree.unflatten(jax.tree.structure(state), jax.tree.leaves(state))
    chex.assert_trees_all_equal(restored.carry, state.carry)
