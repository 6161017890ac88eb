"""The trainer, the impure layer: devices, files, signals. loop.py runs steps and hooks
(hooks.py); run.py assembles a run from a config; rundir.py is the run directory;
trials.py trains K vmapped trials as one; mesh.py, checkpoint.py, writers.py,
progress.py and run_info.py are its parts."""

from jaxdl.train.loop import Hook, Loop, Stop, fit
from jaxdl.train.run import train_and_evaluate, train_trials, validate
from jaxdl.train.writers import METRICS_FILE, read_metrics

__all__ = [
    "METRICS_FILE",
    "Hook",
    "Loop",
    "Stop",
    "fit",
    "read_metrics",
    "train_and_evaluate",
    "train_trials",
    "validate",
]
