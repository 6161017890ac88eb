"""The grid sweep: every trial a training run of its own, in its own workdir.

    sweep_dir/sweep.json          manifest: config args, each trial's overrides, status,
                                  return code, wall seconds, error tail
    sweep_dir/<trial>/            the trial's workdir (config.json, metrics.jsonl, ...)
    sweep_dir/summary.{csv,md}    one row per trial (summary.py); summary.png

Backend `local` (slots.py): `parallel` trials at a time as launch/train.py processes,
each on its own device slot. With `vmap` > 1, up to `vmap` pending trials with the same
`group` key (grouping.vmap_key) run as one process, one vmapped step
(train.train_trials); a trial of such a group that fails writes workdir/failed.txt and
the others go on. Backend `slurm` (slurm.py): one job array, at most `parallel` tasks at
a time; a task whose time runs out saves and is requeued, and resumes.

Running the sweep again skips finished trials and runs the others (a trial stopped by a
signal resumes from its checkpoint). A sweep grows: run with more values on its axes,
the trials it holds keep their workdirs and results and the new ones are added; a
command that lacks some of its trials, or has other config args, is refused.
"""

import json
import sys
import time
from pathlib import Path

from absl import logging

from jaxdl.errors import UserError, check
from jaxdl.sweeps import slots as slots_lib
from jaxdl.sweeps import slurm, summary
from jaxdl.sweeps.spec import trial_name
from jaxdl.sweeps.summary import SOME_TRIALS_FAILED
from jaxdl.train.rundir import FAILED_FILE, STOPPED_FILE
from jaxdl.train.trackers import trial_overrides

MANIFEST = "sweep.json"


def format_override(name: str, value) -> str:
    shown = value if isinstance(value, str) else repr(value)
    return f"--config.{name}={shown}"


def _key(overrides: dict) -> str:
    """A trial's identity: its overrides as the manifest keeps them (JSON)."""
    return json.dumps(overrides, sort_keys=True)


