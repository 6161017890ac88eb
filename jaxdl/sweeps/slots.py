"""Units of work in slots, the layer every local sweep and search runs on.

A slot is one device share (`device_slots`: a GPU, or a share of the CPU cores, with its
environment). `run_in_slots` keeps each slot busy with the next unit of work, a child
process (`start_child`: the slot's environment and cores, stderr to a log, SIGTERM when
this process dies, however it dies), until no unit is left or a `Stopper` is stopped
(SIGINT/SIGTERM while `Stopper.caught()`, or `stop()`): then each running child gets one
SIGTERM (it checkpoints and exits) and SIGKILL only `STOP_TIMEOUT_S` later.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from absl import logging

from jaxdl.errors import check
from jaxdl.train.processes import die_with_parent
from jaxdl.train.rundir import lock_holder

ROOT = Path(__file__).resolve().parents[2]  # the checkout: launch/train.py is under it
# A stopping child gets one SIGTERM (it checkpoints and exits), then SIGKILL after this.
STOP_TIMEOUT_S = 300.0
# A trainer still holding a trial's workdir (left by a runner killed before) gets this
# long to finish its stop before the trial is started anyway (and fails on the lock).
UNLOCK_TIMEOUT_S = 300.0
POLL_S = 0.2


def device_slots(parallel: int, gpus: list[str] | None = None) -> list[dict]:
    """One environment (+ CPU affinity) per concurrent unit."""
    check(parallel >= 1, f"--parallel={parallel} must be >= 1")
    if gpus:
        check(parallel <= len(gpus), f"--parallel={parallel} exceeds the {len(gpus)} GPUs")
        return [
            {"env": {"CUDA_VISIBLE_DEVICES": gpu, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}
            for gpu in gpus[:parallel]
        ]
    cores = sorted(os.sched_getaffinity(0))
    check(parallel <= len(cores), f"--parallel={parallel} exceeds the {len(cores)} CPU cores")
    share = len(cores) // parallel
    return [
        {"env": {"JAX_PLATFORMS": "cpu"}, "cores": cores[i * share : (i + 1) * share]}
        for i in range(parallel)
    ]


class Stopper:
    """Whether a stop was asked: `stop()`, or SIGINT/SIGTERM while `caught()` (the
    handlers from before are back after it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stopped = False

    def stop(self, *signal_args) -> None:  # (also a signal handler: signum, frame)
        self.stopped = True

    @contextlib.contextmanager
    def caught(self):
        previous = {s: signal.signal(s, self.stop) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def start_child(command: list[str], slot: dict, log: Path) -> subprocess.Popen:
    """`command` on a device slot (its environment, and its CPU cores if it names them),
    stderr to `log`; it gets SIGTERM when this process dies."""
    cores = slot.get("cores")

    def prepare_child() -> None:
        die_with_parent()
        if cores:
            os.sched_setaffinity(0, cores)

    return subprocess.Popen(
        command,
        env={**os.environ, **slot["env"]},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        preexec_fn=prepare_child,
    )


def stop_child(process: subprocess.Popen, since: dict) -> None:
    """One SIGTERM; SIGKILL only if it is still running STOP_TIMEOUT_S later (`since`:
    pid -> when it got its SIGTERM)."""
    if process.poll() is not None:
        return
    if process.pid not in since:
        since[process.pid] = time.time()
        process.send_signal(signal.SIGTERM)
    elif time.time() - since[process.pid] > STOP_TIMEOUT_S:
        logging.warning("process %d did not stop in %.0f s: killed", process.pid, STOP_TIMEOUT_S)
        process.kill()


def run_in_slots(
    slots: list[dict],
    take: Callable,
    start: Callable,
    finish: Callable,
    stopper: Stopper,
) -> None:
    """Keeps each slot busy with the next unit of work `take()` gives (None: no more)
    until none is left and none runs, or `stopper` is stopped (a signal, while this
    runs): then the running children are stopped (`stop_child`). `start(unit, slot)`
    returns the unit's process; `finish(unit, process)` is called when it has ended."""
    running: dict[int, tuple] = {}  # slot -> (unit, process)
    stopping_since: dict[int, float] = {}
    exhausted = False
    with stopper.caught():
        while (not exhausted and not stopper.stopped) or running:
            for index, slot in enumerate(slots):
                if index in running or exhausted or stopper.stopped:
                    continue
                unit = take()
                if unit is None:
                    exhausted = True
                else:
                    running[index] = (unit, start(unit, slot))
            for index, (unit, process) in list(running.items()):
                if process.poll() is not None:
                    finish(unit, process)
                    del running[index]
            if stopper.stopped:
                for _, process in running.values():
                    stop_child(process, stopping_since)
            time.sleep(POLL_S)


def wait_for_unlock(workdir: Path) -> None:
    """Waits (up to UNLOCK_TIMEOUT_S) for a trainer left by a runner killed before to
    release `workdir` (it is stopping: it got SIGTERM when its runner died)."""
    deadline = time.time() + UNLOCK_TIMEOUT_S
    holder = lock_holder(workdir)
    if holder is not None:
        logging.info("waiting for trainer %s to release %s", holder, workdir)
    while holder is not None and time.time() < deadline:
        time.sleep(0.5)
        holder = lock_holder(workdir)
