"""Training a config in a workdir: everything the loop (loop.py) runs on, assembled.

Reads top to bottom: the config resolved once and its train section checked
(plan.check_train_section), the mesh, the input, the task, the compiled steps, the
outputs (the config accepted against a resumed run's), the hooks: one plan.Plan, which
`_run` trains: the state (resumed from the newest checkpoint, or fresh), the loop.
`train_and_evaluate` trains one run; `train_trials` trains K trials that differ only in
seed and optimizer numbers as one vmapped step (trials.py), each in its own workdir.
"""

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdl import configs, data, tasks
from jaxdl.errors import UserError, check
from jaxdl.tasks.base import TrainState
from jaxdl.train import hooks as hooks_lib
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.grouping import vmapped_values
from jaxdl.train.loop import SIGNAL, Hook, Loop, fit
from jaxdl.train.plan import Plan, RunOutputs, Steps, check_train_section, total_steps
from jaxdl.train.progress import shows_logs
from jaxdl.train.rundir import RunDir
from jaxdl.train.trials import Lineage, PopulationTask, TrialRunDirs, VmappedTask, trial_chunk


def validate(config: ml_collections.ConfigDict, inputs: data.Input | None = None) -> None:
    """The checks a run makes before training, without training: raises UserError.
    `inputs` (the config's data, if already built) saves loading it again."""
    config = configs.resolve(config)
    check_train_section(config)
    inputs = inputs or data.build_input(config.data, config.seed)
    steps = total_steps(config.train, inputs.train.batches_per_epoch)
    tasks.build(config, inputs.info, steps, resolved=True)


@jax.jit
def _add(totals, metrics):
    """One dispatch for a batch's sums (leaf by leaf, eager adds cost one each)."""
    return jax.tree.map(lambda a, b: a + b, totals, metrics)


def _eval_totals(eval_step, state, eval_source: data.Source, batch_size: int, mesh) -> dict:
    """Each eval metric's Mean summed over the whole eval set (padding rows masked out),
    on the host; for vmapped trials its fields have a leading trial axis."""
    totals = None
    for batch in data.eval_batches(
        eval_source, batch_size, jax.process_index(), jax.process_count()
    ):
        metrics = eval_step(state, mesh_lib.shard_batch(batch, mesh))
        previous, totals = totals, metrics if totals is None else _add(totals, metrics)
        # Two batches in flight at most. XLA:CPU runs a program of N devices on a pool of
        # N threads, one collective at a time, and once 32 programs of a device are queued
        # its next launch waits on one of those threads: the collective then lacks that
        # device and aborts the process after 40 s ("only 3 of them arrived"). An eval
        # dispatched faster than the devices ran it (on a loaded machine) queued 2 per batch.
        jax.block_until_ready(previous)
    return jax.device_get(totals)


@shows_logs
def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    hooks: Sequence[Hook] = (),
    *,
    allow_config_change: bool = False,
) -> dict:
    """Trains config's task in workdir (resuming from its newest checkpoint), with the
    default hooks and then `hooks`; returns the final eval metrics ({} after a stop by
    signal; in process, Ctrl-C stops the same way, at the next step with a checkpoint
    and stopped.txt, and then raises KeyboardInterrupt as Python's handler does). Raises
    errors.UserError subclasses for bad configs and data, and for a resume whose config
    computes something else than the run's, unless `allow_config_change` (then
    recorded: train/config_history.py)."""
    started = time.perf_counter()
    config = configs.resolve(config)
    check(
        not config.sweep.pbt_every,
        "sweep.pbt_every needs a vmapped group of trials: launch/sweep.py with "
        "--config.sweep.vmap=K and at least 2 trials",
    )
    mesh, inputs = _setup(config)
    steps_total = total_steps(config.train, inputs.train.batches_per_epoch)
    task = tasks.build(config, inputs.info, steps_total, resolved=True)
    start = jax.random.PRNGKey(config.seed)
    steps = _compile(config, mesh, inputs, inputs.train, task, start)
    chief = jax.process_index() == 0
    (outputs,) = _accepted(
        [RunDir(workdir, config, config.train.keep_checkpoints, chief)], allow_config_change
    )
    _log_input(config, inputs, mesh, steps_total)
    plan = _plan(
        config,
        mesh,
        inputs,
        task,
        steps,
        outputs,
        batches=inputs.train,
        start=start,
        items_per_step=inputs.items_per_batch,
        total_steps=steps_total,
        extra_hooks=hooks,
        started=started,
    )
    return _run(plan)


