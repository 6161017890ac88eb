"""Sweeps: definitions (spec.py, pure: what experiment files' `sweep()` use), which
trials may share a vmapped step (grouping.py), and the runner (runner.py: manifest,
local and SLURM backends, summary)."""

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
