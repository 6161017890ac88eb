"""The training loop: the only layer that touches devices, files and signals.

Reads top to bottom: workdir and logging, mesh, input, task, compiled steps,
checkpoint load, loop (log / eval / checkpoint / stop), final eval and save.

`train_trials` runs K trials that differ only in `seed` and the optimizer's traceable
numbers (learning rate, weight decay, clip norm) as one compiled, `jax.vmap`ped step:
stacked states and per-trial batches; each trial keeps its own workdir (metrics,
checkpoints, plots) exactly as if it had run alone. `train_and_evaluate` is K = 1.
The step vmaps `sweep.vmap_chunk` trials at a time (`lax.map` over the chunks): on CPU
a step over all K has K times the working set and falls out of cache.
"""

import math
import signal
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxdl import data, optim, tasks
from jaxdl.errors import NonFiniteLossError, UserError, check
from jaxdl.train import checkpoint, plots
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.progress import Progress
from jaxdl.train.run_info import write_run_info
from jaxdl.train.writers import MetricWriter, write_images


class _StopSignal:
    """Turns SIGTERM (preemption) into a flag read at the next step boundary."""

    def __init__(self):
        self.received = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


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


FAILED_FILE = "failed.txt"  # a vmapped trial's one-line failure, read by launch/sweep.py


def vmap_key(config: ml_collections.ConfigDict) -> dict:
    """What trials vmapped together must share: the config without its seed and the
    optimizer numbers a vmapped step takes per trial (optim.TRACEABLE)."""
    shared = config.to_dict()
    shared.pop("seed")
    for name in optim.TRACEABLE:
        shared["optimizer"].pop(name)
    return shared


def vmapped_values(configs: list[ml_collections.ConfigDict]) -> dict:
    """The optimizer numbers that differ between trials, one array entry per trial;
    raises UserError if the trials differ in anything a vmapped step cannot vary."""
    keys = [vmap_key(c) for c in configs]
    for index, key in enumerate(keys[1:], 1):
        if key != keys[0]:
            raise UserError(
                f"vmapped trials may differ only in seed and optimizer."
                f"{{{','.join(optim.TRACEABLE)}}}; trial {index} differs from trial 0 in "
                f"{_first_difference(keys[0], key)}"
            )
    return {
        name: jnp.asarray([float(c.optimizer[name]) for c in configs], jnp.float32)
        for name in optim.TRACEABLE
        if len({c.optimizer[name] for c in configs}) > 1
    }


def _first_difference(a: dict, b: dict, prefix: str = "config") -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}.{key}")
            return f"{prefix}.{key}"
    return prefix


def validate(config: ml_collections.ConfigDict, inputs: data.Input | None = None) -> None:
    """The checks a run makes before training, without training: raises UserError.
    `inputs` (the config's data, if already built) saves loading it again."""
    _check_train_section(config.train)
    inputs = inputs or data.build_input(config.data, config.seed)
    tasks.build(config, inputs.info, _total_steps(config.train, inputs.train.batches_per_epoch))


def evaluate(eval_step, state, eval_arrays: dict, batch_size: int, mesh) -> dict:
    """Mean of each eval metric over the whole eval set (padding rows masked out)."""
    totals = _eval_totals(eval_step, state, eval_arrays, batch_size, mesh)
    return {name: mean.compute() for name, mean in totals.items()}


