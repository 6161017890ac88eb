"""Losses and metrics: pure functions of arrays, per example unless named otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


def softmax_cross_entropy(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
    """Cross-entropy in nats per example, against one-hot labels smoothed towards uniform."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
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

    def compute(self):
        """total / count as a float (float64), or an array of them for stacked Means (a
        leading axis of vmapped trials)."""
        total, count = np.asarray(self.total, np.float64), np.asarray(self.count, np.float64)
        mean = total / np.maximum(count, 1e-12)
        return float(mean) if mean.ndim == 0 else mean


def classification_metrics(logits: jax.Array, labels: jax.Array, mask: jax.Array | None) -> dict:
    """A classifier's eval metrics over a (padded) batch: cross-entropy and accuracy."""
    return {
        "loss": Mean.of(softmax_cross_entropy(logits, labels), mask),
        "accuracy": Mean.of(accuracy(logits, labels), mask),
    }


# ---- Latent-variable models: per-example sums over the last `ndim` axes ---------------


def _sum_last(x: jax.Array, ndim: int) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(-ndim, 0)))


def bernoulli_log_likelihood(logits: jax.Array, targets: jax.Array, ndim: int) -> jax.Array:
    """log p(x | logits) for x in [0, 1] (grey values as Bernoulli probabilities), in nats,
    summed over the last `ndim` axes: sum x log s(l) + (1 - x) log(1 - s(l))."""
    return _sum_last(
        targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits), ndim
    )


def gaussian_log_likelihood(
    mean: jax.Array, targets: jax.Array, sigma: float, ndim: int
) -> jax.Array:
    """log N(x; mean, sigma^2 I), summed over the last `ndim` axes."""
    z = (targets - mean) / sigma
    return _sum_last(-0.5 * z**2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi), ndim)


def gaussian_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mean, diag(exp(logvar))), summed over the last axis."""
    return jnp.sum(
        -0.5 * ((z - mean) ** 2 * jnp.exp(-logvar) + logvar + jnp.log(2 * jnp.pi)), axis=-1
    )


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form, summed over the last axis."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)
