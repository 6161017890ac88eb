"""Running a sweep: every trial a training run of its own, in its own workdir.

    sweep_dir/sweep.json          manifest: config file, each trial's overrides, status,
                                  return code, wall seconds, error tail
    sweep_dir/<trial>/            the trial's workdir (config.json, metrics.jsonl, ...)
    sweep_dir/summary.{csv,md}    one row per trial; summary.png: metric vs each axis

Backend `slurm`: one job array (`sbatch`), at most `parallel` tasks at a time, tracked
with `squeue` and read back with `sacct`; SIGINT/SIGTERM cancel it (`scancel`).

Backend `local`: `parallel` trials at a time as subprocesses of launch/train.py, each on
its own device slot (one GPU via CUDA_VISIBLE_DEVICES, or its own share of the CPU cores
via affinity), with the slot's settings in its environment before JAX starts. With
`vmap` > 1, up to `vmap` pending trials with the same `group` key (see
grouping.vmap_key) run as one subprocess, one vmapped step (train.train_trials);
a trial of such a group that fails writes workdir/failed.txt and the others go on. A
finished trial is skipped when the sweep runs again; a failed one is recorded with the
tail of its stderr and the others go on; SIGINT/SIGTERM stop the running trials
(one SIGTERM each: they checkpoint and resume next time; SIGKILL after STOP_TIMEOUT_S)
and the sweep. Trainers die with the runner (SIGTERM when it dies, however it dies),
and a trial whose workdir is still locked by a stopping trainer waits for it.
"""

import csv
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from absl import logging

from jaxdl.errors import UserError, check
from jaxdl.train.processes import die_with_parent
from jaxdl.train.rundir import FAILED_FILE, STOPPED_FILE, lock_holder
from jaxdl.train.writers import read_metrics

MANIFEST = "sweep.json"
# A stopping trial gets one SIGTERM (it checkpoints and exits), then SIGKILL after this.
STOP_TIMEOUT_S = 300.0
# A trainer still holding a trial's workdir (left by a runner killed before) gets this
# long to finish its stop before the trial is started anyway (and fails on the lock).
UNLOCK_TIMEOUT_S = 300.0
# launch/train.py --vmap_trials: the others finished (and launch/sweep.py: some trial failed)
SOME_TRIALS_FAILED = 3
ROOT = Path(__file__).resolve().parents[2]


def format_override(name: str, value) -> str:
    shown = value if isinstance(value, str) else repr(value)
    return f"--config.{name}={shown}"


def device_slots(parallel: int, gpus: list[str] | None = None) -> list[dict]:
    """One environment (+ CPU affinity) per concurrent trial."""
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


