"""The trainer's hooks (loop.Hook): each periodic concern, small and on its own cadence.

`default_hooks` is what `launch/train.py` runs, in this order (a step's hooks fire in
list order and end in reverse): StopOnSignal, StopOnNonFinite, TimeBudget, LogMetrics,
Evaluate, DrawImages, Checkpoint, PlotMetrics, Profile (with train.profile); extra
hooks follow them.
"""

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxdl.errors import NonFiniteLossError, check
from jaxdl.train.loop import BUDGET, DONE, SIGNAL, Hook, Loop
from jaxdl.train.progress import Progress


class StopOnSignal(Hook):
    """SIGTERM (preemption) and SIGINT stop the loop at the next step boundary, where the
    checkpoint hook saves. Any further signal is ignored until the loop has ended (the
    hook ends last, after the checkpoint is complete); then the handlers from before are
    back, unless `ignore_after_stop`: a launcher that exits after training (launch/train.py)
    sets it, so that once a signal has stopped the loop, later ones are ignored until the
    process exits, which is what the signal asked for. In a multi-process job a SIGTERM to
    any one process stops all of them at the same step, through JAX's preemption sync
    (multihost_utils.reached_preemption_sync_point)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    # Off for in-process use: an ignored SIGTERM would outlive the run and pass to every
    # child process started later (ignored dispositions survive exec).
    ignore_after_stop = False

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received:
            logging.warning("%s while stopping for %s: ignored", name, self.received)
        self.received = self.received or name

    def start(self, loop: Loop) -> None:
        self.processes = jax.process_count()
        if self.processes == 1:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        else:  # JAX's preemption service hears SIGTERM; SIGINT becomes one
            self._previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._to_sigterm)}

    def _to_sigterm(self, signum, frame) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def after_step(self, loop: Loop) -> None:
        # In a job, a SIGTERM to any process reaches all; they stop at one agreed step.
        if self.processes > 1 and multihost_utils.reached_preemption_sync_point(loop.step):
            self.received = "SIGTERM"
        if self.received:
            loop.request_stop(SIGNAL, self.received)

    def end(self, loop: Loop) -> None:
        for s, handler in self._previous.items():
            # Ignored for good: Python's own exit would put back the default handler of a
            # Python-level one, and a late SIGTERM would kill the exiting process.
            for_good = self.received and self.ignore_after_stop
            signal.signal(s, signal.SIG_IGN if for_good else handler)
        # In process, a Python handler this one stood in for (a search worker's) hears the
        # signal too: it may have come too late to stop the loop, and its sender waits.
        if self.received and not self.ignore_after_stop:
            signum = signal.Signals[self.received]
            heard = self._previous.get(signum)
            if callable(heard):
                heard(signum, None)


class StopOnNonFinite(Hook):
    """A non-finite metric stops the run (for vmapped trials: the trial; the run when
    none is left) before anything of that step is kept; the last good checkpoint stays."""

    def on_metrics(self, loop: Loop, step: int, metrics) -> None:
        failure = loop.outputs.check_finite(step, loop.elapsed(), metrics)
        if failure:
            raise NonFiniteLossError(failure)


class TimeBudget(Hook):
    """Stops the loop once `max_seconds` of the run (counted across resumes) have passed.
    In a multi-process job process 0's clock decides, every AGREE_EVERY steps."""

    AGREE_EVERY = 10

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds

    def after_step(self, loop: Loop) -> None:
        if not self.max_seconds:
            return
        over = loop.elapsed() >= self.max_seconds
        if jax.process_count() > 1:
            if loop.step % self.AGREE_EVERY:
                return
            over = bool(multihost_utils.broadcast_one_to_all(np.asarray(over)))
        if over:
            loop.request_stop(BUDGET, f"time budget of {self.max_seconds:g}s")


class LogMetrics(Hook):
    """Every `every` steps: each train metric's mean over the steps since the previous
    row (train/<name>) and the progress line (rate, ETA); also on the last step. A row
    at a stop by signal or budget off the cadence says so (`stop`) and leaves the window
    open; the window's sums are saved with checkpoints, so a resumed run writes every
    row a straight run writes."""

    def __init__(
        self, every: int, items_per_step: int, unit: str, max_seconds: float, total_steps: int
    ):
        self.every = every
        self._progress_args = (total_steps, items_per_step, unit, max_seconds)
        self.totals: dict = {}
        self.count = 0
        self._hook_seconds = 0.0

    def start(self, loop: Loop) -> None:
        window = loop.position.get("log_window", {"count": 0, "totals": {}})
        self.count = window["count"]
        self.totals = {name: np.asarray(total) for name, total in window["totals"].items()}
        self.progress = Progress(*self._progress_args, loop.step, loop.elapsed())

    def on_metrics(self, loop: Loop, step: int, metrics) -> None:
        for name, value in metrics.items():
            self.totals[name] = self.totals.get(name, 0.0) + np.asarray(value, np.float64)
        self.count += 1

    def __call__(self, loop: Loop) -> None:
        if not self.count:
            return
        means = {f"train/{name}": total / self.count for name, total in self.totals.items()}
        loop.row.update(means)
        if loop.step % self.every and loop.stop.kind != DONE:
            loop.row["stop"] = loop.stop.reason  # between rows: the window goes on on resume
        else:
            self.totals, self.count = {}, 0
        self.progress.exclude(loop.hook_seconds - self._hook_seconds)
        self._hook_seconds = loop.hook_seconds
        shown = {
            name.removeprefix("train/"): value
            for name, value in loop.outputs.shown(means).items()
            if not name.startswith("train/learning_rate")
        }
        logging.info("%s", self.progress.line(loop.step, loop.elapsed(), shown))

    def position(self) -> dict:
        return {"log_window": {"count": self.count, "totals": self.totals}}


