"""Sweeps, in layers:

    spec.py      definitions (pure): what experiment files' `sweep()` and --sweep/--space use
    slots.py     units of work in device slots: child processes, signals, stopping
    slurm.py     a job array: submitted, waited for, accounted for, cancelled, requeued
    summary.py   rows, the best, summary.{csv,md,png}, exit codes
    runner.py    the grid sweep (sweep.json), on slots or SLURM
    study.py     a search's bookkeeping: its Optuna study and storage, who trains what
    search.py    the search: its workers, their runner, its report

Which trials may share a vmapped step is the trainer's rule (train/grouping.py)."""

from jaxdl.sweeps.spec import (
    apply_overrides,
    choice,
    combine,
    grid,
    integer,
    loguniform,
    parse_axis,
    parse_distribution,
    random_search,
    trial_name,
    uniform,
)

__all__ = [
    "apply_overrides",
    "choice",
    "combine",
    "grid",
    "integer",
    "loguniform",
    "parse_axis",
    "parse_distribution",
    "random_search",
    "trial_name",
    "uniform",
]
