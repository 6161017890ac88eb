"""The whole optimizer, built from the `optimizer` config section in one place:

clipping (global norm / value / none) -> weight decay -> optimizer -> learning-rate schedule.
"""

import jax
import ml_collections
import optax

from jaxdl.errors import check, check_choice

CLIPS = ("global_norm", "value", "none")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "one_cycle")


def build_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    check_choice("optimizer.schedule", cfg.schedule, SCHEDULES)
    check(cfg.learning_rate > 0, f"optimizer.learning_rate={cfg.learning_rate} must be > 0")
    check(
        0 <= cfg.warmup_fraction < 1,
        f"optimizer.warmup_fraction={cfg.warmup_fraction} must be in [0, 1)",
    )
    warmup_steps = int(cfg.warmup_fraction * total_steps)
    if cfg.schedule == "constant":
        if warmup_steps == 0:
            return optax.constant_schedule(cfg.learning_rate)
        return optax.linear_schedule(0.0, cfg.learning_rate, warmup_steps)
    if cfg.schedule == "warmup_cosine":
        if warmup_steps == 0:  # the same curve, without optax's empty-warmup warning
            return optax.cosine_decay_schedule(
                cfg.learning_rate, max(total_steps, 1), alpha=cfg.final_lr_fraction
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=cfg.learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1),
            end_value=cfg.learning_rate * cfg.final_lr_fraction,
        )
    return optax.cosine_onecycle_schedule(
        transition_steps=max(total_steps, 1),
        peak_value=cfg.learning_rate,
        pct_start=max(cfg.warmup_fraction, 1e-3),
        div_factor=cfg.one_cycle_div_factor,
        final_div_factor=1.0 / max(cfg.final_lr_fraction, 1e-12) / cfg.one_cycle_div_factor,
    )


def _clip(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    check_choice("optimizer.clip", cfg.clip, CLIPS)
    if cfg.clip == "global_norm":
        check(cfg.clip_norm > 0, f"optimizer.clip_norm={cfg.clip_norm} must be > 0")
        return optax.clip_by_global_norm(cfg.clip_norm)
    if cfg.clip == "value":
        check(cfg.clip_value > 0, f"optimizer.clip_value={cfg.clip_value} must be > 0")
        return optax.clip(cfg.clip_value)
    return optax.identity()


def _decay_mask(params):
    """Decay weight matrices and kernels only, not biases or normalisation scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def build_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns the gradient transformation and its learning-rate schedule (for logging)."""
    check_choice("optimizer.name", cfg.name, OPTIMIZERS)
    check(cfg.weight_decay >= 0, f"optimizer.weight_decay={cfg.weight_decay} must be >= 0")
    check(0 <= cfg.momentum < 1, f"optimizer.momentum={cfg.momentum} must be in [0, 1)")
    schedule = build_schedule(cfg, total_steps)
    if cfg.name == "adamw":
        optimizer = optax.adamw(
            schedule,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=_decay_mask,
        )
        return optax.chain(_clip(cfg), optimizer), schedule
    if cfg.name == "adam":
        optimizer = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        momentum = cfg.momentum if cfg.name == "momentum" else None
        optimizer = optax.sgd(schedule, momentum=momentum, nesterov=cfg.nesterov)
    # Other optimizers get L2-style decay, added to the gradient before the update.
    decay = (
        optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask)
        if cfg.weight_decay > 0
        else optax.identity()
    )
    return optax.chain(_clip(cfg), decay, optimizer), schedule


def default_config() -> ml_collections.ConfigDict:
    """The optimizer section every experiment starts from."""
    return ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=1e-3,
            momentum=0.9,
            nesterov=False,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            clip="global_norm",
            clip_norm=1.0,
            clip_value=1.0,
            schedule="warmup_cosine",
            warmup_fraction=0.05,
            final_lr_fraction=0.0,
            one_cycle_div_factor=25.0,
        )
    )
