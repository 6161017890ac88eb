"""A multilayer perceptron image classifier: the worked example of adding a model
(WORKSPACE.md, "How to add a model"). This file and experiments/fashion_mlp.py are all
it took; nothing else was edited.

A `classifier` model, as the classify task asks (tasks/classify.py): called with float
NHWC images in [-1, 1] and `train`, it returns class logits; with `penultimate=True`,
the features its last layer reads.
"""

import flax.linen as nn
import jax

from jaxdl import registry
from jaxdl.errors import check


class MLP(nn.Module):
    num_classes: int
    hidden: tuple[int, ...]
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, penultimate: bool = False) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        if penultimate:
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


@registry.model("mlp", family="classifier", hidden=(256, 256), dropout=0.0)
def build(cfg, info) -> MLP:
    hidden = tuple(int(w) for w in cfg.hidden)
    check(all(w > 0 for w in hidden), f"model.hidden={cfg.hidden} must be positive widths")
    check(0 <= cfg.dropout < 1, f"model.dropout={cfg.dropout} must be in [0, 1)")
    return MLP(num_classes=len(info["class_names"]), hidden=hidden, dropout=cfg.dropout)
