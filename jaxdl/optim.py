"""The whole optimizer, built from the `optimizer` config section in one place:

clipping (global norm / value / none) -> weight decay -> optimizer -> learning-rate schedule.

The numeric hyperparameters in TRACEABLE may be given as arrays instead (`values`): the
same chain then takes them from a trace, e.g. one value per trial of a vmapped sweep.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl.errors import check, check_choice

CLIPS = ("global_norm", "value", "none")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "one_cycle")
TRACEABLE = ("learning_rate", "weight_decay", "clip_norm")


def build_schedule(
    cfg: ml_collections.ConfigDict, total_steps: int, learning_rate=None
) -> optax.Schedule:
    """The peak rate (`learning_rate`, else cfg's) times the schedule's unit-peak shape:
    every schedule here is linear in its peak, which may then be a traced value."""
    check_choice("optimizer.schedule", cfg.schedule, SCHEDULES)
    check(cfg.learning_rate > 0, f"optimizer.learning_rate={cfg.learning_rate} must be > 0")
    check(
        0 <= cfg.warmup_fraction < 1,
        f"optimizer.warmup_fraction={cfg.warmup_fraction} must be in [0, 1)",
    )
    shape = _unit_shape(cfg, total_steps)
    peak = cfg.learning_rate if learning_rate is None else learning_rate
    # float32 whatever JAX's default float (64-bit with jax_enable_x64)
    return lambda count: jnp.asarray(peak * shape(count), jnp.float32)


def _unit_shape(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    warmup_steps = int(cfg.warmup_fraction * total_steps)
    if cfg.schedule == "constant":
        if warmup_steps == 0:
            return optax.constant_schedule(1.0)
        return optax.linear_schedule(0.0, 1.0, warmup_steps)
    if cfg.schedule == "warmup_cosine":
        if warmup_steps == 0:  # the same curve, without optax's empty-warmup warning
            return optax.cosine_decay_schedule(
                1.0, max(total_steps, 1), alpha=cfg.final_lr_fraction
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=1.0,
            warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1),
            end_value=cfg.final_lr_fraction,
        )
    return optax.cosine_onecycle_schedule(
        transition_steps=max(total_steps, 1),
        peak_value=1.0,
        pct_start=max(cfg.warmup_fraction, 1e-3),
        div_factor=cfg.one_cycle_div_factor,
        final_div_factor=1.0 / max(cfg.final_lr_fraction, 1e-12) / cfg.one_cycle_div_factor,
    )


def _clip(cfg: ml_collections.ConfigDict, clip_norm) -> optax.GradientTransformation:
    check_choice("optimizer.clip", cfg.clip, CLIPS)
    if cfg.clip == "global_norm":
        check(cfg.clip_norm > 0, f"optimizer.clip_norm={cfg.clip_norm} must be > 0")
        return optax.clip_by_global_norm(clip_norm)
    if cfg.clip == "value":
        check(cfg.clip_value > 0, f"optimizer.clip_value={cfg.clip_value} must be > 0")
        return optax.clip(cfg.clip_value)
    return optax.identity()


def _decay_mask(params):
    """Decay weight matrices and kernels only, not biases or normalisation scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def build_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int, values: dict | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns the gradient transformation and its learning-rate schedule (for logging).
    `values`: some of TRACEABLE as (possibly traced) arrays, used instead of cfg's; the
    checks read cfg, so validate each trial's own config before tracing."""
    check_choice("optimizer.name", cfg.name, OPTIMIZERS)
    check(cfg.weight_decay >= 0, f"optimizer.weight_decay={cfg.weight_decay} must be >= 0")
    check(0 <= cfg.momentum < 1, f"optimizer.momentum={cfg.momentum} must be in [0, 1)")
    values = values or {}
    check(set(values) <= set(TRACEABLE), f"only {', '.join(TRACEABLE)} can be given as values")
    learning_rate, weight_decay, clip_norm = (values.get(k, cfg[k]) for k in TRACEABLE)
    schedule = build_schedule(cfg, total_steps, learning_rate)
    if cfg.name == "adamw":
        optimizer = optax.adamw(
            schedule,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=weight_decay,
            mask=_decay_mask,
        )
        return optax.chain(_clip(cfg, clip_norm), optimizer), schedule
    if cfg.name == "adam":
        optimizer = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        momentum = cfg.momentum if cfg.name == "momentum" else None
        optimizer = optax.sgd(schedule, momentum=momentum, nesterov=cfg.nesterov)
    # Other optimizers get L2-style decay, added to the gradient before the update.
    # (Both branches keep an empty state: the state's structure does not depend on it.)
    decay = (
        optax.add_decayed_weights(weight_decay, mask=_decay_mask)
        if cfg.weight_decay > 0 or "weight_decay" in values
        else optax.identity()
    )
    return optax.chain(_clip(cfg, clip_norm), decay, optimizer), schedule


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
