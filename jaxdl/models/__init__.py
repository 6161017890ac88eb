"""Pure Flax Linen modules: no optimizers, devices or files."""

from jaxdl.models.cnn import CNN

__all__ = ["CNN"]
