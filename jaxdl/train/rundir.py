"""A run directory, as the trainer writes it:

    workdir/config.json        the resolved config
    workdir/run.json           the data's description, batch shapes, planned steps
    workdir/metrics.jsonl      one row per logged step: step, elapsed_s, train/*, eval/*
    workdir/tensorboard/       the same scalars for TensorBoard
    workdir/images/            <name>_<step>.png pictures of tasks that draw them
    workdir/checkpoints/<step> state + data position (orbax)
    workdir/best.json          with train.keep_best: the best kept checkpoint by an eval metric
    workdir/trackers.json      the W&B / MLflow run ids of train.writers, for resume
    workdir/failed.txt         why the run stopped on a non-finite value (if it did)
    workdir/stopped.txt        why it stopped early and resumable, by a signal (if it did)
    workdir/metrics.png        every metric against step, when the run stops
    workdir/.lock              held (flock) by the trainer writing the run; its pid inside
    workdir/damaged_checkpoints/<step>  checkpoints that failed to restore, set aside on resume

`RunDir` is the trainer's `outputs` for one run; trials.TrialRunDirs gives each of K
vmapped trials one of them. Only the chief process (process 0) writes files other than
checkpoints, which every process writes together, and takes the lock: one trainer per
workdir (the OS drops the lock when its process dies, so a kill never leaves a stale one).
"""

import fcntl
import json
import math
import os
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxdl import configs
from jaxdl.errors import UserError
from jaxdl.train import checkpoint, config_history, run_info
from jaxdl.train.writers import MetricWriter, read_metrics

FAILED_FILE = "failed.txt"  # read by the sweep runner
STOPPED_FILE = "stopped.txt"  # read by the sweep runner: a stopped trial is not done
LOCK_FILE = ".lock"
DAMAGED_DIR = "damaged_checkpoints"  # newer checkpoints that failed to restore, set aside


