"""Orbax checkpoints of (state, data position): async, keep N, atomic.

Orbax writes each step to a temporary directory and renames it when complete, so a
killed save never looks like a checkpoint; `latest_step` only sees complete ones.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: Path, keep: int = 1, read_only: bool = False):
        """`read_only`: for tools that restore a run (nothing is created or deleted)."""
        options = (
            ocp.CheckpointManagerOptions(read_only=True)
            if read_only
            else ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=True, create=True
            )
        )
        self._manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of every complete checkpoint kept, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, position: dict) -> None:
        """Starts an async save; `position` is JSON (data position, elapsed time)."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position)
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state) -> tuple:
        """Restores (state, position); `abstract_state` gives shapes, dtypes, shardings."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), position=ocp.args.JsonRestore()
            ),
        )
        return restored.state, dict(restored.position)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree, sharding):
    """Shape/dtype structs of `tree` with the given sharding, for restoring onto devices."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
