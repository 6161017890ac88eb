"""Which layers make the GAN fast on CPU: XLA convolution vs conv_as_matmul, and the
generator's upsampling by sub-pixel convolution (conv to 4x channels + depth-to-space)
vs a stride-2 transposed convolution.

    python bench/gan_layers.py [--width=16] [--batch=32] [--repeats=20]

Times (median ms per call, after compilation) of a forward pass and of a parameter
gradient, for the generator and the discriminator of experiments/fashion_cgan.py.
Writes bench/results/gan_layers.md.
"""

import statistics
import time

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

from jaxdl.models import gan

flags.DEFINE_integer("width", 16, "g_width = d_width.")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
FLAGS = flags.FLAGS


class TransposedGenerator(nn.Module):
    """gan.Generator with stride-2 transposed 4x4 convolutions for upsampling."""

    width: int
    num_classes: int = 10

    @nn.compact
    def __call__(self, noise, labels):
        x = jnp.concatenate([noise, nn.Embed(self.num_classes, 32)(labels)], -1)
        x = nn.relu(nn.Dense(7 * 7 * 2 * self.width)(x)).reshape(-1, 7, 7, 2 * self.width)
        for width in (2 * self.width, self.width):
            x = nn.relu(nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding="SAME")(x))
        return jnp.tanh(nn.Conv(1, (3, 3))(x))


def median_ms(fn, *args) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def timings(model, *inputs) -> tuple[float, float]:
    params = model.init(jax.random.PRNGKey(0), *inputs)
    forward = lambda p: model.apply(p, *inputs)
    gradient = jax.grad(lambda p: model.apply(p, *inputs).sum())
    return median_ms(forward, params), median_ms(gradient, params)


def main(_) -> None:
    n, w = FLAGS.batch, FLAGS.width
    noise = jnp.ones((n, 100))
    labels = jnp.arange(n, dtype=jnp.int32) % 10
    images = jnp.zeros((n, 28, 28, 1))
    variants = {
        "generator, sub-pixel, conv_impl=xla": (
            gan.Generator(width=w, num_classes=10, conv_impl="xla"),
            noise,
            labels,
        ),
        "generator, sub-pixel, conv_impl=matmul": (
            gan.Generator(width=w, num_classes=10, conv_impl="matmul"),
            noise,
            labels,
        ),
        "generator, transposed conv (XLA)": (TransposedGenerator(w), noise, labels),
        "discriminator, conv_impl=xla": (gan.Discriminator(w, 10, conv_impl="xla"), images, labels),
        "discriminator, conv_impl=matmul": (
            gan.Discriminator(w, 10, conv_impl="matmul"),
            images,
            labels,
        ),
    }
    rows = []
    for name, (model, *inputs) in variants.items():
        forward, gradient = timings(model, *inputs)
        rows.append(f"| {name} | {forward:.1f} | {gradient:.1f} |")
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            "# GAN layer speed on CPU (bench/gan_layers.py)",
            "",
            common.machine_line(),
            f"- width {w}, batch {n}, median of {FLAGS.repeats} calls after compilation",
            "",
            "| model | forward (ms) | parameter gradient (ms) |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    print(table)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "gan_layers.md").write_text(table)


if __name__ == "__main__":
    app.run(main)
