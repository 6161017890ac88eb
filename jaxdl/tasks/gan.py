"""Generative adversarial networks: a generator and a discriminator trained in alternation.

Each train_step takes `n_disc` discriminator steps (real images -> 1, generated -> 0; the
real batch is split into n_disc parts) and then one generator step against the updated
discriminator. Losses: `non_saturating` (D: -log s(D(x)) - log(1 - s(D(G(z)))), G:
-log s(D(G(z)))) or `hinge` (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))); optional
R1 penalty r1_gamma / 2 * |grad_x D(x)|^2 on real images; optional mode-seeking term
(Mao et al., 2019) for the generator: its batch is pairs with the same label, and it
minimises mode_seeking / (mean |G(z1) - G(z2)| / mean |z1 - z2| + 1e-5), so two noise
vectors of one class must give different images; optional auxiliary classifier (AC-GAN,
Odena et al., 2017; conditional only): a class head on the discriminator's features learns
the labels of real images, and the generator's loss adds its cross-entropy on generated
images against their requested labels, both weighted by `aux_classifier`. Samples come
from an exponential moving average (EMA) of the generator's weights.

Seed ideas, as options:
- `pretrain_steps` > 0: the first steps train an encoder and the generator as its decoder
  (a plain autoencoder, codes squashed into the noise range) before adversarial training;
- `refine_steps` > 0: at sampling time, a few gradient-ascent steps on D(G(z)) with
  respect to z move each sample towards what the discriminator calls real.

Images are uint8 in batches; the models see [-1, 1]; `generate` returns [0, 1].

Models of the `gan` family: the builder returns (generator, discriminator).
`generator.apply(variables, noise (N, noise_dim), labels (N,) or None)` returns images
in [-1, 1], with a `num_classes` field (0: unconditional); `discriminator.apply(
variables, images, labels or None, with_classes=False)` returns logits (N,), and with
`with_classes=True` (logits, class logits or None); `discriminator.clone(classify=True)`
gives it the class head; models.gan.Encoder(noise_dim) maps images to codes.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdl import losses, optim, registry
from jaxdl.errors import check, check_choice
from jaxdl.models.gan import Encoder
from jaxdl.tasks.base import BuildContext, Task, ema_update, row_keys, value_and_grad
from jaxdl.tasks.classify import to_float
from jaxdl.viz.images import image_grid

GAN_LOSSES = ("non_saturating", "hinge")
NOISE_DISTRIBUTIONS = ("uniform", "normal")
_EVAL_KEY = 0x7FFFFFFF  # eval and picture noise: one fixed key, never a training step's


@struct.dataclass(kw_only=True)
class GANState:
    step: jax.Array  # int32 scalar: generator steps taken (= train steps)
    g_params: Any
    d_params: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any  # EMA of g_params: what `generate` samples from
    rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)
    # Autoencoder pre-training only (empty otherwise): encoder weights, and the optimizer
    # state of (encoder, generator) trained together.
    enc_params: Any
    ae_opt_state: Any


def d_loss_terms(loss: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Per-example discriminator loss (real and fake logits paired)."""
    if loss == "hinge":
        return nn.relu(1.0 - real_logits) + nn.relu(1.0 + fake_logits)
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def g_loss_terms(loss: str, fake_logits: jax.Array) -> jax.Array:
    """Per-example generator loss."""
    if loss == "hinge":
        return -fake_logits
    return jax.nn.softplus(-fake_logits)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class GANTask(Task):
    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: optax.GradientTransformation
    d_optimizer: optax.GradientTransformation
    g_schedule: optax.Schedule
    d_schedule: optax.Schedule
    noise_dim: int = 100
    noise_distribution: str = "uniform"
    loss: str = "non_saturating"
    n_disc: int = 1
    r1_gamma: float = 0.0
    mode_seeking: float = 0.0
    aux_classifier: float = 0.0
    ema: float = 0.999
    pretrain_steps: int = 0
    refine_steps: int = 0
    refine_step_size: float = 0.05

    @property
    def encoder(self) -> Encoder:
        """The autoencoder phase's encoder (noise_dim codes)."""
        return Encoder(self.noise_dim)

    @property
    def ae_optimizer(self) -> optax.GradientTransformation:
        """The autoencoder phase reuses the generator's optimizer settings, on its own
        state."""
        return self.g_optimizer

    @property
    def conditional(self) -> bool:
        return self.generator.num_classes > 0

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    # ---- sampling -------------------------------------------------------------------------
    def sample_noise(self, key: jax.Array, n: int) -> jax.Array:
        if self.noise_distribution == "normal":
            return jax.random.normal(key, (n, self.noise_dim), jnp.float32)
        return jax.random.uniform(key, (n, self.noise_dim), jnp.float32, minval=-1.0, maxval=1.0)

    def sample_labels(self, key: jax.Array, n: int) -> jax.Array:
        if not self.conditional:
            return jnp.zeros((n,), jnp.int32)
        return jax.random.randint(key, (n,), 0, self.num_classes)

    def _labels(self, labels):
        return labels if self.conditional else None

    def fake(self, g_params, noise, labels) -> jax.Array:
        """Generated images in [-1, 1]."""
        return self.generator.apply({"params": g_params}, noise, self._labels(labels))

    def score(self, d_params, images, labels) -> jax.Array:
        """Discriminator logits of images in [-1, 1]."""
        return self.discriminator.apply({"params": d_params}, images, self._labels(labels))

    def score_and_classes(self, d_params, images, labels) -> tuple[jax.Array, jax.Array | None]:
        """(discriminator logits, its class head's logits or None without aux_classifier)."""
        return self.discriminator.apply(
            {"params": d_params}, images, self._labels(labels), with_classes=True
        )

    def refine(self, state: GANState, noise, labels, steps: int, step_size: float):
        """`steps` steps of gradient ascent on D(G_ema(z)) in z, each of length
        `step_size` per coordinate (the sign of the gradient, so one scale suits any
        discriminator); uniform noise is kept inside [-1, 1]."""
        score_sum = lambda z: self.score(
            state.d_params, self.fake(state.ema_params, z, labels), labels
        ).sum()

        def ascend(z, _):
            z = z + step_size * jnp.sign(jax.grad(score_sum)(z))
            if self.noise_distribution == "uniform":
                z = jnp.clip(z, -1.0, 1.0)
            return z, None

        return jax.lax.scan(ascend, noise, None, length=steps)[0]

    def generate(
        self, state: GANState, noise: jax.Array, labels: jax.Array, refine_steps: int | None = None
    ) -> jax.Array:
        """The Generator protocol (tasks/base.py): images in [0, 1] from the EMA weights,
        after `refine_steps` (default: the task's) discriminator-guided noise steps."""
        labels = jnp.asarray(labels, jnp.int32)
        refine_steps = self.refine_steps if refine_steps is None else refine_steps
        if refine_steps:
            noise = self.refine(state, noise, labels, refine_steps, self.refine_step_size)
        return (self.fake(state.ema_params, noise, labels) + 1.0) / 2.0

    def critic(self, state: GANState, images: jax.Array, labels: jax.Array) -> jax.Array:
        """The discriminator's logits (N,) of images in [0, 1]: higher is "more real"."""
        return self.score(state.d_params, images * 2.0 - 1.0, jnp.asarray(labels, jnp.int32))

    # ---- losses ---------------------------------------------------------------------------
    def d_loss(self, d_params, real, real_labels, fake, fake_labels):
        real_logits, real_classes = self.score_and_classes(d_params, real, real_labels)
        fake_logits = self.score(d_params, fake, fake_labels)
        loss = d_loss_terms(self.loss, real_logits, fake_logits).mean()
        aux = {
            "d_loss": loss,
            "d_real": jax.nn.sigmoid(real_logits).mean(),
            "d_fake": jax.nn.sigmoid(fake_logits).mean(),
        }
        if self.aux_classifier:
            class_loss = losses.softmax_cross_entropy(real_classes, real_labels).mean()
            loss = loss + self.aux_classifier * class_loss
            aux["d_class_loss"] = class_loss
        if self.r1_gamma:
            per_image = lambda x: self.score(d_params, x, real_labels).sum()
            grad = jax.grad(per_image)(real)
            r1 = (grad**2).sum(axis=(1, 2, 3)).mean()
            loss = loss + 0.5 * self.r1_gamma * r1
            aux["r1"] = r1
        return loss, aux

    def _d_loss_of_params(self, d_params, batch: tuple):
        return self.d_loss(d_params, *batch)

    def g_loss(self, g_params, d_params, noise, labels):
        """(loss, {"g_loss": adversarial part[, "g_class_loss"][, "mode_ratio": image /
        noise distance]}); with mode_seeking, example i and i + N/2 are a pair (the same
        label)."""
        fake = self.fake(g_params, noise, labels)
        logits, classes = self.score_and_classes(d_params, fake, labels)
        adversarial = g_loss_terms(self.loss, logits).mean()
        loss, aux = adversarial, {"g_loss": adversarial}
        if self.aux_classifier:
            class_loss = losses.softmax_cross_entropy(classes, labels).mean()
            loss = loss + self.aux_classifier * class_loss
            aux["g_class_loss"] = class_loss
        if self.mode_seeking:
            fake1, fake2 = jnp.split(fake, 2)
            noise1, noise2 = jnp.split(noise, 2)
            ratio = jnp.abs(fake1 - fake2).mean(axis=(1, 2, 3)) / jnp.abs(noise1 - noise2).mean(-1)
            aux["mode_ratio"] = ratio.mean()
            loss = loss + self.mode_seeking * (1.0 / (ratio + 1e-5)).mean()
        return loss, aux

    # ---- Task interface -------------------------------------------------------------------
    def init(self, rng: jax.Array, example_batch: dict) -> GANState:
        g_rng, d_rng, e_rng, state_rng = jax.random.split(rng, 4)
        images = to_float(example_batch["image"])
        n = images.shape[0]
        labels = jnp.zeros((n,), jnp.int32)
        noise = jnp.zeros((n, self.noise_dim), jnp.float32)
        g_params = self.generator.init(g_rng, noise, self._labels(labels))["params"]
        d_params = self.discriminator.init(d_rng, images, self._labels(labels))["params"]
        enc_params, ae_opt_state = {}, {}
        if self.pretrain_steps:
            enc_params = self.encoder.init(e_rng, images)["params"]
            ae_opt_state = self.ae_optimizer.init((enc_params, g_params))
        return GANState(
            step=jnp.zeros((), jnp.int32),
            g_params=g_params,
            d_params=d_params,
            g_opt_state=self.g_optimizer.init(g_params),
            d_opt_state=self.d_optimizer.init(d_params),
            ema_params=g_params,
            rng=state_rng,
            enc_params=enc_params,
            ae_opt_state=ae_opt_state,
        )

    def train_step(self, state: GANState, batch: dict) -> tuple[GANState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        real = to_float(batch["image"])
        real_labels = batch["label"].astype(jnp.int32)
        n = real.shape[0] // self.n_disc
        d_params, d_opt_state, d_metrics = state.d_params, state.d_opt_state, []
        for i in range(self.n_disc):
            noise_key, label_key = jax.random.split(jax.random.fold_in(key, i))
            fake_labels = self.sample_labels(label_key, n)
            fake = self.fake(state.g_params, self.sample_noise(noise_key, n), fake_labels)
            part = slice(i * n, (i + 1) * n)
            d_loss = functools.partial(
                self._d_loss_of_params, batch=(real[part], real_labels[part], fake, fake_labels)
            )
            with jax.named_scope("discriminator"):
                (_, aux), grads = value_and_grad(d_loss, d_params, has_aux=True)
                with jax.named_scope("optimizer"):
                    updates, d_opt_state = self.d_optimizer.update(grads, d_opt_state, d_params)
                    d_params = optax.apply_updates(d_params, updates)
            d_metrics.append({**aux, "d_grad_norm": optax.global_norm(grads)})

        noise_key, label_key = jax.random.split(jax.random.fold_in(key, self.n_disc))
        if self.mode_seeking:  # pairs with the same label (g_loss)
            fake_labels = jnp.tile(self.sample_labels(label_key, real.shape[0] // 2), 2)
        else:
            fake_labels = self.sample_labels(label_key, real.shape[0])
        noise = self.sample_noise(noise_key, real.shape[0])
        g_loss = lambda p: self.g_loss(p, d_params, noise, fake_labels)
        with jax.named_scope("generator"):
            (_, g_aux), grads = value_and_grad(g_loss, state.g_params, has_aux=True)
            with jax.named_scope("optimizer"):
                updates, g_opt_state = self.g_optimizer.update(
                    grads, state.g_opt_state, state.g_params
                )
                g_params = optax.apply_updates(state.g_params, updates)
                ema_params = ema_update(state.ema_params, g_params, self.ema, state.step)
        metrics = jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *d_metrics)
        metrics.update(
            **g_aux,
            g_grad_norm=optax.global_norm(grads),
            g_learning_rate=self.g_schedule(state.step),
            d_learning_rate=self.d_schedule(state.step),
        )
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            d_params=d_params,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_params=ema_params,
        )
        return new_state, metrics

    def pretrain_step(self, state: GANState, batch: dict) -> tuple[GANState, dict]:
        """The first `pretrain_steps` steps (the trainer's choice, tasks/base.py): encoder +
        generator as an autoencoder (mean squared error in [-1, 1]); the
        EMA follows the generator so that sampling works from the first step."""
        real = to_float(batch["image"])
        labels = batch["label"].astype(jnp.int32)

        def loss_fn(params):
            enc_params, g_params = params
            codes = self.encoder.apply({"params": enc_params}, real)
            return ((self.fake(g_params, codes, labels) - real) ** 2).mean()

        params = (state.enc_params, state.g_params)
        loss, grads = value_and_grad(loss_fn, params)
        with jax.named_scope("optimizer"):
            updates, ae_opt_state = self.ae_optimizer.update(grads, state.ae_opt_state, params)
            enc_params, g_params = optax.apply_updates(params, updates)
        return state.replace(
            step=state.step + 1,
            g_params=g_params,
            ema_params=g_params,
            enc_params=enc_params,
            ae_opt_state=ae_opt_state,
        ), {"ae_loss": loss}

    def num_params(self, state: GANState) -> int:
        return sum(x.size for x in jax.tree.leaves((state.g_params, state.d_params)))

    def row_outputs(self, state: GANState, batch: dict) -> jax.Array:
        """The discriminator's logits of the batch's images."""
        labels = batch["label"].astype(jnp.int32)
        return self.score(state.d_params, to_float(batch["image"]), labels)

    def eval_step(self, state: GANState, batch: dict) -> dict:
        """The discriminator on test images and on as many EMA samples (fixed noise, each
        row's own): its loss and mean probability of 'real' for each."""
        real = to_float(batch["image"])
        labels = batch["label"].astype(jnp.int32)
        keys = row_keys(jax.random.PRNGKey(_EVAL_KEY), batch)
        noise = jax.vmap(lambda key: self.sample_noise(key, 1)[0])(keys)
        fake = self.fake(state.ema_params, noise, labels)
        real_logits = self.score(state.d_params, real, labels)
        fake_logits = self.score(state.d_params, fake, labels)
        mask = batch.get("mask")
        return {
            "d_loss": losses.Mean.of(d_loss_terms(self.loss, real_logits, fake_logits), mask),
            "d_real": losses.Mean.of(jax.nn.sigmoid(real_logits), mask),
            "d_fake": losses.Mean.of(jax.nn.sigmoid(fake_logits), mask),
        }

    def images(self, state: GANState, batch: dict) -> dict:
        """EMA samples from fixed noise: one row per class (conditional) or a 10 x 10 grid."""
        rows = max(self.num_classes, 1) if self.conditional else 10
        rows = min(rows, 10)
        noise = self.sample_noise(jax.random.PRNGKey(_EVAL_KEY), rows * 10)
        labels = jnp.repeat(jnp.arange(rows, dtype=jnp.int32), 10)
        samples = self.generate(state, noise, labels)
        return {"samples": image_grid(samples.reshape(rows, 10, *samples.shape[1:]))}


def _d_optimizer_defaults() -> dict:
    section = optim.default_config().to_dict()
    section.update(
        name="adam",
        learning_rate=2e-4,
        b1=0.5,
        b2=0.99,
        clip="none",
        schedule="constant",
        warmup_fraction=0.0,
    )
    return section


@registry.task(
    "gan",
    model_family="gan",
    needs="image_shape",
    data="fashion_mnist",
    loss="non_saturating",  # non_saturating | hinge
    noise_dim=100,
    noise_distribution="uniform",  # uniform in [-1, 1] | normal
    n_disc=1,  # discriminator steps per generator step (the batch is split among them)
    r1_gamma=1.0,  # weight of the R1 penalty on real images (0 = none)
    mode_seeking=0.0,  # weight of the generator's mode-seeking term (0 = none)
    aux_classifier=0.2,  # weight of the discriminator's class head's loss (0 = none)
    ema=0.999,  # decay of the generator's weight average used for samples
    pretrain_steps=0,  # > 0: first train the generator as an autoencoder's decoder
    refine_steps=0,  # > 0: discriminator-guided steps on the noise when sampling
    refine_step_size=0.05,
    d_optimizer=_d_optimizer_defaults(),  # the discriminator's; config.optimizer: the generator's
    legacy=dict(aux_classifier=0.0),
)
def build(cfg, models: tuple, context: BuildContext) -> GANTask:
    """config.optimizer trains the generator, task.d_optimizer the discriminator."""
    # Two optimizers: a vmapped group's per-trial numbers would reach only one of them.
    check(not context.optimizer_values, "vmapped trials of task 'gan' may differ only in seed")
    check(
        context.microbatches == 1,
        "task gan does not split its batches (train.microbatches must be 1): its "
        "discriminator and generator steps each take a part of the batch already (n_disc)",
    )
    check_choice("task.loss", cfg.loss, GAN_LOSSES)
    check_choice("task.noise_distribution", cfg.noise_distribution, NOISE_DISTRIBUTIONS)
    check(cfg.noise_dim > 0, f"task.noise_dim={cfg.noise_dim} must be > 0")
    check(cfg.n_disc >= 1, f"task.n_disc={cfg.n_disc} must be >= 1")
    batch_size = context.batch_size
    check(
        batch_size % cfg.n_disc == 0,
        f"data.batch_size={batch_size} must divide into task.n_disc={cfg.n_disc}",
    )
    check(cfg.r1_gamma >= 0, f"task.r1_gamma={cfg.r1_gamma} must be >= 0")
    check(cfg.mode_seeking >= 0, f"task.mode_seeking={cfg.mode_seeking} must be >= 0")
    check(
        not cfg.mode_seeking or batch_size % 2 == 0,
        f"task.mode_seeking needs an even data.batch_size, not {batch_size}",
    )
    check(cfg.aux_classifier >= 0, f"task.aux_classifier={cfg.aux_classifier} must be >= 0")
    generator, discriminator = models
    check(
        not cfg.aux_classifier or generator.num_classes,
        "task.aux_classifier needs a conditional model (model.conditional=True)",
    )
    if cfg.aux_classifier:
        discriminator = discriminator.clone(classify=True)
    check(0 <= cfg.ema < 1, f"task.ema={cfg.ema} must be in [0, 1)")
    check(cfg.pretrain_steps >= 0 and cfg.refine_steps >= 0, "task step counts must be >= 0")
    check(cfg.refine_step_size > 0, "task.refine_step_size must be > 0")
    g_optimizer, g_schedule = context.optimizer()
    d_optimizer, d_schedule = optim.build_optimizer(cfg.d_optimizer, context.total_steps)
    return GANTask(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        g_schedule=g_schedule,
        d_schedule=d_schedule,
        noise_dim=cfg.noise_dim,
        noise_distribution=cfg.noise_distribution,
        loss=cfg.loss,
        n_disc=cfg.n_disc,
        r1_gamma=cfg.r1_gamma,
        mode_seeking=cfg.mode_seeking,
        aux_classifier=cfg.aux_classifier,
        ema=cfg.ema,
        pretrain_steps=cfg.pretrain_steps,
        refine_steps=cfg.refine_steps,
        refine_step_size=cfg.refine_step_size,
    )
