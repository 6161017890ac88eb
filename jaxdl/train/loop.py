"""The training loop: the only layer that touches devices, files and signals.

Reads top to bottom: workdir and logging, mesh, input, task, compiled steps,
checkpoint load, loop (log / eval / checkpoint / stop), final eval and save.
"""

import math
import signal
import time
from pathlib import Path

import jax
import ml_collections
from absl import logging

from jaxdl import data, tasks
from jaxdl.errors import NonFiniteLossError, check
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


def validate(config: ml_collections.ConfigDict, inputs: data.Input | None = None) -> None:
    """The checks a run makes before training, without training: raises UserError.
    `inputs` (the config's data, if already built) saves loading it again."""
    _check_train_section(config.train)
    inputs = inputs or data.build_input(config.data, config.seed)
    tasks.build(config, inputs.info, _total_steps(config.train, inputs.train.batches_per_epoch))


def evaluate(eval_step, state, eval_arrays: dict, batch_size: int, mesh) -> dict:
    """Mean of each eval metric over the whole eval set (padding rows masked out)."""
    totals = None
    for batch in data.eval_batches(
        eval_arrays, batch_size, jax.process_index(), jax.process_count()
    ):
        metrics = eval_step(state, mesh_lib.shard_batch(batch, mesh))
        totals = metrics if totals is None else jax.tree.map(lambda a, b: a + b, totals, metrics)
    return {name: mean.compute() for name, mean in jax.device_get(totals).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains config's task in workdir (resuming from its newest checkpoint); returns the
    final eval metrics. Raises errors.UserError subclasses for bad configs and data."""
    start_time = time.perf_counter()
    workdir = Path(workdir)
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
    inputs = data.build_input(dcfg, config.seed, jax.process_index(), jax.process_count())
    batches = inputs.train
    total_steps = _total_steps(train_cfg, batches.batches_per_epoch)
    eval_every = train_cfg.eval_every or batches.batches_per_epoch
    logging.info(
        "data %s: %d train, %d eval (%s); %d devices; %d steps of %d %s",
        dcfg.name,
        inputs.info["num_train"],
        inputs.info["num_eval"],
        inputs.info["origin"],
        num_devices,
        total_steps,
        inputs.items_per_batch,
        inputs.item_unit,
    )

    # ---- Task and compiled steps --------------------------------------------------------
    task = tasks.build(config, inputs.info, total_steps)
    replicated = mesh_lib.replicated(mesh)
    batch_sharding = mesh_lib.data_sharded(mesh)
    init = jax.jit(task.init, out_shardings=replicated)
    train_step = jax.jit(
        task.train_step,
        in_shardings=(replicated, batch_sharding),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    eval_step = jax.jit(
        task.eval_step, in_shardings=(replicated, batch_sharding), out_shardings=replicated
    )
    # Tasks with pictures (e.g. reconstructions) draw them on the first eval batch.
    images = jax.jit(task.images) if hasattr(task, "images") else None
    image_batch = images and next(data.eval_batches(inputs.eval_arrays, dcfg.eval_batch_size))
    root_key = jax.random.PRNGKey(config.seed)
    example = mesh_lib.shard_batch(batches.batch(0), mesh)

    # ---- Checkpoint load ----------------------------------------------------------------
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", train_cfg.keep_checkpoints)
    resume_step = ckpts.latest_step()
    if resume_step is None:
        state = init(root_key, example)
        position = {"next_batch": 0, "elapsed_s": 0.0}
    else:
        abstract = checkpoint.abstract_like(jax.eval_shape(init, root_key, example), replicated)
        state, position = ckpts.restore(resume_step, abstract)
        logging.info("resumed from step %d (next batch %d)", resume_step, position["next_batch"])
    step = int(state.step)
    if is_chief:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        write_run_info(workdir, inputs.info, example, total_steps)
    writer = MetricWriter(workdir, resume_step=step, enabled=is_chief)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("task %s, %s parameters", config.task.name, f"{num_params:,}")

    # ---- Loop -----------------------------------------------------------------------------
    elapsed_before = float(position["elapsed_s"])
    elapsed = lambda: elapsed_before + time.perf_counter() - start_time
    progress = Progress(
        total_steps,
        inputs.items_per_batch,
        inputs.item_unit,
        train_cfg.max_seconds,
        step,
        elapsed(),
    )
    stop_signal = _StopSignal()
    prefetch = data.Prefetcher(
        batches, position["next_batch"], dcfg.prefetch, lambda b: mesh_lib.shard_batch(b, mesh)
    )
    sums: dict = {}
    pending = None  # (step, metrics on device): read one step late to keep devices busy
    next_batch = position["next_batch"]
    eval_metrics: dict = {}

    def take(pending_metrics) -> None:
        """Moves a step's metrics to the host; stops the run if any is non-finite."""
        at_step, values = pending_metrics
        values = {name: float(value) for name, value in jax.device_get(values).items()}
        for name, value in values.items():
            if not math.isfinite(value):
                writer.write(at_step, elapsed(), {f"train/{k}": v for k, v in values.items()})
                ckpts.wait()
                last_good = ckpts.latest_step()
                kept = f"step {last_good}" if last_good is not None else "none saved yet"
                raise NonFiniteLossError(
                    f"non-finite train/{name}={value} at step {at_step}; stopped, last good "
                    f"checkpoint: {kept} in {workdir / 'checkpoints'}"
                )
        for name, value in values.items():
            total, count = sums.get(name, (0.0, 0))
            sums[name] = (total + value, count + 1)

    try:
        stop_reason = "done" if step >= total_steps else None
        while stop_reason is None:
            index, batch = next(prefetch)
            state, metrics = train_step(state, batch)
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
            scalars = {}
            if log_now:
                scalars = {f"train/{k}": total / count for k, (total, count) in sums.items()}
                sums.clear()
            if eval_now:
                eval_start = time.perf_counter()
                eval_metrics = evaluate(
                    eval_step, state, inputs.eval_arrays, dcfg.eval_batch_size, mesh
                )
                if images is not None:
                    pictures = jax.device_get(images(state, image_batch))
                    if is_chief:
                        write_images(workdir, step, pictures)
                progress.exclude(time.perf_counter() - eval_start)
                scalars.update({f"eval/{k}": v for k, v in eval_metrics.items()})
            if scalars:
                writer.write(step, elapsed(), scalars)
            if log_now:
                shown = {
                    k.removeprefix("train/"): v
                    for k, v in scalars.items()
                    if k != "train/learning_rate"
                }
                logging.info("%s", progress.line(step, elapsed(), shown))
            elif eval_now:
                logging.info(
                    "step %d: %s", step, " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
                )
            if save_now:
                ckpts.save(step, state, {"next_batch": next_batch, "elapsed_s": elapsed()})
        if stop_reason == "done" and not eval_metrics:  # resumed a finished run
            eval_metrics = evaluate(
                eval_step, state, inputs.eval_arrays, dcfg.eval_batch_size, mesh
            )
        logging.info("stopped at step %d: %s; checkpoint saved", step, stop_reason)
    finally:
        prefetch.close()
        stop_signal.restore()
        ckpts.close()
        writer.close()
        if is_chief and train_cfg.plot:
            plots.plot_metrics(workdir)
    return eval_metrics