class Sweep:
    """The trials of `base_args` (--config=FILE[:ARG] and shared --config.a.b=v) with each
    of `trials` (override dicts), kept in sweep_dir/sweep.json. `groups` (one key per
    trial): trials with equal keys may share a vmapped run of up to `vmap`."""

    def __init__(
        self,
        base_args: list[str],
        trials: list[dict],
        sweep_dir: Path,
        vmap: int = 1,
        groups: list[str] | None = None,
    ):
        check(vmap >= 1, f"config.sweep.vmap={vmap} must be >= 1")
        self.base_args = base_args
        self.vmap = vmap
        self.sweep_dir = Path(sweep_dir)
        self.path = self.sweep_dir / MANIFEST
        self.trials = self._records(trials)
        keys = [_key(t) for t in trials]
        group_of = dict(zip(keys, groups or keys, strict=True))
        self.groups = {t["name"]: group_of[_key(t["overrides"])] for t in self.trials}
        self.stopper = slots_lib.Stopper()

    def _records(self, trials: list[dict]) -> list[dict]:
        """The manifest's trials, with `trials` not in it added (named after their place);
        fresh ones when there is no manifest."""
        old = json.loads(self.path.read_text()) if self.path.exists() else None
        records = old["trials"] if old else []
        if old and old["base_args"] != self.base_args:
            raise UserError(
                f"{self.sweep_dir} holds a sweep of other config args "
                f"({' '.join(old['base_args'])}); use another --sweep_dir"
            )
        wanted = {_key(t) for t in trials}
        lacking = [r["name"] for r in records if _key(r["overrides"]) not in wanted]
        if lacking:
            raise UserError(
                f"{self.sweep_dir} holds {len(lacking)} trials this sweep lacks ({lacking[0]}, "
                "...); a sweep may only grow: use another --sweep_dir"
            )
        known = {_key(r["overrides"]) for r in records}
        new = [t for t in trials if _key(t) not in known]
        if old and new:
            logging.info("the sweep grows by %d trials", len(new))
        for overrides in new:
            name = trial_name(len(records), overrides)
            records.append({"name": name, "overrides": overrides, "status": "pending"})
        return records

    def save(self) -> None:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        record = {"base_args": self.base_args, "trials": self.trials}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(self.path)  # never a half-written manifest

    def command(self, unit: list[dict]) -> list[str]:
        """One trial: launch/train.py with its overrides; several: one vmapped run of
        them, listed in sweep_dir/<first trial>.trials.json."""
        train = [sys.executable, str(slots_lib.ROOT / "launch" / "train.py"), *self.base_args]
        # The trackers group the trials: train.group and train.trial (train/trackers.py).
        grouped = lambda overrides: {**overrides, **trial_overrides(self.sweep_dir, overrides)}
        if len(unit) == 1:
            return [
                *train,
                f"--workdir={self.sweep_dir / unit[0]['name']}",
                *(format_override(k, v) for k, v in grouped(unit[0]["overrides"]).items()),
            ]
        listing = self.sweep_dir / f"{unit[0]['name']}.trials.json"
        listed = [
            {"workdir": str(self.sweep_dir / t["name"]), "overrides": grouped(t["overrides"])}
            for t in unit
        ]
        listing.write_text(json.dumps(listed, indent=1) + "\n")
        return [*train, f"--vmap_trials={listing}"]

    def units(self, todo: list[dict]) -> list[list[dict]]:
        """Pending trials in order, grouped: up to `vmap` trials with one group key."""
        units: list[list[dict]] = []
        open_units: dict[str, list[dict]] = {}
        for trial in todo:
            group = self.groups[trial["name"]]
            unit = open_units.get(group)
            if unit is None or len(unit) >= self.vmap:
                unit = open_units[group] = []
                units.append(unit)
            unit.append(trial)
        return units

    def settle(self, trial: dict, ended_ok: bool, cut: bool, error) -> None:
        """A trial's status once its process ended: interrupted (stopped by a signal,
        resumable), failed (its failed.txt, or `error()`) or done (`ended_ok`). `cut`: its
        process was stopped from outside."""
        workdir = self.sweep_dir / trial["name"]
        failure = workdir / FAILED_FILE
        if ((workdir / STOPPED_FILE).exists() or cut) and not failure.exists():
            trial["status"] = "interrupted"  # (a trainer stopped by a signal exits 0)
        elif failure.exists():  # one trial of a vmapped group
            trial.update(status="failed", error=failure.read_text().strip())
        elif ended_ok:
            trial["status"] = "done"
        else:
            trial.update(status="failed", error=error())
        logging.info("trial %s: %s (%.0f s)", trial["name"], trial["status"], trial["wall_s"])

    # ---- local --------------------------------------------------------------------------
    def run(self, slots: list[dict]) -> None:
        """Runs every trial not done yet, len(slots) at a time."""
        todo = [t for t in self.trials if t["status"] != "done"]
        for trial in todo:
            trial["status"] = "pending"
        self.save()
        units = self.units(todo)
        try:
            slots_lib.run_in_slots(
                slots,
                lambda: units.pop(0) if units else None,
                self._start,
                self._finish,
                self.stopper,
            )
        finally:
            self.save()

    def _start(self, unit: list[dict], slot: dict):
        log = self.sweep_dir / f"{unit[0]['name']}.log"
        for trial in unit:  # a trainer left by a runner killed before (it is stopping)
            slots_lib.wait_for_unlock(self.sweep_dir / trial["name"])
        started = time.time()
        for trial in unit:
            trial.update(status="running", started=started, log=log.name)
        process = slots_lib.start_child(self.command(unit), slot, log)
        self.save()
        return process

    def _finish(self, unit: list[dict], process) -> None:
        code = process.returncode
        for trial in unit:
            log = self.sweep_dir / trial["log"]
            tail = lambda log=log: "\n".join(
                log.read_text(errors="replace").strip().splitlines()[-5:]
            )
            trial.update(returncode=code, wall_s=round(time.time() - trial.pop("started"), 2))
            ended_ok = code in (0, SOME_TRIALS_FAILED)  # (a vmapped group's, some failed)
            self.settle(trial, ended_ok, self.stopper.stopped and code != 0, tail)
        self.save()

    # ---- SLURM --------------------------------------------------------------------------
    def slurm_script(
        self, trials: list[dict], parallel: int, sbatch_options, tasks_per_trial: int = 1
    ) -> str:
        """The job array of `trials` (slurm.array_script): task i trains trials[i]."""
        commands = [self.command([t]) for t in trials]
        logs = self.sweep_dir / "slurm"
        options = tuple(sbatch_options)
        name = self.sweep_dir.name
        return slurm.array_script(name, commands, logs, parallel, options, tasks_per_trial)

    def run_slurm(
        self, parallel: int, sbatch_options: list[str], poll_s: float = 2.0, tasks_per_trial=1
    ) -> None:
        """Submits the trials not done yet as one job array and waits for it."""
        check(tasks_per_trial >= 1, f"--tasks_per_trial={tasks_per_trial} must be >= 1")
        check(self.vmap == 1, "config.sweep.vmap > 1 runs on the local backend only, for now")
        todo = [t for t in self.trials if t["status"] != "done"]
        if not todo:
            return
        logs = self.sweep_dir / "slurm"
        script = self.slurm_script(todo, parallel, sbatch_options, tasks_per_trial)
        job = slurm.submit(script, logs)
        start = time.time()
        for trial in todo:
            trial.update(status="submitted", slurm_job=job)
        self.save()
        logging.info("submitted job array %s (%d trials)", job, len(todo))
        slurm.wait(job, self.stopper, poll_s)
        for index, (state, code) in enumerate(slurm.outcomes(job, logs, len(todo))):
            tail = lambda i=index, s=state: "\n".join(
                [f"slurm state {s}", *slurm.error_tail(logs, i)]
            )
            cut = (self.stopper.stopped and state != slurm.DONE) or state.startswith(
                slurm.CANCELLED
            )
            todo[index].update(wall_s=round(time.time() - start, 2), returncode=code)
            self.settle(todo[index], state == slurm.DONE, cut, tail)
        self.save()

    def stop(self) -> None:
        """Stops the sweep: no trial starts; the running ones get SIGTERM."""
        self.stopper.stop()

    @property
    def stopped(self) -> bool:
        return self.stopper.stopped


