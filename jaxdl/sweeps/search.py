"""Adaptive search with Optuna: each trial a training run of its own, proposed from the
trials before it, and stopped early by a pruner when its eval metric lags.

    sweep_dir/study.db | study.journal   the study (study.py): every worker (local slots,
                              SLURM array tasks) pulls trials from it
    sweep_dir/<trial>/        the trial's workdir (a normal jaxdl run); <trial>.log its log
    sweep_dir/claims/         which worker of which run of the command trains a trial
    sweep_dir/workers/        each local worker's own log
    sweep_dir/summary.{csv,md,png}, history.png, importance.md

The runner (`Search.run`, `run_slurm`) starts worker processes (launch/sweep.py
--search_worker) and waits for them. A worker (`Search.work`) asks the study for a
unit of trials (study.Study.next_unit: TPE, seeded; random for the first
`startup_trials`), trains it in its own process and tells the study the final `metric`
(COMPLETE), or FAIL; then asks again. Trials of one worker share its imports, data and
compile cache, so a trial costs its training, not a process start. With `vmap` K > 1
(config.sweep.vmap) it asks K trials at once and trains them as one vmapped run
(train.train_trials); the space may then vary only seed and the optimizer numbers a
vmapped step takes per trial. A space that varies only those trains a single trial that
way too (a group of one): the optimizer numbers are then inputs of the step, and every
trial of the search runs one compiled program. `SearchReport`, a hook of the trial's
trainer, reports each trial's metric at each eval as an intermediate value and asks the
pruner; a pruned trial stops with a checkpoint and is marked PRUNED. A vmapped group
stops, its trials PRUNED, when the pruner would stop every one of them: stopping one
alone would save no compute (the group's step computes it all the same) and lose its
final value. A worker that dies (killed, out of memory) fails the trials it held, and
the runner starts another. Running the command again resumes the study: finished trials
stay, trials that were running when the search was killed resume their runs (a vmapped
group's together), and new trials are asked until the study holds `num_trials`. A SLURM
worker whose time runs out stops its trial (saved, still RUNNING) and is requeued; its
next life resumes that trial.
"""

import logging as std_logging
import os
import time
import traceback
from pathlib import Path

import numpy as np
from absl import logging

from jaxdl.errors import UserError
from jaxdl.sweeps import slots as slots_lib
from jaxdl.sweeps import slurm, spec, summary
from jaxdl.sweeps.study import (
    CLAIMS,
    STUDY_FILE,
    SearchOptions,
    Study,
    make_pruner,
    open_study,
    optuna_module,
)
from jaxdl.train.grouping import PER_TRIAL_KEYS
from jaxdl.train.loop import REQUESTED, SIGNAL, Hook, Loop
from jaxdl.train.trackers import trial_overrides


class SearchReport(Hook):
    """In a trial's trainer: at each eval, the metric goes to the study as the trial's
    intermediate value at that step, and when the pruner says so the trial stops (a
    checkpoint is saved) and is PRUNED. For a vmapped group, `trials` (optuna Trials of
    one study) are its trials in order: each reports its own value, and the group stops
    (all its trials PRUNED) when the pruner would stop each of those that have not failed.
    `prune_after`: the share of the run's steps before which no trial is pruned (its
    early evals are still reported); the study's pruner is set to one that knows it."""

    def __init__(self, trials: list, metric: str, pruner: str = "median", prune_after=0.0):
        self.trials = list(trials)
        self.metric = metric
        self.pruner = pruner
        self.prune_after = prune_after

    def start(self, loop: Loop) -> None:
        self.every = loop.eval_every  # reports at each eval
        warmup = int(self.prune_after * loop.total_steps)
        self.trials[0].study.pruner = make_pruner(self.pruner, warmup)

    def due(self, step: int, stop) -> bool:
        return step % self.every == 0 or (stop is not None and stop.kind != REQUESTED)

    def __call__(self, loop: Loop) -> None:
        if self.metric not in loop.row:
            return
        values = np.ravel(loop.row[self.metric])
        live = loop.outputs.live() if len(self.trials) > 1 else [0]  # (trials.TrialRunDirs)
        trials = [self.trials[k] for k in live]
        for k, trial in zip(live, trials, strict=True):
            trial.report(float(values[k]), loop.step)
        if loop.stop is None and all(trial.should_prune() for trial in trials):
            pruned = optuna_module().trial.TrialState.PRUNED
            for trial in trials:
                trial.study.tell(trial, state=pruned)
            loop.request_stop(REQUESTED, f"pruned by the search at step {loop.step}")