@shows_logs
def train_trials(
    trial_configs: list[ml_collections.ConfigDict], workdirs: list, hooks: Sequence[Hook] = ()
) -> list[dict | None]:
    """Trains K configs that differ only in seed and optim.TRACEABLE numbers as one
    vmapped step, each in its workdir; returns each trial's final eval metrics, None for
    a trial that stopped on a non-finite value (its reason in its failed.txt). Raises
    NonFiniteLossError when every trial has."""
    started = time.perf_counter()
    trial_configs = [configs.resolve(c) for c in trial_configs]
    check(len(trial_configs) == len(workdirs) >= 1, "one workdir per trial")
    config = trial_configs[0]
    mesh, inputs = _setup(config)
    batches = _stacked_batches(trial_configs, inputs)
    steps_total = total_steps(config.train, batches.batches_per_epoch)
    for c in trial_configs:  # each trial's own numbers pass the checks
        tasks.build(c, inputs.info, steps_total, resolved=True)
    task = _vmapped_task(trial_configs, inputs, batches, steps_total)
    start = task.starts(np.stack([jax.random.PRNGKey(c.seed) for c in trial_configs]))
    steps = _compile(config, mesh, inputs, batches, task, start, trial_axis=True)
    chief = jax.process_index() == 0
    run_dirs = [
        RunDir(w, c, config.train.keep_checkpoints, chief)
        for c, w in zip(trial_configs, workdirs, strict=True)
    ]
    outputs = TrialRunDirs(_accepted(run_dirs, allow_change=False), mesh, task)
    varying = [name for name, v in task.values.items() if len(set(np.asarray(v).tolist())) > 1]
    _log_input(
        config,
        inputs,
        mesh,
        steps_total,
        f"; {len(trial_configs)} vmapped trials varying seed/{','.join(varying) or '-'} "
        "(progress: their medians, ~)",
    )
    if config.sweep.pbt_every:
        hooks = [Lineage(config.sweep.pbt_every), *hooks]
    plan = _plan(
        config,
        mesh,
        inputs,
        task,
        steps,
        outputs,
        batches=batches,
        start=start,
        items_per_step=inputs.items_per_batch * len(trial_configs),
        total_steps=steps_total,
        extra_hooks=hooks,
        started=started,
    )
    return _run(plan)


def _stacked_batches(trial_configs: list, inputs: data.Input) -> data.StackedBatches:
    """K trials' training batches, stacked; trials of one seed read the same input."""
    by_seed = {trial_configs[0].seed: inputs}
    for c in trial_configs:
        if c.seed not in by_seed:
            by_seed[c.seed] = data.build_input(
                c.data, c.seed, jax.process_index(), jax.process_count()
            )
    return data.StackedBatches([by_seed[c.seed].train for c in trial_configs])


def _vmapped_task(trial_configs: list, inputs: data.Input, batches, steps_total: int):
    """The K trials' task: one step over a trial axis (with config.sweep.pbt_every, a
    population that copies its best trials: PopulationTask)."""
    config = trial_configs[0]
    values = vmapped_values(trial_configs)
    factory = lambda trial_values: tasks.build(
        config, inputs.info, steps_total, trial_values, resolved=True
    )
    chunk = trial_chunk(config.sweep.vmap_chunk, len(trial_configs))
    if not config.sweep.pbt_every:
        return VmappedTask(factory, values, len(trial_configs), chunk)
    pbt = config.sweep
    task = PopulationTask(
        factory,
        values,
        len(trial_configs),
        chunk,
        every=pbt.pbt_every,
        fraction=pbt.pbt_fraction,
        factors=tuple(pbt.pbt_factors),
        seed=config.seed,
        total_steps=steps_total,
    )
    check(
        isinstance(
            jax.eval_shape(task.inner.init, jax.random.PRNGKey(0), _one_batch(batches)),
            TrainState,
        ),
        f"population-based training needs a task with a TrainState, not {config.task.name!r}",
    )
    return task


