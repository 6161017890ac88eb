"""Rejection sampling of a generator: acceptance by hand, a perfect discriminator turns
the generator's law into the data's, accepted conditional samples keep their labels;
labelled training data from a GAN run end to end."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdl.data.sources import read_idx
from jaxdl.evaluation.gan_judge import rejection_samples
from jaxdl.evaluation.rejection import accepted, calibrate, drs_acceptance, drs_scores
from tests.conftest import ROOT, run_script
from tests.train.test_train_e2e import assert_ok


def test_acceptance_matches_hand_computation():
    logits = np.array([0.0, -math.log(2.0), -math.log(10.0)])
    # gamma 0 is exp(l - M) (to eps): 1, 1/2, 1/10.
    np.testing.assert_allclose(drs_acceptance(logits, 0.0), [1.0, 0.5, 0.1], atol=1e-5)
    # F - gamma with gamma = log 3 divides the odds by 3: 1/2 -> odds 1/3 -> 1/4.
    np.testing.assert_allclose(drs_acceptance(logits, 0.0, math.log(3.0))[1], 0.25, atol=1e-5)
    assert calibrate(logits) == (0.0, 0.0)
    _, gamma = calibrate(logits, keep_percentile=50)
    assert gamma == pytest.approx(float(np.median(drs_scores(logits, 0.0))))


def test_a_perfect_discriminator_turns_the_generators_law_into_the_datas():
    rng = np.random.default_rng(0)
    generated = rng.normal(0.0, 1.5, 400_000)  # p_g = N(0, 1.5^2)
    p_data = lambda x: 0.5 * stats.norm.pdf(x, -1, 0.5) + 0.5 * stats.norm.pdf(x, 1, 0.5)
    logits = np.log(p_data(generated)) - stats.norm.logpdf(generated, 0.0, 1.5)  # log ratio
    max_logit, gamma = calibrate(logits)
    kept = generated[accepted(drs_acceptance(logits, max_logit, gamma), rng)]
    data_cdf = lambda x: 0.5 * stats.norm.cdf(x, -1, 0.5) + 0.5 * stats.norm.cdf(x, 1, 0.5)
    assert stats.kstest(kept, data_cdf).pvalue > 0.01  # indistinguishable from the data
    assert stats.kstest(generated, data_cdf).pvalue < 1e-6  # the samples before it were not
    assert 0.2 < len(kept) / len(generated) < 0.6  # 1 / max ratio of the two densities


class Painter:
    """A stand-in conditional generator: every pixel of a sample is its label / 9."""

    conditional, num_classes = True, 10

    def sample_noise(self, key, n):
        return jax.random.uniform(key, (n, 1))

    def generate(self, state, noise, labels, refine_steps=None):
        return jnp.broadcast_to((labels / 9.0)[:, None, None, None], (len(labels), 2, 2, 1))

    def critic(self, state, images, labels):  # a made-up score: odd labels rarely pass
        return jnp.where(labels % 2 == 1, -3.0, 0.0)


def test_accepted_conditional_samples_keep_their_labels():
    accept = lambda images, labels, logits: drs_acceptance(logits, 0.0)
    images, labels, logits, rate = rejection_samples(Painter(), None, 300, accept, seed=1)
    np.testing.assert_array_equal(labels, np.arange(300) % 10)
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.round(labels / 9 * 255))
    np.testing.assert_array_equal(logits, np.where(labels % 2 == 1, -3.0, 0.0))
    # Even labels always pass, odd ones with exp(-3): what it took is as expected.
    expected = 300 / (150 + 150 / math.exp(-3.0))
    assert 0.5 * expected < rate < 1.5 * expected


@pytest.mark.slow
def test_a_gan_run_becomes_a_labelled_data_set_that_trains_a_classifier(
    launch, synthetic_data_dir, tmp_path, tiny_cgan_run
):
    gan, result = tiny_cgan_run  # read, never written: gan_data reads it read-only
    assert_ok(result)
    out = tmp_path / "generated"
    result = run_script(
        "launch/gan_data.py",
        f"--workdir={gan}",
        f"--out={out}",
        "--num_samples=120",
        "--real_per_class=3",
        "--reject=drs",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "120 generated" in result.stdout and "30 real training images" in result.stdout
    folder = out / "fashion-mnist"
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    assert images.shape == (150, 28, 28) and np.bincount(labels).tolist() == [15] * 10
    real = read_idx(synthetic_data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    real_labels = read_idx(synthetic_data_dir / "fashion-mnist" / "train-labels-idx1-ubyte.gz")
    first = np.flatnonzero(real_labels == 0)[0]
    np.testing.assert_array_equal(images[120], real[first])  # the real ones after the rest
    assert read_idx(folder / "t10k-labels-idx1-ubyte.gz").shape == (250,)
    trained = launch(
        f"--config={ROOT}/experiments/fashion_cnn_tiny.py",
        f"--workdir={tmp_path / 'cnn'}",
        f"--config.data.data_dir={out}",
        "--config.data.source=local",
        "--config.train.num_steps=4",
    )
    assert_ok(trained)
    assert "150 train, 250 eval (local copy" in trained.stderr
