"""Tasks: one per kind of training, each pure (see base.py). `build` picks one by config."""

import ml_collections

from jaxdl import models, optim
from jaxdl.errors import check, check_choice
from jaxdl.models import autoencoder, han
from jaxdl.tasks.autoencode import LIKELIHOODS, AutoencodeTask
from jaxdl.tasks.base import Task, TrainState
from jaxdl.tasks.classify import ClassifyTask
from jaxdl.tasks.classify_documents import DocumentClassifyTask
from jaxdl.tasks.lm import LanguageModelTask, LMState

TASKS = ("classify", "lm", "autoencode", "classify_documents")
CONV_IMPLS = ("matmul", "xla")


def _build_cnn(cfg: ml_collections.ConfigDict, data_info: dict):
    num_classes = len(data_info["class_names"])
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


def _build_rnn_lm(cfg: ml_collections.ConfigDict, data_info: dict):
    check_choice("model.cell", cfg.cell, models.lstm.CELLS)
    check_choice("model.backward", cfg.backward, tuple(models.lstm.BACKWARDS))
    check_choice("model.activation", cfg.activation, tuple(models.lstm.ACTIVATIONS))
    check(cfg.hidden > 0 and cfg.layers > 0, "model.hidden and model.layers must be positive")
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    check(cfg.unroll >= 1, f"model.unroll={cfg.unroll} must be >= 1")
    return models.RecurrentLanguageModel(
        vocab_size=len(data_info["vocab"]),
        hidden=cfg.hidden,
        layers=cfg.layers,
        cell=cfg.cell,
        backward=cfg.backward,
        activation=cfg.activation,
        dropout=cfg.dropout,
        unroll=cfg.unroll,
    )


def _build_autoencoder(cfg: ml_collections.ConfigDict, data_info: dict):
    check_choice("model.arch", cfg.arch, autoencoder.ARCHS)
    check(cfg.latent > 0, f"model.latent={cfg.latent} must be positive")
    hidden = tuple(int(w) for w in cfg.hidden)
    channels = tuple(int(w) for w in cfg.channels)
    check(all(w > 0 for w in hidden + channels), "model.hidden/channels must be positive")
    check(cfg.arch == "mlp" or channels, "model.channels must be non-empty for arch=conv")
    check(cfg.logvar_min < cfg.logvar_max, "model.logvar_min must be < model.logvar_max")
    return autoencoder.AutoEncoder(
        latent=cfg.latent,
        image_shape=tuple(data_info["image_shape"]),
        arch=cfg.arch,
        hidden=hidden,
        channels=channels,
        variational=cfg.variational,
        logvar_range=(cfg.logvar_min, cfg.logvar_max),
    )


def _build_han(cfg: ml_collections.ConfigDict, data_info: dict):
    check_choice("model.cell", cfg.cell, han.CELLS)
    check(
        min(cfg.embed, cfg.hidden, cfg.attention) > 0,
        "model.embed, model.hidden and model.attention must be positive",
    )
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    return han.HierarchicalAttentionClassifier(
        num_classes=len(data_info["class_names"]),
        vocab_size=len(data_info["words"]),
        embed=cfg.embed,
        hidden=cfg.hidden,
        attention=cfg.attention,
        cell=cfg.cell,
        dropout=cfg.dropout,
    )


MODELS = {
    "cnn": _build_cnn,
    "rnn_lm": _build_rnn_lm,
    "autoencoder": _build_autoencoder,
    "han": _build_han,
}
# The data a task reads, named in errors: the key of data_info it needs.
_TASK_DATA = {
    "classify": "class_names",
    "lm": "vocab",
    "autoencode": "image_shape",
    "classify_documents": "words",
}


def build_model(cfg: ml_collections.ConfigDict, data_info: dict):
    check_choice("model.name", cfg.name, tuple(MODELS))
    return MODELS[cfg.name](cfg, data_info)


def build(config: ml_collections.ConfigDict, data_info: dict, total_steps: int) -> Task:
    """The Task named by config.task.name, with its model and optimizer; `data_info` is
    the input's JSON description (class names, vocabulary: see data.Input)."""
    check_choice("task.name", config.task.name, TASKS)
    needed = _TASK_DATA[config.task.name]
    check(
        needed in data_info,
        f"task {config.task.name!r} needs a data set with {needed}; "
        f"data.name={data_info.get('name')!r} has none",
    )
    check(
        (config.task.name == "classify_documents") == (config.model.name == "han"),
        f"task {config.task.name!r} and model {config.model.name!r} do not go together "
        "(documents: task classify_documents with model han)",
    )
    optimizer, schedule = optim.build_optimizer(config.optimizer, total_steps)
    model = build_model(config.model, data_info)
    cfg = config.task
    if cfg.name == "lm":
        return LanguageModelTask(model, optimizer, schedule)
    if cfg.name == "classify_documents":
        check(0 <= cfg.word_dropout < 1, f"task.word_dropout={cfg.word_dropout} must be in [0, 1)")
        check(0 <= cfg.label_smoothing < 1, "task.label_smoothing must be in [0, 1)")
        return DocumentClassifyTask(
            model, optimizer, schedule, cfg.label_smoothing, cfg.word_dropout
        )
    if cfg.name == "autoencode":
        check_choice("task.likelihood", cfg.likelihood, LIKELIHOODS)
        check(cfg.gaussian_sigma > 0, "task.gaussian_sigma must be > 0")
        check(cfg.beta >= 0, f"task.beta={cfg.beta} must be >= 0")
        check(cfg.kl_warmup_steps >= 0 and cfg.iwae_samples >= 0, "task counts must be >= 0")
        return AutoencodeTask(
            model,
            optimizer,
            schedule,
            likelihood=cfg.likelihood,
            gaussian_sigma=cfg.gaussian_sigma,
            beta=cfg.beta,
            kl_warmup_steps=cfg.kl_warmup_steps,
            iwae_samples=cfg.iwae_samples,
            num_classes=len(data_info.get("class_names", ())),
        )
    check(
        0 <= cfg.label_smoothing < 1,
        f"task.label_smoothing={cfg.label_smoothing} must be in [0, 1)",
    )
    check(cfg.shift >= 0, f"task.shift={cfg.shift} must be >= 0")
    return ClassifyTask(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=cfg.label_smoothing,
        flip=cfg.flip,
        shift=cfg.shift,
    )


__all__ = ["LMState", "Task", "TrainState", "build"]
