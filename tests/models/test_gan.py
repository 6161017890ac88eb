"""The GAN's networks: the minibatch-std channel against a hand computation."""

import jax
import numpy as np

from jaxdl.models.gan import minibatch_std


def test_minibatch_std_is_the_mean_feature_spread_of_each_group():
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 3, 2))
    out = np.asarray(minibatch_std(x, 4))  # 6 images: groups of 3 (the largest divisor <= 4)
    assert out.shape == (6, 3, 3, 3)
    np.testing.assert_array_equal(out[..., :2], x)
    groups = np.asarray(x).reshape(3, 2, 3, 3, 2)  # image i is in group i mod 2
    spread = np.sqrt(groups.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    expected = np.broadcast_to(np.tile(spread, 3)[:, None, None], (6, 3, 3))
    np.testing.assert_allclose(out[..., 2], expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(minibatch_std(x[:1], 4))[..., 2], 1e-4, rtol=1e-3)
