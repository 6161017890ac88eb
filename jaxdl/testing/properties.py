"""The properties every model and task must have, each a function of a `Subject` (one
model and task on a small batch of generated data) and a tolerance. A property returns
None (or a note for the report) when it holds, raises `Failed` with what differs and by
how much when it does not, and `Skipped` when it does not apply (the report says why).

Differences are relative: the largest |a - b| of a leaf over the largest |b| of that
leaf (at least 1e-6), so a tolerance reads as "agrees to about this fraction".
"""

import dataclasses
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import configs, data, tasks
from jaxdl.errors import ConfigError
from jaxdl.sweeps.spec import apply_overrides
from jaxdl.tasks.base import Task
from jaxdl.train import checkpoint
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.trials import VmappedTask, trial_chunk

TOTAL_STEPS = 100
# A step far past every schedule's warm-up and decay (optimizer, KL weight, EMA ramp), so
# two neighbouring steps differ only in what they draw at random.
FAR_STEP = 1_000_000


class Failed(AssertionError):
    """A property does not hold: the message says what and by how much."""


class Skipped(Exception):
    """A property does not apply to this model or task: the message says why."""


@dataclasses.dataclass
class Subject:
    """One model and task (`config`, resolved) and a batch of each kind from its data."""

    config: ml_collections.ConfigDict
    info: dict
    train_batch: dict  # numpy arrays, the global batch 0
    eval_batch: dict  # numpy arrays of real rows (an even number), `mask` all True
    directory: Path  # scratch space (checkpoints)

    @classmethod
    def build(cls, config: ml_collections.ConfigDict, directory: Path) -> "Subject":
        config = configs.resolve(config)
        inputs = data.build_input(config.data, config.seed)
        batch = next(data.eval_batches(inputs.eval, config.data.eval_batch_size))
        real = int(np.sum(batch["mask"])) // 2 * 2
        if real < 2:
            raise Failed(f"the eval set of data.name={config.data.name!r} has under 2 examples")
        eval_batch = {k: np.asarray(v)[:real] for k, v in batch.items()}
        return cls(config, inputs.info, inputs.train.batch(0), eval_batch, Path(directory))

    def task(self, overrides: dict | None = None, optimizer_values: dict | None = None) -> Task:
        """The task of the config with {"a.b": value} `overrides`."""
        config = configs.resolve(apply_overrides(self.config, overrides or {}))
        return tasks.build(config, self.info, TOTAL_STEPS, optimizer_values, resolved=True)

    @functools.cached_property
    def base(self) -> Task:
        return self.task()

    # The base task's state from key 0, its first step, and both run op by op.
    @functools.cached_property
    def state(self):
        return self.init(self.base)

    @functools.cached_property
    def stepped(self) -> tuple:
        return self.step(self.base, self.state)

    @functools.cached_property
    def eager_stepped(self) -> tuple:
        # Called directly, as chex.variants' without_jit variant calls it: op by op (its
        # lax loops and inner jits compiled whole).
        return self.base.train_step(self.state, self.train_batch)

    @functools.cached_property
    def draws_at_random(self) -> bool:
        """Whether the step's outputs depend on the state's random key."""
        if not hasattr(self.state, "rng"):
            return False
        other = self.state.replace(rng=jax.random.PRNGKey(12345))
        outputs = [_without_counters(o) for o in (self.stepped, self.step(self.base, other))]
        return _largest_difference(*outputs, "")[0] > 0

    def init(self, task: Task, seed: int = 0):
        return _jit(task.init)(jax.random.PRNGKey(seed), self.train_batch)

    def step(self, task: Task, state, batch: dict | None = None) -> tuple:
        return _jit(task.train_step)(state, self.train_batch if batch is None else batch)

    def evaluate(self, state, batch: dict, task: Task | None = None) -> dict:
        """The eval metrics (losses.Mean each) of `batch`."""
        return _jit((task or self.base).eval_step)(state, batch)


def _compile(fn: Callable, **jit_options) -> Callable:
    """jax.jit(fn), traced anew, compiled for a quick compile on CPU (no LLVM
    optimisations, train/mesh.py): the checks run each program once or twice, so
    compiling is what takes their time."""
    jitted = jax.jit(lambda *args: fn(*args), **jit_options)  # a new function: traced anew
    if jax.default_backend() != "cpu":
        return jitted
    compiled = {}

    def call(*args):
        leaves, structure = jax.tree.flatten(args)
        key = (structure, tuple((np.shape(x), np.result_type(x)) for x in leaves))
        if key not in compiled:
            options = mesh_lib.QUICK_CPU_COMPILE
            compiled[key] = jitted.lower(*args).compile(compiler_options=options)
        return compiled[key](*args)

    return call


