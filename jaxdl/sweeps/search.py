"""Adaptive search with Optuna: each trial a training run of its own, proposed from the
trials before it, and stopped early by a pruner when its eval metric lags.

    sweep_dir/study.db        the Optuna study (SQLite): the manifest of a search; every
                              worker (local slots, SLURM array tasks) pulls trials from it
    sweep_dir/<trial>/        the trial's workdir (a normal jaxdl run)
    sweep_dir/summary.{csv,md,png}, history.png, importance.md

The runner asks the study for a trial's overrides (TPE, seeded; random for the first
`startup_trials`), runs launch/train.py with them and tells the study the final
`metric` (COMPLETE), or FAIL. With `vmap` K > 1 (config.sweep.vmap), it asks K trials at
once and trains them as one vmapped run (launch/train.py --vmap_trials), as a grid
sweep's group; the space may then vary only seed and the optimizer numbers a vmapped
step takes per trial. Inside the trainer, `SearchReport` (a hook, added by
launch/train.py when $JAXDL_SEARCH_TRIAL names the trials) reports each trial's metric
at each eval as an intermediate value and asks the pruner; a pruned trial stops with a
checkpoint and is marked PRUNED. A vmapped group stops, its trials PRUNED, when the
pruner would stop every one of them: stopping one alone would save no compute (the
group's step computes it all the same) and lose its final value. Running the command
again resumes the study: finished trials stay, trials that were running when the search
was killed resume their runs (a vmapped group's together), and new trials are asked
until the study holds `num_trials`.
"""

import logging as std_logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from absl import logging

from jaxdl.errors import UserError, check
from jaxdl.sweeps import spec
from jaxdl.sweeps.grouping import PER_TRIAL_KEYS
from jaxdl.sweeps.runner import SOME_TRIALS_FAILED, Sweep, plot_axes, write_table
from jaxdl.train.loop import REQUESTED, Hook, Loop
from jaxdl.train.writers import read_metrics

STUDY_FILE = "study.db"
# "storage|study name|trial ids (a vmapped group's, comma-separated)|metric|pruner|prune_after"
TRIAL_ENV = "JAXDL_SEARCH_TRIAL"
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
):
    """The study of sweep_dir (created on the first call). Its sampler is TPE seeded with
    `seed`, random for the first `startup_trials`, and taking the trials still running as
    the worst so far (constant liar: trials asked together differ); its pruner `median`
    (after 2 finished trials) or `successive_halving`."""
    optuna = _optuna()
    check(startup_trials >= 1, f"--startup_trials={startup_trials} must be >= 1")
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials, constant_liar=True
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
    checkpoint is saved) and is PRUNED. For a vmapped group, `trial_ids` lists its trials
    in order: each reports its own value, and the group stops (all its trials PRUNED)
    when the pruner would stop each of those that have not failed. `prune_after`: the
    share of the run's steps before which no trial is pruned (its early evals are still
    reported)."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_ids: list[int],
        metric: str,
        pruner: str = "median",
        prune_after: float = 0.0,
    ):
        self.metric = metric
        self._optuna = _optuna()
        self._study = (storage, study_name, list(trial_ids), pruner, prune_after)

    def start(self, loop: Loop) -> None:
        from jaxdl.train.hooks import Evaluate

        self.every = next(h.every for h in loop.hooks if isinstance(h, Evaluate))  # its cadence
        storage, study_name, trial_ids, pruner, prune_after = self._study
        warmup = int(prune_after * loop.total_steps)
        study = self._optuna.load_study(
            study_name=study_name, storage=storage, pruner=make_pruner(pruner, warmup)
        )
        self.trials = [self._optuna.trial.Trial(study, i) for i in trial_ids]

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


def report_hook_from_env() -> list[Hook]:
    """The SearchReport of $JAXDL_SEARCH_TRIAL, if the runner set it (launch/train.py)."""
    if TRIAL_ENV not in os.environ:
        return []
    storage, study_name, trial_ids, metric, pruner, after = os.environ[TRIAL_ENV].split("|")
    ids = [int(i) for i in trial_ids.split(",")]
    return [SearchReport(storage, study_name, ids, metric, pruner, float(after))]