def _eval_totals(eval_step, state, eval_arrays: dict, batch_size: int, mesh) -> dict:
    """Each eval metric's Mean summed over the eval set, on the host; for vmapped trials
    its fields have a leading trial axis."""
    totals = None
    for batch in data.eval_batches(
        eval_arrays, batch_size, jax.process_index(), jax.process_count()
    ):
        metrics = eval_step(state, mesh_lib.shard_batch(batch, mesh))
        totals = metrics if totals is None else jax.tree.map(lambda a, b: a + b, totals, metrics)
    return jax.device_get(totals)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains config's task in workdir (resuming from its newest checkpoint); returns the
    final eval metrics. Raises errors.UserError subclasses for bad configs and data."""
    return train_trials([config], [workdir])[0]


def train_trials(configs: list[ml_collections.ConfigDict], workdirs: list) -> list[dict | None]:
    """Trains each config in its workdir, all K in one vmapped step when K > 1 (see the
    module doc); returns each trial's final eval metrics. A trial whose metrics turn
    non-finite stops being logged and saved (its reason in workdir/failed.txt; None in
    the result) while the others go on; NonFiniteLossError is raised if all do."""
    start_time = time.perf_counter()
    workdirs = [Path(w) for w in workdirs]
    check(len(configs) == len(workdirs) >= 1, "one workdir per trial")
    vmapped = len(configs) > 1
    config = configs[0]
    values = vmapped_values(configs) if vmapped else {}
    is_chief = jax.process_index() == 0
    train_cfg = config.train
    _check_train_section(train_cfg)

    # ---- Mesh -------------------------------------------------------------------------
    mesh = mesh_lib.make_mesh()
    num_devices = mesh.devices.size
    for name in ("batch_size", "eval_batch_size"):
        size = config.data[name]
        check(size % num_devices == 0, f"data.{name}={size} must divide over {num_devices} devices")

    # ---- Input ------------------------------------------------------------------------
    dcfg = config.data
    by_seed = {}  # trials that differ only in optimizer numbers share their input
    for c in configs:
        if c.seed not in by_seed:
            by_seed[c.seed] = data.build_input(
                dcfg, c.seed, jax.process_index(), jax.process_count()
            )
    inputs = by_seed[config.seed]
    batches = (
        data.StackedBatches([by_seed[c.seed].train for c in configs]) if vmapped else inputs.train
    )
    total_steps = _total_steps(train_cfg, batches.batches_per_epoch)
    eval_every = train_cfg.eval_every or batches.batches_per_epoch
    logging.info(
        "data %s: %d train, %d eval (%s); %d devices; %d steps of %d %s%s",
        dcfg.name,
        inputs.info["num_train"],
        inputs.info["num_eval"],
        inputs.info["origin"],
        num_devices,
        total_steps,
        inputs.items_per_batch,
        inputs.item_unit,
        f"; {len(configs)} vmapped trials varying seed/{','.join(values) or '-'} "
        "(progress: their medians, ~)"
        if vmapped
        else "",
    )

    # ---- Task and compiled steps --------------------------------------------------------
    task = tasks.build(config, inputs.info, total_steps)
    replicated = mesh_lib.replicated(mesh)
    batch_sharding = mesh_lib.data_sharded(mesh, trial_axis=vmapped)
    shard = lambda b: mesh_lib.shard_batch(b, mesh, trial_axis=vmapped)
    root_key = jax.random.PRNGKey(config.seed)
    example = shard(batches.batch(0))
    if vmapped:
        chunk = _trial_chunk(config.sweep.vmap_chunk, len(configs))

        def compile_step(method: str):
            def trial_step(trial_values, state, batch):
                trial_task = tasks.build(config, inputs.info, total_steps, trial_values)
                return getattr(trial_task, method)(state, batch)

            step = jax.jit(
                _over_trials(trial_step, chunk),
                in_shardings=(replicated, replicated, batch_sharding),
                out_shardings=(replicated, replicated),
                donate_argnums=1,
            )
            return lambda state, batch: step(values, state, batch)

        def trials_eval_step(states, batch):  # every trial on the same eval batch
            return _over_trials(lambda state: task.eval_step(state, batch), chunk)(states)

        root_key = jnp.stack([jax.random.PRNGKey(c.seed) for c in configs])
        init = _jit_unoptimised(jax.vmap(task.init), replicated)
        eval_step = jax.jit(
            trials_eval_step,
            in_shardings=(replicated, mesh_lib.data_sharded(mesh)),
            out_shardings=replicated,
        )
    else:

        def compile_step(method: str):
            return jax.jit(
                getattr(task, method),
                in_shardings=(replicated, batch_sharding),
                out_shardings=(replicated, replicated),
                donate_argnums=0,
            )

        init = _jit_unoptimised(task.init, replicated)
        eval_step = jax.jit(
            task.eval_step, in_shardings=(replicated, batch_sharding), out_shardings=replicated
        )
    train_step = compile_step("train_step")
    # A task's optional first phase (tasks/base.py), compiled on its own.
    pretrain_steps = getattr(task, "pretrain_steps", 0)
    pretrain_step = compile_step("pretrain_step") if pretrain_steps else None
    # `trial` picks trial k out of a host tree; `unstack` splits a device tree in one call
    # (indexing each leaf on its own costs a dispatch per leaf and trial).
    trial = lambda tree, k: jax.tree.map(lambda x: x[k], tree) if vmapped else tree
    unstack = (
        _jit_unoptimised(
            lambda tree: [trial(tree, k) for k in range(len(configs))],
            replicated,
        )
        if vmapped
        else lambda tree: [tree]
    )
    # Tasks with pictures (e.g. reconstructions) draw them on the first eval batch.
    images = jax.jit(task.images) if hasattr(task, "images") else None
    image_batch = images and next(data.eval_batches(inputs.eval_arrays, dcfg.eval_batch_size))

    # ---- Checkpoint load ----------------------------------------------------------------
    single_example = jax.tree.map(  # one trial's batch, as shapes
        lambda x: jax.ShapeDtypeStruct(x.shape[1:] if vmapped else x.shape, x.dtype), example
    )
    ckpts = [
        checkpoint.Checkpoints(w / "checkpoints", train_cfg.keep_checkpoints) for w in workdirs
    ]
    resume_steps = {c.latest_step() for c in ckpts}
    if len(resume_steps) != 1:
        for c in ckpts:
            c.close()
        raise UserError(
            f"vmapped trials have checkpoints at different steps "
            f"({sorted(resume_steps, key=str)}); run them separately"
        )
    resume_step = resume_steps.pop()
    if resume_step is None:
        state = init(root_key, example)
        if hasattr(task, "init_from_data"):  # tasks/base.py; the same start for every trial
            state = jax.device_put(task.init_from_data(state, inputs.train.arrays), replicated)
        position = {"next_batch": 0, "elapsed_s": 0.0}
    else:
        one_trial = jax.eval_shape(task.init, jax.random.PRNGKey(0), single_example)
        abstract = checkpoint.abstract_like(one_trial, replicated)
        restored = [c.restore(resume_step, abstract) for c in ckpts]
        position = restored[0][1]
        state = restored[0][0]
        if vmapped:
            state = jax.jit(
                lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s), out_shardings=replicated
            )(*(r[0] for r in restored))
        logging.info("resumed from step %d (next batch %d)", resume_step, position["next_batch"])
    step = int(np.ravel(jax.device_get(state.step))[0])
    if is_chief:
        for c, w in zip(configs, workdirs, strict=True):
            w.mkdir(parents=True, exist_ok=True)
            (w / FAILED_FILE).unlink(missing_ok=True)
            (w / "config.json").write_text(c.to_json_best_effort(indent=2) + "\n")
            write_run_info(w, inputs.info, single_example, total_steps)
    writers = [MetricWriter(w, resume_step=step, enabled=is_chief) for w in workdirs]
    num_params = sum(x.size for x in jax.tree.leaves(state.params)) // len(configs)
    logging.info("task %s, %s parameters", config.task.name, f"{num_params:,}")

    # ---- Loop -----------------------------------------------------------------------------
    elapsed_before = float(position["elapsed_s"])
    elapsed = lambda: elapsed_before + time.perf_counter() - start_time
    progress = Progress(
        total_steps,
        inputs.items_per_batch * len(configs),
        inputs.item_unit,
        train_cfg.max_seconds,
        step,
        elapsed(),
    )
    stop_signal = _StopSignal()
    prefetch = data.Prefetcher(batches, position["next_batch"], dcfg.prefetch, shard)
    sums: list[dict] = [{} for _ in configs]
    failed: dict[int, str] = {}  # trial -> why it stopped
    pending = None  # (step, metrics on device): read one step late to keep devices busy
    next_batch = position["next_batch"]
    eval_metrics: list[dict] = [{} for _ in configs]
    live = lambda: [k for k in range(len(configs)) if k not in failed]

    def take(pending_metrics) -> None:
        """Moves a step's metrics to the host; a trial with a non-finite value stops (the
        run, when no trial is left)."""
        at_step, on_device = pending_metrics
        host = jax.device_get(on_device)
        for k in live():
            values = {name: float(trial(value, k)) for name, value in host.items()}
            bad = [(n, v) for n, v in values.items() if not math.isfinite(v)]
            if bad:
                writers[k].write(at_step, elapsed(), {f"train/{n}": v for n, v in values.items()})
                ckpts[k].wait()
                last_good = ckpts[k].latest_step()
                kept = f"step {last_good}" if last_good is not None else "none saved yet"
                failed[k] = (
                    f"non-finite train/{bad[0][0]}={bad[0][1]} at step {at_step}; stopped, last "
                    f"good checkpoint: {kept} in {workdirs[k] / 'checkpoints'}"
                )
                if vmapped and is_chief:
                    (workdirs[k] / FAILED_FILE).write_text(failed[k] + "\n")
                    logging.warning("trial %s: %s", workdirs[k].name, failed[k])
                continue
            for name, value in values.items():
                total, count = sums[k].get(name, (0.0, 0))
                sums[k][name] = (total + value, count + 1)
        if not live():
            raise NonFiniteLossError(_failures(failed, workdirs))

    try:
        stop_reason = "done" if step >= total_steps else None
        while stop_reason is None:
            index, batch = next(prefetch)
            state, metrics = (pretrain_step if step < pretrain_steps else train_step)(state, batch)
            step, next_batch = step + 1, index + 1
            if pending is not None:
                take(pending)
            pending = (step, metrics)

            if step >= total_steps:
                stop_reason = "done"
            elif stop_signal.received:
                stop_reason = "SIGTERM"
            elif train_cfg.max_seconds and elapsed() >= train_cfg.max_seconds:
                stop_reason = f"time budget of {train_cfg.max_seconds}s"
            is_last = stop_reason is not None
            log_now = is_last or step % train_cfg.log_every == 0
            eval_now = stop_reason != "SIGTERM" and (is_last or step % eval_every == 0)
            periodic_save = train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0
            save_now = is_last or periodic_save
            if not (log_now or eval_now or save_now):
                continue
            take(pending)  # every value up to this step is known finite before it is kept
            pending = None
            scalars: list[dict] = [{} for _ in configs]
            if log_now:
                for k in live():
                    scalars[k] = {f"train/{n}": t / c for n, (t, c) in sums[k].items()}
                    sums[k].clear()
            if eval_now:
                eval_start = time.perf_counter()
                totals = _eval_totals(
                    eval_step, state, inputs.eval_arrays, dcfg.eval_batch_size, mesh
                )
                trial_states = unstack(state) if images is not None else None
                for k in live():
                    eval_metrics[k] = {n: trial(m, k).compute() for n, m in totals.items()}
                    scalars[k].update({f"eval/{n}": v for n, v in eval_metrics[k].items()})
                    if images is not None:
                        pictures = jax.device_get(images(trial_states[k], image_batch))
                        if is_chief:
                            write_images(workdirs[k], step, pictures)
                progress.exclude(time.perf_counter() - eval_start)
            for k in live():
                if scalars[k]:
                    writers[k].write(step, elapsed(), scalars[k])
            if log_now:
                logging.info("%s", progress.line(step, elapsed(), _shown(scalars, live())))
            elif eval_now:
                logging.info(
                    "step %d: %s",
                    step,
                    " ".join(f"{k}={v:.4g}" for k, v in _shown(scalars, live()).items()),
                )
            if save_now:
                where = {"next_batch": next_batch, "elapsed_s": elapsed()}
                trial_states = unstack(state)
                for k in live():
                    ckpts[k].save(step, trial_states[k], where)
        if stop_reason == "done" and not any(eval_metrics):  # resumed a finished run
            totals = _eval_totals(eval_step, state, inputs.eval_arrays, dcfg.eval_batch_size, mesh)
            eval_metrics = [
                {n: trial(m, k).compute() for n, m in totals.items()} for k in range(len(configs))
            ]
        logging.info("stopped at step %d: %s; checkpoint saved", step, stop_reason)
    finally:
        prefetch.close()
        stop_signal.restore()
        for k in range(len(configs)):
            ckpts[k].close()
            writers[k].close()
            if is_chief and train_cfg.plot:
                plots.plot_metrics(workdirs[k])
    return [None if k in failed else metrics for k, metrics in enumerate(eval_metrics)]


def _trial_chunk(chunk: int, num_trials: int) -> int:
    """Trials per vmapped slice of the step: `chunk`, or when 0 all of them on
    accelerators and one on CPU (8 tiny-CNN trials: 30 ms a step vs 75 ms for all 8)."""
    check(chunk >= 0, f"sweep.vmap_chunk={chunk} must be >= 0 (0: the backend's choice)")
    if chunk:
        return min(chunk, num_trials)
    return 1 if jax.default_backend() == "cpu" else num_trials


def _over_trials(fn, chunk: int):
    """`fn` over a leading trial axis of every argument, `chunk` trials vmapped at a time."""
    return lambda *args: jax.lax.map(lambda a: fn(*a), args, batch_size=chunk)


def _jit_unoptimised(fn, out_shardings):
    """jit for functions whose speed does not matter (init, unstacking trials). On CPU
    they are compiled without LLVM's optimisations: the threefry random-number code of
    parameter initialisers then compiles in ~1 s instead of 6-18 s."""
    jitted = jax.jit(fn, out_shardings=out_shardings)
    if jax.default_backend() != "cpu":
        return jitted
    compiled = []  # the shapes never change within a run: compile on the first call

    def call(*args):
        if not compiled:
            options = {"xla_backend_optimization_level": 0}
            compiled.append(jitted.lower(*args).compile(compiler_options=options))
        return compiled[0](*args)

    return call


def _failures(failed: dict[int, str], workdirs: list[Path]) -> str:
    if len(workdirs) == 1:
        return failed[0]
    return "; ".join(f"trial {workdirs[k].name}: {why}" for k, why in sorted(failed.items()))


def _shown(scalars: list[dict], live: list[int]) -> dict:
    """What the progress line shows: the metrics, or for vmapped trials their median."""
    if len(scalars) == 1:
        shown = scalars[0]
    else:
        names = scalars[live[0]] if live else {}
        shown = {f"{n}~": statistics.median(scalars[k][n] for k in live) for n in names}
    return {
        k.removeprefix("train/"): v
        for k, v in shown.items()
        if not k.startswith("train/learning_rate")
    }