def _accepted(run_dirs: list[RunDir], allow_change: bool) -> list[RunDir]:
    """The run directories, each with the config accepted against the run it resumes
    (RunDir.accept_config); all closed again if one is refused."""
    try:
        for run_dir in run_dirs:
            run_dir.accept_config(allow_change)
    except UserError:
        for run_dir in run_dirs:
            run_dir.close()
        raise
    return run_dirs


def _log_input(config, inputs: data.Input, mesh, total_steps: int, more: str = "") -> None:
    logging.info(
        "data %s: %d train, %d eval (%s); %d devices; %d steps of %d %s%s",
        config.data.name,
        inputs.info["num_train"],
        inputs.info["num_eval"],
        inputs.info["origin"],
        mesh.devices.size,
        total_steps,
        inputs.items_per_batch,
        inputs.item_unit,
        more,
    )


def _mark_signal_stop(loop: Loop, outputs) -> None:
    """stopped.txt after a stop by a signal (the sweep runner reads it: not done)."""
    if loop.stop is not None and loop.stop.kind == SIGNAL:
        outputs.mark_stopped(f"stopped by {loop.stop.reason} at step {loop.step}; resumable")


def _one_batch(batches) -> dict:
    """One trial's batch 0, as shapes."""
    return {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in batches.batch(0).items()}


def _setup(config: ml_collections.ConfigDict) -> tuple:
    """The train section's checks, the mesh and this process's input."""
    check_train_section(config)
    mesh = mesh_lib.make_mesh()
    for name in ("batch_size", "eval_batch_size"):
        size = config.data[name]
        check(size > 0, f"data.{name}={size} must be positive")
        check(
            size % mesh.devices.size == 0,
            f"data.{name}={size} must divide over {mesh.devices.size} devices",
        )
    check(config.data.workers >= 0, f"data.workers={config.data.workers} must be >= 0")
    inputs = data.build_input(config.data, config.seed, jax.process_index(), jax.process_count())
    return mesh, inputs


