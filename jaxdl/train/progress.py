"""One progress line per log step: rate, examples (or tokens)/s, ETA, and a few metrics;
`shows_logs`: the trainer's log lines shown where nothing else would show them (in a
notebook, or any Python that parsed no absl flags)."""

import contextlib
import functools
import logging
import sys
from pathlib import Path

from absl import logging as absl_logging


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    def __init__(
        self,
        total_steps: int,
        items_per_step: int,
        unit: str,
        max_seconds: float,
        step: int,
        elapsed_s: float,
    ):
        self.total_steps = total_steps
        self.items_per_step = items_per_step
        self.unit = unit
        self.max_seconds = max_seconds
        self._last = (step, elapsed_s)
        self._rate = 0.0

    def exclude(self, seconds: float) -> None:
        """Leaves `seconds` (an eval) out of the next rate, so it measures training alone."""
        step, time = self._last
        self._last = (step, time + seconds)

    def line(self, step: int, elapsed_s: float, metrics: dict) -> str:
        """The progress line for `step`; the rate is measured since the previous call, or
        since an earlier one when no time has passed on the rows' clock (elapsed_s is
        rounded: fast steps logged every step can share a value)."""
        last_step, last_time = self._last
        if elapsed_s > last_time:
            self._rate = (step - last_step) / (elapsed_s - last_time)
            self._last = (step, elapsed_s)
        rate = self._rate
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        if self.max_seconds:
            eta = min(eta, self.max_seconds - elapsed_s)
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        return (
            f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%) "
            f"{rate:.2f} steps/s {rate * self.items_per_step:.0f} {self.unit}/s "
            f"ETA {format_duration(eta) if eta != float('inf') else '?'} | {shown}"
        )


class _ToStderr(logging.StreamHandler):
    """jaxdl's lines, and others' warnings, on sys.stderr as it is at each line (a
    notebook's, or a test's capture); not orbax's, which logs each save in detail (a
    failed save is the trainer's own error line)."""

    JAXDL = str(Path(__file__).resolve().parents[1])

    def filter(self, record) -> bool:
        if "/orbax/" in record.pathname:
            return False
        return record.levelno >= logging.WARNING or record.pathname.startswith(self.JAXDL)

    def emit(self, record) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def _logs_shown():
    """absl's INFO lines (the progress line, the data, the eval) on stderr in absl's
    format, while nobody configured logging: absl's logger has no level of its own and
    would drop them (before absl flags are parsed, the root logger's WARNING rules).
    A launcher (app.run), `absl.logging.set_verbosity`, or a root level of INFO or
    lower is left as it is."""
    logger = logging.getLogger("absl")
    if logger.level != logging.NOTSET or logger.getEffectiveLevel() <= logging.INFO:
        yield
        return
    handler = _ToStderr()
    handler.setFormatter(absl_logging.PythonFormatter())
    propagate = logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the root's handler (absl's basicConfig) would repeat them
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(logging.NOTSET)


def shows_logs(train):
    """`train` with its log lines shown while nobody configured logging (_logs_shown)."""

    @functools.wraps(train)
    def run(*args, **kwargs):
        with _logs_shown():
            return train(*args, **kwargs)

    return run
