"""Moved to jaxdl/train/grouping.py (the trainer's rule; train/ imports nothing of
sweeps/): these names stay here only until the sweep modules import them from there."""

from jaxdl.train.grouping import PER_TRIAL_KEYS, vmap_key, vmapped_values

__all__ = ["PER_TRIAL_KEYS", "vmap_key", "vmapped_values"]
