"""Orbax checkpoints of (state, data position): async, keep N, never half-trusted.

Orbax writes each step to a temporary directory and renames it when complete, so a
killed save never looks like a checkpoint; `latest_step` only sees complete ones. On
top of that:
- A save that fails (disk full, permissions, I/O) raises CheckpointError with one line
  as soon as it is known: at the next `poll` (the trainer polls every step), `save` or
  `wait`. Older checkpoints are only deleted (keeping the newest `keep`) once a newer
  save is known complete, so a failed save never costs the last good one.
- With a `BestOf`, the `keep` best checkpoints by an eval metric (saved with each
  checkpoint: orbax's step metrics) are kept too, beside the newest `keep`: which to keep
  is orbax's preservation policies' decision (LatestN or, with a best, AnyPreservationPolicy
  of LatestN and BestN), applied by the same safe rotation; `best_file` names the best.
  Resume still takes the newest.
- `restore_newest` restores the newest checkpoint that restores, warning about each
  damaged one it skips; a checkpoint whose state has other shapes than the run's is
  not damage but another config, and raises StateMismatchError. Orbax abandons the
  reads still in flight when the first fails; asyncio later logs each of their errors
  with a traceback ("Task exception was never retrieved"). Those echoes of a damaged
  checkpoint, already reported in one line, are dropped.
"""

import dataclasses
import datetime
import errno
import json
import logging as std_logging
import math
import os
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxdl.errors import CheckpointError, ConfigError, UserError, check, check_choice

BEST_FILE = "best.json"  # in the workdir (RunDir): the best kept checkpoint, for --step=best
_SLACK_BYTES = 1 << 20  # beyond the arrays' own bytes: metadata, JSON, file system blocks
# train.best_mode "" (by name): a metric whose last part holds one of these is better larger
# (max), or smaller (min).
_LARGER_IS_BETTER = ("accuracy", "auc", "score", "f1", "precision", "recall", "psnr", "iou")
_SMALLER_IS_BETTER = ("loss", "error", "perplexity", "fid", "nll", "bits", "nats", "mse")


@dataclasses.dataclass(frozen=True)
class BestOf:
    """Keep the `keep` best checkpoints by `metric` (an eval metric), larger or smaller
    (`mode` "max" or "min") being better."""

    metric: str
    mode: str
    keep: int

    @classmethod
    def of(cls, train_cfg) -> "BestOf | None":
        """config.train's keep_best / best_metric / best_mode (None: keep_best=0);
        ConfigError for a missing metric or an unknown mode."""
        keep, metric = train_cfg.keep_best, train_cfg.best_metric
        check(keep >= 0, f"train.keep_best={keep} must be >= 0")
        if not keep:
            return None
        check(
            metric.startswith("eval/"),
            f"train.keep_best={keep} needs train.best_metric=eval/<name> (e.g. eval/accuracy), "
            f"not {metric!r}",
        )
        mode = train_cfg.best_mode or mode_of(metric)
        check_choice("train.best_mode", mode, ("max", "min"))
        return cls(metric, mode, keep)

    def policy(self, latest: int):
        """Orbax's preservation policy: the newest `latest` and these best."""
        best = ocp.checkpoint_managers.BestN(
            get_metric_fn=lambda metrics: metrics[self.metric],
            reverse=self.mode == "min",  # ascending: BestN keeps the last n
            n=self.keep,
            keep_checkpoints_without_metrics=False,
        )
        newest = ocp.checkpoint_managers.LatestN(n=latest)
        return ocp.checkpoint_managers.AnyPreservationPolicy([newest, best])


def mode_of(metric: str) -> str:
    """Whether a larger value of `metric` is better ("max") or a smaller ("min"), by
    its name."""
    name = metric.rsplit("/", 1)[-1].lower()
    for words, mode in ((_LARGER_IS_BETTER, "max"), (_SMALLER_IS_BETTER, "min")):
        if any(word in name for word in words):
            return mode
    raise ConfigError(
        f"train.best_metric={metric}: is larger or smaller better? set train.best_mode=max or min"
    )


@dataclasses.dataclass
class _Info:
    """What a preservation policy reads of a checkpoint (orbax's PolicyCheckpointInfo)."""

    step: int
    metrics: dict | None
    time: datetime.datetime = dataclasses.field(default_factory=datetime.datetime.now)


class StateMismatchError(UserError):
    """A checkpoint holds a state of other shapes than the one asked for."""


