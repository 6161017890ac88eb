"""A configurable CNN image classifier (Flax Linen, NHWC)."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import registry
from jaxdl.errors import check, check_choice

CONV_IMPLS = ("matmul", "xla")
# What a model's `conv_impl` key takes: "auto" is the backend's choice, resolved by
# tasks.build before a model is built (jaxdl/backends.py: matmul on CPU, xla elsewhere).
CONV_SETTINGS = ("auto", *CONV_IMPLS)


def conv_as_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A stride-1 'SAME' convolution written as one matrix product over shifted views.

    The same result as `lax.conv_general_dilated`. On XLA's CPU backend this (and its
    gradient: slices, pads and matmuls) trains some models much faster than XLA's own
    convolution, but not every shape gains (bench/results/conv_speed.md), hence the
    `impl` switch. Odd kernel sizes only.
    """
    kh, kw, cin, cout = kernel.shape
    _, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    views = [padded[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(views, axis=-1) @ kernel.reshape(kh * kw * cin, cout)


class Conv(nn.Module):
    """'SAME' stride-1 convolution (with a bias unless `use_bias` is off); `impl` picks
    the kernel, not the maths."""

    features: int
    kernel_size: int = 3
    impl: str = "matmul"  # 'matmul' (fast on CPU) or 'xla' (lax.conv; best on GPU/TPU)
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.impl not in CONV_IMPLS:  # "auto" is resolved before a model is built
            raise ValueError(f"Conv impl={self.impl!r} is not one of {CONV_IMPLS}")
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (k, k, x.shape[-1], self.features),
            jnp.float32,
        )
        if self.impl == "matmul":
            y = conv_as_matmul(x, kernel)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 / stride-2 max pooling as a reshape and a max; an odd last row/column is dropped.

    Its gradient is a cheap mask, unlike the select-and-scatter of `nn.max_pool`.
    """
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """Folds each block x block patch into channels: (n, h, w, c) -> (n, h/b, w/b, c*b*b)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // block, w // block, block * block * c)


class CNN(nn.Module):
    """Stages of convolutions (each followed by 2x2 max pooling), then a dense head.

    stages: conv widths per stage, e.g. ((32, 32), (64, 64)).
    stem_block: space-to-depth block applied to the input first (1 = none).
    A convolution that batch norm follows has no bias (the norm's offset does its work, and
    a bias that gets almost no gradient only drifts with rounding: 1 vs 4 devices);
    `bias_before_norm` keeps one, as runs saved before this have.
    """

    num_classes: int
    stages: Sequence[Sequence[int]] = ((32, 32), (64, 64))
    kernel_size: int = 3
    batch_norm: bool = True
    dropout: float = 0.0
    dense: int = 128
    stem_block: int = 1
    conv_impl: str = "matmul"
    bias_before_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, penultimate: bool = False) -> jax.Array:
        """Class logits; with `penultimate`, the features the last layer reads instead
        (after the dense layer's ReLU; tools that compare image sets use them)."""
        if self.stem_block > 1:
            x = space_to_depth(x, self.stem_block)
        for widths in self.stages:
            for width in widths:
                use_bias = self.bias_before_norm or not self.batch_norm
                x = Conv(width, self.kernel_size, self.conv_impl, use_bias)(x)
                if self.batch_norm:
                    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.relu(x)
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        if self.dense:
            x = nn.relu(nn.Dense(self.dense)(x))
        if penultimate:
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


@registry.model(
    "cnn",
    family="classifier",
    stages=((32, 32), (64, 64)),
    kernel_size=3,
    batch_norm=True,
    dropout=0.0,
    dense=128,
    stem_block=1,
    conv_impl="auto",  # matmul on CPU, xla elsewhere (jaxdl/backends.py)
    bias_before_norm=False,  # a bias on convolutions that batch norm follows
    # Runs saved before a key: they have the bias; "matmul" was the default before "auto".
    legacy=dict(bias_before_norm=True, conv_impl="matmul"),
)
def build(cfg, info) -> CNN:
    check_choice("model.conv_impl", cfg.conv_impl, CONV_SETTINGS)
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    check(cfg.kernel_size % 2 == 1, f"model.kernel_size={cfg.kernel_size} must be odd")
    check(cfg.stem_block >= 1, f"model.stem_block={cfg.stem_block} must be >= 1")
    check(cfg.dense >= 0, f"model.dense={cfg.dense} must be >= 0 (0: no dense layer)")
    stages = tuple(tuple(int(w) for w in stage) for stage in cfg.stages)
    check(
        all(stages) and all(w > 0 for stage in stages for w in stage),
        f"model.stages={cfg.stages} must be non-empty stages of positive widths",
    )
    return CNN(
        num_classes=len(info["class_names"]),
        stages=stages,
        kernel_size=cfg.kernel_size,
        batch_norm=cfg.batch_norm,
        dropout=cfg.dropout,
        dense=cfg.dense,
        stem_block=cfg.stem_block,
        conv_impl=cfg.conv_impl,
        bias_before_norm=cfg.bias_before_norm,
    )
