"""Data: sources by TFDS name (or local copies) and deterministic host batching."""

from jaxdl.data.pipeline import Prefetcher, ShuffledBatches, eval_batches
from jaxdl.data.sources import Dataset, load

__all__ = ["Dataset", "Prefetcher", "ShuffledBatches", "eval_batches", "load"]
