"""Fréchet distance: zero for a set with itself, the closed form for Gaussians, shifts,
singular covariances."""

import numpy as np
from scipy import linalg

from jaxdl.evaluation.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_of_features,
)


def test_a_set_with_itself_is_zero_even_with_singular_covariance():
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(size=(50, 80)), 0.0)  # fewer samples than dims
    features[:, :10] = 0.0  # dead units: rank-deficient covariance
    # sqrt of rounding-level eigenvalues (~1e-16) leaves ~1e-8 each; the trace is ~23.
    assert abs(frechet_distance_of_features(features, features)) < 1e-6


def test_diagonal_gaussians_match_the_closed_form():
    # For commuting covariances: |m1 - m2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.0])
    expected = 1.0 + 4.0 + (1 + 1 + 9)
    assert np.isclose(frechet_distance(m1, np.diag(s1), m2, np.diag(s2)), expected)


def test_full_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    reference = (
        np.sum((m1 - m2) ** 2) + np.trace(c1 + c2) - 2 * np.trace(linalg.sqrtm(c1 @ c2).real)
    )
    assert np.isclose(frechet_distance(m1, c1, m2, c2), reference, rtol=1e-8)


def test_a_shifted_sample_adds_the_squared_shift():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    shift = np.array([3.0, 0.0, -1.0, 0.5, 0.0])
    assert np.isclose(frechet_distance_of_features(features, features + shift), 10.25)
    mean, cov = feature_statistics(features)
    np.testing.assert_allclose(mean, features.mean(0))
    np.testing.assert_allclose(cov, np.cov(features.T))


def test_samples_of_two_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200_000, 2)) * [1.0, 2.0]
    y = rng.normal(size=(200_000, 2)) * [3.0, 2.0] + [0.0, 1.0]
    # |(0,0) - (0,1)|^2 + (1 - 3)^2 + (2 - 2)^2 = 5
    assert np.isclose(frechet_distance_of_features(x, y), 5.0, atol=0.05)
