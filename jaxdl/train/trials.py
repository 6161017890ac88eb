"""K trials of one config trained as one compiled step: a Task over a leading trial axis
and the outputs that give each trial a run directory of its own.

The trials may differ only in `seed` and the optimizer numbers of optim.TRACEABLE
(grouping.py decides which trials may share a step). `VmappedTask` stacks their
states and takes per-trial batches; its step maps over the trials `chunk` at a time
(`lax.map` of `jax.vmap`): on CPU a step over all K has K times the working set and
falls out of cache. The trials' numbers are inputs of the compiled programs (`init`
takes them with the random keys, `TrialStarts`; the state keeps them, `Trials.values`),
not constants in them, so the next group of a sweep or search, with other numbers, runs
the same programs (from the compile cache, or already traced in a search worker).
`TrialRunDirs` is the trainer's `outputs` for them: each trial gets its own metrics,
pictures, checkpoints and failed.txt, exactly as if it had run alone, and a trial that
turns non-finite stops alone.
"""

import json
import operator
import statistics
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import struct

from jaxdl import backends
from jaxdl.errors import UserError, check
from jaxdl.tasks.base import AveragedTrainState, Task
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.loop import Hook, Loop
from jaxdl.train.rundir import RunDir


def trial_chunk(chunk: int, num_trials: int) -> int:
    """Trials per vmapped slice of the step on this backend (backends.vmap_chunk)."""
    check(chunk >= 0, f"sweep.vmap_chunk={chunk} must be >= 0 (0: the backend's choice)")
    return backends.vmap_chunk(chunk, jax.default_backend(), num_trials)


@struct.dataclass
class TrialStarts:
    """What a vmapped group's fresh state starts from (VmappedTask.init's first
    argument): each trial's random key and optimizer numbers."""

    rngs: jax.Array  # (K, 2) raw keys
    values: dict  # optimizer number -> (K,) float32


@struct.dataclass
class Trials:
    """K vmapped trials: their stacked states and each one's optimizer numbers."""

    trials: Any  # the K trials' stacked states
    values: dict  # optimizer number -> (K,) float32: each trial's

    @property
    def step(self) -> jax.Array:
        """The trials' steps (what the trainer reads of any state)."""
        return self.trials.step


class VmappedTask(Task):
    """`factory(values)`: the task of one trial, given its optimizer numbers (traced
    scalars; {} for the config's own). `values`: name -> (K,) array of each trial's."""

    def __init__(self, factory: Callable[[dict], Task], values: dict, num_trials: int, chunk: int):
        self.factory = factory
        self.values = values
        self.num_trials = num_trials
        self.chunk = chunk
        self.inner = factory({})  # init, eval and pictures do not read optimizer numbers
        self.pretrain_steps = self.inner.pretrain_steps

    def _over_trials(self, fn: Callable) -> Callable:
        """`fn` over a leading trial axis of every argument, `chunk` trials at a time."""
        return lambda *args: jax.lax.map(lambda a: fn(*a), args, batch_size=self.chunk)

    def _values(self) -> dict:
        return {name: jnp.asarray(v, jnp.float32) for name, v in self.values.items()}

    def starts(self, rngs) -> TrialStarts:
        """This group's start: the trials' random keys (K, 2) and its numbers."""
        return TrialStarts(rngs=jnp.asarray(rngs), values=self._values())

    def init(self, starts: TrialStarts, example_batch: dict) -> Trials:
        trials = jax.vmap(self.inner.init)(starts.rngs, example_batch)
        return Trials(trials=trials, values=starts.values)

    def train_step(self, states: Trials, batches: dict):
        step = lambda values, state, batch: self.factory(values).train_step(state, batch)
        trials, metrics = self._over_trials(step)(states.values, states.trials, batches)
        return states.replace(trials=trials), metrics

    def pretrain_step(self, states: Trials, batches: dict):
        step = lambda values, state, batch: self.factory(values).pretrain_step(state, batch)
        trials, metrics = self._over_trials(step)(states.values, states.trials, batches)
        return states.replace(trials=trials), metrics

    def eval_step(self, states: Trials, batch: dict) -> dict:  # every trial on the same batch
        return self._over_trials(lambda state: self.inner.eval_step(state, batch))(states.trials)

    def images(self, states: Trials, batch: dict) -> dict:
        return self._over_trials(lambda state: self.inner.images(state, batch))(states.trials)

    def init_from_data(self, states: Trials, train_sample: dict) -> Trials:
        # the same start for each trial
        return states.replace(trials=self.inner.init_from_data(states.trials, train_sample))

    def num_params(self, states: Trials) -> int:
        return self.inner.num_params(states.trials) // self.num_trials

    def saved(self, states: Trials) -> tuple:
        """(the stacked trial states each trial's checkpoint holds, {name: per-trial arrays}
        that go with each trial's position instead)."""
        return states.trials, {}

    def restored(self, trials, extras: dict) -> Trials:
        """The inverse of `saved` (the numbers: this group's, from its configs)."""
        return Trials(trials=trials, values=self._values())


