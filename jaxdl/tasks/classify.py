"""Image classification: softmax cross-entropy, on-device augmentation.

Models of the `classifier` family: `model.apply(variables, x, train=..., rngs=...,
mutable=...)` with x float32 NHWC in [-1, 1] returns class logits (N, classes); with
`penultimate=True` (eval mode) the features the last layer reads (tools that compare
image sets use them). Non-trained variables (batch norm's `batch_stats`) are allowed.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl import losses, registry
from jaxdl.errors import check
from jaxdl.tasks.base import (
    BuildContext,
    Task,
    TrainState,
    accumulate_gradients,
    apply_gradients,
    part_key,
)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def augment(rng: jax.Array, images: jax.Array, flip: bool, shift: int) -> jax.Array:
    """Random horizontal flips and random translations by up to `shift` pixels
    (zero-padded crops), independently per image, on device."""
    flip_rng, shift_rng = jax.random.split(rng)
    n, h, w, _ = images.shape
    if flip:
        flipped = jax.random.bernoulli(flip_rng, 0.5, (n, 1, 1, 1))
        images = jnp.where(flipped, images[:, :, ::-1, :], images)
    if shift:
        padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
        offsets = jax.random.randint(shift_rng, (n, 2), 0, 2 * shift + 1)
        crop = lambda image, offset: jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (h, w, image.shape[-1])
        )
        images = jax.vmap(crop)(padded, offsets)
    return images


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ClassifyTask(Task):
    model: nn.Module
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    label_smoothing: float
    flip: bool
    shift: int
    microbatches: int = 1

    def _apply(self, params, model_state, images, train, rngs=None):
        """Returns (logits, new model_state)."""
        variables = {"params": params, **model_state}
        if not train or not model_state:
            return self.model.apply(variables, images, train=train, rngs=rngs), model_state
        return self.model.apply(variables, images, train=True, rngs=rngs, mutable=list(model_state))

    def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        variables = self.model.init(params_rng, to_float(example_batch["image"]), train=False)
        params = variables.pop("params")
        return TrainState.create(params, self.optimizer, state_rng, dict(variables))

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        augment_rng, dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
        images = augment(augment_rng, to_float(batch["image"]), self.flip, self.shift)

        def loss_fn(params, part, model_state, index):
            rngs = {"dropout": part_key(dropout_rng, index, self.microbatches)}
            logits, model_state = self._apply(params, model_state, part["image"], True, rngs)
            labels = part["label"]
            loss = losses.softmax_cross_entropy(logits, labels, self.label_smoothing).mean()
            return loss, ({"accuracy": losses.accuracy(logits, labels).mean()}, model_state, None)

        # Batch statistics are updated part after part (each part normalised by its own).
        loss, metrics, model_state, _, grads = accumulate_gradients(
            loss_fn,
            state.params,
            {"image": images, "label": batch["label"]},
            self.microbatches,
            state.model_state,
        )
        new_state, step_metrics = apply_gradients(
            state, grads, self.optimizer, self.schedule, model_state=model_state
        )
        return new_state, {"loss": loss, **metrics, **step_metrics}

    def logits(self, state: TrainState, images: jax.Array) -> jax.Array:
        """Class logits of uint8 images, in eval mode (what tools that judge images use)."""
        return self._apply(state.params, state.model_state, to_float(images), False)[0]

    def features(self, state: TrainState, images: jax.Array) -> jax.Array:
        """The model's penultimate features of uint8 images, in eval mode."""
        variables = {"params": state.params, **state.model_state}
        return self.model.apply(variables, to_float(images), train=False, penultimate=True)

    def row_outputs(self, state: TrainState, batch: dict) -> jax.Array:
        return self.logits(state, batch["image"])

    def eval_step(self, state: TrainState, batch: dict) -> dict:
        logits = self.logits(state, batch["image"])
        return losses.classification_metrics(logits, batch["label"], batch.get("mask"))


@registry.task(
    "classify",
    model_family="classifier",
    needs="class_names",
    data="fashion_mnist",
    label_smoothing=0.0,
    flip=False,  # random horizontal flips
    shift=0,  # random translations by up to this many pixels
)
def build(cfg, model, context: BuildContext) -> ClassifyTask:
    check(
        0 <= cfg.label_smoothing < 1,
        f"task.label_smoothing={cfg.label_smoothing} must be in [0, 1)",
    )
    check(cfg.shift >= 0, f"task.shift={cfg.shift} must be >= 0")
    optimizer, schedule = context.optimizer()
    return ClassifyTask(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=cfg.label_smoothing,
        flip=cfg.flip,
        shift=cfg.shift,
        microbatches=context.microbatches,
    )
