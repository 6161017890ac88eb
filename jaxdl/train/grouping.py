"""Which trials may train together in one vmapped step (trials.py): those whose configs
differ only in `seed` and the optimizer numbers a vmapped step takes per trial
(optim.TRACEABLE). Pure; the trainer's rule, which the sweeps (jaxdl/sweeps) follow."""

import jax.numpy as jnp
import ml_collections

from jaxdl import optim
from jaxdl.errors import UserError

# The config keys in which trials of one vmapped step may differ.
PER_TRIAL_KEYS = ("seed", *(f"optimizer.{name}" for name in optim.TRACEABLE))


def vmap_key(config: ml_collections.ConfigDict) -> dict:
    """What trials vmapped together must share: the config without its seed, the
    optimizer numbers a vmapped step takes per trial, and the trial's values as its
    trackers show them (train.trial: trackers.py)."""
    shared = config.to_dict()
    shared.pop("seed")
    shared["train"].pop("trial", None)
    for name in optim.TRACEABLE:
        shared["optimizer"].pop(name)
    return shared


def vmapped_values(configs: list[ml_collections.ConfigDict]) -> dict:
    """Every optimizer number a vmapped step takes per trial, one array entry per trial
    (all of them, differing or not: then one compiled step serves every group of the same
    config); raises UserError if the trials differ in anything a vmapped step cannot vary."""
    keys = [vmap_key(c) for c in configs]
    for index, key in enumerate(keys[1:], 1):
        if key != keys[0]:
            raise UserError(
                f"vmapped trials may differ only in {', '.join(PER_TRIAL_KEYS)}; trial "
                f"{index} differs from trial 0 in "
                f"{_first_difference(keys[0], key)}"
            )
    return {
        name: jnp.asarray([float(c.optimizer[name]) for c in configs], jnp.float32)
        for name in optim.TRACEABLE
    }


def _first_difference(a: dict, b: dict, prefix: str = "config") -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return _first_difference(a[key], b[key], f"{prefix}.{key}")
            return f"{prefix}.{key}"
    return prefix