class Evaluate(Hook):
    """Every `every` steps and at the end (not on a signal: that stop must be quick):
    the eval metrics (eval/<name>) of `evaluate(state) -> {name: losses.Mean}` (host)."""

    at_stop = (DONE, BUDGET)

    def __init__(self, every: int, evaluate: Callable):
        self.every = every
        self.evaluate = evaluate
        self.last: dict = {}  # the newest eval metrics (what training returns)

    def __call__(self, loop: Loop) -> None:
        started = time.perf_counter()
        self.last = {name: mean.compute() for name, mean in self.evaluate(loop.state).items()}
        loop.row.update({f"eval/{name}": value for name, value in self.last.items()})
        shown = loop.outputs.shown({f"eval/{n}": v for n, v in self.last.items()})
        logging.info(
            "step %d eval (%.1f s): %s",
            loop.step,
            time.perf_counter() - started,
            " ".join(f"{k}={v:.4g}" for k, v in shown.items()),
        )


class DrawImages(Hook):
    """With each eval: the task's pictures of `draw(state) -> {name: uint8 array}` (on
    the first eval batch) into workdir/images/<name>_<step>.png."""

    at_stop = (DONE, BUDGET)

    def __init__(self, every: int, draw: Callable):
        self.every = every
        self.draw = draw

    def __call__(self, loop: Loop) -> None:
        loop.outputs.write_images(loop.step, jax.device_get(self.draw(loop.state)))


class Checkpoint(Hook):
    """Every `every` steps and at every stop: the state and loop.checkpoint_position()
    (async; a save that fails stops the run at the next step with one line; the end
    waits until every save is complete), with the step's row so far (an eval before it
    ranks the checkpoint for train.keep_best)."""

    def __init__(self, every: int):
        self.every = every

    def after_step(self, loop: Loop) -> None:
        loop.outputs.poll_saves()  # a failed save (disk full) stops the run at once

    def __call__(self, loop: Loop) -> None:
        loop.outputs.save(loop.step, loop.state, loop.checkpoint_position(), dict(loop.row))

    def end(self, loop: Loop) -> None:
        loop.outputs.wait()


class Profile(Hook):
    """A JAX profiler trace of steps start+1 .. stop into `directory` (TensorBoard's
    profile plugin, xprof, reads it): the trace starts when step `start` has been
    dispatched and stops once step `stop` has finished. The steps' phases are named
    (forward, backward, optimizer: tasks/base.py). Starting and writing the trace count
    as hook time, so the progress line's rate and ETA leave them out."""

    def __init__(self, start: int, stop: int, directory: Path):
        self.first, self.last, self.directory = start, stop, Path(directory)
        self.tracing = False

    def due(self, step: int, stop) -> bool:
        return step == self.first or (self.tracing and (step >= self.last or stop is not None))

    def __call__(self, loop: Loop) -> None:
        if not self.tracing:
            jax.profiler.start_trace(str(self.directory))
            self.tracing = True
            logging.info(
                "profiling steps %d..%d into %s", self.first + 1, self.last, self.directory
            )
        else:
            self._finish(loop)

    def _finish(self, loop: Loop) -> None:
        jax.block_until_ready(loop.state)
        jax.profiler.stop_trace()
        self.tracing = False
        logging.info("profile of steps %d..%d written", self.first + 1, loop.step)

    def end(self, loop: Loop) -> None:
        if self.tracing:
            self._finish(loop)


def parse_profile(window: str) -> tuple[int, int] | None:
    """ "START:STOP" -> (START, STOP); "" -> None; anything else a ConfigError."""
    if not window:
        return None
    start, sep, stop = window.partition(":")
    try:
        start, stop = int(start), int(stop)
    except ValueError:
        start = stop = -1
    check(
        sep == ":" and 0 <= start < stop,
        f"train.profile={window!r} must be START:STOP steps with 0 <= START < STOP",
    )
    return start, stop


class PlotMetrics(Hook):
    """When the run ends: every metric of metrics.jsonl into workdir/metrics.png."""

    def end(self, loop: Loop) -> None:
        loop.outputs.plot()


def default_hooks(
    train_cfg,
    evaluator: Evaluate,
    draw: Callable | None,
    items_per_step: int,
    unit: str,
    total_steps: int,
    workdir: Path,
) -> list[Hook]:
    """The hooks of config.train (see the module doc) around `evaluator` (the caller
    keeps it: its last eval is the run's result); `draw` None: no pictures, else drawn
    with each eval."""
    hooks = [
        StopOnSignal(),
        StopOnNonFinite(),
        TimeBudget(train_cfg.max_seconds),
        LogMetrics(train_cfg.log_every, items_per_step, unit, train_cfg.max_seconds, total_steps),
        evaluator,
        *([DrawImages(evaluator.every, draw)] if draw else []),
        Checkpoint(train_cfg.checkpoint_every),
    ]
    if train_cfg.plot:
        hooks.append(PlotMetrics())
    window = parse_profile(train_cfg.profile)
    if window:
        hooks.append(Profile(*window, Path(workdir) / "profile"))
    return hooks


__all__ = [
    "Checkpoint",
    "DrawImages",
    "Evaluate",
    "LogMetrics",
    "PlotMetrics",
    "Profile",
    "StopOnNonFinite",
    "StopOnSignal",
    "TimeBudget",
    "default_hooks",
]
