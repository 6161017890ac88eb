import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import cnn


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_conv_as_matmul_equals_lax_convolution(kernel_size):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 7, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (kernel_size, kernel_size, 3, 4))
    expected = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(cnn.conv_as_matmul(x, kernel), expected, atol=1e-5)


def test_conv_impls_share_parameters_and_results():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    params = cnn.Conv(5, impl="matmul").init(jax.random.PRNGKey(1), x)
    np.testing.assert_allclose(
        cnn.Conv(5, impl="matmul").apply(params, x),
        cnn.Conv(5, impl="xla").apply(params, x),
        atol=1e-5,
    )


def test_max_pool_equals_flax_max_pool_and_drops_odd_edge():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 3))
    expected = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")
    np.testing.assert_array_equal(cnn.max_pool_2x2(x), expected)
    assert cnn.max_pool_2x2(x).shape == (2, 3, 3, 3)


def test_space_to_depth_moves_each_patch_into_channels():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    y = cnn.space_to_depth(x, 2)
    assert y.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(y[0, 0, 0], [0, 1, 4, 5])  # top-left 2x2 patch
    np.testing.assert_array_equal(y[0, 1, 1], [10, 11, 14, 15])


@pytest.mark.parametrize(
    "stages,stem_block,batch_norm",
    [(((8,), (16,)), 1, True), (((8, 8), (16,)), 2, False), (((4,), (8,), (8,)), 1, True)],
)
def test_cnn_output_shape(stages, stem_block, batch_norm):
    model = cnn.CNN(num_classes=10, stages=stages, stem_block=stem_block, batch_norm=batch_norm)
    x = jnp.zeros((3, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert model.apply(variables, x, train=False).shape == (3, 10)
    assert ("batch_stats" in variables) == batch_norm
