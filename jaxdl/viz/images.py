"""Image grids: many pictures as one (pure jnp, so tasks draw them under jit)."""

import jax
import jax.numpy as jnp


def image_grid(images: jax.Array, pad: int = 1) -> jax.Array:
    """(rows, cols, h, w, c) in [0, 1] -> one uint8 (H, W) or (H, W, c) picture."""
    rows, cols, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (0, 0), (0, pad), (0, pad), (0, 0)), constant_values=1.0)
    grid = padded.transpose(0, 2, 1, 3, 4).reshape(rows * (h + pad), cols * (w + pad), c)
    grid = jnp.round(jnp.clip(grid, 0, 1) * 255).astype(jnp.uint8)
    return grid[..., 0] if c == 1 else grid