class _StopWhen(Hook):
    """Stops the trainer (as a signal does: saved, resumable) once `asked()`: a signal
    that reached the worker while its trainer was starting, before the trainer's own
    handler took over."""

    def __init__(self, asked):
        self.asked = asked

    def after_step(self, loop: Loop) -> None:
        if self.asked():
            loop.request_stop(SIGNAL, "a signal to the search worker")


class Search:
    """A search (see the module doc): the runner of its workers, each worker's loop, and
    its report. `study` (study.Study) keeps its books."""

    def __init__(
        self,
        base_args: list[str],
        sweep_dir,
        space: dict,
        options: SearchOptions | None = None,
        run_id: str | None = None,
        worker: int = 0,
    ):
        self.sweep_dir = Path(sweep_dir)
        self.space = space
        self.options = options = options or SearchOptions()
        self.study = Study(self.sweep_dir, base_args, space, options, run_id, worker)
        self.vmapped = set(space) <= set(PER_TRIAL_KEYS)  # may train as a vmapped group
        self.stopper = slots_lib.Stopper()

    @property
    def stopped(self) -> bool:
        return self.stopper.stopped

    # ---- a worker: trials trained in this process -----------------------------------------
    def work(self, base_config) -> None:
        """Trains units of trials until the study is full or a signal stops the worker."""
        with self.stopper.caught():
            while not self.stopper.stopped:
                unit = self.study.next_unit()
                if unit is None:
                    return
                self._train(unit, base_config)

    def _train(self, unit: list[dict], base_config) -> None:
        """One unit, in this process, its log in sweep_dir/<first trial>.log; then each
        trial's outcome goes to the study."""
        from jaxdl.train import train_and_evaluate, train_trials

        options = self.options
        trials = [record["trial"] for record in unit]
        report = SearchReport(trials, options.metric, options.pruner, options.prune_after)
        started, error = time.time(), None
        with _log_to(self.sweep_dir / f"{unit[0]['name']}.log"):
            logging.info("worker %d: trials %s", os.getpid(), [t.number for t in trials])
            try:
                # The trackers group the trials: train.group and train.trial (trackers.py).
                configs = [
                    spec.apply_overrides(
                        base_config,
                        {**r["overrides"], **trial_overrides(self.sweep_dir, r["overrides"])},
                    )
                    for r in unit
                ]
                workdirs = [self.sweep_dir / r["name"] for r in unit]
                hooks = [report, _StopWhen(lambda: self.stopper.stopped)]
                if self.vmapped:  # (one trial too: its numbers then are inputs of the step)
                    train_trials(configs, workdirs, hooks)
                else:
                    train_and_evaluate(configs[0], workdirs[0], hooks)
            except UserError as e:  # a bad config or data, every trial non-finite: one line
                error = str(e)
                logging.error("%s", error)
            except Exception as e:  # the trial's failure, not the worker's: the search goes on
                logging.error("%s", traceback.format_exc())
                error = f"{type(e).__name__}: {e}"
        for record in unit:
            wall_s = time.time() - started
            status = self.study.settle(record, error, wall_s)
            if status == "interrupted":  # the signal that stopped its trainer stops this worker
                self.stopper.stop()
            logging.info("trial %s: %s (%.0f s)", record["name"], status, wall_s)

    # ---- the runner: workers on local slots or SLURM ------------------------------------
    def run(self, slots: list[dict], worker: list[str]) -> None:
        """Keeps a worker process (`worker`, a command, with --search_worker=RUN:NUMBER
        added) on each slot while the study has trials to give; a worker that dies fails
        the trials it held, and another takes its slot. A worker that dies holding no
        trial stops the search with its error (another would die the same way)."""
        logs = self.sweep_dir / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        count, broken = 0, None

        def take() -> dict | None:
            return {"log": None} if self.study.work_left() else None

        def start(unit: dict, slot: dict):
            nonlocal count
            unit["log"] = logs / f"{count}.log"
            command = [*worker, f"--search_worker={self.study.run_id}:{count}"]
            count += 1
            return slots_lib.start_child(command, slot, unit["log"])

        def finish(unit: dict, process) -> None:
            nonlocal broken
            if process.returncode == 0 or self.stopper.stopped:
                return
            tail = "\n".join(unit["log"].read_text(errors="replace").strip().splitlines()[-5:])
            died = f"its worker died ({process.returncode}):\n{tail}"
            if not self.study.fail_trials_of(process.pid, died):
                broken = f"a search worker failed ({process.returncode}), holding no trial: {tail}"
                self.stopper.stop()  # the others too

        slots_lib.run_in_slots(slots, take, start, finish, self.stopper)
        if broken:
            raise UserError(broken)

    def run_slurm(self, worker: list[str], parallel: int, sbatch_options: list[str]) -> None:
        """`parallel` SLURM array tasks, each a worker (`worker`, a command, numbered by
        its task id) pulling trials from the shared study; waits for the array to end."""
        logs = self.sweep_dir / "slurm"
        commands = [[*worker, f"--search_worker={self.study.run_id}:{i}"] for i in range(parallel)]
        name = f"search-{self.sweep_dir.name}"
        job = slurm.submit(slurm.array_script(name, commands, logs, None, sbatch_options), logs)
        logging.info("submitted %d search workers as job array %s", parallel, job)
        slurm.wait(job, self.stopper)

    # ---- the report ---------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One row per trial of the study, in trial order (summary.trial_row, with the
        step it reached and its wall seconds)."""
        options, rows = self.options, []
        for trial in self.study.optuna.get_trials(deepcopy=False):
            name = self.study.name(trial)
            row = summary.trial_row(
                name,
                trial.params,
                self.study.status(trial),
                self.sweep_dir / name,
                options.metric,
                options.mode,
            )
            row["steps"] = max(trial.intermediate_values, default=None)
            row["wall_s"] = trial.user_attrs.get("wall_s")
            rows.append(row)
        return rows

    def write_summary(self) -> dict | None:
        """summary.{csv,md,png} (the runner's format), history.png and importance.md;
        returns the best row."""
        rows, metric, mode = self.rows(), self.options.metric, self.options.mode
        best = summary.best_row(rows, metric, mode)
        command = " ".join(self.study.optuna.user_attrs["base_args"])
        title = f"Search {self.sweep_dir.name}: `{command}`, {metric} ({mode})"
        trials = self.study.optuna.get_trials(deepcopy=False)
        errors = {
            self.study.name(t): t.user_attrs.get("error", "")
            for t in trials
            if self.study.status(t) == "failed"
        }
        summary.write_table(self.sweep_dir, rows, best, metric, title, errors)
        log_axes = [k for k, (kind, *_) in self.space.items() if kind == "loguniform"]
        summary.plot_axes(self.sweep_dir, rows, list(self.space), metric, log_axes)
        curves = [
            (str(t.number), sorted(t.intermediate_values.items()), self.study.status(t) == "pruned")
            for t in trials
            if t.intermediate_values
        ]
        summary.plot_history(self.sweep_dir / "history.png", curves, metric, len(rows) <= 12)
        self._write_importance(trials)
        return best

    def _write_importance(self, trials) -> None:
        complete = [t for t in trials if self.study.status(t) == "done"]
        if len(complete) < 2 or len(self.space) < 2:
            return
        try:
            importance = optuna_module().importance.get_param_importances(self.study.optuna)
        except (RuntimeError, ValueError) as e:  # too few distinct values
            logging.info("no parameter importances: %s", e)
            return
        lines = ["| parameter | importance (fANOVA) |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importance.items()]
        (self.sweep_dir / "importance.md").write_text("\n".join(lines) + "\n")

    def exit_code(self) -> int:
        return summary.exit_code(self.stopped, [r["status"] for r in self.rows()])


class _log_to:
    """A context in which the root logger also writes to `path` (absl's format, with the
    filters the console has)."""

    def __init__(self, path: Path):
        self.handler = std_logging.FileHandler(path, mode="w")
        self.handler.setFormatter(logging.PythonFormatter())
        for keep in logging.get_absl_handler().filters:  # what the console leaves out too
            self.handler.addFilter(keep)

    def __enter__(self):
        std_logging.getLogger().addHandler(self.handler)

    def __exit__(self, *exc):
        std_logging.getLogger().removeHandler(self.handler)
        self.handler.close()


__all__ = [
    "CLAIMS",
    "STUDY_FILE",
    "Search",
    "SearchOptions",
    "SearchReport",
    "open_study",
]
