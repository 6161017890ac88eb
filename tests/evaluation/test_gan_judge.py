"""The GAN judge: class-correct rate, Fréchet distance / floor and class entropy against
a stand-in generator and judge with hand-computed answers."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.evaluation.gan_judge import Judge


class _LabelPainter:
    """A stand-in conditional generator: image = label / 9 everywhere, D scores 0."""

    conditional, num_classes = True, 10

    def sample_noise(self, key, n):
        return jax.random.uniform(key, (n, 2))

    def generate(self, state, noise, labels, refine_steps=None):
        return jnp.broadcast_to((labels / 9.0)[:, None, None, None], (len(labels), 4, 4, 1))

    def critic(self, state, images, labels):
        return jnp.zeros(len(labels))


class _PixelJudge(Judge):
    """A stand-in judge (no classifier run: Judge's own Fréchet distance on made-up
    features): reads the class from the pixel value, but calls every 3 a 4; features
    (v, v^2) of the pixel value v; the test statistics are set by the test."""

    real_accuracy, floor = 0.8, 0.5

    def __init__(self):
        pass

    def judge(self, images):
        value = images[:, 0, 0, 0] / 255.0
        predicted = np.round(value * 9).astype(int)
        predicted[predicted == 3] = 4
        features = np.stack([value, value**2], 1)
        return np.eye(10)[predicted], features


def test_judging_counts_requested_classes_and_measures_features_against_the_test_set():
    from jaxdl.evaluation.frechet import feature_statistics
    from jaxdl.evaluation.gan_judge import evaluate_gan

    judge = _PixelJudge()
    value = np.round(np.arange(1000) % 10 / 9 * 255) / 255  # the samples' pixel values
    mean, cov = feature_statistics(np.stack([value, value**2], 1))
    judge.test_stats = (mean + np.array([1.0, 0.0]), cov)
    state = types.SimpleNamespace(step=jnp.array(7))
    result = evaluate_gan(_LabelPainter(), state, judge, num_samples=1000)
    assert result["class_correct"] == pytest.approx(0.9)  # all but the 3s
    assert result["class_correct_ratio"] == pytest.approx(0.9 / 0.8)
    assert result["fd"] == pytest.approx(1.0, abs=1e-6)  # equal covariances, shift 1
    assert result["fd_ratio"] == pytest.approx(2.0, abs=1e-5)
    entropy = -(8 * 0.1 * math.log2(0.1) + 0.2 * math.log2(0.2))  # 3 -> 4: one 0.2 share
    assert result["class_entropy"] == pytest.approx(entropy)
    assert result["d_score"] == 0.0 and result["step"] == 7


def test_class_entropy_is_log2_k_when_uniform_and_zero_when_collapsed():
    from jaxdl.evaluation.gan_judge import class_entropy_bits

    assert class_entropy_bits(np.arange(1000) % 10, 10) == pytest.approx(math.log2(10))
    assert class_entropy_bits(np.full(50, 3), 10) == 0.0
    assert class_entropy_bits(np.array([0, 0, 1, 1]), 10) == pytest.approx(1.0)