_jit = functools.cache(_compile)  # one program per function: what the trainer runs


# ---- Comparing trees ------------------------------------------------------------------


def _leaves(tree) -> list[tuple[str, np.ndarray]]:
    """(path, value) of each leaf; a Python number as JAX would hold it (a schedule's
    value computed eagerly is one)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    as_array = lambda x: np.asarray(jnp.asarray(x) if isinstance(x, int | float) else x)
    return [(jax.tree_util.keystr(path), as_array(leaf)) for path, leaf in flat]


def _largest_difference(a, b, what: str) -> tuple[float, str]:
    """(relative difference, "where: numbers") of the leaf of `a` and `b` that differ
    most; raises Failed when their structures differ."""
    try:
        chex.assert_trees_all_equal_structs(a, b)
    except AssertionError as e:
        shown = lambda tree: str(jax.tree.structure(tree))[:200]
        raise Failed(f"{what}: the trees differ in structure: {shown(a)} vs {shown(b)}") from e
    worst = (0.0, "")
    for (path, x), (_, y) in zip(_leaves(a), _leaves(b), strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            raise Failed(f"{what}: {path} is {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        x, y = x.astype(np.float64), y.astype(np.float64)
        if np.array_equal(x, y, equal_nan=True):
            continue
        absolute = float(np.nanmax(np.abs(x - y))) if x.size else 0.0
        if not np.isfinite(absolute):
            absolute = np.inf
        relative = absolute / max(float(np.nanmax(np.abs(y))) if y.size else 0.0, 1e-6)
        if relative > worst[0]:
            where = path or "the output"
            worst = (relative, f"{where} differs by {absolute:.3g} (relative {relative:.3g})")
    return worst


def _expect_close(a, b, tolerance: float, what: str) -> None:
    relative, where = _largest_difference(a, b, what)
    if relative > tolerance:
        raise Failed(f"{what}: {where} > tolerance {tolerance:g}")


def _expect_equal(a, b, what: str) -> None:
    relative, where = _largest_difference(a, b, what)
    if relative > 0:
        raise Failed(f"{what}: {where}")


def _computed(metrics: dict) -> dict:
    return {name: mean.compute() for name, mean in metrics.items()}


def _without_counters(output: tuple) -> tuple:
    """A step's (state, metrics) with the state's `step` and `rng` zeroed: what differs
    when a step draws other random numbers, or computes otherwise."""
    state, metrics = output
    changes = {f: jnp.zeros_like(getattr(state, f)) for f in ("step", "rng") if hasattr(state, f)}
    return (state.replace(**changes) if changes else state), metrics


# ---- The properties -------------------------------------------------------------------


def init_is_function_of_key(subject: Subject, tolerance: float) -> None:
    """The same key gives the same state (shapes, dtypes, values), also when init is
    traced again (host randomness and Python state show then)."""
    again = _compile(subject.base.init)(jax.random.PRNGKey(0), subject.train_batch)
    _expect_equal(again, subject.state, "init twice with key 0")


def init_depends_on_key(subject: Subject, tolerance: float) -> None:
    """Another key gives other parameters."""
    a, b = subject.state, subject.init(subject.base, 1)
    floats = [
        (path, x, y)
        for (path, x), (_, y) in zip(_leaves(a), _leaves(b), strict=True)
        if np.issubdtype(x.dtype, np.floating) and np.any(x)
    ]
    if floats and all(np.array_equal(x, y) for _, x, y in floats):
        raise Failed(
            f"init with keys 0 and 1 gave the same {len(floats)} non-zero float arrays "
            f"(e.g. {floats[0][0]}): the key does not reach the initialisers"
        )


def no_float64(subject: Subject, tolerance: float) -> None:
    """No 64-bit float in the state, a step's outputs or the eval metrics when 64-bit
    types are enabled (jax_enable_x64): a default dtype left to JAX (jax.random.normal
    without one) or a NumPy float64 would double their memory and slow every step."""
    task, key = subject.base, jax.random.PRNGKey(0)
    try:
        with jax.enable_x64(True):
            state = jax.eval_shape(task.init, key, subject.train_batch)
            stepped = jax.eval_shape(task.train_step, state, subject.train_batch)
            evaluated = jax.eval_shape(task.eval_step, state, subject.eval_batch)
    except Exception as e:  # a float64 meeting a float32 where the op wants one dtype
        raise Failed(f"with jax_enable_x64 the task fails: {_first_line(e)}") from None
    trees = (("state", state), ("stepped state, metrics", stepped), ("eval", evaluated))
    wide = [
        f"{where} {jax.tree_util.keystr(path)}: {x.dtype}"
        for where, tree in trees
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
        if x.dtype in (np.float64, np.complex128)
    ]
    if wide:
        raise Failed(f"with jax_enable_x64, {len(wide)} arrays are 64-bit: {', '.join(wide[:4])}")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def step_is_deterministic(subject: Subject, tolerance: float) -> None:
    """The same state and batch give the same new state and metrics, bit for bit, run
    twice and traced twice (no hidden Python state, no host randomness)."""
    task, state = subject.base, subject.state
    _expect_equal(subject.step(task, state), subject.stepped, "the step run twice")
    again = _compile(task.train_step)(state, subject.train_batch)
    _expect_equal(again, subject.stepped, "the step traced twice")


def jit_matches_eager(subject: Subject, tolerance: float) -> None:
    """The jitted step agrees with the same step run op by op."""
    _expect_close(
        subject.stepped,
        subject.eager_stepped,
        tolerance,
        "the jitted step vs eager",
    )


def metrics_are_finite_scalars(subject: Subject, tolerance: float) -> None:
    """Train metrics are finite scalars; eval metrics are losses.Mean of finite scalars."""
    state = subject.state
    _, metrics = subject.stepped
    for name, value in metrics.items():
        value = np.asarray(value)
        if value.shape != ():
            raise Failed(f"train metric {name!r} has shape {value.shape}, not ()")
        if not np.isfinite(value):
            raise Failed(f"train metric {name!r} is {value} at step 0")
    for name, mean in subject.evaluate(state, subject.eval_batch).items():
        if not hasattr(mean, "compute"):
            raise Failed(f"eval metric {name!r} is a {type(mean).__name__}, not a losses.Mean")
        shapes = (np.shape(mean.total), np.shape(mean.count))
        if shapes != ((), ()):
            raise Failed(f"eval metric {name!r} has total, count shapes {shapes}, not ()")
        if not np.isfinite(mean.compute()):
            raise Failed(f"eval metric {name!r} is {mean.compute()}")


def step_randomness_changes(subject: Subject, tolerance: float) -> str | None:
    """A step's random draws (dropout, augmentation, noise) differ from the previous
    step's: its keys fold in the step number (through the task's own train_step)."""
    task, state = subject.base, subject.state
    if not hasattr(state, "rng"):
        raise Skipped("the state has no `rng`")
    at = lambda step, rng: _without_counters(
        subject.step(task, state.replace(step=jnp.asarray(step, jnp.int32), rng=rng))
    )
    if not subject.draws_at_random:
        return "the step draws nothing at random"
    this = at(FAR_STEP, state.rng)
    if _largest_difference(this, at(FAR_STEP + 1, state.rng), "")[0] == 0:
        raise Failed(
            f"steps {FAR_STEP} and {FAR_STEP + 1} drew the same random numbers (their outputs "
            "are bit-equal, while another rng changes them): fold the step into the key, "
            "jax.random.fold_in(state.rng, state.step)"
        )


def eval_ignores_padding(subject: Subject, tolerance: float) -> None:
    """Padding rows (mask False) change no eval metric."""
    state = subject.state
    batch = subject.eval_batch
    padded = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in batch.items()}
    padded["mask"] = np.concatenate([batch["mask"], np.zeros_like(batch["mask"])])
    _expect_close(
        _computed(subject.evaluate(state, padded)),
        _computed(subject.evaluate(state, batch)),
        tolerance,
        f"eval of {len(batch['mask'])} rows with as many padding rows vs without",
    )


def eval_batch_size_invariant(subject: Subject, tolerance: float) -> None:
    """The eval metrics of a batch equal those of two unequal parts of it merged."""
    state = subject.state
    batch = subject.eval_batch
    cut = max(1, len(batch["mask"]) // 4)
    first, second = (
        subject.evaluate(state, {k: v[part] for k, v in batch.items()})
        for part in (slice(None, cut), slice(cut, None))
    )
    merged = {name: mean.merge(second[name]) for name, mean in first.items()}
    _expect_close(
        _computed(merged),
        _computed(subject.evaluate(state, batch)),
        tolerance,
        f"eval of rows [:{cut}] and [{cut}:] merged vs of all {len(batch['mask'])} at once",
    )


def rows_independent(subject: Subject, tolerance: float) -> None:
    """In eval mode, a model's output for a row does not depend on the batch's other
    rows (the task's `row_outputs`)."""
    task, state = subject.base, subject.state
    if type(task).row_outputs is Task.row_outputs:
        raise Skipped(f"{type(task).__name__} has no row_outputs(state, batch)")
    batch = subject.eval_batch
    others_zero = {k: np.concatenate([v[:1], np.zeros_like(v[1:])]) for k, v in batch.items()}
    first_row = lambda b: jax.tree.map(lambda x: x[0], _jit(task.row_outputs)(state, b))
    _expect_close(
        first_row(others_zero),
        first_row(batch),
        tolerance,
        "row 0's eval outputs with the other rows zeroed vs with its batch",
    )


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def gradients_match_finite_differences(subject: Subject, tolerance: float) -> None:
    """The step's gradient (read off one plain SGD step of rate 1) agrees with central
    finite differences of its `loss` metric, along the gradient and a random direction."""
    sgd = dict(
        name="sgd",
        learning_rate=1.0,
        schedule="constant",
        warmup_fraction=0.0,
        clip="none",
        weight_decay=0.0,
    )
    task = subject.task({f"optimizer.{key}": value for key, value in sgd.items()})
    state = subject.init(task)
    if not all(hasattr(state, name) for name in ("params", "opt_state")):
        raise Skipped("the state has no single `params` (several parameter sets)")
    new_state, metrics = subject.step(task, state)
    if "loss" not in metrics:
        raise Skipped("the step reports no `loss` metric")
    params = _flat(state.params)
    gradient = params - _flat(new_state.params)
    _, unflatten = jax.flatten_util.ravel_pytree(state.params)
    loss_at = lambda flat: float(
        subject.step(task, state.replace(params=unflatten(flat.astype(np.float32))))[1]["loss"]
    )
    h = 1e-3 * max(1.0, float(np.linalg.norm(params)))
    random_direction = np.random.default_rng(0).normal(size=params.shape)
    for name, direction in (("the gradient", gradient), ("a random direction", random_direction)):
        length = float(np.linalg.norm(direction))
        if length == 0:
            continue
        unit = direction / length
        numeric = (loss_at(params + h * unit) - loss_at(params - h * unit)) / (2 * h)
        analytic = float(gradient @ unit)
        error = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-4)
        if error > tolerance:
            raise Failed(
                f"along {name}: the step's gradient gives {analytic:.5g}, finite differences "
                f"of `loss` (h={h:.2g}) {numeric:.5g} (relative {error:.3g} > tolerance "
                f"{tolerance:g})"
            )


