"""Rejection sampling of a generator's samples (pure numpy).

Discriminator rejection sampling (Azadi et al., ICLR 2019): a discriminator trained to
tell data from samples has a logit l(x) that estimates log p_data(x) / p_g(x) up to a
constant. Accepting a sample x ~ p_g with probability exp(l(x) - M), M the largest logit,
turns p_g into p_data when the estimate is exact: the Monte-Carlo rejection sampler with
the discriminator as its density ratio. The paper's form accepts with sigmoid(F),
F = l - M - log(1 - exp(l - M - eps)) - gamma; gamma = 0 is that same exact rule, a
smaller gamma accepts more (the paper sets gamma to a percentile of F over calibration
samples: a percentile below F's maximum gives a negative gamma). A sample whose logit
exceeds the calibrated M counts as M (accepted).
"""

import numpy as np

EPS = 1e-6


def drs_scores(logits: np.ndarray, max_logit: float, eps: float = EPS) -> np.ndarray:
    """F before its shift: l - M - log(1 - exp(l - M - eps)) (float64)."""
    shifted = np.minimum(np.asarray(logits, np.float64) - max_logit, 0.0)
    return shifted - np.log1p(-np.exp(shifted - eps))


def drs_acceptance(logits: np.ndarray, max_logit: float, gamma: float = 0.0) -> np.ndarray:
    """Each sample's acceptance probability sigmoid(F - gamma)."""
    return 1.0 / (1.0 + np.exp(-(drs_scores(logits, max_logit) - gamma)))


def calibrate(logits: np.ndarray, keep_percentile: float | None = None) -> tuple[float, float]:
    """(M, gamma) from calibration samples' logits: M their largest; gamma 0 (the exact
    rule), or the `keep_percentile`-th percentile of F (a lower one accepts more)."""
    max_logit = float(np.max(logits))
    if keep_percentile is None:
        return max_logit, 0.0
    return max_logit, float(np.percentile(drs_scores(logits, max_logit), keep_percentile))


def accepted(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which samples are kept: a uniform draw each below its probability."""
    return rng.uniform(size=len(probabilities)) < probabilities