@struct.dataclass
class Population(Trials):
    """K trials of population-based training: what PBT keeps of them besides their states
    and current numbers."""

    loss_sum: jax.Array  # (K,) the ranking metric summed since the last exploit
    count: jax.Array  # (K,) steps summed
    parent: jax.Array  # (K,) int32: whom each trial copied at the last exploit (-1: none)


class PopulationTask(VmappedTask):
    """Population-based training inside the compiled step. Every `every` steps the trials
    are ranked by their mean train `metric` since the previous exploit (lower is better);
    the worst `fraction` (worst first) copy the best ones (best first): parameters,
    optimizer state, batch statistics and weight average, keeping their own random key
    and data, and their optimizer numbers become the copied trial's times a factor drawn
    from `factors` (one draw per number and trial, from the key of `seed` and the step).
    Not at step `total_steps`: a copy then would never train (its numbers unused, its
    final eval its source's). No shape changes, so nothing is compiled again. Tasks with
    a TrainState only."""

    def __init__(
        self,
        factory,
        values: dict,
        num_trials: int,
        chunk: int,
        *,
        every: int,
        fraction: float,
        factors: tuple,
        seed: int,
        total_steps: int,
        metric: str = "loss",
    ):
        super().__init__(factory, values, num_trials, chunk)
        check(every >= 1, f"sweep.pbt_every={every} must be >= 1")
        check(0 < fraction <= 0.5, f"sweep.pbt_fraction={fraction} must be in (0, 0.5]")
        check(len(factors) > 0 and all(f > 0 for f in factors), "sweep.pbt_factors must be > 0")
        self.every, self.fraction, self.factors = every, fraction, tuple(factors)
        self.seed, self.total_steps, self.metric = seed, total_steps, metric
        self.copies = max(1, int(num_trials * fraction))

    def init(self, starts: TrialStarts, example_batch: dict) -> Population:
        k, start = self.num_trials, super().init(starts, example_batch)
        return Population(
            trials=start.trials,
            values=start.values,
            loss_sum=jnp.zeros(k, jnp.float32),
            count=jnp.zeros(k, jnp.int32),
            parent=jnp.full(k, -1, jnp.int32),
        )

    def train_step(self, population: Population, batches: dict):
        population, metrics = super().train_step(population, batches)
        population = population.replace(
            loss_sum=population.loss_sum + metrics[self.metric],
            count=population.count + 1,
        )
        step = population.trials.step[0]
        due = (step % self.every == 0) & (step < self.total_steps)
        return jax.lax.cond(due, self.exploit_and_explore, lambda p: p, population), metrics

    def exploit_and_explore(self, population: Population) -> Population:
        k = self.num_trials
        mean = population.loss_sum / jnp.maximum(population.count, 1)
        order = jnp.argsort(mean, stable=True)  # best first
        best, worst = order[: self.copies], order[::-1][: self.copies]
        source = jnp.arange(k).at[worst].set(best)
        moved = source != jnp.arange(k)
        take = lambda tree: jax.tree.map(lambda x: x[source], tree)
        trials = population.trials
        changes = dict(
            params=take(trials.params),
            opt_state=take(trials.opt_state),
            model_state=take(trials.model_state),
        )
        if isinstance(trials, AveragedTrainState):
            changes["ema_params"] = take(trials.ema_params)
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trials.step[0])
        draws = jax.random.choice(key, jnp.asarray(self.factors), (len(self.values), k))
        values = {
            name: jnp.where(
                moved, population.values[name][source] * draws[i], population.values[name]
            )
            for i, name in enumerate(sorted(population.values))
        }
        return population.replace(
            trials=trials.replace(**changes),
            values=values,
            loss_sum=jnp.zeros_like(population.loss_sum),
            count=jnp.zeros_like(population.count),
            parent=jnp.where(moved, source, -1).astype(jnp.int32),
        )

    def saved(self, population: Population) -> tuple:
        extras = {
            "values": population.values,
            "loss_sum": population.loss_sum,
            "count": population.count,
            "parent": population.parent,
        }
        return population.trials, {"population": extras}

    def restored(self, trials, extras: dict) -> Population:
        saved = extras["population"]
        per_trial = lambda x, dtype: jnp.broadcast_to(jnp.asarray(x, dtype), (self.num_trials,))
        return Population(
            trials=trials,
            values={n: per_trial(v, jnp.float32) for n, v in saved["values"].items()},
            loss_sum=per_trial(saved["loss_sum"], jnp.float32),
            count=per_trial(saved["count"], jnp.int32),
            parent=per_trial(saved["parent"], jnp.int32),
        )