def microbatches_match_whole_batch(subject: Subject, tolerance: float) -> None:
    """train.microbatches=2 takes the same step as the whole batch at once."""
    state = subject.state
    if getattr(state, "model_state", None):
        raise Skipped("the model keeps batch statistics (each micro-batch normalises by its own)")
    if subject.draws_at_random:
        raise Skipped("the step draws at random (per micro-batch): check with dropout off")
    parts = subject.step(subject.task({"train.microbatches": 2}), state)
    _expect_close(parts, subject.stepped, tolerance, "a step in 2 micro-batches vs one")


def vmapped_trials_match_separate(subject: Subject, tolerance: float) -> str | None:
    """Two trials (seeds 0 and 1, learning rates r and 2r) vmapped as one step take the
    steps they take as separate runs."""
    rate = subject.config.optimizer.learning_rate
    rates = np.asarray([rate, 2 * rate], np.float32)
    factory = lambda values: subject.task(optimizer_values=values)
    note = None
    try:
        factory({"learning_rate": jnp.float32(rate)})
        values = {"learning_rate": rates}
    except ConfigError:
        rates[1], values = rate, {}
        note = "the task's trials may differ only in seed"
    group = VmappedTask(factory, values, 2, trial_chunk(0, 2))
    stacked = {k: np.stack([v, v]) for k, v in subject.train_batch.items()}
    starts = group.starts(np.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]))
    states = _jit(group.init)(starts, stacked)
    states, metrics = _jit(group.train_step)(states, stacked)
    other = subject.task({"optimizer.learning_rate": float(rates[1])}) if values else subject.base
    for trial, alone in enumerate([subject.stepped, subject.step(other, subject.init(other, 1))]):
        vmapped = jax.tree.map(lambda x, t=trial: x[t], (states.trials, metrics))
        _expect_close(vmapped, alone, tolerance, f"trial {trial} vmapped vs alone")
    return note


