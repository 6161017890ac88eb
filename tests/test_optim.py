import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdl import optim
from jaxdl.errors import ConfigError


def config(**overrides) -> ml_collections.ConfigDict:
    cfg = optim.default_config()
    cfg.update(overrides)
    return cfg


def big_grads():
    return {"w": jnp.full((3, 4), 10.0), "b": jnp.full((4,), -7.0)}


def test_global_norm_clipping_bounds_the_update():
    # With plain SGD at lr=1 the update is minus the clipped gradient.
    tx, _ = optim.build_optimizer(
        config(
            name="sgd",
            learning_rate=1.0,
            schedule="constant",
            warmup_fraction=0.0,
            clip="global_norm",
            clip_norm=0.5,
        ),
        total_steps=10,
    )
    params = jax.tree.map(jnp.zeros_like, big_grads())
    updates, _ = tx.update(big_grads(), tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(0.5, rel=1e-5)
    # A gradient already inside the bound passes unchanged.
    small = jax.tree.map(lambda g: g * 1e-3, big_grads())
    updates, _ = tx.update(small, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -small["w"], rtol=1e-6)


def test_value_clipping_bounds_each_entry():
    tx, _ = optim.build_optimizer(
        config(name="sgd", learning_rate=1.0, schedule="constant", clip="value", clip_value=0.25),
        total_steps=10,
    )
    params = jax.tree.map(jnp.zeros_like, big_grads())
    updates, _ = tx.update(big_grads(), tx.init(params), params)
    assert max(float(jnp.abs(u).max()) for u in jax.tree.leaves(updates)) == pytest.approx(0.25)


@pytest.mark.parametrize("clip_norm", [0.0, -1.0])
def test_non_positive_clip_norm_is_rejected(clip_norm):
    with pytest.raises(ConfigError, match="clip_norm"):
        optim.build_optimizer(config(clip="global_norm", clip_norm=clip_norm), 10)


@pytest.mark.parametrize(
    "field,value", [("name", "lion"), ("schedule", "step"), ("clip", "norm"), ("learning_rate", 0)]
)
def test_invalid_choices_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        optim.build_optimizer(config(**{field: value}), 10)


def test_warmup_cosine_schedule_shape():
    schedule = optim.build_schedule(
        config(schedule="warmup_cosine", learning_rate=0.1, warmup_fraction=0.1), 100
    )
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_one_cycle_schedule_peaks_then_anneals():
    cfg = config(
        schedule="one_cycle",
        learning_rate=0.1,
        warmup_fraction=0.25,
        one_cycle_div_factor=10.0,
        final_lr_fraction=1e-3,
    )
    schedule = optim.build_schedule(cfg, 100)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(25)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_every_optimizer_reduces_a_quadratic(name):
    tx, _ = optim.build_optimizer(
        config(
            name=name,
            learning_rate=0.1,
            schedule="constant",
            warmup_fraction=0.0,
            weight_decay=1e-4,
        ),
        50,
    )
    params = {"w": jnp.ones((2, 2)) * 3.0}
    loss = lambda p: jnp.sum(p["w"] ** 2)
    state = tx.init(params)
    for _ in range(50):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * 36.0


def test_weight_decay_skips_biases():
    tx, _ = optim.build_optimizer(
        config(name="sgd", learning_rate=1.0, schedule="constant", clip="none", weight_decay=0.1),
        10,
    )
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * np.ones((2, 2)))
    np.testing.assert_array_equal(updates["bias"], np.zeros(2))
