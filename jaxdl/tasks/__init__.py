"""Tasks: one per kind of training, each pure (see base.py), each registered beside its
class (jaxdl/registry.py). `build` makes the one a config names, with its model."""

import jax
import ml_collections

from jaxdl import backends, configs, registry
from jaxdl.errors import check
from jaxdl.models import precision
from jaxdl.tasks.base import BuildContext, Generator, Task, TrainState


def build(
    config: ml_collections.ConfigDict,
    info: dict,
    total_steps: int,
    optimizer_values: dict | None = None,
    backend: str | None = None,
    *,
    resolved: bool = False,
) -> Task:
    """The task named by config.task.name with the model named by config.model.name;
    `info` is the input's JSON description (class names, vocabulary: see data.Input);
    `optimizer_values`: one vmapped trial's traced optimizer numbers (optim.TRACEABLE);
    `backend`: the one it will run on (default JAX's), which "auto" settings follow
    (jaxdl/backends.py). `resolved`: `config` is configs.resolve's already (the trainer
    resolves a run's config once, where it starts, and builds from that)."""
    config = config if resolved else configs.resolve(config)
    config = backends.resolve(config, backend or jax.default_backend())
    task_entry = registry.lookup("task", config.task.name)
    model_entry = registry.lookup("model", config.model.name)
    check(
        task_entry.needs in info,
        f"task {task_entry.name!r} needs a data set with {task_entry.needs}; "
        f"data.name={info.get('name')!r} has none",
    )
    family = task_entry.family
    check(
        model_entry.family == family,
        f"task {task_entry.name!r} trains {family} models "
        f"({', '.join(n for n in registry.names('model') if _family(n) == family)}); "
        f"model {model_entry.name!r} is a {model_entry.family} model",
    )
    model = precision.with_compute_dtype(
        model_entry.build(config.model, info), config.train.compute_dtype
    )
    context = BuildContext(
        info,
        total_steps,
        config.data.batch_size,
        config.optimizer,
        optimizer_values or {},
        microbatches=config.train.microbatches,
    )
    return task_entry.build(config.task, model, context)


def _family(model_name: str) -> str:
    return registry.lookup("model", model_name).family


__all__ = ["BuildContext", "Generator", "Task", "TrainState", "build"]