def _take_lock(path: Path):
    """The workdir's lock, held open (released when the file closes or the process
    dies); UserError naming the holder if another trainer has it."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--workdir={path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = (path / LOCK_FILE).open("a+")
    except OSError as e:
        raise _unwritable(path, e) from e
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise UserError(
            f"{path} is in use by another trainer (pid {holder}); wait for it to stop, stop "
            f"it, or use another --workdir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _unwritable(path: Path, error: OSError) -> UserError:
    return UserError(f"cannot write in {path}: {checkpoint.describe_os_error(error)}")


def lock_holder(workdir: str | Path) -> int | None:
    """The pid of the trainer holding workdir's lock, or None if no one holds it."""
    path = Path(workdir) / LOCK_FILE
    if not path.is_file():
        return None
    with path.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class RunDir:
    def __init__(
        self,
        workdir: str | Path,
        config: ml_collections.ConfigDict,
        keep_checkpoints: int,
        chief: bool = True,
    ):
        self.path = Path(workdir)
        self.config = config
        self.chief = chief
        self._lock = _take_lock(self.path) if chief else None
        try:
            self.checkpoints = checkpoint.Checkpoints(
                self.path / "checkpoints",
                keep_checkpoints,
                best=checkpoint.BestOf.of(config.train),
                best_file=self.path / checkpoint.BEST_FILE if chief else None,
            )
        except OSError as e:
            raise _unwritable(self.path, e) from e
        self.failure: str | None = None  # why it stopped on a non-finite value
        self._writer = None

    @property
    def name(self) -> str:
        return self.path.name

    # ---- start: resume and the files that describe the run --------------------------------
    def latest_step(self) -> int | None:
        return self.checkpoints.latest_step()

    def restore(self, abstract_state, sharding) -> tuple:
        """(state, position) of the newest checkpoint that restores (damaged ones are
        skipped with a warning), placed with `sharding`; UserError naming the config keys
        that changed if the checkpoints hold a state of other shapes."""
        abstract = checkpoint.abstract_like(abstract_state, sharding)
        try:
            _, state, position = self.checkpoints.restore_newest(
                abstract, set_aside=self.path / DAMAGED_DIR
            )
        except checkpoint.StateMismatchError as e:
            raise UserError(
                f"the checkpoints in {self.path} hold a state of other shapes ({e}); the "
                f"config differs from the run's in {self._config_changes()}: "
                f"{self._advice()}"
            ) from None
        return state, position

    def _advice(self) -> str:
        """How to go on after a refused resume (the command ends the line)."""
        return (
            f"train in another --workdir, or resume the run as it was trained: "
            f"launch/train.py --config={self.path / 'config.json'} --workdir={self.path}"
        )

    def accept_config(self, allow_change: bool = False) -> None:
        """On a resume, the config against the run's config.json (config_history.py): a
        change of what the run computes is a UserError naming each key, old -> new,
        unless `allow_change`; an allowed or reporting-only change is recorded in the
        workdir's config history before start() rewrites config.json."""
        step = self.latest_step()
        saved = self._saved_config()
        if step is None or saved is None:
            return
        changed = config_history.changes(saved, self.config)
        computing = config_history.computing(changed)
        if computing and not allow_change:
            raise UserError(
                f"the config differs from the one {self.path} was trained with (to step "
                f"{step}) in what it computes: {config_history.describe(computing)}; pass "
                f"--allow_config_change to continue it so (recorded in its "
                f"{config_history.HISTORY_FILE}), {self._advice()}"
            )
        if changed and self.chief:
            config_history.record(self.path, step, changed)
        if changed:
            logging.info("config changed at step %d: %s", step, config_history.describe(changed))

    def _saved_config(self) -> ml_collections.ConfigDict | None:
        """The run's config.json resolved as it was trained; None if there is none or it
        cannot be read (a warning)."""
        path = self.path / "config.json"
        if not path.is_file():
            return None
        try:
            saved = ml_collections.ConfigDict(json.loads(path.read_text()))
            return configs.resolve(saved, saved=True)
        except (OSError, ValueError, UserError) as e:
            logging.warning("cannot compare the config with %s (%s)", path, e)
            return None

    def _config_changes(self) -> str:
        """The keys (outside train and sweep, which shape no state) in which this config
        differs from the run's config.json, resolved as it was trained."""
        saved = self._saved_config()
        if saved is None:
            return "keys unknown (its config.json cannot be read)"
        changed = {
            key: values
            for key, values in config_history.changes(saved, self.config).items()
            if not key.startswith(("train.", "sweep."))
        }
        shown = config_history.describe(dict(list(changed.items())[:5]))
        return shown + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")

    def start(
        self, step: int, info: dict, example_batch: dict, total_steps: int, log: bool = True
    ) -> None:
        """Writes config.json and run.json and opens metrics.jsonl at `step` (dropping rows
        a killed run wrote after its last checkpoint); `log`: say which backend it runs on
        and what the config's "auto" settings became there."""
        try:
            if self.chief:
                for stale in (FAILED_FILE, STOPPED_FILE):
                    (self.path / stale).unlink(missing_ok=True)
                config_json = self.config.to_json_best_effort(indent=2) + "\n"
                (self.path / "config.json").write_text(config_json)
                backend = run_info.backend_record(self.config)
                modules = run_info.module_record(self.config)
                earlier = run_info.write_run_info(
                    self.path, info, example_batch, total_steps, backend, modules
                )
                if log:
                    run_info.log_backend(backend, earlier)
            self._writer = MetricWriter(
                self.path, resume_step=step, enabled=self.chief, config=self.config
            )
        except OSError as e:
            raise _unwritable(self.path, e) from e

    # ---- during the run -------------------------------------------------------------------
    def write(self, step: int, elapsed_s: float, row: dict) -> None:
        """One metrics row: numbers (host scalars) and strings (e.g. `stop`)."""
        if self.failure is None:
            try:
                self._writer.write(step, elapsed_s, {k: _scalar(v) for k, v in row.items()})
            except OSError as e:
                raise UserError(self._write_failed("metrics.jsonl", e)) from e

    def write_images(self, step: int, pictures: dict) -> None:
        if self.chief and self.failure is None and pictures:
            try:
                self._writer.write_images(step, pictures)
            except OSError as e:
                raise UserError(self._write_failed("images", e)) from e

    def _write_failed(self, what: str, error: OSError) -> str:
        return f"could not write {self.path / what}: {checkpoint.describe_os_error(error)}"

    def save(self, step: int, state, position: dict, row: dict | None = None) -> None:
        """`row`: the step's metrics so far (its eval ranks the checkpoint, train.keep_best)."""
        if self.failure is None:
            self.checkpoints.save(step, state, jax.tree.map(_json, position), row)

    def check_finite(self, step: int, elapsed_s: float, metrics: dict) -> str | None:
        """None while every value of `metrics` (a step's, on the host) is finite; else
        the run has stopped here: its row is written and the reason returned."""
        if self.failure is not None:
            return self.failure
        values = {name: _scalar(value) for name, value in metrics.items()}
        bad = [(n, v) for n, v in values.items() if not math.isfinite(v)]
        if not bad:
            return None
        self.write(step, elapsed_s, {f"train/{n}": v for n, v in values.items()})
        self.checkpoints.wait()
        last_good = self.checkpoints.latest_step()
        kept = f"step {last_good}" if last_good is not None else "none saved yet"
        self.failure = (
            f"non-finite train/{bad[0][0]}={bad[0][1]} at step {step}; stopped, last good "
            f"checkpoint: {kept} in {self.path / 'checkpoints'}"
        )
        if self.chief:
            (self.path / FAILED_FILE).write_text(self.failure + "\n")
        return self.failure

    def mark_stopped(self, reason: str) -> None:
        """The run stopped before its end, resumable (a signal): stopped.txt says why,
        until a run of this workdir starts again."""
        if self.chief and self.failure is None:
            (self.path / STOPPED_FILE).write_text(reason + "\n")

    def shown(self, row: dict) -> dict:
        """The values of a row the progress line shows."""
        return {k: _scalar(v) for k, v in row.items() if not isinstance(v, str)}

    def result(self, metrics: dict):
        """What training returns: the final eval metrics as floats (None if it failed)."""
        return None if self.failure else {k: _scalar(v) for k, v in metrics.items()}

    def poll_saves(self) -> None:
        """Raises CheckpointError as soon as a checkpoint save is known to have failed."""
        self.checkpoints.poll()

    def wait(self) -> None:
        """Until every checkpoint save started so far is complete."""
        self.checkpoints.wait()

    def plot(self) -> None:
        if self.chief:
            from jaxdl.viz import plots  # matplotlib only where a plot is drawn

            try:
                plots.plot_metrics(read_metrics(self.path), self.path)
            except OSError as e:  # a plot is not worth failing a finished run
                logging.warning("%s", self._write_failed("metrics.png", e))

    def close(self) -> None:
        try:
            self.checkpoints.close()
        finally:
            if self._writer is not None:
                try:
                    self._writer.close()
                except OSError as e:
                    logging.warning("%s", self._write_failed("metrics.jsonl", e))
            if self._lock is not None:
                self._lock.close()


def _scalar(value):
    """A host number (numpy scalar or 0-d array) as a float; strings as they are."""
    if isinstance(value, str):
        return value
    return float(np.asarray(value))


def _json(value):
    """Numpy values as JSON numbers or lists; the rest as they are."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value
