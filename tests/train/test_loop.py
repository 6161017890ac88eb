"""The loop and its hooks in-process, with a fake task and a recording run directory:
what fires at which step, at the end, on SIGTERM, on a non-finite value, on a budget."""

import os
import signal

import numpy as np
import pytest

from jaxdl.errors import NonFiniteLossError
from jaxdl.losses import Mean
from jaxdl.train import hooks as hooks_lib
from jaxdl.train.loop import DONE, SIGNAL, Hook, Loop, fit


class RecordingRunDir:
    """Outputs (loop.Outputs) that keep what they are given."""

    def __init__(self):
        self.rows, self.saves, self.pictures, self.failure = [], [], [], None
        self.waited = self.plotted = False

    def write(self, step, elapsed_s, row):
        self.rows.append({"step": step, **row})

    def write_images(self, step, pictures):
        self.pictures.append(step)

    def save(self, step, state, position, row=None):
        self.saves.append((step, state, position))

    def check_finite(self, step, elapsed_s, metrics):
        bad = [n for n, v in metrics.items() if not np.isfinite(v)]
        if bad and self.failure is None:
            self.failure = f"non-finite train/{bad[0]} at step {step}"
        return self.failure

    def shown(self, row):
        return {k: float(v) for k, v in row.items() if not isinstance(v, str)}

    def poll_saves(self):
        pass

    def wait(self):
        self.waited = True

    def plot(self):
        self.plotted = True


class Fired(Hook):
    """Records the steps it fired at, and why the loop was ending."""

    def __init__(self, every, at_stop=(DONE,)):
        self.every, self.at_stop, self.calls = every, at_stop, []

    def __call__(self, loop):
        self.calls.append((loop.step, loop.stop.kind if loop.stop else None))


def loss_at(step: int) -> float:
    return 1.0 / step  # the loss the fake task reports for its step-th step


def steps(nan_at=None, signal_at=None):
    """A fake task's step: the state counts steps; the loss is loss_at(step)."""

    def step(state, batch):
        new = state + 1
        if new == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        loss = np.nan if new == nan_at else loss_at(new)
        return new, {"loss": np.float32(loss)}

    return lambda at_step: step


def batches():
    index = 0
    while True:
        yield index, {}
        index += 1


def run(total=10, step=0, position=None, extra=(), max_seconds=0.0, **faults):
    outputs = RecordingRunDir()

    def evaluate(state):
        return {"loss": Mean(np.float32(state), np.float32(1))}

    hooks = [
        hooks_lib.StopOnSignal(),
        hooks_lib.StopOnNonFinite(),
        hooks_lib.TimeBudget(max_seconds),
        hooks_lib.LogMetrics(4, 32, "ex", max_seconds, total),
        hooks_lib.Evaluate(5, evaluate),
        hooks_lib.DrawImages(5, lambda state: {"grid": np.zeros((2, 2), np.uint8)}),
        hooks_lib.Checkpoint(3),
        hooks_lib.PlotMetrics(),
        *extra,
    ]
    position = position or {"next_batch": step, "elapsed_s": 0.0}
    loop = Loop(step, step, total, outputs, position, position["next_batch"])
    fit(steps(**faults), loop, batches(), hooks)
    return loop, outputs, hooks


def test_each_hook_fires_on_its_cadence_and_at_the_end():
    fired = Fired(every=2)
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    loop, outputs, hooks = run(extra=[fired])
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
    assert loop.step == 10 and loop.stop.kind == DONE and loop.state == 10
    assert fired.calls == [(2, None), (4, None), (6, None), (8, None), (10, DONE)]
    rows = {r["step"]: r for r in outputs.rows}
    assert sorted(rows) == [4, 5, 8, 10]  # log every 4, eval every 5, and the last step
    assert rows[4]["train/loss"] == pytest.approx(np.mean([loss_at(s) for s in range(1, 5)]))
    assert rows[10]["train/loss"] == pytest.approx(np.mean([loss_at(9), loss_at(10)]))
    assert "stop" not in rows[10]  # the planned end is a row like any other
    assert rows[5]["eval/loss"] == 5.0 and rows[10]["eval/loss"] == 10.0
    assert "train/loss" not in rows[5]
    assert [s for s, _, _ in outputs.saves] == [3, 6, 9, 10]
    assert outputs.pictures == [5, 10]
    assert outputs.waited and outputs.plotted
    evaluate = next(h for h in hooks if isinstance(h, hooks_lib.Evaluate))
    assert evaluate.last == {"loss": 10.0}