def mesh_matches_single_device(subject: Subject, tolerance: float) -> None:
    """A step on a mesh of N devices (batch split, large arrays sharded: fsdp) agrees
    with the step on one device."""
    devices = jax.devices()
    count = max((n for n in (4, 2) if n <= len(devices)), default=1)
    if count == 1:
        raise Skipped("one device: give the process simulated devices (the jaxdl pytest plugin)")
    task = subject.base
    abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0), subject.train_batch)

    def step_on(mesh, sharding_mode: str):
        state_sharding = mesh_lib.state_shardings(abstract, mesh, sharding_mode)
        step = _compile(
            task.train_step,
            in_shardings=(state_sharding, mesh_lib.data_sharded(mesh)),
            out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
        )
        state = jax.device_put(subject.state, state_sharding)
        return jax.device_get(step(state, mesh_lib.shard_batch(subject.train_batch, mesh)))

    _expect_close(
        step_on(mesh_lib.make_mesh(devices[:count]), "fsdp"),
        step_on(mesh_lib.make_mesh(devices[:1]), "replicated"),
        tolerance,
        f"a step on {count} devices vs one",
    )


def checkpoint_roundtrip(subject: Subject, tolerance: float) -> None:
    """A trained state saved and restored (as the trainer restores: into the shapes of
    a fresh init) is the same, bit for bit."""
    task = subject.base
    state, _ = subject.stepped
    abstract = checkpoint.abstract_like(
        jax.eval_shape(task.init, jax.random.PRNGKey(0), subject.train_batch),
        jax.sharding.SingleDeviceSharding(jax.devices()[0]),
    )
    with tempfile.TemporaryDirectory(dir=subject.directory) as folder:
        saved = checkpoint.Checkpoints(Path(folder), keep=1)
        try:
            saved.save(1, state, {"next_batch": 1})
            saved.wait()
            restored, _ = saved.restore(1, abstract)
        finally:
            saved.close()
    _expect_equal(restored, state, "the state restored vs saved")


