"""K trials in one vmapped step == K separate runs (in this process: one device)."""

import shutil

import chex
import jax
import numpy as np
import pytest

from experiments import fashion_cnn_tiny
from jaxdl import data, tasks
from jaxdl.errors import NonFiniteLossError, UserError
from jaxdl.train import read_metrics, run_info, train_and_evaluate, train_trials
from jaxdl.train.grouping import vmapped_values
from jaxdl.train.rundir import FAILED_FILE
from jaxdl.train.trials import VmappedTask, trial_chunk

# Trials 0-2 differ in seed, learning rate, weight decay and clip norm.
TRIALS = [
    dict(seed=0, learning_rate=3e-3, weight_decay=0.0, clip_norm=1.0),
    dict(seed=1, learning_rate=3e-3, weight_decay=1e-2, clip_norm=0.5),
    dict(seed=0, learning_rate=1e-2, weight_decay=0.0, clip_norm=1.0),
]


def tiny_config(data_dir, seed, **optimizer):
    config = fashion_cnn_tiny.get_config()
    config.data.data_dir = str(data_dir)
    config.seed = seed
    config.model.batch_norm = False  # see test_vmapped_trials_match_separate_runs
    config.optimizer.update(optimizer)
    config.train.update(num_steps=8, log_every=2, eval_every=4, checkpoint_every=4, plot=False)
    return config


def configs_of(data_dir, trials):
    return [
        tiny_config(data_dir, t["seed"], **{k: v for k, v in t.items() if k != "seed"})
        for t in trials
    ]


@pytest.fixture(scope="module")
def separate_runs(synthetic_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("separate")
    workdirs = [root / str(k) for k in range(len(TRIALS))]
    for config, workdir in zip(configs_of(synthetic_data_dir, TRIALS), workdirs, strict=True):
        train_and_evaluate(config, workdir)
    return workdirs


def test_vmapped_trials_match_separate_runs(synthetic_data_dir, separate_runs, tmp_path):
    workdirs = [tmp_path / str(k) for k in range(len(TRIALS))]
    configs = configs_of(synthetic_data_dir, TRIALS)
    for config in configs:  # trials 0-1 vmapped together, then trial 2 (lax.map's remainder)
        config.sweep.vmap_chunk = 2
    final = train_trials(configs, workdirs)
    for k, (alone, together) in enumerate(zip(separate_runs, workdirs, strict=True)):
        rows_alone, rows_together = read_metrics(alone), read_metrics(together)
        assert [r["step"] for r in rows_alone] == [r["step"] for r in rows_together]
        for a, b in zip(rows_alone, rows_together, strict=True):
            for name in a.keys() - {"elapsed_s"}:
                np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-5, err_msg=name)
        *_, state_alone = run_info.load_run(alone)
        *_, state_together = run_info.load_run(together)
        chex.assert_trees_all_close(state_together, state_alone, rtol=1e-5, atol=1e-5)
        assert final[k]["accuracy"] == pytest.approx(rows_alone[-1]["eval/accuracy"], abs=1e-6)
    # The trials really differ (a vmapped step that ignored them would not).
    losses = {round(read_metrics(w)[-1]["train/loss"], 6) for w in workdirs}
    assert len(losses) == len(TRIALS)


def test_trials_that_differ_in_more_than_numbers_are_refused(synthetic_data_dir):
    configs = configs_of(synthetic_data_dir, TRIALS[:2])
    configs[1].model.dense = 64
    with pytest.raises(UserError, match=r"trial 1 differs from trial 0 in config\.model\.dense"):
        vmapped_values(configs)
    values = vmapped_values(configs_of(synthetic_data_dir, TRIALS))
    assert set(values) == {"learning_rate", "weight_decay", "clip_norm"}
    np.testing.assert_allclose(values["learning_rate"], [3e-3, 3e-3, 1e-2])
    same_clip = vmapped_values(configs_of(synthetic_data_dir, [TRIALS[0], TRIALS[2]]))
    np.testing.assert_allclose(same_clip["clip_norm"], [1.0, 1.0])  # every number, always
    assert jax.tree.leaves(values)[0].shape == (3,)
    assert trial_chunk(2, 3) == 2 and trial_chunk(5, 3) == 3
    assert trial_chunk(0, 3) == 1  # this CPU: one trial at a time
    with pytest.raises(UserError, match=r"sweep\.vmap_chunk=-1 must be >= 0"):
        trial_chunk(-1, 3)


def test_trials_with_checkpoints_at_different_steps_are_refused(
    synthetic_data_dir, separate_runs, tmp_path
):
    finished, fresh = tmp_path / "finished", tmp_path / "fresh"
    shutil.copytree(separate_runs[0], finished)
    with pytest.raises(UserError, match=r"checkpoints at different steps \(\[8, None\]\)"):
        train_trials(configs_of(synthetic_data_dir, TRIALS[:2]), [finished, fresh])


def test_when_every_vmapped_trial_diverges_the_run_fails(synthetic_data_dir, tmp_path):
    trials = [dict(seed=0, learning_rate=1e9), dict(seed=1, learning_rate=2e9)]
    configs = configs_of(synthetic_data_dir, trials)
    for config in configs:
        config.optimizer.name = "sgd"  # SGD at 1e9 turns the loss non-finite at once
    workdirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(NonFiniteLossError, match=r"trial a: non-finite.*; trial b: non-finite"):
        train_trials(configs, workdirs)
    for workdir in workdirs:
        assert "non-finite train/" in (workdir / FAILED_FILE).read_text()


def test_groups_with_other_numbers_run_the_same_compiled_programs(synthetic_data_dir):
    """The trials' optimizer numbers are inputs of init and the step, not constants in
    them: a sweep's or search's next group (other learning rates, weight decays, clip
    norms, or only other learning rates) reuses the compiled programs instead of
    compiling its own."""

    def step_program(trials) -> str:
        configs = configs_of(synthetic_data_dir, trials)
        inputs = data.build_input(configs[0].data, 0)
        build = lambda values: tasks.build(configs[0], inputs.info, 8, values)
        task = VmappedTask(build, vmapped_values(configs), len(trials), 1)
        batch = {k: np.stack([v] * len(trials)) for k, v in inputs.train.batch(0).items()}
        keys = np.stack([jax.random.PRNGKey(k) for k in range(len(trials))])
        init = jax.jit(task.init).lower(task.starts(keys), batch)
        state = jax.eval_shape(task.init, task.starts(keys), batch)
        return init.as_text() + jax.jit(task.train_step).lower(state, batch).as_text()

    other = [dict(t, learning_rate=0.5, weight_decay=0.25, clip_norm=3.0) for t in TRIALS]
    only_lr = [dict(TRIALS[0], learning_rate=lr) for lr in (1e-3, 2e-3, 5e-3)]
    assert step_program(TRIALS) == step_program(other) == step_program(only_lr)