def _compile(config, mesh, inputs: data.Input, batches, task, start, trial_axis=False) -> Steps:
    """The shardings and the compiled steps of a run (traced at batch 0); `start`: what
    task.init starts from. Before any file is written: a model its config cannot build
    fails here."""
    batch_sharding = mesh_lib.data_sharded(mesh, trial_axis=trial_axis)
    replicated = mesh_lib.replicated(mesh)
    shard = lambda batch: {
        name: jax.make_array_from_process_local_data(batch_sharding, np.asarray(value))
        for name, value in batch.items()
    }
    example = shard(batches.batch(0))
    abstract = jax.eval_shape(task.init, start, example)
    state_sharding = mesh_lib.state_shardings(abstract, mesh, config.train.param_sharding)
    compile_step = lambda fn: jax.jit(
        fn,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
    eval_step = jax.jit(
        task.eval_step,
        in_shardings=(state_sharding, mesh_lib.data_sharded(mesh)),
        out_shardings=replicated,
    )
    eval_batch_size = config.data.eval_batch_size
    image_batch = next(data.eval_batches(inputs.eval, eval_batch_size))  # pictures' batch
    draw = None
    if jax.eval_shape(task.images, abstract, image_batch):
        images = jax.jit(task.images)
        draw = lambda state: images(state, image_batch)
    return Steps(
        shard=shard,
        example=example,
        abstract=abstract,
        state_sharding=state_sharding,
        train=compile_step(task.train_step),
        pretrain=compile_step(task.pretrain_step) if task.pretrain_steps else None,
        evaluate=lambda state: _eval_totals(eval_step, state, inputs.eval, eval_batch_size, mesh),
        draw=draw,
    )


def _plan(
    config,
    mesh,
    inputs: data.Input,
    task,
    steps: Steps,
    outputs: RunOutputs,
    *,
    batches,
    start,
    items_per_step: int,
    total_steps: int,
    extra_hooks: Sequence[Hook],
    started: float,
) -> Plan:
    """The run's pieces, with the default hooks of config.train and then `extra_hooks`."""
    evaluator = hooks_lib.Evaluate(
        config.train.eval_every or batches.batches_per_epoch, steps.evaluate
    )
    default = hooks_lib.default_hooks(
        config.train,
        evaluator,
        steps.draw,
        items_per_step,
        inputs.item_unit,
        total_steps,
        outputs.path,
    )
    return Plan(
        config=config,
        mesh=mesh,
        inputs=inputs,
        batches=batches,
        task=task,
        start=start,
        steps=steps,
        outputs=outputs,
        hooks=(*default, *extra_hooks),
        evaluator=evaluator,
        total_steps=total_steps,
        started=started,
    )


def _run(plan: Plan):
    """Trains a plan: its state resumed from the newest checkpoint (or fresh), the loop,
    and the final eval metrics (outputs.result)."""
    state, step, position = _initial_state(plan)
    logging.info(
        "task %s, %s parameters", plan.config.task.name, f"{plan.task.num_params(state):,}"
    )
    outputs, steps = plan.outputs, plan.steps
    loop = Loop(
        state,
        step,
        plan.total_steps,
        outputs,
        position,
        position["next_batch"],
        started=plan.started,
        eval_every=plan.evaluator.every,
    )
    workers = plan.config.data.workers
    prefetch = data.Prefetcher(
        plan.batches, position["next_batch"], plan.config.data.prefetch, steps.shard, workers
    )
    if prefetch.workers != workers:
        logging.info("data.workers=%d unused: the set is held in memory", workers)
    pretrain_steps = plan.task.pretrain_steps
    phase = lambda at_step: steps.pretrain if at_step < pretrain_steps else steps.train
    try:
        fit(phase, loop, prefetch, plan.hooks)
    except KeyboardInterrupt:  # in process, Ctrl-C: Python's SIGINT handler, which
        _mark_signal_stop(loop, outputs)  # StopOnSignal calls after the stop's checkpoint
        raise
    else:
        _mark_signal_stop(loop, outputs)
    finally:
        prefetch.close()
        outputs.close()
    reason = loop.stop.reason if loop.stop else "done"
    logging.info("stopped at step %d: %s; checkpoint saved", loop.step, reason)
    metrics = plan.evaluator.last
    if not metrics and loop.stop is None:  # resumed a finished run: evaluate it again
        metrics = {name: mean.compute() for name, mean in steps.evaluate(loop.state).items()}
    return outputs.result(metrics)


def _initial_state(plan: Plan) -> tuple:
    """(state, step, data position): the newest checkpoint, restored into this run's
    shardings whatever the saving run's were, or a fresh start; the run's files begun."""
    outputs, steps, task = plan.outputs, plan.steps, plan.task
    resume_step = outputs.latest_step()
    if resume_step is None:
        state = mesh_lib.jit_unoptimised(task.init, steps.state_sharding)(plan.start, steps.example)
        state = task.init_from_data(state, plan.inputs.train_sample())
        state = jax.device_put(state, steps.state_sharding)
        position = {"next_batch": 0, "elapsed_s": 0.0}
    else:
        state, position = outputs.restore(steps.abstract, steps.state_sharding)
    step = int(np.ravel(jax.device_get(state.step))[0])
    if resume_step is not None:
        logging.info("resumed from step %d (next batch %d)", step, position["next_batch"])
    outputs.start(step, plan.inputs.info, steps.example, plan.total_steps)
    return state, step, position
