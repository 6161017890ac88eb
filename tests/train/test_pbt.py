"""Population-based training inside the compiled step: who copies whom and which numbers
result (a hand-worked 4-trial example), determinism, and resume equality."""

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import fashion_cnn_tiny
from jaxdl.tasks.base import Task, TrainState
from jaxdl.train import read_metrics, run_info, train_trials
from jaxdl.train.trials import PopulationTask
from tests.train.test_train_e2e import keep_checkpoints_up_to


class Constant(Task):
    """A stand-in task: its parameter is the trial's index; its loss is what the batch says;
    its step records the learning rate it was given."""

    def __init__(self, values: dict):
        self.lr = values.get("learning_rate", jnp.float32(0.0))

    def init(self, rng, batch):
        optimizer = optax.sgd(0.0)
        return TrainState.create({"w": jnp.zeros(())}, optimizer, rng, {})

    def train_step(self, state, batch):
        return state.replace(step=state.step + 1), {"loss": batch["loss"], "lr": self.lr}


def population(every=2, total_steps=100):
    values = {"learning_rate": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    return PopulationTask(
        Constant,
        values,
        4,
        1,
        every=every,
        fraction=0.25,
        factors=(0.5, 2.0),
        seed=7,
        total_steps=total_steps,
    )


def test_the_worst_copies_the_best_and_perturbs_its_numbers():
    task = population(every=2)
    keys = jnp.stack([jax.random.PRNGKey(k) for k in range(4)])
    state = task.init(task.starts(keys), {"loss": jnp.zeros(4)})
    state = state.replace(trials=state.trials.replace(params={"w": jnp.arange(4.0)}))
    step = jax.jit(task.train_step)
    # Mean losses over the two steps: trial 0: 3, 1: 1 (best), 2: 5 (worst), 3: 2.
    state, _ = step(state, {"loss": jnp.array([2.0, 1.0, 6.0, 2.0])})
    assert int(state.count[0]) == 1 and np.all(np.asarray(state.parent) == -1)
    state, metrics = step(state, {"loss": jnp.array([4.0, 1.0, 4.0, 2.0])})
    np.testing.assert_array_equal(metrics["lr"], [1.0, 2.0, 3.0, 4.0])  # numbers it ran with
    np.testing.assert_array_equal(state.parent, [-1, -1, 1, -1])  # 2 copied 1
    np.testing.assert_array_equal(state.trials.params["w"], [0.0, 1.0, 1.0, 3.0])
    # Its own key stays; its number is trial 1's times the factor drawn for (number 0, trial 2).
    np.testing.assert_array_equal(state.trials.rng[2], keys[2])
    draw = jax.random.choice(
        jax.random.fold_in(jax.random.PRNGKey(7), 2), jnp.asarray((0.5, 2.0)), (1, 4)
    )[0, 2]
    expected = [1.0, 2.0, 2.0 * float(draw), 4.0]
    np.testing.assert_allclose(state.values["learning_rate"], expected)
    assert float(draw) in (0.5, 2.0)
    np.testing.assert_array_equal(state.count, 0)  # the ranking starts again
    state, metrics = step(state, {"loss": jnp.zeros(4)})
    np.testing.assert_allclose(metrics["lr"], expected)  # the next step runs with them


def test_nothing_is_copied_at_the_last_step():
    # The example above with two steps in all: a copy at step 2 would never train.
    task = population(every=2, total_steps=2)
    keys = jnp.stack([jax.random.PRNGKey(k) for k in range(4)])
    state = task.init(task.starts(keys), {"loss": jnp.zeros(4)})
    state = state.replace(trials=state.trials.replace(params={"w": jnp.arange(4.0)}))
    step = jax.jit(task.train_step)
    for losses in ([2.0, 1.0, 6.0, 2.0], [4.0, 1.0, 4.0, 2.0]):
        state, _ = step(state, {"loss": jnp.array(losses)})
    np.testing.assert_array_equal(state.parent, -1)
    np.testing.assert_array_equal(state.trials.params["w"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(state.values["learning_rate"], [1.0, 2.0, 3.0, 4.0])


def configs(data_dir, num_steps=12):
    made = []
    for k, lr in enumerate((1e-4, 1e-3, 3e-3, 1e-2)):
        config = fashion_cnn_tiny.get_config()
        config.data.data_dir = str(data_dir)
        config.seed = k
        config.optimizer.learning_rate = lr
        config.sweep.update(pbt_every=4, vmap_chunk=2)
        config.train.update(num_steps=num_steps, log_every=2, eval_every=6, checkpoint_every=6)
        config.train.plot = False
        made.append(config)
    return made


def test_pbt_is_deterministic_and_a_resumed_population_goes_on_bit_equal(
    synthetic_data_dir, tmp_path
):
    straight = [tmp_path / "straight" / str(k) for k in range(4)]
    train_trials(configs(synthetic_data_dir), straight)
    again = [tmp_path / "again" / str(k) for k in range(4)]
    train_trials(configs(synthetic_data_dir), again)
    lineage = lambda w: (w / "lineage.jsonl").read_text().replace(str(w.parent), "")
    assert [lineage(w) for w in straight] == [lineage(w) for w in again]  # same history
    copies = [json.loads(x)["copied"] for w in straight for x in lineage(w).splitlines()]
    assert any(copies)  # someone copied someone

    resumed = [tmp_path / "resumed" / str(k) for k in range(4)]
    for source, target in zip(straight, resumed, strict=True):
        shutil.copytree(source, target)
        keep_checkpoints_up_to(target, 6)  # killed after step 6, between two exploits
    train_trials(configs(synthetic_data_dir), resumed)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]
    for a, b in zip(straight, resumed, strict=True):
        assert strip(read_metrics(a)) == strip(read_metrics(b))
        assert lineage(a).replace("straight", "") == lineage(b).replace("resumed", "")
        *_, state_a = run_info.load_run(a)  # a trial's checkpoint loads as a plain run's
        *_, state_b = run_info.load_run(b)
        chex.assert_trees_all_equal(state_a, state_b)
