"""Adaptive search with Optuna: each trial a training run of its own, proposed from the
trials before it, and stopped early by a pruner when its eval metric lags.

    sweep_dir/study.db        the Optuna study (SQLite): the manifest of a search; every
                              worker (local slots, SLURM array tasks) pulls trials from it
    sweep_dir/<trial>/        the trial's workdir (a normal jaxdl run); <trial>.log its log
    sweep_dir/claims/         which worker of which run of the command trains a trial
    sweep_dir/workers/        each local worker's own log
    sweep_dir/summary.{csv,md,png}, history.png, importance.md

The runner (`Search.run`) starts one worker process per slot (launch/sweep.py
--search_worker) and waits for them. A worker (`Search.work`) asks the study for a
trial's overrides (TPE, seeded; random for the first `startup_trials`), trains it in
its own process and tells the study the final `metric` (COMPLETE), or FAIL; then asks
again. Trials of one worker share its imports, data and compile cache, so a trial costs
its training, not a process start. With `vmap` K > 1 (config.sweep.vmap) it asks K trials
at once and trains them as one vmapped run (train.train_trials); the space may then vary
only seed and the optimizer numbers a vmapped step takes per trial. A space that varies
only those trains a single trial that way too (a group of one): the optimizer numbers
are then inputs of the step, and every trial of the search runs one compiled program.
`SearchReport`, a hook of the trial's trainer, reports each trial's metric at each eval
as an intermediate value and asks the pruner; a pruned trial stops with a checkpoint and
is marked PRUNED. A vmapped group stops, its trials PRUNED, when the pruner would stop
every one of them: stopping one alone would save no compute (the group's step computes
it all the same) and lose its final value. A worker that dies (killed, out of memory)
fails the trials it held, and the runner starts another. Running the command again
resumes the study: finished trials stay, trials that were running when the search was
killed resume their runs (a vmapped group's together), and new trials are asked until
the study holds `num_trials`.
"""

import logging as std_logging
import os
import shlex
import signal
import subprocess
import time
import traceback
from pathlib import Path

import numpy as np
from absl import logging

from jaxdl.errors import UserError, check
from jaxdl.sweeps import spec
from jaxdl.sweeps.grouping import PER_TRIAL_KEYS
from jaxdl.sweeps.runner import (
    ROOT,
    SOME_TRIALS_FAILED,
    Sweep,
    plot_axes,
    start_child,
    write_table,
)
from jaxdl.train.loop import REQUESTED, SIGNAL, Hook, Loop
from jaxdl.train.rundir import FAILED_FILE, STOPPED_FILE
from jaxdl.train.writers import read_metrics

STUDY_FILE = "study.db"
CLAIMS = "claims"
PRUNERS = ("median", "successive_halving", "none")


def _optuna():
    import optuna  # the `search` extra; imported only where a search runs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    std_logging.getLogger("optuna").propagate = False
    return optuna


def storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / STUDY_FILE).absolute()}"


def distributions(space: dict) -> dict:
    """spec distributions ({key: ("loguniform", a, b), ...}) as Optuna's."""
    optuna = _optuna()
    made = {}
    for name, (kind, *args) in space.items():
        if kind == "loguniform":
            made[name] = optuna.distributions.FloatDistribution(args[0], args[1], log=True)
        elif kind == "uniform":
            made[name] = optuna.distributions.FloatDistribution(args[0], args[1])
        elif kind == "int":
            made[name] = optuna.distributions.IntDistribution(args[0], args[1])
        else:
            made[name] = optuna.distributions.CategoricalDistribution(args[0])
    return made


