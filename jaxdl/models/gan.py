"""DCGAN-style generator and discriminator for small images (Flax Linen, NHWC).

Both avoid strided and transposed convolutions, slow on XLA's CPU backend: the generator
upsamples by a 3x3 convolution to 4x the channels and depth-to-space by 2 (sub-pixel
convolution), the discriminator downsamples by space-to-depth by 2 and a 3x3
convolution (bench/gan_layers.py measures the alternatives). Images are in [-1, 1].

Class-conditional models (`num_classes` > 0): the generator concatenates a learned label
embedding to the noise; the discriminator adds a projection term <embed(y), features>
to its unconditional score (Miyato & Koyama, 2018). With `classify`, the discriminator also
has a class head on the same features (an auxiliary classifier, as in AC-GAN, Odena et
al. 2017), for a loss that asks generated images to be recognisably of their class.

The discriminator can see how varied a batch is: `minibatch_std` > 0 appends, before its
last convolution, a channel holding the mean standard deviation of the features over
groups of that many images (Karras et al., 2018), so a generator that makes too little
variety is told apart from real data and pushed to spread out.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import registry
from jaxdl.errors import check, check_choice
from jaxdl.models.autoencoder import depth_to_space
from jaxdl.models.cnn import CONV_SETTINGS, Conv, space_to_depth


class Generator(nn.Module):
    """noise (N, noise_dim) [+ labels (N,)] -> images (N, h, w, c) in [-1, 1].

    Dense to an (h/4, w/4, 2 * width) grid, two sub-pixel upsampling stages (to 2 * width
    and width channels), a last 3x3 convolution and tanh."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    width: int = 64
    num_classes: int = 0  # 0: unconditional
    embed_dim: int = 32
    conv_impl: str = "matmul"

    @nn.compact
    def __call__(self, noise: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        h, w, c = self.image_shape
        x = noise
        if self.num_classes:
            x = jnp.concatenate([x, nn.Embed(self.num_classes, self.embed_dim)(labels)], -1)
        grid = (h // 4, w // 4, 2 * self.width)
        x = nn.relu(nn.Dense(grid[0] * grid[1] * grid[2])(x)).reshape(-1, *grid)
        for width in (2 * self.width, self.width):
            x = nn.relu(depth_to_space(Conv(4 * width, impl=self.conv_impl)(x), 2))
        return jnp.tanh(Conv(c, impl=self.conv_impl)(x))


def minibatch_std(x: jax.Array, group: int) -> jax.Array:
    """x (N, h, w, c) with one more channel: for each image, the standard deviation of every
    feature over its group, averaged. Image i is in group i mod (N / g), g the largest
    divisor of N up to `group`; a group of one gives 0."""
    n = x.shape[0]
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    grouped = x.reshape(g, n // g, *x.shape[1:])
    std = jnp.sqrt(grouped.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    return jnp.concatenate(
        [x, jnp.broadcast_to(jnp.tile(std, g)[:, None, None, None], (*x.shape[:3], 1))], -1
    )


class Discriminator(nn.Module):
    """images (N, h, w, c) in [-1, 1] [+ labels (N,)] -> real-vs-fake logits (N,).

    A 3x3 convolution at full resolution, then two stages of space-to-depth by 2 and a 3x3
    convolution (2 * width, 4 * width channels), a dense feature layer and the score.
    With `minibatch_std` > 0 an image's score depends on the others in its group."""

    width: int = 64
    num_classes: int = 0
    features: int = 256
    conv_impl: str = "matmul"
    minibatch_std: int = 0  # group size; 0 = off
    classify: bool = False  # a class head on the features (needs num_classes)

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, with_classes: bool = False
    ):
        """Logits (N,); with `with_classes`, (logits, class logits (N, num_classes))."""
        act = lambda x: nn.leaky_relu(x, 0.2)
        x = act(Conv(self.width // 2, impl=self.conv_impl)(images))
        for width in (2 * self.width, 4 * self.width):
            x = space_to_depth(x, 2)
            if width == 4 * self.width and self.minibatch_std:
                x = minibatch_std(x, self.minibatch_std)
            x = act(Conv(width, impl=self.conv_impl)(x))
        x = act(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))
        score = nn.Dense(1)(x)[:, 0]
        if self.num_classes:
            score = score + (nn.Embed(self.num_classes, self.features)(labels) * x).sum(-1)
        # The head exists whenever `classify` is set, so that init creates its weights.
        class_logits = nn.Dense(self.num_classes)(x) if self.classify else None
        if with_classes:
            return score, class_logits
        return score


class Encoder(nn.Module):
    """images -> codes in (-1, 1) (tanh), for autoencoder pre-training of the generator."""

    noise_dim: int
    width: int = 32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images
        for width in (self.width, 2 * self.width):
            x = nn.relu(Conv(width)(space_to_depth(x, 2)))
        return jnp.tanh(nn.Dense(self.noise_dim)(x.reshape(x.shape[0], -1)))


@registry.model(
    "dcgan",
    family="gan",
    conditional=True,
    g_width=16,
    d_width=16,
    d_minibatch_std=0,  # > 0: D sees the feature spread over groups of this many images
    conv_impl="xla",  # not "auto": XLA's convolution was the faster on CPU too
)
def build(cfg, info) -> tuple[Generator, Discriminator]:
    """(generator, discriminator); conditional models need the data's class names."""
    check_choice("model.conv_impl", cfg.conv_impl, CONV_SETTINGS)
    check(cfg.g_width > 0 and cfg.d_width > 0, "model.g_width and model.d_width must be > 0")
    check(cfg.d_minibatch_std >= 0, f"model.d_minibatch_std={cfg.d_minibatch_std} must be >= 0")
    image_shape = tuple(info["image_shape"])
    check(
        image_shape[0] % 4 == 0 and image_shape[1] % 4 == 0,
        f"model dcgan needs image sides divisible by 4, not {image_shape}",
    )
    num_classes = 0
    if cfg.conditional:
        check("class_names" in info, "model.conditional=True needs a data set with labels")
        num_classes = len(info["class_names"])
    generator = Generator(image_shape, cfg.g_width, num_classes, conv_impl=cfg.conv_impl)
    discriminator = Discriminator(
        cfg.d_width, num_classes, conv_impl=cfg.conv_impl, minibatch_std=cfg.d_minibatch_std
    )
    return generator, discriminator
