"""K trials of one config trained as one compiled step: a Task over a leading trial axis
and the outputs that give each trial a run directory of its own.

The trials may differ only in `seed` and the optimizer numbers of optim.TRACEABLE
(sweeps/grouping.py decides which trials may share a step). `VmappedTask` stacks their
states and takes per-trial batches; its step maps over the trials `chunk` at a time
(`lax.map` of `jax.vmap`): on CPU a step over all K has K times the working set and
falls out of cache. `TrialRunDirs` is the trainer's `outputs` for them: each trial gets
its own metrics, pictures, checkpoints and failed.txt, exactly as if it had run alone,
and a trial that turns non-finite stops alone.
"""

import operator
import statistics
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxdl.errors import UserError, check
from jaxdl.tasks.base import Task
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.rundir import RunDir


def trial_chunk(chunk: int, num_trials: int) -> int:
    """Trials per vmapped slice of the step: `chunk`, or when 0 all of them on
    accelerators and one on CPU (bench/results/sweep_vmap.md)."""
    check(chunk >= 0, f"sweep.vmap_chunk={chunk} must be >= 0 (0: the backend's choice)")
    if chunk:
        return min(chunk, num_trials)
    return 1 if jax.default_backend() == "cpu" else num_trials


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

    def init(self, rngs: jax.Array, example_batch: dict):
        return jax.vmap(self.inner.init)(rngs, example_batch)

    def train_step(self, states, batches: dict):
        step = lambda values, state, batch: self.factory(values).train_step(state, batch)
        return self._over_trials(step)(self.values, states, batches)

    def pretrain_step(self, states, batches: dict):
        step = lambda values, state, batch: self.factory(values).pretrain_step(state, batch)
        return self._over_trials(step)(self.values, states, batches)

    def eval_step(self, states, batch: dict) -> dict:  # every trial on the same eval batch
        return self._over_trials(lambda state: self.inner.eval_step(state, batch))(states)

    def images(self, states, batch: dict) -> dict:
        return self._over_trials(lambda state: self.inner.images(state, batch))(states)

    def init_from_data(self, states, train_arrays: dict):
        return self.inner.init_from_data(states, train_arrays)  # the same start for each trial

    def num_params(self, states) -> int:
        return self.inner.num_params(states) // self.num_trials


class TrialRunDirs:
    """The outputs (see rundir.RunDir) of K vmapped trials: values with a leading trial
    axis go, split, to each trial's RunDir; a failed trial gets nothing more."""

    def __init__(self, rundirs: list[RunDir], mesh):
        self.rundirs = rundirs
        self._replicated = mesh_lib.replicated(mesh)
        self._unstack = None  # compiled on the first save

    @property
    def path(self):
        """Where run-wide files go (a profile): the first trial's directory."""
        return self.rundirs[0].path

    def _live(self) -> list[int]:
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
        one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), abstract_states)
        restored = [rundir.restore(one, self._replicated) for rundir in self.rundirs]
        steps = [int(state.step) for state, _ in restored]
        if len(set(steps)) > 1:  # a damaged checkpoint made one trial fall back
            raise UserError(
                f"vmapped trials restored checkpoints of different steps ({steps}); run them "
                f"separately"
            )
        stack = jax.jit(
            lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s), out_shardings=sharding
        )
        return stack(*(state for state, _ in restored)), stack_positions([p for _, p in restored])

    def start(self, step: int, info: dict, example_batch: dict, total_steps: int) -> None:
        one = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in example_batch.items()}
        for rundir in self.rundirs:
            rundir.start(step, info, one, total_steps)

    def write(self, step: int, elapsed_s: float, row: dict) -> None:
        for k in self._live():
            self.rundirs[k].write(step, elapsed_s, _trial(row, k))

    def write_images(self, step: int, pictures: dict) -> None:
        for k in self._live():
            self.rundirs[k].write_images(step, _trial(pictures, k))

    def save(self, step: int, states, position: dict) -> None:
        if self._unstack is None:
            count = len(self.rundirs)
            self._unstack = mesh_lib.jit_unoptimised(
                lambda tree: [jax.tree.map(operator.itemgetter(k), tree) for k in range(count)],
                self._replicated,
            )
        trial_states = self._unstack(states)  # one call: indexing leaf by leaf dispatches a lot
        for k in self._live():
            self.rundirs[k].save(step, trial_states[k], _trial(position, k))

    def check_finite(self, step: int, elapsed_s: float, metrics: dict) -> str | None:
        for k in self._live():
            failure = self.rundirs[k].check_finite(step, elapsed_s, _trial(metrics, k))
            if failure:
                logging.warning("trial %s: %s", self.rundirs[k].name, failure)
        if self._live():
            return None
        return "; ".join(f"trial {rundir.name}: {rundir.failure}" for rundir in self.rundirs)

    def shown(self, row: dict) -> dict:
        """Each value's median over the live trials (marked ~)."""
        live = self._live()
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