def summarize(sweep: Sweep, metric: str, mode: str) -> tuple[list[dict], dict | None]:
    """Rows (one per trial, summary.trial_row) and the best finished trial."""
    rows = [
        {
            **summary.trial_row(
                t["name"], t["overrides"], t["status"], sweep.sweep_dir / t["name"], metric, mode
            ),
            "wall_s": t.get("wall_s"),
        }
        for t in sweep.trials
    ]
    return rows, summary.best_row(rows, metric, mode)


def write_summary(sweep: Sweep, metric: str, mode: str) -> dict | None:
    """summary.{csv,md,png}, and lineage.png of population-based training; the best."""
    rows, best = summarize(sweep, metric, mode)
    errors = {t["name"]: t.get("error", "") for t in sweep.trials if t["status"] == "failed"}
    title = f"Sweep {sweep.sweep_dir.name}: `{' '.join(sweep.base_args)}`, {metric} ({mode})"
    summary.write_table(sweep.sweep_dir, rows, best, metric, title, errors)
    axes = list(dict.fromkeys(k for t in sweep.trials for k in t["overrides"]))
    summary.plot_axes(sweep.sweep_dir, rows, axes, metric)
    from jaxdl.viz.plots import plot_lineage  # population-based training's trials, if any

    workdirs = {t["name"]: sweep.sweep_dir / t["name"] for t in sweep.trials}
    plot_lineage(workdirs, sweep.sweep_dir / "lineage.png")
    return best


def exit_code(sweep: Sweep) -> int:
    return summary.exit_code(sweep.stopped, [t["status"] for t in sweep.trials])
