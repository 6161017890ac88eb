"""The impure layer: devices, files, signals. Everything else in jaxdl is pure."""

from jaxdl.train.loop import evaluate, train_and_evaluate, train_trials, validate
from jaxdl.train.writers import METRICS_FILE, read_metrics

__all__ = [
    "METRICS_FILE",
    "evaluate",
    "read_metrics",
    "train_and_evaluate",
    "train_trials",
    "validate",
]
