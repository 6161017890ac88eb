import chex
import jax
import numpy as np

from jaxdl.train import checkpoint
from tests.conftest import init_state
from tests.tasks.test_classify import tiny_task


def test_round_trip_restores_state_and_position_exactly(tmp_path):
    task, batch = tiny_task()
    state = init_state(task, batch)
    step = jax.jit(task.train_step)  # eager steps would cost seconds here
    for _ in range(2):
        state, _ = step(state, batch)
    position = {"next_batch": 17, "elapsed_s": 3.25}

    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    ckpts.save(2, state, position)
    ckpts.wait()
    assert ckpts.latest_step() == 2
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = checkpoint.abstract_like(state, sharding)
    restored, restored_position = ckpts.restore(2, abstract)
    ckpts.close()

    assert restored_position == position
    chex.assert_trees_all_equal(restored, state)  # params, opt_state, step, rng, batch_stats
    chex.assert_trees_all_equal_dtypes(restored, state)
    assert int(restored.step) == 2
    np.testing.assert_array_equal(restored.rng, state.rng)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    task, batch = tiny_task()
    state = init_state(task, batch)
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpts.save(step, state, {"next_batch": step, "elapsed_s": 0.0})
    ckpts.close()
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [2, 3]
