"""Metric outputs of a run: metrics.jsonl (read by tools and sweeps), pictures, and the
trackers of `train.writers` (TensorBoard, W&B, MLflow: trackers.py)."""

import json
import math
from pathlib import Path

import numpy as np
from absl import logging

from jaxdl.errors import UserError
from jaxdl.train import trackers

METRICS_FILE = "metrics.jsonl"
IMAGES_DIR = "images"


def write_images(workdir: Path, step: int, images: dict) -> None:
    """Each uint8 (H, W) or (H, W, C) array as workdir/images/<name>_<step>.png."""
    from PIL import Image

    folder = Path(workdir) / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        Image.fromarray(np.asarray(array)).save(folder / f"{name}_{step:07d}.png")


def read_metrics(workdir: Path) -> list[dict]:
    """The rows of workdir/metrics.jsonl; a damaged last line (a write cut by a kill) is
    dropped with a warning, a damaged line before it is a UserError."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise UserError(f"{path} line {number} is damaged: {line[:60]!r}") from None
            logging.warning("%s: dropped a damaged last line %r", path, line[:60])
    return rows


class MetricWriter:
    """Appends one JSON object per logged step: {"step", "elapsed_s", "train/x", "eval/y"}
    (and "stop": why, on a row written at a stop between the regular rows), then sends
    its numbers to the trackers of `config.train.writers` (none without a config).

    On resume from step k, rows after k (written by a run killed after its last
    checkpoint) are dropped first, so the file always describes one trajectory; the
    trackers, which had those rows already, get rows after the last one dropped.
    """

    def __init__(self, workdir: Path, resume_step: int, enabled: bool = True, config=None):
        self._enabled = enabled
        if not enabled:
            return
        self._workdir = Path(workdir)
        path = self._workdir / METRICS_FILE
        rows = read_metrics(workdir)
        kept = [row for row in rows if row["step"] <= resume_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self._file = path.open("a")
        names = [] if config is None else trackers.parse_writers(config.train.writers)
        logged_until = max((row["step"] for row in rows), default=None)
        self._trackers = trackers.Trackers(names, config, self._workdir, logged_until)

    def write(self, step: int, elapsed_s: float, scalars: dict) -> None:
        if not self._enabled:
            return
        row = {"step": step, "elapsed_s": round(elapsed_s, 3)}
        numbers = {k: v for k, v in scalars.items() if not isinstance(v, str)}
        # JSON has no NaN/Infinity: non-finite values are written as strings.
        row.update(
            {k: v if isinstance(v, str) or math.isfinite(v) else str(v) for k, v in scalars.items()}
        )
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        self._trackers.scalars(step, numbers)

    def write_images(self, step: int, images: dict) -> None:
        """The pictures as PNGs (write_images) and to the trackers."""
        if self._enabled:
            write_images(self._workdir, step, images)
            self._trackers.images(step, images)

    def close(self) -> None:
        if self._enabled:
            try:
                self._file.close()
            finally:
                self._trackers.close()
