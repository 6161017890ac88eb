"""The trainer, the impure layer: devices, files, signals. loop.py runs steps and hooks
(hooks.py); run.py assembles a run from a config; rundir.py is the run directory;
trials.py trains K vmapped trials as one; mesh.py, checkpoint.py, writers.py,
progress.py and run_info.py are its parts."""

import importlib
import sys
import types

# Imported when first used: launch/multiprocess.py reads jaxdl.train.processes before it
# starts its children, and importing JAX first would delay each job by ~1.6 s.
_EXPORTS = {
    "METRICS_FILE": "writers",
    "Hook": "loop",
    "Loop": "loop",
    "Stop": "loop",
    "fit": "loop",
    "read_metrics": "writers",
    "train_and_evaluate": "run",
    "train_trials": "run",
    "validate": "run",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxdl.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"jaxdl.train.{_EXPORTS[name]}"), name)


class _Train(types.ModuleType):
    """This package, callable: `jaxdl.train(config, workdir, hooks=(), ...)` is
    `train_and_evaluate` (the top-level API, jaxdl/__init__.py: once imported, a
    subpackage is the attribute of its parent, so the package itself is the function)."""

    def __call__(self, config, workdir, hooks=(), **options):
        return self.train_and_evaluate(config, workdir, hooks, **options)


sys.modules[__name__].__class__ = _Train