class Lineage(Hook):
    """PBT's record in each trial's run directory: lineage.jsonl, one row at the start and
    after each exploit (PopulationTask's steps: every `every`, before the last): {"step",
    "copied": the trial it copied (or null), and its optimizer numbers}."""

    FILE = "lineage.jsonl"

    def __init__(self, every: int):
        self.every = every

    def start(self, loop: Loop) -> None:
        for rundir in loop.outputs.rundirs:
            path = rundir.path / self.FILE
            if rundir.chief and path.exists():  # a resumed run: rows after its step go
                rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
                kept = [r for r in rows if r["step"] <= loop.step]
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if loop.step == 0:
            self._write(loop)

    def __call__(self, loop: Loop) -> None:
        if loop.step % self.every == 0 and loop.step < loop.total_steps:
            self._write(loop)

    def _write(self, loop: Loop) -> None:
        parent, values = jax.device_get((loop.state.parent, loop.state.values))
        rundirs = loop.outputs.rundirs
        for k, rundir in enumerate(rundirs):
            if not rundir.chief:
                continue
            row = {"step": loop.step, "copied": rundirs[parent[k]].name if parent[k] >= 0 else None}
            row.update({name: float(v[k]) for name, v in values.items()})
            with (rundir.path / self.FILE).open("a") as f:
                f.write(json.dumps(row) + "\n")


