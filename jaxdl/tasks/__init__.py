"""Tasks: one per kind of training, each pure (see base.py). `build` picks one by config."""

import ml_collections

from jaxdl import models, optim
from jaxdl.data import Dataset
from jaxdl.errors import check, check_choice
from jaxdl.tasks.base import Task, TrainState
from jaxdl.tasks.classify import ClassifyTask

TASKS = ("classify",)
MODELS = ("cnn",)
CONV_IMPLS = ("matmul", "xla")


def build_model(cfg: ml_collections.ConfigDict, num_classes: int):
    check_choice("model.name", cfg.name, MODELS)
    check_choice("model.conv_impl", cfg.conv_impl, CONV_IMPLS)
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    check(cfg.kernel_size % 2 == 1, f"model.kernel_size={cfg.kernel_size} must be odd")
    check(cfg.stem_block >= 1, f"model.stem_block={cfg.stem_block} must be >= 1")
    stages = tuple(tuple(int(w) for w in stage) for stage in cfg.stages)
    check(
        all(stages) and all(w > 0 for stage in stages for w in stage),
        f"model.stages={cfg.stages} must be non-empty stages of positive widths",
    )
    return models.CNN(
        num_classes=num_classes,
        stages=stages,
        kernel_size=cfg.kernel_size,
        batch_norm=cfg.batch_norm,
        dropout=cfg.dropout,
        dense=cfg.dense,
        stem_block=cfg.stem_block,
        conv_impl=cfg.conv_impl,
    )


def build(config: ml_collections.ConfigDict, train_set: Dataset, total_steps: int) -> Task:
    """The Task named by config.task.name, with its model and optimizer."""
    check_choice("task.name", config.task.name, TASKS)
    optimizer, schedule = optim.build_optimizer(config.optimizer, total_steps)
    cfg = config.task
    check(
        0 <= cfg.label_smoothing < 1,
        f"task.label_smoothing={cfg.label_smoothing} must be in [0, 1)",
    )
    check(cfg.shift >= 0, f"task.shift={cfg.shift} must be >= 0")
    return ClassifyTask(
        model=build_model(config.model, train_set.num_classes),
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=cfg.label_smoothing,
        flip=cfg.flip,
        shift=cfg.shift,
    )


__all__ = ["Task", "TrainState", "build"]
