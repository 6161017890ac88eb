"""Autoencoders and VAEs on images: reconstruction, ELBO, importance-weighted bound.

Images are uint8; the models see grey values in [0, 1]. Likelihoods: `bernoulli`
(grey values as pixel probabilities; the decoder gives logits) or `gaussian` (fixed
sigma; the decoder gives means). All losses are nats per image.

Models of the `autoencoder` family: `encode(x)` (x float32 NHWC in [0, 1]) returns
(mean, logvar) of a diagonal Gaussian posterior, or (code, None) when not
`variational`; `decode(z)` per-pixel logits (Bernoulli) or means (Gaussian); `latent`
and `variational` fields.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl import losses, registry
from jaxdl.errors import check, check_choice
from jaxdl.tasks.base import (
    BuildContext,
    Task,
    TrainState,
    accumulate_gradients,
    apply_gradients,
    part_key,
    row_keys,
)
from jaxdl.viz.images import image_grid

LIKELIHOODS = ("bernoulli", "gaussian")
_EVAL_KEY = 0x7FFFFFFF  # eval noise: one fixed key, never a training step's


def to_unit(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def iwae_bound(log_weights: jax.Array) -> jax.Array:
    """log (1/k sum_j w_j) over axis 0 of k importance log-weights log p(x, z_j) - log q(z_j | x):
    a lower bound on log p(x) that tightens as k grows; k = 1 is the one-sample ELBO."""
    return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class AutoencodeTask(Task):
    model: nn.Module
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    likelihood: str = "bernoulli"
    gaussian_sigma: float = 0.1
    beta: float = 1.0
    kl_warmup_steps: int = 0
    iwae_samples: int = 0
    num_classes: int = 10
    microbatches: int = 1

    @property
    def variational(self) -> bool:
        return self.model.variational

    # ---- Generator interface (tasks/base.py): decoding latent codes ------------------
    noise_distribution = "normal"  # the VAE's prior; an AE's codes follow no set law
    conditional = False

    @property
    def noise_dim(self) -> int:
        return self.model.latent

    def generate(self, state: TrainState, noise: jax.Array, labels: jax.Array) -> jax.Array:
        """Images in [0, 1] decoded from latent codes `noise` (N, latent); labels unused."""
        del labels
        return self.to_image(self.decode(state.params, noise))

    # ---- model pieces ---------------------------------------------------------------
    def encode(self, params, x):
        return self.model.apply({"params": params}, x, method="encode")

    def decode(self, params, z):
        return self.model.apply({"params": params}, z, method="decode")

    def log_likelihood(self, out: jax.Array, x: jax.Array) -> jax.Array:
        """log p(x | decoder output) per image."""
        if self.likelihood == "bernoulli":
            return losses.bernoulli_log_likelihood(out, x, ndim=3)
        return losses.gaussian_log_likelihood(out, x, self.gaussian_sigma, ndim=3)

    def to_image(self, out: jax.Array) -> jax.Array:
        """Decoder output -> the image it stands for, in [0, 1]."""
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else jnp.clip(out, 0, 1)

    def sample_posterior(self, key, mean, logvar):
        """Reparameterised z = mean + sigma * eps, differentiable in mean and logvar; `key`:
        one for the batch, or one per row (row_keys)."""
        if key.ndim == 1:
            eps = jax.random.normal(key, mean.shape, mean.dtype)
        else:
            eps = jax.vmap(lambda k: jax.random.normal(k, mean.shape[1:], mean.dtype))(key)
        return mean + jnp.exp(0.5 * logvar) * eps

    def kl_weight(self, step: jax.Array) -> jax.Array:
        """beta, ramped up linearly over the first kl_warmup_steps steps."""
        if not self.kl_warmup_steps:
            return jnp.asarray(self.beta, jnp.float32)
        return self.beta * jnp.minimum(1.0, (step + 1) / self.kl_warmup_steps)

    def terms(self, params, key, x) -> dict:
        """Per-image reconstruction nll, KL and negative ELBO of one posterior sample."""
        mean, logvar = self.encode(params, x)
        if not self.variational:
            nll = -self.log_likelihood(self.decode(params, mean), x)
            return {"recon": nll}
        z = self.sample_posterior(key, mean, logvar)
        nll = -self.log_likelihood(self.decode(params, z), x)
        kl = losses.gaussian_kl(mean, logvar)
        return {"recon": nll, "kl": kl, "neg_elbo": nll + kl}

    def iwae_log_weights(self, params, key, x, num_samples: int) -> jax.Array:
        """(k, B) log p(x | z_j) + log p(z_j) - log q(z_j | x), z_j ~ q(z | x)."""
        mean, logvar = self.encode(params, x)

        def one(key):
            z = self.sample_posterior(key, mean, logvar)
            log_prior = losses.gaussian_log_density(z, jnp.zeros_like(z), jnp.zeros_like(z))
            log_posterior = losses.gaussian_log_density(z, mean, logvar)
            return self.log_likelihood(self.decode(params, z), x) + log_prior - log_posterior

        if key.ndim == 1:
            return jax.lax.map(one, jax.random.split(key, num_samples))
        per_row = jax.vmap(lambda k: jax.random.split(k, num_samples))(key)
        return jax.lax.map(one, per_row.swapaxes(0, 1))

    # ---- Task interface ---------------------------------------------------------------
    def init(self, rng: jax.Array, example_batch: dict) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        params = self.model.init(params_rng, to_unit(example_batch["image"]))["params"]
        return TrainState.create(params, self.optimizer, state_rng)

    def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        x = to_unit(batch["image"])
        kl_weight = self.kl_weight(state.step)

        def loss_fn(params, part, carry, index):
            terms = self.terms(params, part_key(key, index, self.microbatches), part["x"])
            loss = terms["recon"] + (kl_weight * terms["kl"] if self.variational else 0.0)
            return loss.mean(), ({k: v.mean() for k, v in terms.items()}, carry, None)

        loss, terms, _, _, grads = accumulate_gradients(
            loss_fn, state.params, {"x": x}, self.microbatches
        )
        new_state, step_metrics = apply_gradients(state, grads, self.optimizer, self.schedule)
        metrics = {"loss": loss, **terms, **step_metrics}
        if self.variational:
            metrics["kl_weight"] = kl_weight
        return new_state, metrics

    def row_outputs(self, state: TrainState, batch: dict) -> jax.Array:
        """Each image's code (the posterior's mean)."""
        return self.encode(state.params, to_unit(batch["image"]))[0]

    def eval_step(self, state: TrainState, batch: dict) -> dict:
        """AE: loss = reconstruction nll. VAE: loss = -ELBO (one posterior sample per
        image), its recon and kl terms, and iwae_nll = -IWAE bound with k samples."""
        x, mask = to_unit(batch["image"]), batch.get("mask")
        key = row_keys(jax.random.fold_in(state.rng, _EVAL_KEY), batch)
        terms = self.terms(state.params, key, x)
        metrics = {name: losses.Mean.of(value, mask) for name, value in terms.items()}
        metrics["loss"] = metrics["neg_elbo" if self.variational else "recon"]
        if self.variational and self.iwae_samples:
            log_weights = self.iwae_log_weights(state.params, key, x, self.iwae_samples)
            metrics["iwae_nll"] = losses.Mean.of(-iwae_bound(log_weights), mask)
        return metrics

    def images(self, state: TrainState, batch: dict) -> dict:
        """Pictures of the model on an eval batch, each a uint8 grid: reconstructions
        (originals above), samples from the prior (VAE), and interpolations between the
        codes of two images of the same class (one row per class, t = 0 ... 1)."""
        params, x = state.params, to_unit(batch["image"])
        n = min(16, x.shape[0])
        recon = self.to_image(self.decode(params, self.encode(params, x[:n])[0]))
        pictures = {"reconstructions": image_grid(jnp.stack([x[:n], recon]))}
        if self.variational:
            z = jax.random.normal(jax.random.PRNGKey(0), (64, self.model.latent))
            samples = self.to_image(self.decode(params, z))
            pictures["prior_samples"] = image_grid(samples.reshape(8, 8, *samples.shape[1:]))
        labels, index = batch["label"], jnp.arange(x.shape[0])
        rows = []
        for c in range(min(self.num_classes, 10)):
            first = jnp.argmax(labels == c)
            second = jnp.argmax((labels == c) & (index > first))
            rows.append((first, second))
        first, second = (jnp.stack(r) for r in zip(*rows, strict=True))
        z1, z2 = self.encode(params, x[first])[0], self.encode(params, x[second])[0]
        t = jnp.linspace(0.0, 1.0, 9)[None, :, None]
        path = (1 - t) * z1[:, None] + t * z2[:, None]  # (rows, 9, latent)
        decoded = self.to_image(self.decode(params, path.reshape(-1, path.shape[-1])))
        frames = decoded.reshape(len(rows), 9, *decoded.shape[1:])
        ends = lambda i: x[i][:, None]
        pictures["interpolation"] = image_grid(
            jnp.concatenate([ends(first), frames, ends(second)], axis=1)
        )
        return pictures


@registry.task(
    "autoencode",
    model_family="autoencoder",
    needs="image_shape",
    data="fashion_mnist",
    likelihood="bernoulli",  # bernoulli | gaussian
    gaussian_sigma=0.1,  # gaussian only: the fixed pixel noise
    beta=1.0,  # weight of the KL term (1 = the ELBO)
    kl_warmup_steps=2000,  # beta ramps up from 0 over these steps
    iwae_samples=16,  # k of the IWAE bound at each eval (0 = skip)
)
def build(cfg, model, context: BuildContext) -> AutoencodeTask:
    check_choice("task.likelihood", cfg.likelihood, LIKELIHOODS)
    check(cfg.gaussian_sigma > 0, "task.gaussian_sigma must be > 0")
    check(cfg.beta >= 0, f"task.beta={cfg.beta} must be >= 0")
    check(cfg.kl_warmup_steps >= 0 and cfg.iwae_samples >= 0, "task counts must be >= 0")
    optimizer, schedule = context.optimizer()
    return AutoencodeTask(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        likelihood=cfg.likelihood,
        gaussian_sigma=cfg.gaussian_sigma,
        beta=cfg.beta,
        kl_warmup_steps=cfg.kl_warmup_steps,
        iwae_samples=cfg.iwae_samples,
        num_classes=len(context.info.get("class_names", ())),
        microbatches=context.microbatches,
    )
