"""Judging a GAN with an independent classifier run (the impure side: runs and data).

For `num_samples` EMA samples (conditional: the same number of each class) and a
classifier trained on the real data:
  - class_correct: the fraction the classifier assigns to the requested class, and its
    ratio to the classifier's accuracy on the real test images;
  - fd: the Fréchet distance between the classifier's penultimate features of the samples
    and of the test images; floor: the same between as many train and test images
    (what real data scores); fd_ratio = fd / floor;
  - class_entropy: the entropy (bits) of the classes the classifier sees in the samples;
    log2(10) = 3.32 when all ten appear equally often, low under mode collapse;
  - d_score: the discriminator's mean logit on the samples (refinement raises it).
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data
from jaxdl.errors import UserError, check
from jaxdl.evaluation.frechet import feature_statistics, frechet_distance
from jaxdl.evaluation.rejection import accepted, calibrate, drs_acceptance
from jaxdl.tasks.classify import ClassifyTask
from jaxdl.tasks.gan import GANTask
from jaxdl.train.run_info import load_run

_BATCH = 500


class Judge:
    """A classifier run's logits and penultimate features, and the real-data reference."""

    def __init__(self, workdir: str | Path, num_real: int = 10_000, seed: int = 0):
        config, _, self.task, self.state = load_run(workdir)
        if not isinstance(self.task, ClassifyTask):
            raise UserError(f"{workdir} is not a classifier run (task {config.task.name!r})")
        self._apply = jax.jit(lambda s, x: (self.task.logits(s, x), self.task.features(s, x)))
        inputs = data.build_input(config.data, config.seed)  # read as the run read it
        test = inputs.eval.read(np.arange(min(num_real, inputs.eval.num_examples)))
        train_source = inputs.train.source  # only the picked rows are read
        pick = np.random.default_rng(seed).permutation(train_source.num_examples)[:num_real]
        test_logits, test_features = self.judge(test["image"])
        _, train_features = self.judge(train_source.read(np.sort(pick))["image"])
        self.real_accuracy = float((test_logits.argmax(1) == test["label"]).mean())
        self.test_stats = feature_statistics(test_features)
        self.floor = frechet_distance(*feature_statistics(train_features), *self.test_stats)

    def judge(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, features) of uint8 images (N, H, W, C), in batches."""
        out = [
            self._apply(self.state, images[i : i + _BATCH]) for i in range(0, len(images), _BATCH)
        ]
        return tuple(np.concatenate([np.asarray(o[k]) for o in out]) for k in range(2))

    def frechet(self, features: np.ndarray) -> float:
        """Fréchet distance of `features` (from `judge`) to the real test images'."""
        return frechet_distance(*feature_statistics(features), *self.test_stats)


REJECTIONS = ("none", "drs", "judge")


def _sampler(task: GANTask, state, refine_steps: int):
    """noise, labels -> (uint8 images, discriminator logits), compiled."""

    @jax.jit
    def batch(noise, labels):
        images = task.generate(state, noise, labels, refine_steps)
        return jnp.round(images * 255).astype(jnp.uint8), task.critic(state, images, labels)

    return batch


def generate_samples(task: GANTask, state, num_samples: int, seed: int = 0, refine_steps: int = 0):
    """(uint8 images, requested labels, discriminator logits) of `num_samples` samples,
    with `refine_steps` discriminator-guided noise steps (0 = plain samples)."""
    classes = max(task.num_classes, 1)
    labels = jnp.arange(num_samples, dtype=jnp.int32) % classes
    batch = _sampler(task, state, refine_steps)
    noise = task.sample_noise(jax.random.PRNGKey(seed), num_samples)
    out = [
        batch(noise[i : i + _BATCH], labels[i : i + _BATCH]) for i in range(0, num_samples, _BATCH)
    ]
    images, scores = (np.concatenate([np.asarray(o[k]) for o in out]) for k in range(2))
    return images, np.asarray(labels), scores


