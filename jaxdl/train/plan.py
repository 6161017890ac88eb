"""What a run is made of, settled before it trains (run.py assembles it, then runs it).

check_train_section   every check of config.train, in one place
total_steps           the steps a run trains (train.num_steps, or its epochs)
RunOutputs            loop.Outputs (what the loop and its hooks write through) and
                      what the assembly calls besides (start, resume, result,
                      close): rundir.RunDir, trials.TrialRunDirs
Steps                 the compiled programs of a run and the shardings they take
Plan                  the pieces of one run: the config, mesh, input, task, outputs,
                      steps and hooks that `train_and_evaluate` and `train_trials`
                      build and run.py's loop reads
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
import ml_collections

from jaxdl import data
from jaxdl.errors import check, check_choice
from jaxdl.models import precision
from jaxdl.tasks.base import Task
from jaxdl.train import checkpoint, trackers
from jaxdl.train import mesh as mesh_lib
from jaxdl.train.hooks import Evaluate, parse_profile
from jaxdl.train.loop import Hook, Outputs


def check_train_section(config: ml_collections.ConfigDict) -> None:
    """Every check of config.train (ConfigError naming the key): steps, cadences, budget,
    checkpoints kept, writers, sharding, precision, micro-batches, profile."""
    train = config.train
    check(train.num_steps >= 0, f"train.num_steps={train.num_steps} must be >= 0")
    check(
        train.num_steps > 0 or train.num_epochs > 0,
        "set train.num_steps or train.num_epochs to a positive value",
    )
    check(train.log_every > 0, f"train.log_every={train.log_every} must be > 0")
    check(train.max_seconds >= 0, "train.max_seconds must be >= 0 (0 = no limit)")
    for name in ("eval_every", "checkpoint_every"):
        check(train[name] >= 0, f"train.{name}={train[name]} must be >= 0")
    check(train.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
    trackers.parse_writers(train.writers)
    checkpoint.BestOf.of(train)
    check_choice("train.param_sharding", train.param_sharding, mesh_lib.PARAM_SHARDINGS)
    check_choice("train.compute_dtype", train.compute_dtype, tuple(precision.COMPUTE_DTYPES))
    check(train.microbatches >= 1, f"train.microbatches={train.microbatches} must be >= 1")
    check(
        config.data.batch_size % train.microbatches == 0,
        f"data.batch_size={config.data.batch_size} must divide into "
        f"train.microbatches={train.microbatches}",
    )
    parse_profile(train.profile)


def total_steps(train: ml_collections.ConfigDict, batches_per_epoch: int) -> int:
    """train.num_steps, or num_epochs of the input's batches (a checked section)."""
    if train.num_steps:
        return train.num_steps
    return max(1, math.ceil(train.num_epochs * batches_per_epoch))


@runtime_checkable
class RunOutputs(Outputs, Protocol):
    """Outputs, and what the assembly calls besides: where run-wide files go, the newest
    checkpoint and its restore, the start's files, the stop's mark, the result, close."""

    @property
    def path(self) -> Path: ...
    def latest_step(self) -> int | None: ...
    def restore(self, abstract_state, sharding) -> tuple: ...
    def start(self, step: int, info: dict, example_batch: dict, total_steps: int) -> None: ...
    def mark_stopped(self, reason: str) -> None: ...
    def result(self, metrics: dict): ...
    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Steps:
    """A run's compiled programs, what they were traced at and the shardings they take."""

    shard: Callable[[dict], dict]  # a host batch -> global arrays, laid out for train
    example: dict  # batch 0, sharded: what every program is traced at
    abstract: Any  # the state's shapes
    state_sharding: Any
    train: Callable  # (state, batch) -> (state, metrics)
    pretrain: Callable | None  # the same for a task's first phase, if it has one
    evaluate: Callable  # state -> {name: Mean} summed over the whole eval set
    draw: Callable | None  # state -> {name: pictures}, if the task draws any


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """One run's pieces (K vmapped trials: the group's), all built before it trains."""

    config: ml_collections.ConfigDict  # resolved and checked (trials: the first one's)
    mesh: jax.sharding.Mesh
    inputs: data.Input
    batches: Any  # the training batches: inputs.train, or K trials' stacked
    task: Task
    start: Any  # what task.init starts from: a random key (a vmapped group: TrialStarts)
    steps: Steps
    outputs: RunOutputs
    hooks: Sequence[Hook]  # the default hooks, then the caller's
    evaluator: Evaluate  # among hooks: its last eval is the run's result
    total_steps: int
    started: float  # time.perf_counter() when the run was asked for
