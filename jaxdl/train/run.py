"""Training a config in a workdir: everything the loop (loop.py) runs on, assembled.

Reads top to bottom: the config's checks, the mesh, the input, the task, the compiled
steps, the state (resumed from the newest checkpoint, or fresh), the hooks, the loop.
`train_and_evaluate` trains one run; `train_trials` trains K trials that differ only in
seed and optimizer numbers as one vmapped step (trials.py), each in its own workdir.
"""

import math
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdl import configs, data, tasks
from jaxdl.errors import check, check_choice
from jaxdl.sweeps.grouping import vmapped_values
from jaxdl.tasks.base import TrainState
from jaxdl.train import checkpoint, trackers
from jaxdl.train import hooks as hooks_lib
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.loop import SIGNAL, Hook, Loop, fit
from jaxdl.train.progress import shows_logs
from jaxdl.train.rundir import RunDir
from jaxdl.train.trials import Lineage, PopulationTask, TrialRunDirs, VmappedTask, trial_chunk


def _total_steps(cfg: ml_collections.ConfigDict, batches_per_epoch: int) -> int:
    check(cfg.num_steps >= 0, f"train.num_steps={cfg.num_steps} must be >= 0")
    check(
        cfg.num_steps > 0 or cfg.num_epochs > 0,
        "set train.num_steps or train.num_epochs to a positive value",
    )
    if cfg.num_steps:
        return cfg.num_steps
    return max(1, math.ceil(cfg.num_epochs * batches_per_epoch))


