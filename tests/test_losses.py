import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import losses


def test_cross_entropy_matches_hand_computed_values():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([2, 0])
    # -log softmax: log(e + e^2 + e^3) - 3 = 0.40760596; uniform: log 3 = 1.09861229
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, labels), [0.40760596, 1.09861229], rtol=1e-6
    )


def test_label_smoothing_mixes_in_the_uniform_target():
    logits = jnp.array([[1.0, 2.0, 3.0]])
    log_p = np.log(np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum())
    targets = np.array([0.0, 0.0, 1.0]) * 0.7 + 0.3 / 3
    expected = -(targets * log_p).sum()
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, jnp.array([2]), label_smoothing=0.3),
        [expected],
        rtol=1e-6,
    )


def test_accuracy_per_example():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(losses.accuracy(logits, jnp.array([1, 1, 1])), [1, 0, 1])


def test_mean_ignores_masked_rows_and_merges():
    values = jnp.array([1.0, 2.0, 100.0])
    mean = losses.Mean.of(values, jnp.array([True, True, False]))
    assert mean.compute() == pytest.approx(1.5)
    merged = mean.merge(losses.Mean.of(jnp.array([6.0])))
    assert merged.compute() == pytest.approx(3.0)