def rejection_samples(
    task: GANTask,
    state,
    num_samples: int,
    accept,
    seed: int = 0,
    refine_steps: int = 0,
    max_candidates: int = 50,
):
    """`num_samples` samples that passed rejection, with the requested labels of
    generate_samples (i % classes): candidates are drawn in batches of the labels still
    wanted and each kept with probability `accept(images, labels, logits)`. Returns
    (images, labels, logits, acceptance rate); a UserError if fewer than 1 in
    `max_candidates` candidates pass."""
    classes = max(task.num_classes, 1)
    order = np.arange(num_samples) % classes
    wanted = np.bincount(order, minlength=classes)
    kept = {c: [] for c in range(classes)}  # (image, logit) of accepted samples per label
    batch = _sampler(task, state, refine_steps)
    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
    drawn, chunk = 0, 0
    while any(len(kept[c]) < wanted[c] for c in range(classes)):
        if drawn > max_candidates * num_samples:
            raise UserError(
                f"rejection kept {sum(map(len, kept.values()))} of {drawn} samples: fewer "
                f"than 1 in {max_candidates}"
            )
        missing = np.array([c for c in range(classes) if len(kept[c]) < wanted[c]])
        labels = missing[np.arange(_BATCH) % len(missing)].astype(np.int32)
        noise = task.sample_noise(jax.random.fold_in(key, chunk), _BATCH)
        images, logits = (np.asarray(x) for x in batch(noise, jnp.asarray(labels)))
        keep = accepted(np.asarray(accept(images, labels, logits)), rng)
        for image, label, logit in zip(images[keep], labels[keep], logits[keep], strict=True):
            if len(kept[label]) < wanted[label]:
                kept[label].append((image, logit))
        drawn, chunk = drawn + _BATCH, chunk + 1
    taken = dict.fromkeys(range(classes), 0)
    images, logits = [], []
    for label in order:
        image, logit = kept[label][taken[label]]
        taken[label] += 1
        images.append(image)
        logits.append(logit)
    return np.stack(images), order.astype(np.int32), np.asarray(logits), num_samples / drawn


def samples(
    task,
    state,
    judge,
    num_samples: int,
    seed: int = 0,
    refine_steps: int = 0,
    reject: str = "none",
    drs_percentile: float | None = None,
):
    """(images, labels, logits, acceptance rate) of plain samples (`none`), of
    discriminator rejection sampling (`drs`: M and gamma calibrated on as many other
    samples; rejection.py), or of samples kept only when `judge` recognises their
    requested class (`judge`: rejection by a classifier)."""
    check(reject in REJECTIONS, f"reject={reject!r} is not one of {list(REJECTIONS)}")
    if reject == "none":
        return (*generate_samples(task, state, num_samples, seed, refine_steps), 1.0)
    if reject == "drs":
        _, _, calibration = generate_samples(task, state, num_samples, seed + 1, refine_steps)
        max_logit, gamma = calibrate(calibration, drs_percentile)
        accept = lambda images, labels, logits: drs_acceptance(logits, max_logit, gamma)
    else:
        accept = lambda images, labels, logits: judge.judge(images)[0].argmax(1) == labels
    return rejection_samples(task, state, num_samples, accept, seed, refine_steps)


def class_entropy_bits(predicted: np.ndarray, num_classes: int) -> float:
    counts = np.bincount(predicted, minlength=num_classes)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def evaluate_gan(
    task,
    state,
    judge: Judge,
    num_samples: int = 10_000,
    seed: int = 0,
    refine_steps: int = 0,
    reject: str = "none",
    drs_percentile: float | None = None,
) -> dict:
    images, labels, scores, acceptance = samples(
        task, state, judge, num_samples, seed, refine_steps, reject, drs_percentile
    )
    logits, features = judge.judge(images)
    predicted = logits.argmax(1)
    fd = judge.frechet(features)
    result = {
        "step": int(state.step),
        "fd": fd,
        "floor": judge.floor,
        "fd_ratio": fd / judge.floor,
        "class_entropy": class_entropy_bits(predicted, logits.shape[1]),
        "max_entropy": math.log2(logits.shape[1]),
        "d_score": float(scores.mean()),
        "real_accuracy": judge.real_accuracy,
        "reject": reject,
        "acceptance": acceptance,
    }
    if task.conditional:
        result["class_correct"] = float((predicted == labels).mean())
        result["class_correct_ratio"] = result["class_correct"] / judge.real_accuracy
    return result


def evaluate_run(workdir, judge: Judge, step=None, **kwargs) -> dict:
    """evaluate_gan on a GAN run's newest (or given) checkpoint."""
    config, _, task, state = load_run(workdir, step)
    if not isinstance(task, GANTask):
        raise UserError(f"{workdir} is not a GAN run (task {config.task.name!r})")
    return evaluate_gan(task, state, judge, **kwargs)