def bfloat16_close_to_float32(subject: Subject, tolerance: float) -> None:
    """With train.compute_dtype=bfloat16, the metrics named *loss* (of a train step and
    of eval) stay near float32's."""
    half = subject.task({"train.compute_dtype": "bfloat16"})
    state = subject.state
    pick = lambda metrics: {k: v for k, v in metrics.items() if "loss" in k}
    _expect_close(
        pick(subject.step(half, state)[1]),
        pick(subject.step(subject.base, state)[1]),
        tolerance,
        "the train step's losses in bfloat16 vs float32",
    )
    _expect_close(
        pick(_computed(subject.evaluate(state, subject.eval_batch, half))),
        pick(_computed(subject.evaluate(state, subject.eval_batch))),
        tolerance,
        "eval losses in bfloat16 vs float32",
    )


# name -> (check, default tolerance); run in this order.
PROPERTIES: dict[str, tuple[Callable, float]] = {
    "init_is_function_of_key": (init_is_function_of_key, 0.0),
    "init_depends_on_key": (init_depends_on_key, 0.0),
    "no_float64": (no_float64, 0.0),
    "step_is_deterministic": (step_is_deterministic, 0.0),
    "jit_matches_eager": (jit_matches_eager, 1e-3),
    "metrics_are_finite_scalars": (metrics_are_finite_scalars, 0.0),
    "step_randomness_changes": (step_randomness_changes, 0.0),
    "eval_ignores_padding": (eval_ignores_padding, 1e-5),
    "eval_batch_size_invariant": (eval_batch_size_invariant, 1e-5),
    "rows_independent": (rows_independent, 1e-5),
    "gradients_match_finite_differences": (gradients_match_finite_differences, 0.05),
    "microbatches_match_whole_batch": (microbatches_match_whole_batch, 1e-3),
    "vmapped_trials_match_separate": (vmapped_trials_match_separate, 1e-3),
    "mesh_matches_single_device": (mesh_matches_single_device, 1e-3),
    "checkpoint_roundtrip": (checkpoint_roundtrip, 0.0),
    "bfloat16_close_to_float32": (bfloat16_close_to_float32, 0.05),
}
