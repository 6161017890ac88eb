"""Autoencoders and VAEs for images: encoder -> latent -> decoder (Flax Linen, NHWC).

`AutoEncoder.encode(x)` gives (mean, logvar): the code itself and None for a plain
autoencoder; a diagonal Gaussian posterior for a VAE, with logvar clamped so exp(logvar)
can neither overflow nor vanish. `decode(z)` gives per-pixel logits (Bernoulli) or means
(Gaussian) of the image. Two architectures: `mlp` (dense layers) and `conv` (stride-free
3x3 convolutions between space-to-depth / depth-to-space steps; `conv_impl` picks their
kernel, by default the backend's choice: jaxdl/backends.py).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import registry
from jaxdl.errors import check, check_choice
from jaxdl.models.cnn import CONV_SETTINGS, Conv, space_to_depth

ARCHS = ("mlp", "conv")


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """The inverse of `space_to_depth`: (n, h, w, c*b*b) -> (n, h*b, w*b, c)."""
    n, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(n, h, w, block, block, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, out)


class MLPEncoder(nn.Module):
    hidden: Sequence[int]
    features: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.features)(x)


class MLPDecoder(nn.Module):
    hidden: Sequence[int]
    image_shape: Sequence[int]

    @nn.compact
    def __call__(self, z):
        for width in self.hidden:
            z = nn.relu(nn.Dense(width)(z))
        size = 1
        for d in self.image_shape:
            size *= d
        return nn.Dense(size)(z).reshape(z.shape[0], *self.image_shape)


class ConvEncoder(nn.Module):
    """Per stage: space-to-depth by 2, then a 3x3 convolution; then dense layers."""

    channels: Sequence[int]
    hidden: Sequence[int]
    features: int
    conv_impl: str = "matmul"

    @nn.compact
    def __call__(self, x):
        for width in self.channels:
            x = nn.relu(Conv(width, impl=self.conv_impl)(space_to_depth(x, 2)))
        return MLPEncoder(self.hidden, self.features)(x)


class ConvDecoder(nn.Module):
    """Dense layers to a (h / 2^s, w / 2^s) grid, then per stage: a 3x3 convolution to 4x
    the channels and depth-to-space by 2 (sub-pixel upsampling); a last 3x3 convolution."""

    channels: Sequence[int]
    hidden: Sequence[int]
    image_shape: Sequence[int]
    conv_impl: str = "matmul"

    @nn.compact
    def __call__(self, z):
        h, w, c = self.image_shape
        scale = 2 ** len(self.channels)
        grid = (h // scale, w // scale, self.channels[-1])
        x = nn.relu(MLPDecoder(self.hidden, grid)(z))
        for width in reversed(self.channels):
            x = nn.relu(depth_to_space(Conv(4 * width, impl=self.conv_impl)(x), 2))
        return Conv(c, impl=self.conv_impl)(x)


class AutoEncoder(nn.Module):
    latent: int
    image_shape: Sequence[int] = (28, 28, 1)
    arch: str = "mlp"
    hidden: Sequence[int] = (500,)  # dense widths (encoder order; the decoder mirrors them)
    channels: Sequence[int] = (32, 64)  # conv only: widths per downsampling stage
    variational: bool = True
    logvar_range: tuple[float, float] = (-10.0, 10.0)
    conv_impl: str = "matmul"  # conv only: 'matmul' | 'xla' (cnn.Conv)

    def setup(self):
        features = 2 * self.latent if self.variational else self.latent
        decoder_hidden = tuple(reversed(self.hidden))
        if self.arch == "mlp":
            self.encoder = MLPEncoder(self.hidden, features)
            self.decoder = MLPDecoder(decoder_hidden, self.image_shape)
        else:
            self.encoder = ConvEncoder(self.channels, self.hidden, features, self.conv_impl)
            self.decoder = ConvDecoder(
                self.channels, decoder_hidden, self.image_shape, self.conv_impl
            )

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        out = self.encoder(x)
        if not self.variational:
            return out, None
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(logvar, *self.logvar_range)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.decoder(z)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstruction from the posterior mean (used for init and for pictures)."""
        return self.decode(self.encode(x)[0])


@registry.model(
    "autoencoder",
    family="autoencoder",
    arch="mlp",  # mlp | conv
    latent=32,
    hidden=(512, 256),
    channels=(32, 64),  # conv only
    variational=True,
    logvar_min=-10.0,
    logvar_max=10.0,
    conv_impl="auto",  # conv only: matmul on CPU, xla elsewhere (jaxdl/backends.py)
    legacy=dict(conv_impl="matmul"),  # runs saved before the key were trained with it
)
def build(cfg, info) -> AutoEncoder:
    check_choice("model.arch", cfg.arch, ARCHS)
    check_choice("model.conv_impl", cfg.conv_impl, CONV_SETTINGS)
    check(cfg.latent > 0, f"model.latent={cfg.latent} must be positive")
    hidden = tuple(int(w) for w in cfg.hidden)
    channels = tuple(int(w) for w in cfg.channels)
    check(all(w > 0 for w in hidden + channels), "model.hidden/channels must be positive")
    check(cfg.arch == "mlp" or channels, "model.channels must be non-empty for arch=conv")
    check(cfg.logvar_min < cfg.logvar_max, "model.logvar_min must be < model.logvar_max")
    return AutoEncoder(
        latent=cfg.latent,
        image_shape=tuple(info["image_shape"]),
        arch=cfg.arch,
        hidden=hidden,
        channels=channels,
        variational=cfg.variational,
        logvar_range=(cfg.logvar_min, cfg.logvar_max),
        conv_impl=cfg.conv_impl,
    )
