"""Data: sources registered by name (jaxdl/datasets/), read as random-access sources and
batched deterministically on the host (pipeline.py)."""

from jaxdl.data.inputs import Input, build_input
from jaxdl.data.pipeline import (
    ArraySource,
    ExampleSource,
    Prefetcher,
    ShuffledBatches,
    Source,
    StackedBatches,
    decodes,
    eval_batches,
    read_all,
)
from jaxdl.data.sources import Dataset, load, load_text
from jaxdl.data.text import CharVocab, StreamBatches, eval_streams

__all__ = [
    "ArraySource",
    "CharVocab",
    "Dataset",
    "ExampleSource",
    "Input",
    "Prefetcher",
    "ShuffledBatches",
    "Source",
    "StackedBatches",
    "StreamBatches",
    "build_input",
    "decodes",
    "eval_batches",
    "eval_streams",
    "load",
    "load_text",
    "read_all",
]
