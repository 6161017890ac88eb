"""What the trainer reads: training batches, an eval source and a JSON description.

`build_input(config.data, ...)` calls the builder of the data source that config.data
names (jaxdl/datasets/, registered like models). The builders share the three kinds of
input below: images (shuffled (image, label) batches), text (contiguous token streams
for truncated BPTT, text.py) and documents ((sentences x words) tokens and a label,
documents.py); a source of another kind builds its own `Input`.
"""

import dataclasses

import ml_collections
import numpy as np

from jaxdl import configs, registry
from jaxdl.data import documents, text
from jaxdl.data.pipeline import (
    ArraySource,
    LazySample,
    ShuffledBatches,
    Source,
    bounded_sample,
    held_if_small,
)
from jaxdl.errors import check, check_choice

# A data-dependent start (Task.init_from_data) reads at most this many training examples
# (all of a smaller set), or this many tokens of a text.
INIT_SAMPLE_EXAMPLES = 100_000
INIT_SAMPLE_TOKENS = 10_000_000


@dataclasses.dataclass(frozen=True)
class Input:
    train: ShuffledBatches | text.StreamBatches  # batch(k), batches_per_epoch
    eval: Source  # read in order by pipeline.eval_batches
    info: dict  # JSON; saved with the run (class names, vocabulary); tasks read it
    items_per_batch: int  # examples (or tokens) per global batch, for the progress line
    item_unit: str  # "ex", "tok" or "doc"

    def train_sample(self) -> LazySample:
        """What Task.init_from_data reads: a bounded sample of the training set (every
        example of a set up to INIT_SAMPLE_EXAMPLES), or a text's first tokens; read
        only when the task reads it."""
        if isinstance(self.train, text.StreamBatches):
            tokens = self.train.tokens
            return LazySample(lambda: {"tokens": np.asarray(tokens[:INIT_SAMPLE_TOKENS])})
        source = self.train.source
        return LazySample(lambda: bounded_sample(source, INIT_SAMPLE_EXAMPLES))


def build_input(
    dcfg: ml_collections.ConfigDict, seed: int, process_index: int = 0, process_count: int = 1
) -> Input:
    """The input of data source `dcfg.name` (config.data; resolved here)."""
    dcfg = configs.resolve_section("data", dcfg)
    return registry.lookup("data", dcfg.name).build(dcfg, seed, process_index, process_count)


def image_input(
    dcfg,
    train: Source,
    eval_source: Source,
    info: dict,
    seed: int,
    process_index: int,
    process_count: int,
) -> Input:
    """Shuffled batches of an image source's examples (`image` uint8 HWC, `label`);
    `info` holds at least origin, class_names and image_shape. A source with random
    transforms (`random` true) gets per-row draws; a small one is held in memory
    (`data.hold_mb`, pipeline.held_if_small)."""
    max_bytes = dcfg.hold_mb * 2**20
    train = held_if_small(train, max_bytes, dcfg.workers)
    eval_source = held_if_small(eval_source, max_bytes, dcfg.workers)
    return Input(
        train=ShuffledBatches(
            train,
            dcfg.batch_size,
            seed,
            process_index,
            process_count,
            random_draws=getattr(train, "random", False),
        ),
        eval=eval_source,
        info={
            "name": dcfg.name,
            "num_train": train.num_examples,
            "num_eval": eval_source.num_examples,
            **info,
        },
        items_per_batch=dcfg.batch_size,
        item_unit="ex",
    )


def text_input(
    dcfg, tokens, vocab: str, origin: str, seed: int, process_index: int, process_count: int
) -> Input:
    """The character ids of a whole text (an array, or memory-mapped); eval is its tail
    (`data.eval_fraction`), run as `data.eval_batch_size` streams."""
    train_tokens, eval_tokens = text.split_tail(tokens, dcfg.eval_fraction)
    return Input(
        train=text.StreamBatches(
            train_tokens, dcfg.batch_size, dcfg.window, seed, process_index, process_count
        ),
        eval=ArraySource(text.eval_streams(eval_tokens, dcfg.eval_batch_size, dcfg.window)),
        info={
            "name": dcfg.name,
            "origin": origin,
            "num_train": len(train_tokens),
            "num_eval": len(eval_tokens),
            "vocab": vocab,
        },
        items_per_batch=dcfg.batch_size * dcfg.window,
        item_unit="tok",
    )


# name -> read(dcfg) -> (train documents, eval documents, class names, info)
_DOCUMENT_READERS: dict = {}
DOCUMENT_KEYS = dict(
    max_sentences=36,  # sentences read of each document
    max_words=36,  # words read of each sentence
    min_count=2,  # training-set count below which a word is OOV
    keep_sentences="first",  # of longer documents: "first" or "last"
)


def document_source(name: str, read, **defaults) -> None:
    """Registers data source `name` of labelled documents for the document classifier:
    `read(dcfg) -> (train documents, eval documents, class names, info)` (documents.
    Document; info: at least "origin"); its keys are `defaults` and DOCUMENT_KEYS."""
    _DOCUMENT_READERS[name] = read

    def build(dcfg, seed: int, process_index: int, process_count: int) -> Input:
        check_choice("data.keep_sentences", dcfg.keep_sentences, documents.KEEP_SENTENCES)
        train, evals, class_names, info = read(dcfg)
        return document_input(
            dcfg, train, evals, class_names, info, seed, process_index, process_count
        )

    registry.source(
        name,
        yields=("tokens", "label"),
        provides=("class_names", "words"),
        **defaults,
        **DOCUMENT_KEYS,
    )(build)


def read_documents(dcfg) -> tuple:
    """The documents of config.data as its source reads them (what the attention pages
    and the bag-of-words baseline show and train on): (train, eval, class names, info)."""
    registry.lookup("data", dcfg.name)  # (imports the sources: they register their readers)
    read = _DOCUMENT_READERS.get(dcfg.name)
    check(read is not None, f"data.name={dcfg.name!r} is not a source of documents")
    return read(dcfg)


def document_input(
    dcfg,
    train_docs,
    eval_docs,
    class_names,
    info: dict,
    seed: int,
    process_index: int,
    process_count: int,
) -> Input:
    """Documents as (max_sentences, max_words) token ids; the vocabulary (words seen
    `data.min_count` times in the training documents, plus padding and OOV) and the
    share of words cut by the limits go into info (with `info`: origin and more)."""
    vocab = documents.build_vocab(train_docs, dcfg.min_count)
    train, evals = (
        documents.encode(docs, vocab, dcfg.max_sentences, dcfg.max_words, dcfg.keep_sentences)
        for docs in (train_docs, eval_docs)
    )
    return Input(
        train=ShuffledBatches(
            ArraySource({"tokens": train.tokens, "label": train.labels}),
            dcfg.batch_size,
            seed,
            process_index,
            process_count,
        ),
        eval=ArraySource({"tokens": evals.tokens, "label": evals.labels}),
        info={
            "name": dcfg.name,
            **info,
            "num_train": len(train_docs),
            "num_eval": len(eval_docs),
            "class_names": list(class_names),
            "max_sentences": dcfg.max_sentences,
            "max_words": dcfg.max_words,
            "keep_sentences": dcfg.keep_sentences,
            "truncated_share": {
                "train": round(train.truncated_share, 4),
                "eval": round(evals.truncated_share, 4),
            },
            "words": vocab,
        },
        items_per_batch=dcfg.batch_size,
        item_unit="doc",
    )