def test_sigterm_stops_at_the_next_step_saves_without_eval_and_ignores_a_second_one(
    monkeypatch,
):
    class SecondSignal(Hook):  # another SIGTERM while the stop's checkpoint is saved
        def __call__(self, loop):
            if loop.stop:
                os.kill(os.getpid(), signal.SIGTERM)

    fired = Fired(every=0, at_stop=(SIGNAL,))
    monkeypatch.setattr(hooks_lib.StopOnSignal, "ignore_after_stop", True)  # as launchers do
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        loop, outputs, _ = run(total=100, signal_at=7, extra=[fired, SecondSignal()])
        os.kill(os.getpid(), signal.SIGTERM)  # still ignored: the process is on its way out
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert loop.step == 7 and loop.stop.kind == SIGNAL and loop.stop.reason == "SIGTERM"
    assert fired.calls == [(7, SIGNAL)]
    assert [s for s, _, _ in outputs.saves] == [3, 6, 7]
    last = outputs.rows[-1]
    assert last["step"] == 7 and last["stop"] == "SIGTERM" and "eval/loss" not in last
    assert outputs.pictures == [5]


def test_in_process_a_signal_stop_gives_the_handlers_back():
    # An ignored SIGTERM would outlive the run, in this process and every child it starts.
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    loop, _, _ = run(total=12, signal_at=6)
    assert loop.stop.kind == SIGNAL
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers


def test_a_resumed_run_writes_the_rows_of_a_straight_run():
    _, straight, _ = run(total=12)
    _, stopped, _ = run(total=12, signal_at=6)  # a stop between rows: 6 is not 4k
    step, state, position = stopped.saves[-1]
    assert step == state == 6 and position["next_batch"] == 6
    assert position["log_window"]["count"] == 2
    _, resumed, _ = run(total=12, step=6, position=position)
    after = [r for r in resumed.rows if r["step"] > 6]
    assert after == [r for r in straight.rows if r["step"] > 6]


def test_a_non_finite_value_stops_before_anything_of_its_step_is_kept():
    with pytest.raises(NonFiniteLossError, match="non-finite train/loss at step 7"):
        run(nan_at=7)
    outputs = RecordingRunDir()
    try:
        loop = Loop(0, 0, 10, outputs, {"next_batch": 0, "elapsed_s": 0.0})
        fit(
            steps(nan_at=7), loop, batches(), [hooks_lib.StopOnNonFinite(), hooks_lib.Checkpoint(1)]
        )
    except NonFiniteLossError:
        pass
    # Step 7's metrics are read while step 8 runs: saves up to 6, none after.
    assert [s for s, _, _ in outputs.saves] == [1, 2, 3, 4, 5, 6]
    assert outputs.waited


def test_a_time_budget_stops_with_an_eval_and_a_checkpoint():
    position = {"next_batch": 0, "elapsed_s": 1e6}  # elapsed counts across resumes
    loop, outputs, _ = run(total=100, position=position, max_seconds=60.0)
    assert loop.step == 1 and loop.stop.reason == "time budget of 60s"
    assert outputs.rows[-1]["stop"] == "time budget of 60s"
    assert outputs.rows[-1]["eval/loss"] == 1.0
    assert [s for s, _, _ in outputs.saves] == [1]


def test_a_signal_the_trainer_took_reaches_the_python_handler_it_stood_in_for():
    """A search worker trains in process: a SIGTERM that reached the trainer after its
    last step (too late to stop it) was lost, and the worker trained on until SIGKILL."""

    class LateSignal(Hook):
        def __call__(self, loop):
            if loop.stop is not None and loop.stop.kind == DONE:
                os.kill(os.getpid(), signal.SIGTERM)

    heard = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
    try:
        loop, _, _ = run(total=6, extra=[LateSignal()])
        assert loop.stop.kind == DONE and heard == [signal.SIGTERM]
        loop, _, _ = run(total=12, signal_at=6)  # and one that stopped the loop
        assert loop.stop.kind == SIGNAL and heard == [signal.SIGTERM] * 2
    finally:
        signal.signal(signal.SIGTERM, previous)