class _DamageEchoes(std_logging.Filter):
    """Drops asyncio's late reports of failed reads inside checkpoints known damaged."""

    def __init__(self):
        super().__init__()
        self.damaged: set[str] = set()  # step directories, ending in a separator

    def filter(self, record) -> bool:
        if not str(record.msg).startswith("Task exception was never retrieved"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not any(path in str(error) for path in self.damaged)


_DAMAGE_ECHOES = _DamageEchoes()
std_logging.getLogger("asyncio").addFilter(_DAMAGE_ECHOES)


class Checkpoints:
    def __init__(
        self,
        directory: Path,
        keep: int = 1,
        read_only: bool = False,
        best: BestOf | None = None,
        best_file: Path | None = None,
    ):
        """`read_only`: for tools that restore a run (nothing is created or deleted);
        `best`: keep the best too (module doc), `best_file`: the JSON file that names them."""
        self.directory = Path(directory).absolute()
        self.keep = keep
        self.best, self.best_file = best, best_file
        self._policy = best.policy(keep) if best else ocp.checkpoint_managers.LatestN(n=keep)
        ranked = {"best_fn": lambda m: m[best.metric], "best_mode": best.mode} if best else {}
        options = (
            ocp.CheckpointManagerOptions(read_only=True)
            if read_only
            else ocp.CheckpointManagerOptions(
                enable_async_checkpointing=True, create=True, **ranked
            )
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "position": ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )
        self._pending: int | None = None  # the step of a save not yet known complete

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of every complete checkpoint kept, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, position: dict, metrics: dict | None = None) -> None:
        """Starts an async save; `position` is JSON (data position, elapsed time);
        `metrics` (the row of the step, with a best: its metric ranks the checkpoint)."""
        self._finish_pending()
        # A write that runs out of space fails deep in tensorstore's threads, which then
        # print tracebacks of their own: check the space before writing.
        needed = sum(x.nbytes for x in jax.tree.leaves(state)) + _SLACK_BYTES
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise CheckpointError(
                self._failed(
                    step, f"no space left on device ({free:,} bytes free, {needed:,} needed)"
                )
            )
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position)
                ),
                metrics=self._ranked(metrics),
                force=True,
            )
        except Exception as e:
            raise CheckpointError(self._failed(step, e)) from e
        self._pending = step

    def _ranked(self, metrics: dict | None) -> dict | None:
        """What orbax keeps with the checkpoint: {best metric: value} when the row has
        a finite one (a step without an eval is not ranked)."""
        if self.best is None or metrics is None or self.best.metric not in metrics:
            return None
        value = float(metrics[self.best.metric])
        return {self.best.metric: value} if math.isfinite(value) else None

    def poll(self) -> None:
        """Cheap: if the pending save has ended, raises CheckpointError if it failed. (Not
        in a multi-process job, where processes would see its end at different steps and
        wait at different places: there a failure shows at the next save or at the end.)"""
        if jax.process_count() > 1:
            return
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self._finish_pending()

    def wait(self) -> None:
        """Until the pending save is complete (CheckpointError if it failed)."""
        self._finish_pending()

    def _finish_pending(self) -> None:
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as e:
            raise CheckpointError(self._failed(step, e)) from e
        if step not in self._manager.all_steps():
            raise CheckpointError(self._failed(step, "it was not finalised (see the log)"))
        self._rotate()  # a newer save is complete

    def _rotate(self) -> None:
        """Deletes what the preservation policy does not keep; rewrites best_file."""
        ranked = lambda s: self._manager.metrics(s) if self.best else None
        infos = [_Info(s, ranked(s)) for s in self.all_steps()]
        context = ocp.checkpoint_managers.PreservationContext()
        keep = self._policy.should_preserve(infos, context=context)
        for info, kept in zip(infos, keep, strict=True):
            if not kept:
                self._manager.delete(info.step)
        if self.best is not None and self.best_file is not None:
            self._write_best([info for info, kept in zip(infos, keep, strict=True) if kept])

    def _write_best(self, kept: list) -> None:
        """best_file: the metric, its mode, the best step and value, and every kept
        ranked checkpoint's value."""
        metric = self.best.metric
        values = {i.step: i.metrics[metric] for i in kept if i.metrics and metric in i.metrics}
        if not values:
            return
        sign = 1 if self.best.mode == "max" else -1
        step = max(values, key=lambda s: (sign * values[s], s))
        record = {"metric": metric, "mode": self.best.mode, "step": step, "value": values[step]}
        record["kept"] = {str(s): v for s, v in sorted(values.items())}
        try:
            temporary = self.best_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(record, indent=1) + "\n")
            temporary.replace(self.best_file)  # never half written
        except OSError as e:
            logging.warning("could not write %s: %s", self.best_file, describe_os_error(e))

    def _failed(self, step: int, error) -> str:
        why = error if isinstance(error, str) else describe_os_error(error)
        return f"could not save checkpoint {step} in {self.directory}: {why}"

    def restore(self, step: int, abstract_state) -> tuple:
        """Restores (state, position); `abstract_state` gives shapes, dtypes, shardings."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), position=ocp.args.JsonRestore()
            ),
        )
        return restored.state, dict(restored.position)

    def restore_newest(self, abstract_state, set_aside: Path | None = None) -> tuple:
        """(step, state, position) of the newest checkpoint that restores; a damaged one is
        skipped with a warning (and moved into `set_aside`, if given, so that training can
        write its step again). Raises UserError if none restores, StateMismatchError if
        the newest readable one holds other shapes than `abstract_state`."""
        steps = self.all_steps()
        reasons = []
        for step in reversed(steps):
            try:
                self._check_shapes(step, abstract_state)
                restored = (step, *self.restore(step, abstract_state))
            except StateMismatchError:
                raise
            except Exception as e:  # orbax and tensorstore raise many kinds for damage
                _DAMAGE_ECHOES.damaged.add(f"{self.directory / str(step)}{os.sep}")
                reasons.append(f"{step}: {_root_cause(e)}")
                logging.warning(
                    "checkpoint %d in %s cannot be restored (%s); trying the one before",
                    step,
                    self.directory,
                    _root_cause(e),
                )
                continue
            if reasons and set_aside is not None:
                self._set_aside([s for s in steps if s > step], set_aside)
            return restored
        raise UserError(
            f"no checkpoint in {self.directory} can be restored ({reasons[0]}); move the "
            f"directory away to start afresh"
        )

    def _set_aside(self, steps: list[int], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for step in steps:
            target = folder / f"{step}"
            (self.directory / str(step)).rename(target)
            logging.warning("damaged checkpoint %d moved to %s", step, target)
        self._manager.reload()

    def _check_shapes(self, step: int, abstract_state) -> None:
        """StateMismatchError naming the first array whose saved shape differs (or that is
        missing); damage (unreadable metadata) raises whatever orbax raises."""
        metadata = self._manager.item_metadata(step)["state"]
        saved = _shapes(getattr(metadata, "tree", metadata))
        if not saved:
            raise ValueError("its state metadata is empty")
        wanted = _shapes(abstract_state)
        for path in sorted(set(saved) | set(wanted)):
            if saved.get(path) != wanted.get(path):
                raise StateMismatchError(
                    f"{path}: {_shown(saved.get(path))} saved, {_shown(wanted.get(path))} now"
                )

    def close(self) -> None:
        try:
            self._finish_pending()
        finally:
            self._manager.close()


def _shapes(tree) -> dict:
    """Every array leaf's shape by its path ('params/Dense_0/kernel')."""
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(_key(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _key(entry) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _shown(shape) -> str:
    return "nothing" if shape is None else str(shape)


def _root_cause(error: BaseException) -> str:
    """The first line of the innermost cause: what actually failed to read."""
    while error.__cause__ is not None:
        error = error.__cause__
    return _first_line(error)


def _first_line(error) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line.split(" See full TensorStore details")[0].split(" [tensorstore_spec")[0][:200]


def describe_os_error(error) -> str:
    """What went wrong, in words: 'no space left on device' and the like, found in the
    error or its causes (orbax and tensorstore wrap OSErrors in their own)."""
    seen = error
    while isinstance(seen, BaseException):
        if isinstance(seen, OSError) and seen.errno:
            return (seen.strerror or errno.errorcode.get(seen.errno, "")).lower()
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for words in ("No space left on device", "Permission denied", "Read-only file system"):
        if words.lower() in text.lower():
            return words.lower()
    return _first_line(error)


def abstract_like(tree, sharding):
    """Shape/dtype structs of `tree` with the given sharding (one for all leaves, or a
    tree of them), for restoring onto devices."""
    if isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.tree.map(lambda _: sharding, tree)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sharding
    )
