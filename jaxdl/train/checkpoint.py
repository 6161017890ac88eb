"""Orbax checkpoints of (state, data position): async, keep N, never half-trusted.

Orbax writes each step to a temporary directory and renames it when complete, so a
killed save never looks like a checkpoint; `latest_step` only sees complete ones. On
top of that:
- A save that fails (disk full, permissions, I/O) raises CheckpointError with one line
  as soon as it is known: at the next `poll` (the trainer polls every step), `save` or
  `wait`. Older checkpoints are only deleted (keeping the newest `keep`) once a newer
  save is known complete, so a failed save never costs the last good one.
- `restore_newest` restores the newest checkpoint that restores, warning about each
  damaged one it skips; a checkpoint whose state has other shapes than the run's is
  not damage but another config, and raises StateMismatchError. Orbax abandons the
  reads still in flight when the first fails; asyncio later logs each of their errors
  with a traceback ("Task exception was never retrieved"). Those echoes of a damaged
  checkpoint, already reported in one line, are dropped.
"""

import errno
import logging as std_logging
import os
import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxdl.errors import CheckpointError, UserError

_SLACK_BYTES = 1 << 20  # beyond the arrays' own bytes: metadata, JSON, file system blocks


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
    def __init__(self, directory: Path, keep: int = 1, read_only: bool = False):
        """`read_only`: for tools that restore a run (nothing is created or deleted)."""
        self.directory = Path(directory).absolute()
        self.keep = keep
        options = (
            ocp.CheckpointManagerOptions(read_only=True)
            if read_only
            else ocp.CheckpointManagerOptions(enable_async_checkpointing=True, create=True)
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

    def save(self, step: int, state, position: dict) -> None:
        """Starts an async save; `position` is JSON (data position, elapsed time)."""
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
                force=True,
            )
        except Exception as e:
            raise CheckpointError(self._failed(step, e)) from e
        self._pending = step

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
        for old in self.all_steps()[: -self.keep]:  # a newer save is complete: rotate
            self._manager.delete(old)

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