def make_pruner(name: str, warmup_steps: int = 0):
    """`median` (against the trials finished, from the second on), `successive_halving`
    or `none`; neither prunes a trial before `warmup_steps`. (Optuna keeps no pruner in
    its storage: every process makes its own.)"""
    optuna = _optuna()
    check(name in PRUNERS, f"--pruner={name!r} is not one of {list(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_steps)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_steps))
    return optuna.pruners.NopPruner()


def open_study(
    sweep_dir: Path,
    base_args: list[str],
    mode: str,
    seed: int,
    pruner: str,
    startup_trials: int = 10,
    worker: int = 0,
):
    """The study of sweep_dir (created on the first call). Its sampler is TPE seeded with
    `seed` and the `worker`'s number (workers sharing a study draw apart), random for the
    first `startup_trials`, and taking the trials still running as the worst so far
    (constant liar: trials asked together differ); its pruner `median` (after 2 finished
    trials) or `successive_halving`."""
    optuna = _optuna()
    check(startup_trials >= 1, f"--startup_trials={startup_trials} must be >= 1")
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(
        seed=int(np.random.SeedSequence([seed, worker]).generate_state(1)[0]),
        n_startup_trials=startup_trials,
        constant_liar=True,
    )
    study = optuna.create_study(
        study_name="jaxdl",
        storage=storage_url(sweep_dir),
        load_if_exists=True,
        direction="minimize" if mode == "min" else "maximize",
        sampler=sampler,
        pruner=make_pruner(pruner),
    )
    saved = study.user_attrs.get("base_args")
    if saved is None:
        study.set_user_attr("base_args", base_args)
    elif saved != base_args:
        raise UserError(
            f"{sweep_dir} holds a search of another command ({' '.join(saved)}); use another "
            "--sweep_dir"
        )
    return study


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
        self._optuna = _optuna()

    def start(self, loop: Loop) -> None:
        from jaxdl.train.hooks import Evaluate

        self.every = next(h.every for h in loop.hooks if isinstance(h, Evaluate))  # its cadence
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
            for trial in trials:
                trial.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)
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
    """A search (see the module doc): the runner of its workers, and each worker's loop.
    `run_id` names one run of the command (its runner's start time, given to its
    workers): trials started before it and left RUNNING are a killed run's, to resume.
    `worker`: this worker's number in the run (its sampler's seed depends on it)."""

    def __init__(
        self,
        base_args,
        sweep_dir,
        space: dict,
        num_trials: int,
        metric: str,
        mode: str,
        seed: int = 0,
        pruner: str = "median",
        prune_after: float = 0.0,
        vmap: int = 1,
        startup_trials: int = 10,
        run_id: str | None = None,
        worker: int = 0,
    ):
        check(num_trials >= 1, f"--trials={num_trials} must be >= 1")
        check(0 <= prune_after < 1, f"--prune_after={prune_after} must be in [0, 1)")
        check(space, "a search needs a space: the experiment's search_space() or --space")
        check(vmap >= 1, f"config.sweep.vmap={vmap} must be >= 1")
        others = sorted(set(space) - set(PER_TRIAL_KEYS))
        check(
            vmap == 1 or not others,
            f"config.sweep.vmap={vmap}: vmapped trials may differ only in "
            f"{', '.join(PER_TRIAL_KEYS)}, not {', '.join(others)}",
        )
        self.vmapped = not others  # its trials may train as a vmapped group (of one, too)
        self.sweep_dir = Path(sweep_dir)
        self.space = space
        self.num_trials = num_trials
        self.metric = metric
        self.mode = mode
        self.pruner = pruner
        self.prune_after = prune_after
        self.vmap = vmap
        self.run_id = run_id or f"{time.time():.6f}"
        self.study = open_study(
            self.sweep_dir, base_args, mode, seed, pruner, startup_trials, worker
        )
        self.optuna = _optuna()
        self._stop = False

    # ---- asking for trials (a worker) -----------------------------------------------------
    def _claim_file(self, number: int) -> Path:
        """Where a worker of this run says it took trial `number` (its pid inside)."""
        return self.sweep_dir / CLAIMS / f"{number}.{self.run_id}"

    def _killed_runs(self, trials) -> list:
        """Those of `trials` (frozen) that a killed run of the command left RUNNING: started
        before this run."""
        running = self.optuna.trial.TrialState.RUNNING
        since = float(self.run_id)
        return [t for t in trials if t.state == running and t.datetime_start.timestamp() < since]

    def _claim(self, number: int) -> bool:
        """Whether this process took trial `number` for this run (a file created once:
        of several workers resuming a killed run's trial, one gets it)."""
        claim = self._claim_file(number)
        claim.parent.mkdir(exist_ok=True)
        try:
            handle = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        return True

    def _record(self, trial) -> dict:
        overrides = {k: trial.params[k] for k in self.space}
        name = spec.trial_name(trial.number, overrides)
        trial.set_user_attr("name", name)
        return {"name": name, "overrides": overrides, "trial": trial}

    def _next(self) -> list[dict] | None:
        """Trials to train as one unit: those a killed run left RUNNING (a vmapped
        group's together), else up to `vmap` new ones; None when the study is full."""
        waiting = self.optuna.trial.TrialState.WAITING
        trials = self.study.get_trials(deepcopy=False)
        left: dict[str, list] = {}  # group -> its trials left RUNNING, in trial order
        for frozen in self._killed_runs(trials):
            group = frozen.user_attrs.get("group", frozen.user_attrs.get("name"))
            left.setdefault(group, []).append(frozen)
        for unit in left.values():  # every worker claims in trial order: the first decides
            if all(self._claim(frozen.number) for frozen in unit):
                return [
                    self._record(self.optuna.trial.Trial(self.study, frozen._trial_id))
                    for frozen in unit
                ]
        room = self.num_trials - sum(t.state != waiting for t in trials)  # (waiting: enqueued)
        if room <= 0:
            return None
        unit = [
            self._record(self.study.ask(distributions(self.space)))
            for _ in range(min(room, self.vmap))
        ]
        for record in unit:
            self._claim(record["trial"].number)
            record["trial"].set_user_attr("group", unit[0]["name"])
        return unit

    # ---- a worker: trials trained in this process -----------------------------------------
    def work(self, base_config) -> None:
        """Trains units of trials until the study is full or a signal stops the worker."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stop:
                unit = self._next()
                if unit is None:
                    return
                self._train(unit, base_config)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _train(self, unit: list[dict], base_config) -> None:
        """One unit, in this process, its log in sweep_dir/<first trial>.log; then each
        trial's outcome goes to the study."""
        from jaxdl.train import train_and_evaluate, train_trials

        trials = [record["trial"] for record in unit]
        report = SearchReport(trials, self.metric, self.pruner, self.prune_after)
        log = std_logging.FileHandler(self.sweep_dir / f"{unit[0]['name']}.log", mode="w")
        log.setFormatter(logging.PythonFormatter())
        for keep in logging.get_absl_handler().filters:  # what the console leaves out too
            log.addFilter(keep)
        std_logging.getLogger().addHandler(log)
        started, error = time.time(), None
        logging.info("worker %d: trials %s", os.getpid(), [r["trial"].number for r in unit])
        try:
            configs = [spec.apply_overrides(base_config, r["overrides"]) for r in unit]
            workdirs = [self.sweep_dir / r["name"] for r in unit]
            hooks = [report, _StopWhen(lambda: self._stop)]
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
        finally:
            std_logging.getLogger().removeHandler(log)
            log.close()
        for record in unit:
            self._tell(record, error, time.time() - started)

    def _tell(self, record: dict, error: str | None, wall_s: float) -> None:
        states = self.optuna.trial.TrialState
        trial, workdir = record["trial"], self.sweep_dir / record["name"]
        failure = workdir / FAILED_FILE
        if self.study._storage.get_trial(trial._trial_id).state == states.PRUNED:
            logging.info("trial %s: pruned (%.0f s)", record["name"], wall_s)
            return  # told by its trainer (SearchReport)
        trial.set_user_attr("wall_s", round(wall_s, 2))
        if failure.exists() or error is not None:
            status = "failed"
            message = failure.read_text().strip() if failure.exists() else error
            trial.set_user_attr("error", message)
            self.study.tell(trial, state=states.FAIL)
        elif (workdir / STOPPED_FILE).exists():
            status = "interrupted"  # stays RUNNING: the next run of the command resumes it
            self._stop = True  # the signal that stopped its trainer stops this worker
        else:
            values = [float(r[self.metric]) for r in read_metrics(workdir) if self.metric in r]
            if values:
                status = "done"
                self.study.tell(trial, values[-1])
            else:
                status = "failed"
                trial.set_user_attr("error", f"no {self.metric} in its metrics.jsonl")
                self.study.tell(trial, state=states.FAIL)
        logging.info("trial %s: %s (%.0f s)", record["name"], status, wall_s)

    # ---- the runner: a worker per slot ----------------------------------------------------
    def run(self, slots: list[dict], worker: list[str]) -> None:
        """Keeps a worker process (`worker`, a command, with --search_worker=RUN:NUMBER
        added) on each slot while the study has trials to give; a worker that dies fails
        the trials it held, and another takes its slot. A worker that dies holding no
        trial stops the search with its error (another would die the same way)."""
        logs = self.sweep_dir / "workers"
        logs.mkdir(parents=True, exist_ok=True)
        runner = Sweep([], [], [], self.sweep_dir, manifest=False)  # its slots and signals
        count, broken = 0, None

        def take() -> dict | None:
            return {"log": None} if self._work_left() else None

        def start(unit: dict, slot: dict) -> subprocess.Popen:
            nonlocal count
            unit["log"] = logs / f"{count}.log"
            command = [*worker, f"--search_worker={self.run_id}:{count}"]
            count += 1
            return start_child(command, slot, unit["log"])

        def finish(unit: dict, process: subprocess.Popen) -> None:
            nonlocal broken
            if process.returncode == 0 or runner.stopped:
                return
            tail = "\n".join(unit["log"].read_text(errors="replace").strip().splitlines()[-5:])
            died = f"its worker died ({process.returncode}):\n{tail}"
            if not self._fail_trials_of(process.pid, died):
                broken = f"a search worker failed ({process.returncode}), holding no trial: {tail}"
                runner.stop()  # the others too

        runner.run_in_slots(slots, take, start, finish)
        if broken:
            raise UserError(broken)
        self._stop = runner.stopped

    def run_slurm(self, worker: list[str], parallel: int, sbatch_options: list[str]) -> None:
        """`parallel` SLURM array tasks, each a worker (`worker`, a command, numbered by
        its task id) pulling trials from the shared study; waits for the array to end."""
        logs = self.sweep_dir / "slurm"
        logs.mkdir(parents=True, exist_ok=True)
        script = logs / "workers.sh"
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name=jaxdl-search-{self.sweep_dir.name}",
            f"#SBATCH --array=0-{parallel - 1}",
            f"#SBATCH --output={logs}/worker-%a.out",
            f"#SBATCH --error={logs}/worker-%a.err",
            *(f"#SBATCH {option}" for option in sbatch_options),
            f"cd {shlex.quote(str(ROOT))}",
            shlex.join(worker) + f' --search_worker={self.run_id}:"$SLURM_ARRAY_TASK_ID"',
        ]
        script.write_text("\n".join(lines) + "\n")
        submitted = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True
        )
        if submitted.returncode != 0:
            raise UserError(f"sbatch failed: {submitted.stderr.strip() or submitted.stdout}")
        job = submitted.stdout.strip().split(";")[0]
        logging.info("submitted %d search workers as job array %s", parallel, job)
        while subprocess.run(
            ["squeue", "-h", "-j", job], capture_output=True, text=True
        ).stdout.strip():
            time.sleep(2)

    def _work_left(self) -> bool:
        """Whether a worker would find a trial: room in the study, or a killed run's trial
        no worker of this run has taken."""
        states = self.optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False, states=tuple(set(states) - {states.WAITING}))
        if len(trials) < self.num_trials:
            return True
        return any(not self._claim_file(t.number).exists() for t in self._killed_runs(trials))

    def _fail_trials_of(self, pid: int, error: str) -> list[int]:
        """The trials a dead worker held and left RUNNING, now FAIL with `error`."""
        states = self.optuna.trial.TrialState
        held = []
        for frozen in self.study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            claim = self._claim_file(frozen.number)
            if claim.exists() and claim.read_text() == str(pid):
                self.study._storage.set_trial_user_attr(frozen._trial_id, "error", error)
                self.study._storage.set_trial_state_values(frozen._trial_id, states.FAIL)
                held.append(frozen.number)
        return held

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop

    def rows(self) -> list[dict]:
        """One row per trial of the study, in trial order."""
        states = self.optuna.trial.TrialState
        status = {
            states.COMPLETE: "done",
            states.PRUNED: "pruned",
            states.FAIL: "failed",
            states.RUNNING: "running",
            states.WAITING: "pending",
        }
        rows = []
        for trial in self.study.get_trials(deepcopy=False):
            name = trial.user_attrs.get("name") or spec.trial_name(trial.number, trial.params)
            values = [
                float(r[self.metric])
                for r in read_metrics(self.sweep_dir / name)
                if self.metric in r
            ]
            rows.append(
                {
                    "trial": name,
                    **trial.params,
                    "status": status.get(trial.state, str(trial.state)),
                    f"final {self.metric}": values[-1] if values else None,
                    "steps": max(trial.intermediate_values, default=None),
                    "wall_s": trial.user_attrs.get("wall_s"),
                }
            )
        return rows

    def write_summary(self) -> dict | None:
        """summary.{csv,md} (the runner's format), history.png and importance.md."""
        rows = self.rows()
        finished = [
            r for r in rows if r["status"] == "done" and r[f"final {self.metric}"] is not None
        ]
        better = min if self.mode == "min" else max
        best = better(finished, key=lambda r: r[f"final {self.metric}"]) if finished else None
        command = " ".join(self.study.user_attrs["base_args"])
        title = f"Search {self.sweep_dir.name}: `{command}`, {self.metric} ({self.mode})"
        errors = {
            t.user_attrs.get("name", str(t.number)): t.user_attrs.get("error", "")
            for t in self.study.get_trials(deepcopy=False)
            if t.state == self.optuna.trial.TrialState.FAIL
        }
        write_table(self.sweep_dir, rows, best, self.metric, title, errors)
        plot_axes(self.sweep_dir, rows, list(self.space), self.metric)
        self._plot_history(rows)
        self._write_importance()
        return best

    def _plot_history(self, rows: list[dict]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        for trial in self.study.get_trials(deepcopy=False):
            if trial.intermediate_values:
                steps, values = zip(*sorted(trial.intermediate_values.items()), strict=True)
                style = "--" if trial.state == self.optuna.trial.TrialState.PRUNED else "-"
                ax.plot(steps, values, style, marker=".", label=f"{trial.number}")
        ax.set_xlabel("step")
        ax.set_ylabel(self.metric)
        ax.set_title("trials' eval values (dashed: pruned)")
        ax.grid(alpha=0.3)
        if ax.lines and len(rows) <= 12:  # (none yet: every trial stopped before an eval)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(self.sweep_dir / "history.png", dpi=100)
        plt.close(fig)

    def _write_importance(self) -> None:
        complete = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state == self.optuna.trial.TrialState.COMPLETE
        ]
        if len(complete) < 2 or len(self.space) < 2:
            return
        try:
            importance = self.optuna.importance.get_param_importances(self.study)
        except (RuntimeError, ValueError) as e:  # too few distinct values
            logging.info("no parameter importances: %s", e)
            return
        lines = ["| parameter | importance (fANOVA) |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importance.items()]
        (self.sweep_dir / "importance.md").write_text("\n".join(lines) + "\n")


def exit_code(search: Search) -> int:
    rows = search.rows()
    if search.stopped:
        return 130
    return SOME_TRIALS_FAILED if any(r["status"] == "failed" for r in rows) else 0


__all__ = ["Search", "SearchReport", "exit_code"]
