"""Losses and metrics: pure functions of arrays, per example unless named otherwise."""

import jax
import jax.numpy as jnp
from flax import struct


def softmax_cross_entropy(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
    """Cross-entropy in nats per example, against one-hot labels smoothed towards uniform."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    return -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the arg-max class is the label, else 0.0, per example."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


@struct.dataclass
class Mean:
    """A weighted mean kept as (total, count), so it merges across batches and devices."""

    total: jax.Array
    count: jax.Array

    @classmethod
    def of(cls, values: jax.Array, mask: jax.Array | None = None) -> "Mean":
        weights = jnp.ones_like(values) if mask is None else mask.astype(values.dtype)
        return cls(total=jnp.sum(values * weights), count=jnp.sum(weights))

    def merge(self, other: "Mean") -> "Mean":
        return Mean(self.total + other.total, self.count + other.count)

    def compute(self) -> float:
        return float(self.total) / max(float(self.count), 1e-12)
