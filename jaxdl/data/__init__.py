"""Data: sources by TFDS name (or local copies) and deterministic host batching."""

from jaxdl.data.inputs import Input, build_input
from jaxdl.data.pipeline import Prefetcher, ShuffledBatches, StackedBatches, eval_batches
from jaxdl.data.sources import Dataset, load, load_text
from jaxdl.data.text import CharVocab, StreamBatches, eval_streams

__all__ = [
    "CharVocab",
    "Dataset",
    "Input",
    "Prefetcher",
    "ShuffledBatches",
    "StackedBatches",
    "StreamBatches",
    "build_input",
    "eval_batches",
    "eval_streams",
    "load",
    "load_text",
]