class Search:
    """The runner of a search (see the module doc): local slots pulling trials."""

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
    ):
        check(num_trials >= 1, f"--trials={num_trials} must be >= 1")
        check(0 <= prune_after < 1, f"--prune_after={prune_after} must be in [0, 1)")
        check(space, "a search needs a space: the experiment's search_space() or --space")
        # The runner's machinery for a unit of trials: command, device slot, stderr, status.
        self.sweep = Sweep(base_args, [], [], sweep_dir, vmap, manifest=False)
        others = sorted(set(space) - set(PER_TRIAL_KEYS))
        check(
            vmap == 1 or not others,
            f"config.sweep.vmap={vmap}: vmapped trials may differ only in "
            f"{', '.join(PER_TRIAL_KEYS)}, not {', '.join(others)}",
        )
        self.sweep_dir = Path(sweep_dir)
        self.space = space
        self.num_trials = num_trials
        self.metric = metric
        self.mode = mode
        self.pruner = pruner
        self.prune_after = prune_after
        self.study = open_study(self.sweep_dir, base_args, mode, seed, pruner, startup_trials)
        self.optuna = _optuna()

    def _record(self, trial) -> dict:
        overrides = {k: trial.params[k] for k in self.space}
        name = spec.trial_name(trial.number, overrides)
        trial.set_user_attr("name", name)
        return {"name": name, "overrides": overrides, "status": "pending", "trial": trial}

    def _next(self) -> list[dict] | None:
        """Trials to run as one unit: those a killed search left RUNNING (a vmapped
        group's together), else up to `vmap` new ones."""
        states = self.optuna.trial.TrialState
        active = {r["trial"].number for r in self._active}
        left: dict[str, list] = {}  # group -> its trials left RUNNING, in trial order
        for frozen in self.study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            if frozen.number not in active and frozen.number not in self._given:
                group = frozen.user_attrs.get("group", frozen.user_attrs.get("name"))
                left.setdefault(group, []).append(frozen)
        if left:
            unit = next(iter(left.values()))
            self._given.update(frozen.number for frozen in unit)
            return [
                self._record(self.optuna.trial.Trial(self.study, frozen._trial_id))
                for frozen in unit
            ]
        asked = self.study.get_trials(deepcopy=False, states=tuple(set(states) - {states.WAITING}))
        room = self.num_trials - len(asked)  # (waiting: enqueued, asked first)
        if room <= 0:
            return None
        unit = [
            self._record(self.study.ask(distributions(self.space)))
            for _ in range(min(room, self.sweep.vmap))
        ]
        for record in unit:
            self._given.add(record["trial"].number)
            record["trial"].set_user_attr("group", unit[0]["name"])
        return unit

    def _tell(self, unit: list[dict], process: subprocess.Popen) -> None:
        states = self.optuna.trial.TrialState
        self.sweep._finish(unit, process)
        for record in unit:
            trial = record["trial"]
            if self.study._storage.get_trial(trial._trial_id).state == states.PRUNED:
                record["status"] = "pruned"  # told by its trainer (SearchReport)
            elif record["status"] in ("done", "failed"):
                for key in ("returncode", "wall_s"):
                    trial.set_user_attr(key, record[key])
                values = [
                    float(r[self.metric])
                    for r in read_metrics(self.sweep_dir / record["name"])
                    if self.metric in r
                ]
                if record["status"] == "done" and not values:
                    record.update(status="failed", error=f"no {self.metric} in its metrics.jsonl")
                if record["status"] == "done":
                    self.study.tell(trial, values[-1])
                else:
                    trial.set_user_attr("error", record.get("error", ""))
                    self.study.tell(trial, state=states.FAIL)
            # interrupted: stays RUNNING, and the next run of the command resumes it
            logging.info("trial %s: %s", record["name"], record["status"])

    def run(self, slots: list[dict]) -> None:
        self._active: list[dict] = []
        self._given: set[int] = set()
        storage = storage_url(self.sweep_dir)

        def start(unit: list[dict], slot: dict) -> subprocess.Popen:
            ids = ",".join(str(record["trial"]._trial_id) for record in unit)
            description = [storage, "jaxdl", ids, self.metric, self.pruner, self.prune_after]
            env = {TRIAL_ENV: "|".join(str(x) for x in description)}
            process = self.sweep._start(unit, {**slot, "env": {**slot["env"], **env}})
            self._active.extend(unit)
            return process

        def finish(unit: list[dict], process: subprocess.Popen) -> None:
            self._tell(unit, process)
            for record in unit:
                self._active.remove(record)

        self.sweep.run_in_slots(slots, self._next, start, finish)

    @property
    def stopped(self) -> bool:
        return self.sweep.stopped

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


def run_slurm_workers(command: list[str], sweep_dir, parallel: int, sbatch_options) -> None:
    """`parallel` SLURM array tasks, each running `command` (a one-slot local search that
    pulls trials from the shared study); waits for the array to end."""
    import shlex

    logs = Path(sweep_dir) / "slurm"
    logs.mkdir(parents=True, exist_ok=True)
    script = logs / "workers.sh"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=jaxdl-search-{Path(sweep_dir).name}",
        f"#SBATCH --array=0-{parallel - 1}",
        f"#SBATCH --output={logs}/worker-%a.out",
        f"#SBATCH --error={logs}/worker-%a.err",
        *(f"#SBATCH {option}" for option in sbatch_options),
        f"cd {shlex.quote(str(Path(__file__).resolve().parents[2]))}",
        shlex.join(command),
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
