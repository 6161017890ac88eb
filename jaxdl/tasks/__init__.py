"""Tasks: one per kind of training, each pure (see base.py). `build` picks one by config."""

import ml_collections

from jaxdl import models, optim
from jaxdl.errors import check, check_choice
from jaxdl.models import autoencoder, han
from jaxdl.models import gan as gan_models
from jaxdl.tasks.autoencode import LIKELIHOODS, AutoencodeTask
from jaxdl.tasks.base import Task, TrainState
from jaxdl.tasks.classify import ClassifyTask
from jaxdl.tasks.classify_documents import EMBED_INITS, DocumentClassifyTask
from jaxdl.tasks.gan import GAN_LOSSES, NOISE_DISTRIBUTIONS, GANState, GANTask
from jaxdl.tasks.lm import LanguageModelTask, LMState

TASKS = ("classify", "lm", "autoencode", "gan", "classify_documents")
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


def _build_dcgan(cfg: ml_collections.ConfigDict, data_info: dict):
    """(generator, discriminator); conditional models need the data's class names."""
    check_choice("model.conv_impl", cfg.conv_impl, CONV_IMPLS)
    check(cfg.g_width > 0 and cfg.d_width > 0, "model.g_width and model.d_width must be > 0")
    minibatch_std = cfg.get("d_minibatch_std", 0)
    check(minibatch_std >= 0, f"model.d_minibatch_std must be >= 0, not {minibatch_std}")
    image_shape = tuple(data_info["image_shape"])
    check(
        image_shape[0] % 4 == 0 and image_shape[1] % 4 == 0,
        f"model dcgan needs image sides divisible by 4, not {image_shape}",
    )
    num_classes = 0
    if cfg.conditional:
        check("class_names" in data_info, "model.conditional=True needs a data set with labels")
        num_classes = len(data_info["class_names"])
    generator = gan_models.Generator(image_shape, cfg.g_width, num_classes, conv_impl=cfg.conv_impl)
    discriminator = gan_models.Discriminator(
        cfg.d_width, num_classes, conv_impl=cfg.conv_impl, minibatch_std=minibatch_std
    )
    return generator, discriminator


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
    "dcgan": _build_dcgan,
    "han": _build_han,
}
# The data a task reads, named in errors: the key of data_info it needs.
_TASK_DATA = {
    "classify": "class_names",
    "lm": "vocab",
    "autoencode": "image_shape",
    "gan": "image_shape",
    "classify_documents": "words",
}


def _build_gan(config: ml_collections.ConfigDict, models: tuple, total_steps: int) -> GANTask:
    """config.optimizer trains the generator, config.task.d_optimizer the discriminator."""
    cfg = config.task
    check(
        config.model.name == "dcgan", f"task gan needs model.name=dcgan, not {config.model.name!r}"
    )
    check_choice("task.loss", cfg.loss, GAN_LOSSES)
    check_choice("task.noise_distribution", cfg.noise_distribution, NOISE_DISTRIBUTIONS)
    check(cfg.noise_dim > 0, f"task.noise_dim={cfg.noise_dim} must be > 0")
    check(cfg.n_disc >= 1, f"task.n_disc={cfg.n_disc} must be >= 1")
    check(
        config.data.batch_size % cfg.n_disc == 0,
        f"data.batch_size={config.data.batch_size} must divide into task.n_disc={cfg.n_disc}",
    )
    check(cfg.r1_gamma >= 0, f"task.r1_gamma={cfg.r1_gamma} must be >= 0")
    mode_seeking = cfg.get("mode_seeking", 0.0)
    check(mode_seeking >= 0, f"task.mode_seeking={mode_seeking} must be >= 0")
    check(
        not mode_seeking or config.data.batch_size % 2 == 0,
        f"task.mode_seeking needs an even data.batch_size, not {config.data.batch_size}",
    )
    aux_classifier = cfg.get("aux_classifier", 0.0)
    check(aux_classifier >= 0, f"task.aux_classifier={aux_classifier} must be >= 0")
    generator, discriminator = models
    check(
        not aux_classifier or generator.num_classes,
        "task.aux_classifier needs a conditional model (model.conditional=True)",
    )
    if aux_classifier:
        discriminator = discriminator.clone(classify=True)
    check(0 <= cfg.ema < 1, f"task.ema={cfg.ema} must be in [0, 1)")
    check(cfg.pretrain_steps >= 0 and cfg.refine_steps >= 0, "task step counts must be >= 0")
    check(cfg.refine_step_size > 0, "task.refine_step_size must be > 0")
    d_optimizer, d_schedule = optim.build_optimizer(cfg.d_optimizer, total_steps)
    g_optimizer, g_schedule = optim.build_optimizer(config.optimizer, total_steps)
    return GANTask(
        generator,
        discriminator,
        g_optimizer,
        d_optimizer,
        g_schedule,
        d_schedule,
        noise_dim=cfg.noise_dim,
        noise_distribution=cfg.noise_distribution,
        loss=cfg.loss,
        n_disc=cfg.n_disc,
        r1_gamma=cfg.r1_gamma,
        mode_seeking=mode_seeking,
        aux_classifier=aux_classifier,
        ema=cfg.ema,
        pretrain_steps=cfg.pretrain_steps,
        refine_steps=cfg.refine_steps,
        refine_step_size=cfg.refine_step_size,
    )


def build_model(cfg: ml_collections.ConfigDict, data_info: dict):
    check_choice("model.name", cfg.name, tuple(MODELS))
    return MODELS[cfg.name](cfg, data_info)


def build(
    config: ml_collections.ConfigDict,
    data_info: dict,
    total_steps: int,
    optimizer_values: dict | None = None,
) -> Task:
    """The Task named by config.task.name, with its model and optimizer; `data_info` is
    the input's JSON description (class names, vocabulary: see data.Input).
    `optimizer_values`: traced optimizer hyperparameters (see optim.build_optimizer)."""
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
    model = build_model(config.model, data_info)
    if config.task.name == "gan":
        # Its two optimizers are built from config alone: per-trial values would be lost.
        check(not optimizer_values, "vmapped trials of task 'gan' may differ only in seed")
        return _build_gan(config, model, total_steps)
    optimizer, schedule = optim.build_optimizer(config.optimizer, total_steps, optimizer_values)
    cfg = config.task
    if cfg.name == "lm":
        return LanguageModelTask(model, optimizer, schedule)
    if cfg.name == "classify_documents":
        check(0 <= cfg.word_dropout < 1, f"task.word_dropout={cfg.word_dropout} must be in [0, 1)")
        check(0 <= cfg.label_smoothing < 1, "task.label_smoothing must be in [0, 1)")
        embed_init = cfg.get("embed_init", "random")
        check_choice("task.embed_init", embed_init, EMBED_INITS)
        ppmi_window = cfg.get("ppmi_window", 5)
        check(ppmi_window >= 1, f"task.ppmi_window={ppmi_window} must be >= 1")
        ema = cfg.get("ema", 0.0)
        check(0 <= ema < 1, f"task.ema={ema} must be in [0, 1)")
        return DocumentClassifyTask(
            model,
            optimizer,
            schedule,
            cfg.label_smoothing,
            cfg.word_dropout,
            embed_init=embed_init,
            ppmi_window=ppmi_window,
            ema=ema,
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


__all__ = ["GANState", "LMState", "Task", "TrainState", "build"]
