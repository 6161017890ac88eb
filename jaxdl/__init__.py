"""jaxdl: a JAX research framework with functional training loops.

The public API for a notebook or a script (each imported when first used, so `import
jaxdl` stays cheap):

    import jaxdl

    config = jaxdl.base_config(model="mlp")  # configs.base_config
    config.train.num_steps = 200
    metrics = jaxdl.train(config, "runs/mlp")  # train.train_and_evaluate
    config, info, task, state = jaxdl.load_run("runs/mlp")  # train.run_info.load_run

`jaxdl.testing` checks a model or a task of one's own; the subpackages (`jaxdl.configs`,
`jaxdl.registry`, `jaxdl.tasks`, ...) are reached the same way.
"""

import importlib

_FUNCTIONS = {
    "base_config": "jaxdl.configs",
    "load_run": "jaxdl.train.run_info",
}
_MODULES = (
    "backends",
    "configs",
    "data",
    "datasets",
    "errors",
    "evaluation",
    "export",
    "losses",
    "models",
    "optim",
    "registry",
    "serve",
    "sweeps",
    "tasks",
    "testing",
    "train",  # callable: jaxdl.train(config, workdir) trains (jaxdl/train/__init__.py)
    "viz",
)
__all__ = [*_FUNCTIONS, *_MODULES]


def __getattr__(name: str):
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"jaxdl.{name}")
    raise AttributeError(f"module 'jaxdl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
