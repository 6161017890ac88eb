"""A run directory, as the trainer writes it:

    workdir/config.json        the resolved config
    workdir/run.json           the data's description, batch shapes, planned steps
    workdir/metrics.jsonl      one row per logged step: step, elapsed_s, train/*, eval/*
    workdir/tensorboard/       the same scalars for TensorBoard
    workdir/images/            <name>_<step>.png pictures of tasks that draw them
    workdir/checkpoints/<step> state + data position (orbax)
    workdir/failed.txt         why the run stopped on a non-finite value (if it did)
    workdir/metrics.png        every metric against step, when the run stops

`RunDir` is the trainer's `outputs` for one run; trials.TrialRunDirs gives each of K
vmapped trials one of them. Only the chief process (process 0) writes files other than
checkpoints, which every process writes together.
"""

import math
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxdl.train import checkpoint
from jaxdl.train.run_info import write_run_info
from jaxdl.train.writers import MetricWriter, write_images

FAILED_FILE = "failed.txt"  # read by the sweep runner


class RunDir:
    def __init__(
        self,
        workdir: str | Path,
        config: ml_collections.ConfigDict,
        keep_checkpoints: int,
        chief: bool = True,
    ):
        self.path = Path(workdir)
        self.config = config
        self.chief = chief
        self.checkpoints = checkpoint.Checkpoints(self.path / "checkpoints", keep_checkpoints)
        self.failure: str | None = None  # why it stopped on a non-finite value
        self._writer = None

    @property
    def name(self) -> str:
        return self.path.name

    # ---- start: resume and the files that describe the run --------------------------------
    def latest_step(self) -> int | None:
        return self.checkpoints.latest_step()

    def restore(self, abstract_state, sharding) -> tuple:
        """(state, position) of the newest checkpoint, placed with `sharding`."""
        step = self.latest_step()
        return self.checkpoints.restore(step, checkpoint.abstract_like(abstract_state, sharding))

    def start(self, step: int, info: dict, example_batch: dict, total_steps: int) -> None:
        """Writes config.json and run.json and opens metrics.jsonl at `step` (dropping rows
        a killed run wrote after its last checkpoint)."""
        if self.chief:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / FAILED_FILE).unlink(missing_ok=True)
            (self.path / "config.json").write_text(self.config.to_json_best_effort(indent=2) + "\n")
            write_run_info(self.path, info, example_batch, total_steps)
        self._writer = MetricWriter(self.path, resume_step=step, enabled=self.chief)

    # ---- during the run -------------------------------------------------------------------
    def write(self, step: int, elapsed_s: float, row: dict) -> None:
        """One metrics row: numbers (host scalars) and strings (e.g. `stop`)."""
        if self.failure is None:
            self._writer.write(step, elapsed_s, {k: _scalar(v) for k, v in row.items()})

    def write_images(self, step: int, pictures: dict) -> None:
        if self.chief and self.failure is None and pictures:
            write_images(self.path, step, pictures)

    def save(self, step: int, state, position: dict) -> None:
        if self.failure is None:
            self.checkpoints.save(step, state, jax.tree.map(_json, position))

    def check_finite(self, step: int, elapsed_s: float, metrics: dict) -> str | None:
        """None while every value of `metrics` (a step's, on the host) is finite; else
        the run has stopped here: its row is written and the reason returned."""
        if self.failure is not None:
            return self.failure
        values = {name: _scalar(value) for name, value in metrics.items()}
        bad = [(n, v) for n, v in values.items() if not math.isfinite(v)]
        if not bad:
            return None
        self.write(step, elapsed_s, {f"train/{n}": v for n, v in values.items()})
        self.checkpoints.wait()
        last_good = self.checkpoints.latest_step()
        kept = f"step {last_good}" if last_good is not None else "none saved yet"
        self.failure = (
            f"non-finite train/{bad[0][0]}={bad[0][1]} at step {step}; stopped, last good "
            f"checkpoint: {kept} in {self.path / 'checkpoints'}"
        )
        if self.chief:
            (self.path / FAILED_FILE).write_text(self.failure + "\n")
        return self.failure

    def shown(self, row: dict) -> dict:
        """The values of a row the progress line shows."""
        return {k: _scalar(v) for k, v in row.items() if not isinstance(v, str)}

    def result(self, metrics: dict):
        """What training returns: the final eval metrics as floats (None if it failed)."""
        return None if self.failure else {k: _scalar(v) for k, v in metrics.items()}

    def wait(self) -> None:
        """Until every checkpoint save started so far is complete."""
        self.checkpoints.wait()

    def plot(self) -> None:
        if self.chief:
            from jaxdl.viz import plots  # matplotlib only where a plot is drawn

            plots.plot_metrics(self.path)

    def close(self) -> None:
        self.checkpoints.close()
        if self._writer is not None:
            self._writer.close()


def _scalar(value):
    """A host number (numpy scalar or 0-d array) as a float; strings as they are."""
    if isinstance(value, str):
        return value
    return float(np.asarray(value))


def _json(value):
    """Numpy values as JSON numbers or lists; the rest as they are."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value
