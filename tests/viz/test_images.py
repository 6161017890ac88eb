"""Image grids."""

import jax.numpy as jnp

from jaxdl.viz.images import image_grid


def test_image_grid_places_tiles_row_by_row():
    tiles = jnp.zeros((2, 3, 2, 2, 1)).at[1, 2].set(1.0)
    grid = image_grid(tiles, pad=1)
    assert grid.shape == (6, 9)
    assert int(grid[3, 6]) == 255 and int(grid[0, 0]) == 0 and int(grid[2, 0]) == 255
