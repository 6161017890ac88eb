"""Sweep definitions: lists of trials, each a dict of config overrides {"a.b": value}.

Pure: expansion and parsing only. An experiment file may define `sweep()` returning such
a list (built with `grid` / `random_search` or by hand); `launch/sweep.py` also takes
`--sweep='config.a.b=[v1,v2]'` flags, whose grids multiply.
"""

import ast
import copy
import itertools
import math
from collections.abc import Sequence

import ml_collections
import numpy as np

from jaxdl import configs, registry
from jaxdl.errors import ConfigError, check


def grid(**axes: Sequence) -> list[dict]:
    """Every combination: grid(**{"optimizer.learning_rate": [1e-3, 3e-3], "seed": range(2)})
    gives 4 trials, the last axis varying fastest."""
    for name, values in axes.items():
        check(len(values) > 0, f"sweep axis {name!r} has no values")
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def loguniform(low: float, high: float) -> tuple:
    check(0 < low < high, f"loguniform({low}, {high}) needs 0 < low < high")
    return ("loguniform", low, high)


def uniform(low: float, high: float) -> tuple:
    check(low < high, f"uniform({low}, {high}) needs low < high")
    return ("uniform", low, high)


def choice(values: Sequence) -> tuple:
    check(len(values) > 0, "choice() needs at least one value")
    return ("choice", list(values))


def integer(low: int, high: int) -> tuple:
    """An integer in [low, high], each equally likely."""
    check(
        int(low) == low and int(high) == high and low <= high,
        f"integer({low}, {high}) needs integers low <= high",
    )
    return ("int", int(low), int(high))


DISTRIBUTIONS = {"loguniform": loguniform, "uniform": uniform, "choice": choice, "int": integer}


def parse_distribution(spec: str) -> tuple[str, tuple]:
    """'config.optimizer.learning_rate=loguniform(1e-4,1e-2)' -> ('optimizer.learning_rate',
    ('loguniform', 1e-4, 1e-2)); also uniform(a,b), int(a,b), choice([...])."""
    name, sep, value = spec.partition("=")
    name = name.strip().removeprefix("config.")
    kind, paren, args = value.strip().partition("(")
    check(
        sep == "=" and name and paren and args.endswith(")") and kind in DISTRIBUTIONS,
        f"--space={spec!r}: expected config.a.b=KIND(...), KIND one of {sorted(DISTRIBUTIONS)}",
    )
    try:
        parsed = ast.literal_eval(f"({args[:-1]},)")
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"--space={spec!r}: cannot read the arguments ({e})") from e
    try:
        return name, DISTRIBUTIONS[kind](*parsed)
    except TypeError as e:
        raise ConfigError(f"--space={spec!r}: {e}") from e


def random_search(num_trials: int, seed: int, **distributions: tuple) -> list[dict]:
    """`num_trials` draws, reproducible from `seed`; each axis is loguniform(a, b),
    uniform(a, b), integer(a, b) or choice([...])."""
    check(num_trials > 0, f"random_search needs num_trials > 0, got {num_trials}")
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(num_trials):
        trial = {}
        for name, (kind, *args) in distributions.items():
            if kind == "loguniform":
                trial[name] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
            elif kind == "uniform":
                trial[name] = float(rng.uniform(args[0], args[1]))
            elif kind == "choice":
                trial[name] = args[0][int(rng.integers(len(args[0])))]
            elif kind == "int":
                trial[name] = int(rng.integers(args[0], args[1] + 1))
            else:
                raise ConfigError(f"unknown distribution {kind!r} for sweep axis {name!r}")
        trials.append(trial)
    return trials


def parse_axis(spec: str) -> tuple[str, list]:
    """'config.optimizer.learning_rate=[1e-3,3e-3]' -> ('optimizer.learning_rate', [...]);
    values are a Python list/tuple literal or range(...)."""
    name, sep, values = spec.partition("=")
    name = name.strip().removeprefix("config.")
    check(sep == "=" and name, f"--sweep={spec!r}: expected config.a.b=[v1,v2,...]")
    values = values.strip()
    try:
        if values.startswith("range(") and values.endswith(")"):
            parsed = list(range(*ast.literal_eval(f"({values[6:-1]},)")))
        else:
            parsed = ast.literal_eval(values)
    except (ValueError, SyntaxError, TypeError) as e:
        raise ConfigError(f"--sweep={spec!r}: cannot read the values ({e})") from e
    check(
        isinstance(parsed, list | tuple) and len(parsed) > 0,
        f"--sweep={spec!r}: values must be a non-empty [list] or range(...)",
    )
    return name, list(parsed)


def combine(defined: list[dict] | None, axes: list[tuple[str, list]]) -> list[dict]:
    """The file's trials (or one empty trial) times the grid of the command-line axes."""
    base = defined if defined else [{}]
    extra = grid(**dict(axes)) if axes else [{}]
    trials = [{**a, **b} for a in base for b in extra]
    keys = [tuple(sorted((k, repr(v)) for k, v in t.items())) for t in trials]
    check(len(set(keys)) == len(keys), "the sweep defines the same trial twice")
    return trials


def trial_name(index: int, overrides: dict) -> str:
    """A directory name that says what the trial is: 003_learning_rate=0.003_seed=1."""
    parts = [f"{k.split('.')[-1]}={v}" for k, v in overrides.items()]
    name = "_".join([f"{index:03d}", *parts])
    return "".join(c if c.isalnum() or c in "._=-" else "-" for c in name)[:120]


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: dict
) -> ml_collections.ConfigDict:
    """A copy of `config` with a trial's {"a.b": value} overrides; unknown keys raise
    ConfigError. A new `model.name` or `task.name` first switches that section to the
    entry's defaults (configs.switch), as on the command line."""
    trial = copy.deepcopy(config)
    trial.unlock()
    for kind in registry.KINDS:
        if f"{kind}.name" in overrides:
            configs.switch(trial, kind, overrides[f"{kind}.name"])
    try:
        for name, value in overrides.items():
            *path, leaf = name.split(".")
            target = trial
            for key in path:
                target = target[key]
            if leaf not in target:
                raise KeyError(f"unknown config key {name!r}")
            target[leaf] = value
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"trial {overrides}: {e}") from e
    return trial
