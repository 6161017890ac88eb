import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import experiments.fashion_cnn_tiny as tiny
from jaxdl import configs, data, tasks
from jaxdl.tasks import classify
from jaxdl.tasks.base import TrainState
from tests.conftest import init_state, jit_quick, make_images


def tiny_task(optimizer=None, model=None, **task_overrides):
    config = tiny.get_config()
    config.task.update(task_overrides)
    config.optimizer.update(optimizer or {})
    config.model.update(model or {})
    images, labels = make_images(64, seed=0)
    train_set = data.Dataset(
        arrays={"image": images[..., None], "label": labels.astype(np.int32)},
        class_names=tuple("0123456789"),
        origin="test",
    )
    batch = {name: jnp.asarray(a[:16]) for name, a in train_set.arrays.items()}
    return tasks.build(config, {"class_names": train_set.class_names}, total_steps=20), batch


def test_step_trains_and_updates_batch_stats():
    # Jitted only: the step called directly agrees with it (jaxdl.testing's
    # jit_matches_eager, tests/testing/test_registry.py).
    task, batch = tiny_task()
    state = init_state(task, batch)
    step = jax.jit(task.train_step)
    first_loss = None
    for _ in range(15):
        previous = state
        state, metrics = step(state, batch)
        first_loss = first_loss if first_loss is not None else float(metrics["loss"])
    assert float(metrics["loss"]) < first_loss
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), previous.model_state, state.model_state
    )
    assert all(jax.tree.leaves(changed))


def test_augment_flip_and_shift_move_pixels_exactly():
    images = jnp.arange(2 * 4 * 4, dtype=jnp.float32).reshape(2, 4, 4, 1)
    flipped = classify.augment(jax.random.PRNGKey(0), images, flip=True, shift=0)
    for original, out in zip(images, flipped, strict=True):
        assert jnp.array_equal(out, original) or jnp.array_equal(out, original[:, ::-1])
    shifted = classify.augment(jax.random.PRNGKey(3), images, flip=False, shift=1)
    for original, out in zip(images, shifted, strict=True):
        padded = jnp.pad(original, ((1, 1), (1, 1), (0, 0)))
        windows = [padded[i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(jnp.array_equal(out, w) for w in windows)


def test_the_train_steps_randomness_changes_from_step_to_step():
    # The same parameters and batch at steps 0 and 1: with augmentation, the task's own
    # train_step draws other flips and shifts (fold_in(rng, step)), so the loss differs;
    # the same step twice gives the same state and metrics. Without augmentation the two
    # steps agree: the difference is the step's key, nothing else.
    for augmented in (True, False):
        config = tiny.get_config()
        configs.switch(config, "model", "mlp")  # the task's randomness; a fast model
        config.model.hidden = (16,)
        config.task.update(flip=augmented, shift=2 * augmented)
        images, labels = make_images(16, seed=0)
        batch = {"image": jnp.asarray(images[..., None]), "label": jnp.asarray(labels, jnp.int32)}
        task = tasks.build(config, {"class_names": list("0123456789")}, total_steps=20)
        state = init_state(task, batch)
        step = jit_quick(task.train_step)
        first, again = step(state, batch), step(state, batch)
        chex.assert_trees_all_equal(first, again)
        _, later = step(state.replace(step=state.step + 1), batch)
        if augmented:
            assert abs(float(later["loss"]) - float(first[1]["loss"])) > 1e-4
        else:
            assert float(later["loss"]) == float(first[1]["loss"])


def test_train_state_create_starts_at_step_zero_with_a_fresh_optimizer_state():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    optimizer = optax.adam(1e-3)
    state = TrainState.create(params, optimizer, jax.random.PRNGKey(0))
    assert state.step.dtype == jnp.int32 and int(state.step) == 0
    assert state.model_state == {}
    chex.assert_trees_all_equal(state.opt_state, optimizer.init(params))
    stats = {"batch_stats": {"mean": jnp.zeros(3)}}
    assert TrainState.create(params, optimizer, state.rng, stats).model_state is stats
