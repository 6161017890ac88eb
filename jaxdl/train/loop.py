"""The training loop: runs compiled steps over batches and calls hooks.

It knows no model family and no trial count. Everything periodic (logging, evaluation,
pictures, checkpoints, stopping on a signal, a time budget or a non-finite value,
profiling) is a `Hook` (hooks.py); a user adds one by passing it. A hook sees the
`Loop`: the step, the state, why the loop is ending, and `outputs`, the run's directory
(or, for vmapped trials, one per trial: trials.py), where rows, pictures and
checkpoints go.

Metrics are fetched from the device one step late, so the host never waits for the step
it just dispatched; before any hook fires at a step, the metrics up to that step are
fetched and shown to every hook's `on_metrics` (the non-finite guard among them), so a
checkpoint never follows a non-finite value.
"""

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import jax
from absl import logging

# Why a loop ends: its kind decides which hooks still fire (Hook.at_stop). REQUESTED: a
# hook asked (a search's pruner, an early stop).
DONE, BUDGET, SIGNAL, REQUESTED = "done", "budget", "signal", "requested"


@runtime_checkable
class Outputs(Protocol):
    """What the loop and its hooks write a run through (rundir.RunDir, trials.TrialRunDirs;
    the run assembly's side: plan.RunOutputs)."""

    def write(self, step: int, elapsed_s: float, row: dict) -> None: ...
    def write_images(self, step: int, pictures: dict) -> None: ...
    def save(self, step: int, state, position: dict, row: dict | None = None) -> None: ...
    def check_finite(self, step: int, elapsed_s: float, metrics: dict) -> str | None: ...
    def shown(self, row: dict) -> dict: ...
    def poll_saves(self) -> None: ...
    def wait(self) -> None: ...
    def plot(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Stop:
    kind: str  # DONE, BUDGET or SIGNAL
    reason: str  # for the log: "done", "time budget of 60s", "SIGTERM"


class Hook:
    """A periodic concern. It fires (`__call__`) every `every` steps (0: never on a
    cadence) and on the last step when the loop ends for a reason in `at_stop`. Any
    method may be left as it is."""

    every: int = 0
    at_stop: tuple = (DONE, BUDGET, SIGNAL, REQUESTED)

    def due(self, step: int, stop: Stop | None) -> bool:
        periodic = self.every > 0 and step % self.every == 0
        return periodic or (stop is not None and stop.kind in self.at_stop)

    def start(self, loop: "Loop") -> None:
        """Before the first step (after a resume: `loop.position` holds what was saved)."""

    def after_step(self, loop: "Loop") -> None:
        """After every step, before the due hooks: cheap checks that may set `loop.stop`."""

    def on_metrics(self, loop: "Loop", step: int, metrics: Any) -> None:
        """Every step's metrics, on the host, in step order (at most one step late)."""

    def __call__(self, loop: "Loop") -> None:
        """When due."""

    def end(self, loop: "Loop") -> None:
        """When the loop ends, however it ends (hooks end in reverse order)."""

    def position(self) -> dict:
        """What this hook keeps across a resume, saved with each checkpoint (JSON-able;
        numpy arrays with a leading trial axis are split per trial: trials.py)."""
        return {}


@dataclasses.dataclass
class Loop:
    """What hooks see and change."""

    state: Any
    step: int
    total_steps: int
    outputs: Outputs
    position: dict  # the data position, elapsed time and hooks' positions at the start
    next_batch: int = 0
    stop: Stop | None = None
    row: dict = dataclasses.field(default_factory=dict)  # this step's metrics.jsonl values
    hook_seconds: float = 0.0  # time spent in due hooks (left out of the training rate)
    hooks: Sequence[Hook] = ()
    started: float = dataclasses.field(default_factory=time.perf_counter)  # this process
    eval_every: int = 0  # the run's eval cadence (steps), for hooks that act on its evals

    def elapsed(self) -> float:
        """Seconds of this run, counted across resumes."""
        return float(self.position.get("elapsed_s", 0.0)) + time.perf_counter() - self.started

    def request_stop(self, kind: str, reason: str) -> None:
        self.stop = self.stop or Stop(kind, reason)

    def checkpoint_position(self) -> dict:
        """What a checkpoint saved now keeps besides the state: the next batch, the
        elapsed time and every hook's position."""
        position = {"next_batch": self.next_batch, "elapsed_s": self.elapsed()}
        for hook in self.hooks:
            position.update(hook.position())
        return position


def fit(
    steps: Callable[[int], Callable],
    loop: Loop,
    batches: Iterator[tuple[int, Any]],
    hooks: Sequence[Hook],
) -> Loop:
    """Runs `steps(step)(state, batch) -> (state, metrics)` on `batches` ((index,
    batch) pairs) from `loop.step` until a hook or the step count stops it."""
    loop.hooks = hooks
    pending = []  # [(step, metrics on device)]: at most the newest step's

    def show_metrics(keep_newest: bool) -> None:
        while len(pending) > keep_newest:
            step, metrics = pending.pop(0)
            host = jax.device_get(metrics)
            for hook in hooks:
                hook.on_metrics(loop, step, host)

    for hook in hooks:
        hook.start(loop)
    try:
        while loop.stop is None and loop.step < loop.total_steps:
            index, batch = next(batches)
            loop.state, metrics = steps(loop.step)(loop.state, batch)
            loop.step, loop.next_batch = loop.step + 1, index + 1
            pending.append((loop.step, metrics))
            show_metrics(keep_newest=True)
            if loop.step >= loop.total_steps:
                loop.request_stop(DONE, "done")
            for hook in hooks:
                hook.after_step(loop)
            due = [hook for hook in hooks if hook.due(loop.step, loop.stop)]
            if due:
                started = time.perf_counter()
                show_metrics(keep_newest=False)
                stop = loop.stop
                for hook in due:
                    hook(loop)
                if loop.stop != stop:  # a hook stopped the loop: what is due at a stop, now
                    for hook in hooks:
                        if hook not in due and hook.due(loop.step, loop.stop):
                            hook(loop)
                if loop.row:
                    loop.outputs.write(loop.step, loop.elapsed(), loop.row)
                    loop.row = {}
                loop.hook_seconds += time.perf_counter() - started
    except BaseException:
        _end(hooks, loop, failing=True)
        raise
    _end(hooks, loop, failing=False)
    return loop


def _end(hooks: Sequence[Hook], loop: Loop, failing: bool) -> None:
    """Every hook's `end`, in reverse order, even when one raises: while the loop is
    failing already, their errors are logged (the first error is what the user sees);
    otherwise the first is raised once all have ended."""
    errors = []
    for hook in reversed(hooks):
        try:
            hook.end(loop)
        except Exception as e:
            if failing:
                logging.warning("while stopping, %s: %s", type(hook).__name__, e)
            errors.append(e)
    if errors and not failing:
        raise errors[0]