def _check_train_section(train_cfg: ml_collections.ConfigDict) -> None:
    check(train_cfg.log_every > 0, f"train.log_every={train_cfg.log_every} must be > 0")
    check(train_cfg.max_seconds >= 0, "train.max_seconds must be >= 0 (0 = no limit)")
    for name in ("eval_every", "checkpoint_every"):
        check(train_cfg[name] >= 0, f"train.{name}={train_cfg[name]} must be >= 0")
    check(train_cfg.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
    trackers.parse_writers(train_cfg.writers)
    checkpoint.BestOf.of(train_cfg)
    check_choice("train.param_sharding", train_cfg.param_sharding, mesh_lib.PARAM_SHARDINGS)
    hooks_lib.parse_profile(train_cfg.profile)


def validate(config: ml_collections.ConfigDict, inputs: data.Input | None = None) -> None:
    """The checks a run makes before training, without training: raises UserError.
    `inputs` (the config's data, if already built) saves loading it again."""
    config = configs.resolve(config)
    _check_train_section(config.train)
    inputs = inputs or data.build_input(config.data, config.seed)
    tasks.build(config, inputs.info, _total_steps(config.train, inputs.train.batches_per_epoch))


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
    total_steps = _total_steps(config.train, inputs.train.batches_per_epoch)
    task = tasks.build(config, inputs.info, total_steps)
    outputs = RunDir(workdir, config, config.train.keep_checkpoints, jax.process_index() == 0)
    outputs.accept_config(allow_config_change)
    _log_input(config, inputs, mesh, total_steps)
    return _train(
        config,
        task,
        inputs,
        inputs.train,
        outputs,
        mesh,
        mesh_lib.data_sharded(mesh),
        jax.random.PRNGKey(config.seed),
        total_steps,
        inputs.items_per_batch,
        hooks,
        started,
    )


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
    values = vmapped_values(trial_configs)
    mesh, inputs = _setup(config)
    by_seed = {config.seed: inputs}  # trials that differ only in optimizer numbers share
    for c in trial_configs:
        if c.seed not in by_seed:
            by_seed[c.seed] = data.build_input(
                c.data, c.seed, jax.process_index(), jax.process_count()
            )
    batches = data.StackedBatches([by_seed[c.seed].train for c in trial_configs])
    total_steps = _total_steps(config.train, batches.batches_per_epoch)
    for c in trial_configs:  # each trial's own numbers pass the checks
        tasks.build(c, inputs.info, total_steps)
    factory = lambda trial_values: tasks.build(config, inputs.info, total_steps, trial_values)
    chunk = trial_chunk(config.sweep.vmap_chunk, len(trial_configs))
    extra = list(hooks)
    if config.sweep.pbt_every:
        pbt = config.sweep
        task = PopulationTask(
            factory,
            values,
            len(trial_configs),
            chunk,
            pbt.pbt_every,
            pbt.pbt_fraction,
            tuple(pbt.pbt_factors),
            config.seed,
            total_steps,
        )
        check(
            isinstance(
                jax.eval_shape(task.inner.init, jax.random.PRNGKey(0), _one_batch(batches)),
                TrainState,
            ),
            f"population-based training needs a task with a TrainState, not {config.task.name!r}",
        )
        extra = [Lineage(pbt.pbt_every), *extra]
    else:
        task = VmappedTask(factory, values, len(trial_configs), chunk)
    varying = [name for name, v in values.items() if len(set(np.asarray(v).tolist())) > 1]
    chief = jax.process_index() == 0
    run_dirs = [
        RunDir(w, c, config.train.keep_checkpoints, chief)
        for c, w in zip(trial_configs, workdirs, strict=True)
    ]
    for run_dir in run_dirs:
        run_dir.accept_config()
    outputs = TrialRunDirs(run_dirs, mesh, task)
    _log_input(
        config,
        inputs,
        mesh,
        total_steps,
        f"; {len(trial_configs)} vmapped trials varying seed/{','.join(varying) or '-'} "
        "(progress: their medians, ~)",
    )
    starts = task.starts(np.stack([jax.random.PRNGKey(c.seed) for c in trial_configs]))
    return _train(
        config,
        task,
        inputs,
        batches,
        outputs,
        mesh,
        mesh_lib.data_sharded(mesh, trial_axis=True),
        starts,
        total_steps,
        inputs.items_per_batch * len(trial_configs),
        extra,
        started,
    )


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
    _check_train_section(config.train)
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


def _train(
    config,
    task,
    inputs: data.Input,
    batches,
    outputs,
    mesh,
    batch_sharding,
    start,  # what task.init starts from: a random key (a vmapped group: TrialStarts)
    total_steps: int,
    items_per_step: int,
    extra_hooks: Sequence[Hook],
    started: float,
):
    # ---- Shardings and compiled steps -----------------------------------------------------
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
    train_step = compile_step(task.train_step)
    pretrain_step = compile_step(task.pretrain_step) if task.pretrain_steps else None
    eval_step = jax.jit(
        task.eval_step,
        in_shardings=(state_sharding, mesh_lib.data_sharded(mesh)),
        out_shardings=replicated,
    )
    eval_batch_size = config.data.eval_batch_size

    def evaluate(state) -> dict:
        return _eval_totals(eval_step, state, inputs.eval, eval_batch_size, mesh)

    # ---- State: the newest checkpoint, or a fresh start ------------------------------------
    resume_step = outputs.latest_step()
    if resume_step is None:
        state = mesh_lib.jit_unoptimised(task.init, state_sharding)(start, example)
        state = jax.device_put(task.init_from_data(state, inputs.train_sample()), state_sharding)
        position = {"next_batch": 0, "elapsed_s": 0.0}
    else:  # restored into this run's shardings, whatever the saving run's were
        state, position = outputs.restore(abstract, state_sharding)
    step = int(np.ravel(jax.device_get(state.step))[0])
    if resume_step is not None:
        logging.info("resumed from step %d (next batch %d)", step, position["next_batch"])
    outputs.start(step, inputs.info, example, total_steps)
    logging.info("task %s, %s parameters", config.task.name, f"{task.num_params(state):,}")

    # ---- Pictures: drawn on the first eval batch, if the task draws any -------------------
    image_batch = next(data.eval_batches(inputs.eval, eval_batch_size))
    draw = None
    if jax.eval_shape(task.images, abstract, image_batch):
        images = jax.jit(task.images)
        draw = lambda state: images(state, image_batch)

    # ---- Hooks and the loop ---------------------------------------------------------------
    eval_every = config.train.eval_every or batches.batches_per_epoch
    hooks = hooks_lib.default_hooks(
        config.train,
        items_per_step,
        inputs.item_unit,
        total_steps,
        eval_every,
        evaluate,
        draw,
        outputs.path,
    )
    hooks += list(extra_hooks)
    evaluator = next(h for h in hooks if isinstance(h, hooks_lib.Evaluate))
    loop = Loop(
        state, step, total_steps, outputs, position, position["next_batch"], started=started
    )
    workers = config.data.workers
    prefetch = data.Prefetcher(
        batches, position["next_batch"], config.data.prefetch, shard, workers
    )
    if prefetch.workers != workers:
        logging.info("data.workers=%d unused: the set is held in memory", workers)
    phase = lambda at_step: pretrain_step if at_step < task.pretrain_steps else train_step
    try:
        fit(phase, loop, prefetch, hooks)
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
    metrics = evaluator.last
    if not metrics and loop.stop is None:  # resumed a finished run: evaluate it again
        metrics = {name: mean.compute() for name, mean in evaluate(loop.state).items()}
    return outputs.result(metrics)