class TrialRunDirs:
    """The outputs (see rundir.RunDir) of K vmapped trials: values with a leading trial
    axis go, split, to each trial's RunDir; a failed trial gets nothing more (it is
    still computed: the step's shapes stay)."""

    def __init__(self, rundirs: list[RunDir], mesh, task: VmappedTask):
        self.rundirs = rundirs
        self.task = task  # what of its state each trial's checkpoint holds (task.saved)
        self._replicated = mesh_lib.replicated(mesh)
        self._unstack = None  # compiled on the first save

    @property
    def path(self):
        """Where run-wide files go (a profile): the first trial's directory."""
        return self.rundirs[0].path

    def live(self) -> list[int]:
        """The trials still written: those that have not failed."""
        return [k for k, rundir in enumerate(self.rundirs) if rundir.failure is None]

    def latest_step(self) -> int | None:
        steps = {rundir.latest_step() for rundir in self.rundirs}
        if len(steps) != 1:
            raise UserError(
                f"vmapped trials have checkpoints at different steps "
                f"({sorted(steps, key=str)}); run them separately"
            )
        return steps.pop()

    def restore(self, abstract_states, sharding) -> tuple:
        """The trials' newest checkpoints stacked into one state placed with `sharding`
        (one, or a tree of them for the stacked state)."""
        inner, extra_names = self.task.saved(abstract_states)
        one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), inner)
        restored = [rundir.restore(one, self._replicated) for rundir in self.rundirs]
        steps = [int(state.step) for state, _ in restored]
        if len(set(steps)) > 1:  # a damaged checkpoint made one trial fall back
            raise UserError(
                f"vmapped trials restored checkpoints of different steps ({steps}); run them "
                f"separately"
            )
        if not isinstance(sharding, jax.sharding.Sharding):
            sharding = self.task.saved(sharding)[0]
        stack = jax.jit(
            lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s), out_shardings=sharding
        )
        position = stack_positions([p for _, p in restored])
        extras = {key: position.pop(key) for key in extra_names}
        return self.task.restored(stack(*(state for state, _ in restored)), extras), position

    def start(self, step: int, info: dict, example_batch: dict, total_steps: int) -> None:
        one = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in example_batch.items()}
        for k, rundir in enumerate(self.rundirs):
            rundir.start(step, info, one, total_steps, log=k == 0)

    def write(self, step: int, elapsed_s: float, row: dict) -> None:
        for k in self.live():
            self.rundirs[k].write(step, elapsed_s, _trial(row, k))

    def write_images(self, step: int, pictures: dict) -> None:
        for k in self.live():
            self.rundirs[k].write_images(step, _trial(pictures, k))

    def save(self, step: int, states, position: dict, row: dict | None = None) -> None:
        if self._unstack is None:
            count = len(self.rundirs)
            self._unstack = mesh_lib.jit_unoptimised(
                lambda tree: [jax.tree.map(operator.itemgetter(k), tree) for k in range(count)],
                self._replicated,
            )
        states, extras = self.task.saved(states)
        position = {**position, **jax.device_get(extras)}
        trial_states = self._unstack(states)  # one call: indexing leaf by leaf dispatches a lot
        for k in self.live():
            self.rundirs[k].save(step, trial_states[k], _trial(position, k), _trial(row, k))

    def check_finite(self, step: int, elapsed_s: float, metrics: dict) -> str | None:
        for k in self.live():
            failure = self.rundirs[k].check_finite(step, elapsed_s, _trial(metrics, k))
            if failure:
                logging.warning("trial %s: %s", self.rundirs[k].name, failure)
        if self.live():
            return None
        return "; ".join(f"trial {rundir.name}: {rundir.failure}" for rundir in self.rundirs)

    def mark_stopped(self, reason: str) -> None:
        for k in self.live():
            self.rundirs[k].mark_stopped(reason)

    def shown(self, row: dict) -> dict:
        """Each value's median over the live trials (marked ~)."""
        live = self.live()
        numbers = {k: v for k, v in row.items() if not isinstance(v, str)}
        return {
            f"{k}~": statistics.median(float(np.asarray(v)[t]) for t in live)
            for k, v in numbers.items()
            if live
        }

    def result(self, metrics: dict) -> list:
        return [rundir.result(_trial(metrics, k)) for k, rundir in enumerate(self.rundirs)]

    def poll_saves(self) -> None:
        for rundir in self.rundirs:
            rundir.poll_saves()

    def wait(self) -> None:
        for rundir in self.rundirs:
            rundir.wait()

    def plot(self) -> None:
        for rundir in self.rundirs:
            rundir.plot()

    def close(self) -> None:
        for rundir in self.rundirs:
            rundir.close()


def _trial(tree, k: int):
    """Trial k's part of a host tree: arrays with a leading trial axis are indexed,
    anything else (strings, shared numbers) is everyone's."""
    return jax.tree.map(
        lambda x: x[k] if isinstance(x, np.ndarray | jax.Array) and np.ndim(x) else x, tree
    )


def stack_positions(positions: list[dict]) -> dict:
    """The trials' saved positions as one: a number equal in every trial is kept once,
    the others stacked into an array over trials (what _trial splits again)."""
    same = lambda *xs: all(x == xs[0] for x in xs)
    return jax.tree.map(lambda *xs: xs[0] if same(*xs) else np.stack(xs), *positions)