class Sweep:
    def __init__(
        self,
        base_args: list[str],
        trials: list[dict],
        names: list[str],
        sweep_dir: Path,
        vmap: int = 1,
        groups: list[str] | None = None,
        manifest: bool = True,
    ):
        """`manifest` False: no sweep.json (a search keeps its trials in its study)."""
        check(vmap >= 1, f"config.sweep.vmap={vmap} must be >= 1")
        self.manifest = manifest
        self.base_args = base_args  # --config=FILE[:ARG] and shared --config.a.b=v
        self.vmap = vmap
        # Trials with equal group keys may share a vmapped run.
        self.groups = dict(zip(names, groups or names, strict=True))
        self.sweep_dir = Path(sweep_dir)
        self.path = self.sweep_dir / MANIFEST
        records = [
            {"name": n, "overrides": t, "status": "pending"}
            for n, t in zip(names, trials, strict=True)
        ]
        if manifest and self.path.exists():
            old = json.loads(self.path.read_text())
            same = [(r["name"], r["overrides"]) for r in old["trials"]] == [
                (r["name"], r["overrides"]) for r in records
            ]
            if old["base_args"] != base_args or not same:
                raise UserError(
                    f"{self.sweep_dir} holds a different sweep ({' '.join(old['base_args'])}, "
                    f"{len(old['trials'])} trials); use another --sweep_dir"
                )
            records = old["trials"]
        self.trials = records
        self._stop = False

    def save(self) -> None:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        if not self.manifest:
            return
        record = {"base_args": self.base_args, "trials": self.trials}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(self.path)  # never a half-written manifest

    def _command(self, unit: list[dict]) -> list[str]:
        """One trial: launch/train.py with its overrides; several: one vmapped run of
        them, listed in sweep_dir/<first trial>.trials.json."""
        train = [sys.executable, str(ROOT / "launch" / "train.py"), *self.base_args]
        if len(unit) == 1:
            return [
                *train,
                f"--workdir={self.sweep_dir / unit[0]['name']}",
                *(format_override(k, v) for k, v in unit[0]["overrides"].items()),
            ]
        listing = self.sweep_dir / f"{unit[0]['name']}.trials.json"
        listing.write_text(
            json.dumps(
                [
                    {"workdir": str(self.sweep_dir / t["name"]), "overrides": t["overrides"]}
                    for t in unit
                ],
                indent=1,
            )
            + "\n"
        )
        return [*train, f"--vmap_trials={listing}"]

    def _units(self, todo: list[dict]) -> list[list[dict]]:
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

    def _start(self, unit: list[dict], slot: dict) -> subprocess.Popen:
        log = self.sweep_dir / f"{unit[0]['name']}.log"
        for trial in unit:  # a trainer left by a runner killed before (it is stopping)
            _wait_for_unlock(self.sweep_dir / trial["name"])
        started = time.time()
        for trial in unit:
            trial.update(status="running", started=started, log=log.name)
        return start_child(self._command(unit), slot, log)

    def _finish(self, unit: list[dict], process: subprocess.Popen) -> None:
        for trial in unit:
            log = self.sweep_dir / trial["log"]
            workdir = self.sweep_dir / trial["name"]
            failure, stopped = workdir / FAILED_FILE, (workdir / STOPPED_FILE).exists()
            trial["returncode"] = process.returncode
            trial["wall_s"] = round(time.time() - trial.pop("started"), 2)
            if (stopped or (self._stop and process.returncode != 0)) and not failure.exists():
                trial["status"] = "interrupted"  # (a trainer stopped by a signal exits 0)
            elif failure.exists():  # one trial of a vmapped group
                trial["status"] = "failed"
                trial["error"] = failure.read_text().strip()
            elif process.returncode in (0, SOME_TRIALS_FAILED):
                trial["status"] = "done"
            else:
                trial["status"] = "failed"
                lines = log.read_text(errors="replace").strip().splitlines()
                trial["error"] = "\n".join(lines[-5:])
            logging.info("trial %s: %s (%.0f s)", trial["name"], trial["status"], trial["wall_s"])

    def run(self, slots: list[dict]) -> None:
        """Runs every trial not done yet, len(slots) at a time."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        todo = [t for t in self.trials if t["status"] != "done"]
        for trial in todo:
            trial["status"] = "pending"
        self.save()
        todo = self._units(todo)

        def start(unit: list[dict], slot: dict) -> subprocess.Popen:
            process = self._start(unit, slot)
            self.save()
            return process

        def finish(unit: list[dict], process: subprocess.Popen) -> None:
            self._finish(unit, process)
            self.save()

        try:
            self.run_in_slots(slots, lambda: todo.pop(0) if todo else None, start, finish)
        finally:
            self.save()

    def run_in_slots(self, slots: list[dict], take, start, finish) -> None:
        """Keeps each slot busy with the next unit of work `take()` gives (None: no more)
        until none is left and none runs, or a signal stops the sweep: then its running
        children get one SIGTERM, and SIGKILL after STOP_TIMEOUT_S. `start(unit, slot)`
        returns the unit's process; `finish(unit, process)` is called when it has ended."""
        running: dict[int, tuple] = {}  # slot -> (unit, process)
        stopping_since: dict[int, float] = {}  # pid -> when it was sent SIGTERM
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        exhausted = False
        try:
            while (not exhausted and not self._stop) or running:
                for index, slot in enumerate(slots):
                    if index in running or exhausted or self._stop:
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
                if self._stop:
                    for _, process in running.values():
                        stop_child(process, stopping_since)
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # ---- SLURM ----------------------------------------------------------------------------
    def slurm_script(
        self,
        trials: list[dict],
        parallel: int,
        sbatch_options: list[str],
        tasks_per_trial: int = 1,
    ) -> str:
        """A job-array script: array task i runs trials[i]'s command, logs in
        slurm/<i>.err; with `tasks_per_trial` > 1, as that many processes of one JAX job
        (srun; launch/train.py joins it with --jax_distributed)."""
        logs = self.sweep_dir / "slurm"
        prefix = []
        if tasks_per_trial > 1:
            prefix = ["srun", f"--ntasks={tasks_per_trial}", "--kill-on-bad-exit=1"]
        suffix = ["--jax_distributed"] if tasks_per_trial > 1 else []
        commands = "\n".join(shlex.join([*prefix, *self._command([t]), *suffix]) for t in trials)
        header = [
            "#!/bin/bash",
            f"#SBATCH --job-name=jaxdl-{self.sweep_dir.name}",
            f"#SBATCH --array=0-{len(trials) - 1}%{parallel}",
            f"#SBATCH --output={logs}/%a.out",
            f"#SBATCH --error={logs}/%a.err",
            *([f"#SBATCH --ntasks={tasks_per_trial}"] if tasks_per_trial > 1 else []),
            *(f"#SBATCH {option}" for option in sbatch_options),
        ]
        body = [
            "set -euo pipefail",
            f"cd {shlex.quote(str(ROOT))}",
            "COMMANDS=$(cat <<'JAXDL_TRIALS'",
            commands,
            "JAXDL_TRIALS",
            ")",
            "set +e",
            'eval "$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" <<< "$COMMANDS")"',
            "code=$?",
            f'echo "$code" > {shlex.quote(str(logs))}/"$SLURM_ARRAY_TASK_ID".exit',
            'exit "$code"',
        ]
        return "\n".join(header + body) + "\n"

    def run_slurm(
        self,
        parallel: int,
        sbatch_options: list[str],
        poll_s: float = 2.0,
        tasks_per_trial: int = 1,
    ) -> None:
        """Submits the trials not done yet as one job array and waits for it."""
        check(tasks_per_trial >= 1, f"--tasks_per_trial={tasks_per_trial} must be >= 1")
        check(self.vmap == 1, "config.sweep.vmap > 1 runs on the local backend only, for now")
        todo = [t for t in self.trials if t["status"] != "done"]
        if not todo:
            return
        logs = self.sweep_dir / "slurm"
        logs.mkdir(parents=True, exist_ok=True)
        for stale in logs.glob("*.exit"):  # a previous submission's task numbering
            stale.unlink()
        script = logs / "array.sh"
        script.write_text(self.slurm_script(todo, parallel, sbatch_options, tasks_per_trial))
        submitted = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True
        )
        if submitted.returncode != 0:
            raise UserError(f"sbatch failed: {submitted.stderr.strip() or submitted.stdout}")
        job = submitted.stdout.strip().split(";")[0]
        start = time.time()
        for trial in todo:
            trial.update(status="submitted", slurm_job=job)
        self.save()
        logging.info("submitted job array %s (%d trials)", job, len(todo))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while subprocess.run(
                ["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True
            ).stdout.strip():
                if self._stop:
                    subprocess.run(["scancel", "--signal=TERM", "--full", job])
                    subprocess.run(["scancel", job])
                time.sleep(poll_s)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        # Each task writes its exit code; accounting (sacct) covers tasks that never ran to
        # the end (cancelled, killed, node failure) and clusters keep it off by default.
        states = self._sacct_states(job)
        for index, trial in enumerate(todo):
            state, code = states.get(index, ("UNKNOWN", "?"))
            exit_file = logs / f"{index}.exit"
            if exit_file.exists():
                code = exit_file.read_text().strip()
                state = "COMPLETED" if code == "0" else "FAILED"
            trial["wall_s"] = round(time.time() - start, 2)
            trial["returncode"] = code
            if state == "COMPLETED":
                trial["status"] = "done"
            elif self._stop or state.startswith("CANCELLED"):
                trial["status"] = "interrupted"
            else:
                trial["status"] = "failed"
                err = logs / f"{index}.err"
                lines = err.read_text(errors="replace").strip().splitlines() if err.exists() else []
                trial["error"] = "\n".join([f"slurm state {state}", *lines[-5:]])
        self.save()

    @staticmethod
    def _sacct_states(job: str) -> dict[int, tuple[str, str]]:
        """Array index -> (state, exit code) from sacct, where accounting is on (retried:
        it lags)."""
        for _ in range(3):
            try:
                out = subprocess.run(
                    ["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State,ExitCode"],
                    capture_output=True,
                    text=True,
                ).stdout
            except FileNotFoundError:
                return {}
            states = {}
            for line in out.strip().splitlines():
                fields = line.split("|")
                if len(fields) != 3 or "_" not in fields[0]:
                    continue
                index = fields[0].split("_")[1]
                if index.isdigit():
                    states[int(index)] = (fields[1].split()[0], fields[2].split(":")[0])
            if states:
                return states
            time.sleep(1)
        return {}

    def stop(self) -> None:
        """Stops the sweep: no trial starts; run_in_slots stops the running ones."""
        self._stop = True

    def _on_signal(self, signum, frame) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stop


def summarize(sweep: Sweep, metric: str, mode: str) -> tuple[list[dict], dict | None]:
    """Rows (one per trial) and the best finished trial, by `metric` ('min' or 'max')."""
    better = min if mode == "min" else max
    rows = []
    for trial in sweep.trials:
        values = [
            float(r[metric]) for r in read_metrics(sweep.sweep_dir / trial["name"]) if metric in r
        ]
        finite = [v for v in values if math.isfinite(v)]
        rows.append(
            {
                "trial": trial["name"],
                **trial["overrides"],
                "status": trial["status"],
                f"final {metric}": values[-1] if values else None,
                f"best {metric}": better(finite) if finite else None,
                "wall_s": trial.get("wall_s"),
            }
        )
    finished = [r for r in rows if r["status"] == "done" and r[f"final {metric}"] is not None]
    best = better(finished, key=lambda r: r[f"final {metric}"]) if finished else None
    return rows, best


def write_summary(sweep: Sweep, metric: str, mode: str) -> dict | None:
    rows, best = summarize(sweep, metric, mode)
    errors = {t["name"]: t.get("error", "") for t in sweep.trials if t["status"] == "failed"}
    title = f"Sweep {sweep.sweep_dir.name}: `{' '.join(sweep.base_args)}`, {metric} ({mode})"
    write_table(sweep.sweep_dir, rows, best, metric, title, errors)
    axes = list(dict.fromkeys(k for t in sweep.trials for k in t["overrides"]))
    plot_axes(sweep.sweep_dir, rows, axes, metric)
    from jaxdl.viz.plots import plot_lineage  # population-based training's trials, if any

    workdirs = {t["name"]: sweep.sweep_dir / t["name"] for t in sweep.trials}
    plot_lineage(workdirs, sweep.sweep_dir / "lineage.png")
    return best


def write_table(
    sweep_dir: Path, rows: list[dict], best: dict | None, metric: str, title: str, errors: dict
) -> None:
    """summary.csv and summary.md: one row per trial, the best, each failure's error."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = lambda v: "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(shown(r.get(c)) for c in columns) + " |" for r in rows),
        "",
        f"Best: **{best['trial']}** ({metric} = {best[f'final {metric}']:.4g})"
        if best
        else "Best: none finished.",
        "",
    ]
    for name, error in errors.items():
        lines += [f"- {name} failed:", "", "```", error, "```", ""]
    (sweep_dir / "summary.md").write_text("\n".join(lines))


def plot_axes(sweep_dir: Path, rows: list[dict], axes: list[str], metric: str) -> None:
    """summary.png: the final metric against each axis of the trials' overrides."""
    points = [r for r in rows if r[f"final {metric}"] is not None]
    if not axes or not points:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(axes), figsize=(3.6 * len(axes), 3), squeeze=False)
    for ax, name in zip(panels[0], axes, strict=True):
        xs = [r.get(name) for r in points]
        ys = [r[f"final {metric}"] for r in points]
        if all(isinstance(x, int | float) for x in xs):
            ax.scatter(xs, ys)
            if min(xs) > 0 and max(xs) > 10 * min(xs):
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], ys)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sweep_dir / "summary.png", dpi=100)
    plt.close(fig)


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
    """One SIGTERM; SIGKILL only if it is still running STOP_TIMEOUT_S later."""
    if process.poll() is not None:
        return
    if process.pid not in since:
        since[process.pid] = time.time()
        process.send_signal(signal.SIGTERM)
    elif time.time() - since[process.pid] > STOP_TIMEOUT_S:
        logging.warning(
            "trial process %d did not stop in %.0f s: killed", process.pid, STOP_TIMEOUT_S
        )
        process.kill()


def _wait_for_unlock(workdir: Path) -> None:
    deadline = time.time() + UNLOCK_TIMEOUT_S
    holder = lock_holder(workdir)
    if holder is not None:
        logging.info("waiting for trainer %s to release %s", holder, workdir)
    while holder is not None and time.time() < deadline:
        time.sleep(0.5)
        holder = lock_holder(workdir)
